import Foundation
import Testing

/// A `bin/pq serve` subprocess on a private SQLite store with the example plugins (or another
/// long-running command, such as `pq web`, ready once its log says `ready`).
final class HostProcess: @unchecked Sendable {
    let process = Process()
    let logPath: String
    let environment: [String: String]

    /// The environment that points pq at a store and the example plugins.
    static func environment(
        store: String, taskPaths: String = "examples.*", pluginsDir: String = Fixtures.installedPluginsRoot
    ) -> [String: String] {
        ["PQ_STORE": store, "PQ_TASK_PATHS": taskPaths, "PQ_PLUGINS_DIR": pluginsDir]
    }

    init(
        store: String, arguments: [String] = [], directory: String, taskPaths: String = "examples.*",
        pluginsDir: String = Fixtures.installedPluginsRoot, extraEnvironment: [String: String] = [:],
        command: String = "serve", ready: String = "worker pool started"
    ) throws {
        _ = try Fixtures.requireBuilt(Fixtures.swiftExamplePlugin)
        environment = Self.environment(store: store, taskPaths: taskPaths, pluginsDir: pluginsDir)
            .merging(extraEnvironment) { $1 }
        logPath = directory + "/serve-\(UUID().uuidString.prefix(8)).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: PQCommand.binary)
        process.arguments = [command] + arguments
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PQ_") }
        for (k, v) in environment { env[k] = v }
        // `make test` runs the end-to-end suites a second time with hosts in thread mode.
        if let mode = ProcessInfo.processInfo.environment["PQ_TEST_ISOLATION"], env["PQ_ISOLATION"] == nil {
            env["PQ_ISOLATION"] = mode
        }
        process.environment = env
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.standardOutput = FileHandle(forWritingAtPath: logPath)
        process.standardError = FileHandle(forWritingAtPath: logPath)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Ready once the pool logs that it started (bounded).
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, !log.contains(ready), process.isRunning { usleep(20_000) }
        try #require(log.contains(ready), "pq \(command) did not start: \(log)")
    }

    var pid: Int32 { process.processIdentifier }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
    var isRunning: Bool { process.isRunning }

    /// Sends a signal and waits (bounded) for the process to exit.
    @discardableResult
    func stop(_ signal: Int32 = SIGTERM, within seconds: Double = 20) -> Int32? {
        kill(pid, signal)
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// What /proc says about a process and the processes it started (Linux only).
enum ProcTree {
    /// The whole text of a /proc file (their size reads as 0, so read to the end), or nil.
    static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The fields of /proc/PID/stat after the command name: [0] is field 3 (state), [1] field 4
    /// (ppid), [11] and [12] fields 14 and 15 (utime, stime, in clock ticks).
    static func statFields(_ pid: Int32) -> [Substring]? {
        guard let text = readFile("/proc/\(pid)/stat"), let paren = text.lastIndex(of: ")") else { return nil }
        return text[text.index(after: paren)...].split(separator: " ")
    }

    /// Whether the process exists and is not a zombie.
    static func isAlive(_ pid: Int32) -> Bool {
        guard let state = statFields(pid)?.first else { return false }
        return state != "Z" && state != "X"
    }

    /// The parent's pid, or nil when the process is gone.
    static func parent(of pid: Int32) -> Int32? {
        guard let f = statFields(pid), f.count > 1 else { return nil }
        return Int32(f[1])
    }

    /// The live (not zombie) children: /proc/PID/task/*/children, or a scan of /proc when the
    /// kernel does not offer that file.
    static func children(of pid: Int32) -> [Int32] {
        var found = Set<Int32>()
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        var haveChildrenFiles = false
        for task in tasks {
            guard let text = readFile("/proc/\(pid)/task/\(task)/children") else { continue }
            haveChildrenFiles = true
            for field in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
                if let child = Int32(field) { found.insert(child) }
            }
        }
        if !haveChildrenFiles {
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
                if let other = Int32(entry), parent(of: other) == pid { found.insert(other) }
            }
        }
        return found.filter(isAlive).sorted()
    }

    /// Every live descendant (children, their children, ...), without the process itself.
    static func descendants(of pid: Int32) -> [Int32] {
        var result: [Int32] = []
        var frontier = [pid]
        while let next = frontier.popLast() {
            for child in children(of: next) where !result.contains(child) {
                result.append(child)
                frontier.append(child)
            }
        }
        return result
    }

    /// VmRSS of one process in KiB (0 when gone or a zombie).
    static func rssKB(_ pid: Int32) -> Int {
        guard let text = readFile("/proc/\(pid)/status") else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.dropFirst(6).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "") ?? 0
        }
        return 0
    }

    /// VmRSS of the process and all its descendants, in KiB.
    static func treeRSSKB(_ pid: Int32) -> Int { ([pid] + descendants(of: pid)).map(rssKB).reduce(0, +) }

    /// utime + stime of one process, in seconds (0 when gone).
    static func cpuSeconds(_ pid: Int32) -> Double {
        guard let f = statFields(pid), f.count > 12, let user = Double(f[11]), let system = Double(f[12]) else {
            return 0
        }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// utime + stime of the process and its live descendants, in seconds.
    static func treeCPUSeconds(_ pid: Int32) -> Double {
        ([pid] + descendants(of: pid)).map(cpuSeconds).reduce(0, +)
    }

    /// The executable of a process (/proc/PID/exe), or nil.
    static func executable(of pid: Int32) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")
    }
}

/// Runs `pq` against a store with the example plugins' environment.
struct PQClient {
    let store: String
    var directory: String
    var taskPathsValue = "examples.*"
    var pluginsDir = Fixtures.installedPluginsRoot

    init(
        store: String, directory: String, taskPaths: String = "examples.*",
        pluginsDir: String = Fixtures.installedPluginsRoot
    ) {
        self.store = store
        self.directory = directory
        self.taskPathsValue = taskPaths
        self.pluginsDir = pluginsDir
    }

    @discardableResult
    func run(_ args: [String], stdin: String? = nil, timeout: Double = 60, taskPaths: Bool = true) async throws
        -> Fixtures.ProcessResult
    {
        var env = HostProcess.environment(store: store, taskPaths: taskPathsValue, pluginsDir: pluginsDir)
        if !taskPaths { env["PQ_TASK_PATHS"] = nil }
        return try await PQCommand.run(
            args, environment: env, stdin: stdin, currentDirectory: directory, timeout: timeout)
    }

    /// `pq submit ...` that must succeed; returns the id.
    func submit(_ args: [String]) async throws -> String {
        let r = try await run(["submit"] + args)
        try #require(r.status == 0, "submit failed: \(r.stderr)")
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `pq status ID --json` parsed.
    func status(_ id: String) async throws -> [String: Any] {
        let r = try await run(["status", id, "--json"])
        try #require(r.status == 0, "status failed: \(r.stderr)")
        return try #require(
            try JSONSerialization.jsonObject(with: Data(r.stdout.utf8), options: [.fragmentsAllowed]) as? [String: Any])
    }

    /// `pq wait ID --json` parsed (bounded).
    func wait(_ ids: [String], timeout: Double = 30) async throws -> [[String: Any]] {
        let r = try await run(["wait"] + ids + ["--json", "--timeout", "\(timeout)"], timeout: timeout + 10)
        try #require(r.status == 0 || r.status == 1, "wait failed (\(r.status)): \(r.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
    }
}

extension PQClient {
    /// `pq tasks --json` shows no task at all.
    func expectNothingQueued(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let r = try await run(["tasks", "--json"])
        #expect(r.status == 0, sourceLocation: sourceLocation)
        #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[]", sourceLocation: sourceLocation)
    }
}

/// A command failed with one clear line on stderr naming every fragment, and printed nothing.
func expectOneLineError(
    _ r: Fixtures.ProcessResult, _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(r.status != 0, sourceLocation: sourceLocation)
    #expect(r.stdout.isEmpty, sourceLocation: sourceLocation)
    #expect(r.stderr.split(separator: "\n").count == 1, "stderr: \(r.stderr)", sourceLocation: sourceLocation)
    for f in fragments {
        #expect(r.stderr.contains(f), "stderr lacks '\(f)': \(r.stderr)", sourceLocation: sourceLocation)
    }
}
