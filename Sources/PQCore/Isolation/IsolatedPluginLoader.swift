import Foundation
import Glibc

/// Loads plugin files in a batch: in this process (``PluginLoader``) or in a child process
/// (``IsolatedPluginLoader``).
public protocol PluginFileLoader: Sendable {
    /// Loads each file.
    /// - Parameter paths: the files, in task_paths order.
    /// - Returns: one result per path, in the same order.
    func load(paths: [String]) -> [Result<LoadedPlugin, PluginError>]
}

extension PluginLoader: PluginFileLoader {
    /// Loads each file in this process.
    public func load(paths: [String]) -> [Result<LoadedPlugin, PluginError>] {
        paths.map { path in
            do { return .success(try load(path: path)) } catch let error as PluginError {
                return .failure(error)
            } catch {
                return .failure(PluginError(.unreadable, path: path, "\(error)"))
            }
        }
    }
}

/// Loads plugins in a child process (`pq __worker` in probe mode), so that no plugin code runs
/// in this one: not a job, not `pq_plugin_entry`, not a library constructor (DESIGN.md section
/// 12). The child reports each plugin's jobs before it loads the next; a plugin that kills it
/// is named and skipped, and a new child loads the rest.
///
/// With a snapshot directory (the host), each file is first copied there; the copy is what the
/// child checks and what worker processes later load, so every worker runs exactly the bytes
/// that were checked, whatever happens to the original afterwards. ``PluginInfo/image`` names it.
public struct IsolatedPluginLoader: PluginFileLoader {
    /// Settings of the loader.
    public struct Options: Sendable {
        /// The pq binary to start (`/proc/self/exe` by default).
        public var executable: String
        /// Skip the ownership and permission check (`--trust-all-plugins`).
        public var trustAll: Bool
        /// Where snapshots are kept for workers; nil: a temporary one, removed after the load.
        public var snapshotDirectory: String?
        /// Seconds one child may take before it is killed.
        public var timeout: Double

        /// Creates options.
        /// - Parameters:
        ///   - executable: the pq binary; nil for this program's.
        ///   - trustAll: skip the trust check.
        ///   - snapshotDirectory: where snapshots are kept.
        ///   - timeout: seconds per child.
        public init(
            executable: String? = nil, trustAll: Bool = false, snapshotDirectory: String? = nil, timeout: Double = 30
        ) {
            self.executable = executable ?? WorkerSpawner.currentExecutable
            self.trustAll = trustAll
            self.snapshotDirectory = snapshotDirectory
            self.timeout = timeout
        }
    }

    /// The loader's settings.
    public let options: Options

    /// Creates a loader.
    /// - Parameter options: its settings.
    public init(options: Options) {
        self.options = options
    }

    /// Makes a private directory (mode 0700) for snapshots.
    /// - Returns: its path.
    public static func makeSnapshotDirectory() throws -> String {
        let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array((base + "/pq-host-XXXXXX").utf8CString)
        guard let dir = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw PluginError(
                .unreadable, path: base,
                "cannot create a private directory for plugin snapshots: \(String(cString: strerror(errno)))")
        }
        return String(cString: dir)
    }

    /// Loads each file in child processes.
    public func load(paths: [String]) -> [Result<LoadedPlugin, PluginError>] {
        var results = [Result<LoadedPlugin, PluginError>?](repeating: nil, count: paths.count)
        let keep = options.snapshotDirectory != nil
        let directory: String
        do { directory = try options.snapshotDirectory ?? Self.makeSnapshotDirectory() } catch let e as PluginError {
            return paths.map { _ in .failure(e) }
        } catch {
            return paths.map { .failure(PluginError(.unreadable, path: $0, "\(error)")) }
        }
        defer { if !keep { try? FileManager.default.removeItem(atPath: directory) } }
        var todo: [(index: Int, plugin: WorkerSetup.Plugin)] = []
        for (i, path) in paths.enumerated() {
            if path.hasSuffix(PluginManifest.fileSuffix) {
                // A manifest names its library relative to itself: the child reads it in place.
                todo.append((i, .init(image: path, path: path, generation: PluginGenerations.next())))
                continue
            }
            do {
                if !options.trustAll { try PluginTrust.check(path: path) }
                let generation = PluginGenerations.next()
                let base = path.split(separator: "/").last.map(String.init) ?? "plugin.so"
                let image = directory + "/\(generation)-" + base
                try PluginLoader.copyFile(from: path, to: image)
                todo.append((i, .init(image: image, path: path, generation: generation)))
            } catch let error as PluginError {
                results[i] = .failure(error)
            } catch {
                results[i] = .failure(PluginError(.unreadable, path: path, "\(error)"))
            }
        }
        let planned = todo
        while !todo.isEmpty {
            let (reports, crashed) = probe(todo.map(\.plugin))
            for (n, report) in reports.enumerated() {
                let entry = todo[n]
                results[entry.index] = PluginReport.decode(
                    report, path: entry.plugin.path, image: keep ? entry.plugin.image : nil)
            }
            var rest = Array(todo.dropFirst(reports.count))
            if let (cause, stderr) = crashed, let first = rest.first {
                var message =
                    "loading it killed the process that loaded it (\(cause)): a library constructor or pq_plugin_entry crashed; plugin skipped"
                if let line = stderr.last { message += "; its last output: \(line)" }
                results[first.index] = .failure(PluginError(.crashedWhileLoading, path: first.plugin.path, message))
                rest.removeFirst()
            } else if crashed == nil, !rest.isEmpty {
                for entry in rest {
                    results[entry.index] = .failure(
                        PluginError(
                            .unreadable, path: entry.plugin.path,
                            "the loading process ended without reporting this plugin"))
                }
                rest = []
            }
            todo = rest
        }
        var images = [Int: String]()
        for entry in planned where entry.plugin.image != entry.plugin.path { images[entry.index] = entry.plugin.image }
        return results.enumerated().map { i, r in
            let result = r ?? .failure(PluginError(.unreadable, path: paths[i], "not loaded"))
            // The snapshot of a file that did not load serves nobody.
            if case .failure = result, let image = images[i] { unlink(image) }
            return result
        }
    }

    /// Runs one child over `plugins`. Returns the reports it sent, in order, and when it died
    /// before reporting them all, why, with its last lines of output.
    private func probe(_ plugins: [WorkerSetup.Plugin]) -> ([String], (String, [String])?) {
        let child: SpawnedWorker
        do { child = try WorkerSpawner.spawn(executable: options.executable, table: -1) } catch {
            return ([], ("\(error)", []))
        }
        defer {
            close(child.socket)
            close(child.stderr)
        }
        var setup = FrameEncoder()
        setup.append(.setup(WorkerSetup(plugins: plugins, slots: 1, checkTrust: !options.trustAll, probe: true)))
        _ = writeAll(child.socket, setup.bytes)
        var reports: [String] = []
        var decoder = FrameDecoder()
        var output = LineTail(limit: 5)
        let deadline = Date().addingTimeInterval(options.timeout)
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var open = true
        var timedOut = false
        while open {
            let left = deadline.timeIntervalSinceNow
            if left <= 0 {
                timedOut = true
                kill(child.pid, SIGKILL)
                break
            }
            var fds = [
                pollfd(fd: child.socket, events: Int16(POLLIN), revents: 0),
                pollfd(fd: child.stderr, events: Int16(POLLIN), revents: 0),
            ]
            let r = poll(&fds, 2, Int32(min(left, 1) * 1000) + 1)
            if r < 0 && errno == EINTR { continue }
            if fds[1].revents != 0 {
                let n = buffer.withUnsafeMutableBytes { read(child.stderr, $0.baseAddress, $0.count) }
                if n > 0 { output.append(buffer[0..<n]) }
            }
            if fds[0].revents != 0 {
                let n = buffer.withUnsafeMutableBytes { read(child.socket, $0.baseAddress, $0.count) }
                if n <= 0 {
                    open = false
                } else {
                    buffer.withUnsafeBytes { decoder.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                    while case .some(let frame) = try? decoder.next() {
                        if case .probed(let json) = frame { reports.append(json) }
                    }
                }
            }
        }
        // Whatever it still printed.
        while true {
            var fds = [pollfd(fd: child.stderr, events: Int16(POLLIN), revents: 0)]
            guard poll(&fds, 1, 20) > 0 else { break }
            let n = buffer.withUnsafeMutableBytes { read(child.stderr, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            output.append(buffer[0..<n])
        }
        let status = WorkerSpawner.reap(child.pid, patience: 2)
        if reports.count == plugins.count { return (reports, nil) }
        if timedOut { return (reports, ("it took longer than \(Int(options.timeout)) s and was killed", output.lines)) }
        let described = WorkerSpawner.describe(status: status)
        return (reports, (described.cause, output.lines))
    }
}

/// The last lines a process wrote.
struct LineTail {
    let limit: Int
    private(set) var lines: [String] = []
    private var partial: [UInt8] = []

    init(limit: Int) {
        self.limit = limit
    }

    /// Adds output; returns the lines it completed.
    @discardableResult
    mutating func append(_ bytes: ArraySlice<UInt8>) -> [String] {
        var complete: [String] = []
        for b in bytes {
            if b == UInt8(ascii: "\n") {
                complete.append(String(decoding: partial, as: UTF8.self))
                partial.removeAll(keepingCapacity: true)
            } else if partial.count < 4096 {
                partial.append(b)
            }
        }
        lines.append(contentsOf: complete)
        if lines.count > limit { lines.removeFirst(lines.count - limit) }
        return complete
    }
}
