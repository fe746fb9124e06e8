import Foundation
import Synchronization
import Testing

/// Paths and builders shared by the tests.
enum Fixtures {
    /// The package root (two levels above this file's folder).
    static let packageRoot: String = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().path
    }()

    static var headerDirectory: String { packageRoot + "/Sources/CPQPlugin/include" }

    /// The example plugins installed by `make build`.
    static var installedPluginsRoot: String { packageRoot + "/.pq/plugins" }
    static var swiftExamplePlugin: String { installedPluginsRoot + "/examples/swift/libpq_examples.so" }
    static var cExamplePlugin: String { installedPluginsRoot + "/examples/c/libexamples_c.so" }

    /// Fails the test with a clear message when `make build` has not installed the plugins.
    static func requireBuilt(_ path: String) throws -> String {
        try #require(
            FileManager.default.fileExists(atPath: path), "missing \(path): run `make build` before `swift test`")
        return path
    }

    /// Temporary directories made by this test process; removed when it exits.
    private static let made = Mutex<[String]>([])

    /// A fresh private temporary directory (mode 0700), removed when the test process exits.
    static func temporaryDirectory(_ label: String = "pqtest") -> String {
        var template = Array(
            ((NSTemporaryDirectory() as NSString).appendingPathComponent("\(label)-XXXXXX")).utf8CString)
        let ptr = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        let path = String(cString: ptr!)
        let first = made.withLock { paths in
            paths.append(path)
            return paths.count == 1
        }
        if first { atexit { Fixtures.removeTemporaryDirectories() } }
        return path
    }

    private static func removeTemporaryDirectories() {
        for path in made.withLock({ $0 }) { try? FileManager.default.removeItem(atPath: path) }
    }

    /// Compiles C source into a shared library against pq_plugin.h.
    /// - Returns: the path of the .so.
    @discardableResult
    static func compileC(_ source: String, to path: String, defines: [String] = []) async throws -> String {
        let dir = temporaryDirectory("pqsrc")
        let sourcePath = dir + "/plugin.c"
        try source.write(toFile: sourcePath, atomically: true, encoding: .utf8)
        let result = try await run(
            "/usr/bin/env",
            ["cc", "-shared", "-fPIC", "-O1", "-I", headerDirectory] + defines.map { "-D" + $0 }
                + ["-o", path, sourcePath, "-lpthread"])
        try #require(result.status == 0, "cc failed: \(result.stderr)")
        return path
    }

    /// ``compileC(_:to:defines:)`` for a fixture built once per test process from a static
    /// initializer, which cannot await: it waits for `cc` with `waitUntilExit` (no polling).
    @discardableResult
    static func compileCOnce(_ source: String, to path: String) throws -> String {
        let dir = temporaryDirectory("pqsrc")
        let sourcePath = dir + "/plugin.c"
        try source.write(toFile: sourcePath, atomically: true, encoding: .utf8)
        let cc = Process()
        cc.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        cc.arguments = ["cc", "-shared", "-fPIC", "-O1", "-I", headerDirectory, "-o", path, sourcePath, "-lpthread"]
        try cc.run()
        cc.waitUntilExit()
        try #require(cc.terminationStatus == 0, "cc failed for \(path)")
        return path
    }

    /// A configurable C plugin used to produce every broken variant.
    static let configurablePlugin = """
        #include "pq_plugin.h"
        #include <string.h>
        #ifndef ABI
        #define ABI PQ_ABI_VERSION
        #endif
        #ifndef STRUCT_SIZE
        #define STRUCT_SIZE sizeof(pq_plugin)
        #endif
        #ifndef TOOLCHAIN
        #define TOOLCHAIN "c"
        #endif
        #ifndef PLUGIN_NAME
        #define PLUGIN_NAME "fixture"
        #endif
        #ifndef JOB_NAME
        #define JOB_NAME "fixture.echo"
        #endif
        #ifndef VERSION
        #define VERSION "1.0.0"
        #endif
        static void echo_run(const pq_call *call) { call->complete(call, 1, call->args_json); }
        static void fail_run(const pq_call *call) { call->complete(call, 0, "fixture failure"); }
        static const pq_job_def jobs[] = {
            { JOB_NAME, "Echoes its kwargs.", NULL, echo_run, NULL, NULL, NULL },
            { "fixture.fail", "Fails.", "{\\"max_retries\\": 2}", fail_run, NULL, NULL, NULL },
        #ifdef BAD_JOB
            { "Bad Name!", "Invalid name.", NULL, echo_run, NULL, NULL, NULL },
            { "fixture.badopts", "Invalid options.", "{\\"timeout\\": \\"soon\\"}", echo_run, NULL, NULL, NULL },
        #endif
        };
        static const pq_plugin plugin = {
            ABI, STRUCT_SIZE, PLUGIN_NAME, VERSION, TOOLCHAIN,
            sizeof jobs / sizeof jobs[0], jobs, NULL,
        };
        #ifndef NO_ENTRY
        const pq_plugin *pq_plugin_entry(uint32_t host_abi_version) {
        #ifdef RETURN_NULL
            return NULL;
        #else
            return host_abi_version == PQ_ABI_VERSION ? &plugin : NULL;
        #endif
        }
        #else
        const pq_plugin *not_the_entry(void) { return &plugin; }
        #endif
        """

    struct ProcessResult {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs a program and waits (bounded) for it without holding a thread: the wait is its
    /// termination handler, the pipes are drained on dispatch threads, the deadline is a sleep.
    static func run(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
        currentDirectory: String? = nil, stdin: String? = nil, timeout: Double = 120
    ) async throws -> ProcessResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let input = Pipe()
        process.standardInput = input
        try process.run()
        let pid = process.processIdentifier
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try? input.fileHandleForWriting.close()
        // Read both pipes on dispatch threads so a chatty child never blocks.
        let outData = DataBox()
        let errData = DataBox()
        let group = DispatchGroup()
        for (pipe, box) in [(out, outData), (err, errData)] {
            group.enter()
            DispatchQueue.global().async {
                box.set(pipe.fileHandleForReading.readDataToEndOfFile())
                group.leave()
            }
        }
        // Polled with task sleeps (no thread held). Not a terminationHandler: Foundation may still
        // be inside the handler when this function returns and drops the Process (a crash seen
        // in CI as memory corruption in a later Process.run).
        func ended(within seconds: Double) async -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while process.isRunning {
                if Date() >= deadline { return false }
                try? await Task.sleep(for: .milliseconds(5))
            }
            return true
        }
        if await !ended(within: timeout) {
            kill(pid, SIGTERM)
            if await !ended(within: 0.2) { kill(pid, SIGKILL) }
            _ = await ended(within: 30)
        }
        // A grandchild that keeps the pipes open must not hold the test: drain for at most 10 s.
        let drained = DispatchSemaphore(value: 0)
        group.notify(queue: .global()) { drained.signal() }
        for _ in 0..<500 {
            if drained.wait(timeout: .now()) == .success { break }
            try? await Task.sleep(for: .milliseconds(20))
        }
        guard process.isRunning == false else {
            return ProcessResult(status: -1, stdout: "", stderr: "\(executable) did not end after SIGKILL")
        }
        return ProcessResult(
            status: process.terminationStatus, stdout: String(decoding: outData.get(), as: UTF8.self),
            stderr: String(decoding: errData.get(), as: UTF8.self))
    }
}

final class DataBox: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func set(_ d: Data) {
        lock.lock()
        data = d
        lock.unlock()
    }
    func get() -> Data {
        lock.lock()
        defer { lock.unlock() }
        return data
    }
}

/// Checks `condition` until it holds or `timeout` seconds pass, sleeping 20 ms between checks
/// (a task sleep: no thread is held while waiting).
/// - Returns: whether the condition held in time.
@discardableResult
func poll(timeout: Double = 10, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        if try await condition() { return true }
        if Date() >= deadline { return false }
        try? await Task.sleep(for: .milliseconds(20))
    }
}
