import Foundation

/// Resolves `task_paths` entries into plugin directories and the `.so` files they hold.
///
/// Rules (DESIGN.md section 3):
/// - `a.b` is the directory `<root>/a/b/`: every `*.so` directly in it.
/// - `a.b.*` is `<root>/a/b/` itself, then each immediate subdirectory whose name does not start
///   with `_` or `.`, each for its `*.so` files. Not recursive beyond that.
/// - Entries keep their order; files are sorted by name.
///
/// ```swift
/// let dirs = try TaskPaths.resolve(["examples.*"], root: "/srv/pq/plugins")
/// for dir in dirs { print(dir.entry, dir.directory, dir.libraries) }
/// ```
public enum TaskPaths {
    /// One plugin directory that an entry resolved to.
    public struct Directory: Sendable, Equatable {
        /// The task_paths entry it came from, e.g. `examples.*`.
        public var entry: String
        /// The absolute directory path.
        public var directory: String
        /// Whether this directory is the parent of a wildcard entry (watched for new subdirectories).
        public var isWildcardParent: Bool
        /// The `*.so` and `*.pq.toml` files directly in it, sorted by name (absolute paths).
        public var libraries: [String]
    }

    /// Splits a comma-separated list (as in `--task-paths a,b.*`) into entries, dropping blanks.
    /// - Parameter list: the comma-separated entries.
    /// - Returns: the trimmed, non-empty entries in order.
    public static func split(_ list: String) -> [String] {
        list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// Resolves entries into directories.
    /// - Parameters:
    ///   - entries: dotted entries such as `myjobs` or `another.moduledir.*`.
    ///   - root: the plugins root directory.
    /// - Returns: the directories in deterministic order.
    /// - Throws: ``PluginError`` naming the entry and the directory when a directory is missing,
    ///   or when an entry is not a dotted name.
    public static func resolve(_ entries: [String], root: String) throws -> [Directory] {
        guard !entries.isEmpty else {
            throw PluginError(
                .emptyTaskPath,
                "no task_paths given: pass --task-paths a,b.* (or set PQ_TASK_PATHS, or task_paths in pq.toml)")
        }
        let rootURL = URL(fileURLWithPath: root).standardizedFileURL
        var result: [Directory] = []
        for entry in entries {
            var parts = entry.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            let wildcard = parts.last == "*"
            if wildcard { parts.removeLast() }
            guard !parts.isEmpty, parts.allSatisfy(isValidComponent) else {
                throw PluginError(
                    .badTaskPath,
                    "task_paths entry '\(entry)' is not a dotted name such as 'myjobs' or 'pkg.sub.*'")
            }
            let dir = parts.reduce(rootURL) { $0.appendingPathComponent($1, isDirectory: true) }.path
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
                throw PluginError(
                    .missingDirectory, path: dir,
                    "task_paths entry '\(entry)' has no directory \(dir) (plugins root: \(rootURL.path)); "
                        + "create it or fix --task-paths/--plugins-dir")
            }
            result.append(
                Directory(entry: entry, directory: dir, isWildcardParent: wildcard, libraries: libraries(in: dir)))
            if wildcard {
                for sub in subdirectories(of: dir) {
                    result.append(
                        Directory(entry: entry, directory: sub, isWildcardParent: false, libraries: libraries(in: sub)))
                }
            }
        }
        return result
    }

    /// Whether a file name is a plugin the loader considers: a shared library (`*.so`) or a
    /// manifest of a library's functions (`*.pq.toml`), not hidden.
    /// - Parameter name: a file name without directory.
    /// - Returns: true for `libx.so`, `x.so` and `libm.pq.toml`.
    public static func isLibraryName(_ name: String) -> Bool {
        guard !name.hasPrefix(".") else { return false }
        return (name.hasSuffix(".so") && name.count > 3)
            || (name.hasSuffix(PluginManifest.fileSuffix) && name.count > PluginManifest.fileSuffix.count)
    }

    private static func isValidComponent(_ part: String) -> Bool {
        guard !part.isEmpty, part != "..", part != "." else { return false }
        return !part.contains("/") && part != "*" && !part.hasPrefix(".")
    }

    static func libraries(in dir: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.filter(isLibraryName).sorted().compactMap { name in
            let path = dir + "/" + name
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue else {
                return nil
            }
            return path
        }
    }

    static func subdirectories(of dir: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.filter { !$0.hasPrefix("_") && !$0.hasPrefix(".") }.sorted().compactMap { name in
            let path = dir + "/" + name
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else { return nil }
            return path
        }
    }
}
