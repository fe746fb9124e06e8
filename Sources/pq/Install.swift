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
                let target = try Self.install(file: file, taskPath: taskPath, root: settings.pluginsDir)
                emit("installed \(target)")
            }
        }

        /// Checks `file` and renames a copy into `<root>/<task path as folders>/`.
        /// - Returns: the installed path.
        static func install(file: String, taskPath: String, root: String) throws -> String {
            let parts = taskPath.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            guard !taskPath.isEmpty, parts.allSatisfy(isSlug) else {
                throw CLIError(
                    "'\(taskPath)' is not a task path: dotted slugs ([a-z0-9][a-z0-9_-]*), e.g. 'myjobs' or 'team.mail'"
                )
            }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory) else {
                throw CLIError("\(file): no such file")
            }
            let name = (file as NSString).lastPathComponent
            guard !isDirectory.boolValue, name.hasSuffix(".so"), TaskPaths.isLibraryName(name) else {
                throw CLIError("\(file): not a plugin file (a shared library whose name ends in .so)")
            }
            // Check a private copy, so what is installed is exactly what was checked.
            let scratch = try privateDirectory()
            defer { try? FileManager.default.removeItem(atPath: scratch) }
            let checked = scratch + "/" + name
            do {
                try FileManager.default.copyItem(atPath: file, toPath: checked)
            } catch {
                throw CLIError("\(file): cannot read it (\(error.localizedDescription))")
            }
            chmod(checked, 0o644)
            let loader = IsolatedPluginLoader(options: .init(trustAll: true))
            switch loader.load(paths: [checked]).first {
            case .failure(let error):
                throw CLIError("\(file): not installed: \(error.message)")
            case .success(let plugin):
                guard !plugin.jobs.isEmpty else { throw CLIError("\(file): not installed: the plugin has no jobs") }
            case nil:
                throw CLIError("\(file): not installed: the check gave no answer")
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
                try FileManager.default.copyItem(atPath: checked, toPath: temporary)
            } catch {
                throw CLIError("cannot write into \(folder): \(error.localizedDescription)")
            }
            chmod(temporary, 0o644)
            guard rename(temporary, target) == 0 else {
                let reason = String(cString: strerror(errno))
                try? FileManager.default.removeItem(atPath: temporary)
                throw CLIError("cannot rename into \(target): \(reason)")
            }
            return target
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
