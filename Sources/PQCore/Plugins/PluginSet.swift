/// Resolves task_paths, loads every plugin found and registers their jobs.
public enum PluginSet {
    /// What loading a set of task_paths produced.
    public struct Report: Sendable {
        /// The directories the entries resolved to.
        public var directories: [TaskPaths.Directory]
        /// Plugins that loaded.
        public var loaded: [LoadedPlugin]
        /// Files that failed to load (each names the file and the reason); they were skipped.
        public var failures: [PluginError]
        /// Warnings: duplicate job names, rejected jobs.
        public var warnings: [String]
    }

    /// Loads all plugins of `taskPaths` into `registry`.
    /// - Parameters:
    ///   - taskPaths: the task_paths entries.
    ///   - root: the plugins root.
    ///   - loader: the loader to use.
    ///   - registry: where jobs are registered.
    /// - Returns: what was loaded and what failed.
    /// - Throws: ``PluginError`` when an entry has no directory (nothing is loaded then).
    public static func load(
        taskPaths: [String], root: String, loader: any PluginFileLoader, into registry: JobRegistry
    ) throws -> Report {
        let changes = try PluginCatalog(taskPaths: taskPaths, root: root, loader: loader, registry: registry).rescan()
        return Report(
            directories: changes.directories, loaded: changes.loaded, failures: changes.failures,
            warnings: changes.warnings)
    }

    /// Loads one file that task_paths listed.
    /// - Parameters:
    ///   - path: the file.
    ///   - loader: the loader.
    /// - Returns: the loaded plugin.
    /// - Throws: ``PluginError`` naming the file and the reason.
    public static func loadFile(path: String, loader: PluginLoader) throws -> LoadedPlugin {
        try loader.load(path: path)
    }
}
