import Foundation
import Testing

/// Runs the built `bin/pq` as a user would.
enum PQCommand {
    static var binary: String { Fixtures.packageRoot + "/bin/pq" }

    /// Runs `pq` with arguments; the environment is cleared of PQ_* variables unless given.
    static func run(
        _ arguments: [String], environment extra: [String: String] = [:], stdin: String? = nil,
        currentDirectory: String? = nil, timeout: Double = 60
    ) throws -> Fixtures.ProcessResult {
        try #require(FileManager.default.isExecutableFile(atPath: binary), "missing \(binary): run `make build` first")
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PQ_") }
        for (k, v) in extra { env[k] = v }
        return try Fixtures.run(
            binary, arguments, environment: env, currentDirectory: currentDirectory ?? Fixtures.temporaryDirectory("pqcwd"),
            stdin: stdin, timeout: timeout)
    }
}
