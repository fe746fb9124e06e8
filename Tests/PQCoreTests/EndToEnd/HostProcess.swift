import Foundation
import Testing

/// A `bin/pq serve` subprocess on a private SQLite store with the example plugins.
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
        pluginsDir: String = Fixtures.installedPluginsRoot
    ) throws {
        _ = try Fixtures.requireBuilt(Fixtures.swiftExamplePlugin)
        environment = Self.environment(store: store, taskPaths: taskPaths, pluginsDir: pluginsDir)
        logPath = directory + "/serve-\(UUID().uuidString.prefix(8)).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: PQCommand.binary)
        process.arguments = ["serve"] + arguments
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PQ_") }
        for (k, v) in environment { env[k] = v }
        process.environment = env
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.standardOutput = FileHandle(forWritingAtPath: logPath)
        process.standardError = FileHandle(forWritingAtPath: logPath)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Ready once the pool logs that it started (bounded).
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, !log.contains("worker pool started"), process.isRunning { usleep(20_000) }
        try #require(log.contains("worker pool started"), "host did not start: \(log)")
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

/// Runs `pq` against a store with the example plugins' environment.
struct PQClient {
    let store: String
    var directory: String
    var taskPathsValue = "examples.*"
    var pluginsDir = Fixtures.installedPluginsRoot

    init(store: String, directory: String, taskPaths: String = "examples.*", pluginsDir: String = Fixtures.installedPluginsRoot) {
        self.store = store
        self.directory = directory
        self.taskPathsValue = taskPaths
        self.pluginsDir = pluginsDir
    }

    @discardableResult
    func run(_ args: [String], stdin: String? = nil, timeout: Double = 60, taskPaths: Bool = true) throws -> Fixtures.ProcessResult {
        var env = HostProcess.environment(store: store, taskPaths: taskPathsValue, pluginsDir: pluginsDir)
        if !taskPaths { env["PQ_TASK_PATHS"] = nil }
        return try PQCommand.run(args, environment: env, stdin: stdin, currentDirectory: directory, timeout: timeout)
    }

    /// `pq submit ...` that must succeed; returns the id.
    func submit(_ args: [String]) throws -> String {
        let r = try run(["submit"] + args)
        try #require(r.status == 0, "submit failed: \(r.stderr)")
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `pq status ID --json` parsed.
    func status(_ id: String) throws -> [String: Any] {
        let r = try run(["status", id, "--json"])
        try #require(r.status == 0, "status failed: \(r.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8), options: [.fragmentsAllowed]) as? [String: Any])
    }

    /// `pq wait ID --json` parsed (bounded).
    func wait(_ ids: [String], timeout: Double = 30) throws -> [[String: Any]] {
        let r = try run(["wait"] + ids + ["--json", "--timeout", "\(timeout)"], timeout: timeout + 10)
        try #require(r.status == 0 || r.status == 1, "wait failed (\(r.status)): \(r.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
    }
}

extension PQClient {
    /// `pq tasks --json` shows no task at all.
    func expectNothingQueued(sourceLocation: SourceLocation = #_sourceLocation) throws {
        let r = try run(["tasks", "--json"])
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
