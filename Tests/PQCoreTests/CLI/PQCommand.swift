import Foundation
import Testing

/// Runs the built `bin/pq` as a user would.
enum PQCommand {
    static var binary: String { Fixtures.packageRoot + "/bin/pq" }

    /// Runs `pq` with arguments; the environment is cleared of PQ_* variables unless given.
    static func run(
        _ arguments: [String], environment extra: [String: String] = [:], stdin: String? = nil,
        currentDirectory: String? = nil, timeout: Double = 60
    ) async throws -> Fixtures.ProcessResult {
        try #require(FileManager.default.isExecutableFile(atPath: binary), "missing \(binary): run `make build` first")
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PQ_") }
        for (k, v) in extra { env[k] = v }
        return try await Fixtures.run(
            binary, arguments, environment: env,
            currentDirectory: currentDirectory ?? Fixtures.temporaryDirectory("pqcwd"),
            stdin: stdin, timeout: timeout)
    }

    /// Starts `pq watch ARGS` on `store` in the background; `collect` waits (bounded) for it to
    /// end and parses its JSON lines.
    static func startWatch(_ arguments: [String], store: String) throws -> (
        process: Process, collect: (Double) -> [[String: Any]]
    ) {
        let watcher = Process()
        watcher.executableURL = URL(fileURLWithPath: binary)
        watcher.arguments = ["watch"] + arguments
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PQ_") }
        env["PQ_STORE"] = store
        watcher.environment = env
        let out = Pipe()
        watcher.standardOutput = out
        try watcher.run()
        return (
            watcher,
            { timeout in
                let deadline = Date().addingTimeInterval(timeout)
                while watcher.isRunning && Date() < deadline { usleep(20_000) }
                if watcher.isRunning { watcher.terminate() }
                let lines = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(
                    separator: "\n")
                return lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            }
        )
    }
}
