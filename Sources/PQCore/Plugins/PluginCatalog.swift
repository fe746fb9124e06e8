import Glibc
import Synchronization

/// The plugins of a set of task_paths, kept in step with the files on disk.
///
/// `rescan()` resolves the task_paths again and compares every plugin file's identity (device,
/// inode, size, modification time) with what it saw last: a new or replaced file is loaded as a
/// new generation and registered only when it validates (the previous generation keeps serving
/// otherwise); a removed file unregisters its jobs. Tasks already running keep the generation
/// they started on: a generation's code is never unloaded.
///
/// ```swift
/// let catalog = PluginCatalog(taskPaths: ["examples.*"], root: "/srv/plugins", loader: PluginLoader(), registry: registry)
/// let first = try catalog.rescan()   // initial load
/// ```
public final class PluginCatalog: Sendable {
    /// What one rescan changed.
    public struct Changes: Sendable {
        /// Directories the task_paths resolved to (watch these).
        public var directories: [TaskPaths.Directory] = []
        /// Plugin generations that loaded and now serve.
        public var loaded: [LoadedPlugin] = []
        /// Files that failed to load (the previous generation, if any, keeps serving).
        public var failures: [PluginError] = []
        /// Files that disappeared; their jobs were unregistered.
        public var removed: [String] = []
        /// Duplicate job names, rejected jobs.
        public var warnings: [String] = []

        /// Whether the set of served jobs changed.
        public var changedJobs: Bool { !loaded.isEmpty || !removed.isEmpty }
    }

    struct FileStamp: Equatable, Sendable {
        var device: UInt64
        var inode: UInt64
        var size: Int64
        var mtimeSeconds: Int
        var mtimeNanos: Int

        init?(path: String) {
            var st = stat()
            guard stat(path, &st) == 0 else { return nil }
            device = UInt64(st.st_dev)
            inode = UInt64(st.st_ino)
            size = Int64(st.st_size)
            mtimeSeconds = st.st_mtim.tv_sec
            mtimeNanos = st.st_mtim.tv_nsec
        }
    }

    /// The task_paths entries.
    public let taskPaths: [String]
    /// The plugins root.
    public let root: String
    let loader: any PluginFileLoader
    let registry: JobRegistry
    private let known = Mutex<[String: FileStamp]>([:])
    private let scanning = Mutex<Void>(())

    /// Creates a catalog; nothing is loaded until ``rescan()``.
    /// - Parameters:
    ///   - taskPaths: the entries.
    ///   - root: the plugins root.
    ///   - loader: loads one file.
    ///   - registry: where jobs are registered.
    public init(taskPaths: [String], root: String, loader: any PluginFileLoader, registry: JobRegistry) {
        self.taskPaths = taskPaths
        self.root = root
        self.loader = loader
        self.registry = registry
    }

    /// Brings the registry in step with the plugin directories.
    /// - Returns: what changed.
    /// - Throws: ``PluginError`` when an entry has no directory (nothing is changed then).
    @discardableResult
    public func rescan() throws -> Changes {
        try scanning.withLock { _ in
            var changes = Changes()
            changes.directories = try TaskPaths.resolve(taskPaths, root: root)
            let files = changes.directories.flatMap(\.libraries)
            var seen = Set<String>()
            var changed: [String] = []
            for file in files {
                seen.insert(file)
                guard let stamp = FileStamp(path: file) else { continue }
                if known.withLock({ $0[file] }) == stamp { continue }
                known.withLock { $0[file] = stamp }
                changed.append(file)
            }
            for result in loader.load(paths: changed) {
                switch result {
                case .success(let plugin):
                    changes.loaded.append(plugin)
                    changes.warnings += plugin.rejectedJobs.map(\.description)
                    changes.warnings += registry.register(plugin)
                case .failure(let error):
                    changes.failures.append(error)
                }
            }
            let gone = known.withLock { k -> [String] in
                let gone = k.keys.filter { !seen.contains($0) }.sorted()
                for path in gone { k[path] = nil }
                return gone
            }
            for path in gone where registry.unregister(path: path) != nil {
                changes.removed.append(path)
            }
            return changes
        }
    }
}
