import ArgumentParser
import Foundation
import PQCore

extension PQ {
    /// `pq install FILE.so TASK_PATH` (DESIGN.md section 13).
    struct Install: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a plugin and put it under the plugins root at a task path, atomically.",
            discussion: """
                The file is loaded first in a child process, as a host would load it; a plugin that \
                would not load is refused, saying why, and nothing is written. Then it is copied \
                beside its target (<root>/a/b/ for task path a.b) and renamed into place with \
                owner-only write permissions, so a running host picks it up as one atomic replace.
                """)

        @Argument(help: "The plugin: a shared library (.so).") var file: String
        @Argument(help: "Where it goes: a task_paths entry such as 'myjobs' or 'team.mail'.") var taskPath: String
        @OptionGroup var common: CommonOptions

        func run() async throws {
            try await reportingErrors {
                let settings = try common.resolve()
                let target = try Self.install(
                    file: file, taskPath: taskPath, root: settings.pluginsDir, trustAll: settings.trustAllPlugins)
                emit("installed \(target)")
            }
        }

        /// Checks `file` and renames a copy into `<root>/<task path as folders>/`.
        /// - Returns: the installed path.
        static func install(file given: String, taskPath: String, root: String, trustAll: Bool) throws -> String {
            // A link is followed: what is checked and installed are the bytes it points to.
            let file = URL(fileURLWithPath: given).resolvingSymlinksInPath().path
            let parts = taskPath.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            guard !taskPath.isEmpty, parts.allSatisfy(isSlug) else {
                throw CLIError(
                    "'\(taskPath)' is not a task path: dotted slugs ([a-z0-9][a-z0-9_-]*), e.g. 'myjobs' or 'team.mail'"
                )
            }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory) else {
                throw CLIError("\(given): no such file")
            }
            let name = (given as NSString).lastPathComponent
            guard !isDirectory.boolValue, name.hasSuffix(".so"), TaskPaths.isLibraryName(name) else {
                throw CLIError("\(given): not a plugin file (a shared library whose name ends in .so)")
            }
            // Check a private copy, so what is installed is exactly what was checked.
            let scratch = try privateDirectory()
            defer { try? FileManager.default.removeItem(atPath: scratch) }
            let checked = scratch + "/" + name
            do {
                try copyBytes(from: file, to: checked)
            } catch {
                throw CLIError("\(given): cannot read it (\(error))")
            }
            let loader = IsolatedPluginLoader(options: .init(trustAll: true))
            switch loader.load(paths: [checked]).first {
            case .failure(let error):
                throw CLIError("\(given): not installed: \(error.message)")
            case .success(let plugin):
                if let rejected = plugin.rejectedJobs.first {
                    throw CLIError("\(given): not installed: a host would skip a job: \(rejected.message)")
                }
                guard !plugin.jobs.isEmpty else { throw CLIError("\(given): not installed: the plugin has no jobs") }
            case nil:
                throw CLIError("\(given): not installed: the check gave no answer")
            }
            let folder = ([root] + parts).joined(separator: "/")
            do {
                try FileManager.default.createDirectory(
                    atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            } catch {
                throw CLIError("cannot make \(folder): \(error.localizedDescription)")
            }
            let target = folder + "/" + name
            // A hidden name beside the target (same file system); the watcher ignores it until the rename.
            let temporary = folder + "/.\(name).install-\(getpid())"
            do {
                try? FileManager.default.removeItem(atPath: temporary)
                try copyBytes(from: checked, to: temporary)
            } catch {
                throw CLIError("cannot write into \(folder): \(error)")
            }
            // The host's trust rule (DESIGN.md section 4) on the file as it will be and its folder.
            if !trustAll {
                do { try PluginTrust.check(path: temporary) } catch {
                    try? FileManager.default.removeItem(atPath: temporary)
                    throw CLIError("not installed: a host would refuse it there: \(error)")
                }
            }
            guard rename(temporary, target) == 0 else {
                let reason = String(cString: strerror(errno))
                try? FileManager.default.removeItem(atPath: temporary)
                throw CLIError("cannot rename into \(target): \(reason)")
            }
            // The rename itself survives a crash only once the folder is on disk.
            let folderFD = open(folder, O_RDONLY | O_DIRECTORY)
            if folderFD >= 0 {
                fsync(folderFD)
                close(folderFD)
            }
            return target
        }

        /// Copies a file's bytes to a new file, mode 0644, flushed to disk before it is closed.
        static func copyBytes(from source: String, to destination: String) throws {
            let input = open(source, O_RDONLY | O_CLOEXEC)
            guard input >= 0 else { throw CLIError(String(cString: strerror(errno))) }
            defer { close(input) }
            let output = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            guard output >= 0 else { throw CLIError(String(cString: strerror(errno))) }
            defer { close(output) }
            fchmod(output, 0o644)
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = read(input, &buffer, buffer.count)
                if n == 0 { break }
                guard n > 0 else { throw CLIError(String(cString: strerror(errno))) }
                var written = 0
                while written < n {
                    let w = buffer.withUnsafeBytes { write(output, $0.baseAddress! + written, n - written) }
                    guard w > 0 else { throw CLIError(String(cString: strerror(errno))) }
                    written += w
                }
            }
            guard fsync(output) == 0 else { throw CLIError(String(cString: strerror(errno))) }
        }

        static func isSlug(_ part: String) -> Bool {
            guard let first = part.utf8.first, part.utf8.count <= 100 else { return false }
            func alnum(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) }
            return alnum(first)
                && part.utf8.allSatisfy { alnum($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
        }

        static func privateDirectory() throws -> String {
            var template = Array((NSTemporaryDirectory() + "/pq-install-XXXXXX").utf8CString)
            guard let made = mkdtemp(&template) else { throw CLIError("cannot make a temporary directory") }
            return String(cString: made)
        }
    }
}
