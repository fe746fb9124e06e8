import CPQPlugin
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The built example plugin, `libpq_examples.so`, loaded as the host loads it: `dlopen` with
/// `RTLD_NODELETE` (a Swift plugin is never unloaded), `pq_plugin_entry`, then calls through the C ABI.
/// It holds its own copy of PQKit, separate from the one linked into this test binary.
@Suite struct ExamplePluginTests {
    /// `swift build --build-tests` (and so `swift test`) builds the library next to the test bundle.
    static func libraryPath() -> String? {
        var candidates: [URL] = []
        if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            // .build/<triple>/debug/pqPackageTests.xctest
            candidates.append(URL(fileURLWithPath: executable).deletingLastPathComponent())
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        candidates.append(root.appendingPathComponent(".build/debug"))
        return candidates.map { $0.appendingPathComponent("libpq_examples.so").path }
            .first { FileManager.default.fileExists(atPath: $0) }
    }

    static func entry() throws -> pq_plugin_entry_fn {
        let path = try #require(libraryPath(), "libpq_examples.so not found; run `swift build --build-tests` first")
        let handle = try #require(
            dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE), "dlopen \(path): \(String(cString: dlerror()))")
        let symbol = try #require(dlsym(handle, PQ_PLUGIN_ENTRY_SYMBOL), "no pq_plugin_entry in \(path)")
        return unsafeBitCast(symbol, to: pq_plugin_entry_fn.self)
    }

    static func plugin() throws -> pq_plugin {
        try #require(try entry()(1)).pointee
    }

    static func definitions() throws -> [String: pq_job_def] {
        let plugin = try plugin()
        let jobs = UnsafeBufferPointer(start: plugin.jobs, count: Int(plugin.job_count))
        return Dictionary(uniqueKeysWithValues: jobs.map { (String(cString: $0.name), $0) })
    }

    static func run(_ job: String, _ arguments: String = "{}", attempt: UInt32 = 1) async throws -> TestCall {
        let call = TestCall(job: job, arguments: arguments, attempt: attempt)
        call.run(try #require(try definitions()[job]))
        _ = await call.completion()
        return call
    }

    @Test func description() throws {
        let entry = try Self.entry()
        #expect(entry(2) == nil)
        let plugin = try Self.plugin()
        #expect(plugin.abi_version == 1)
        #expect(plugin.struct_size == UInt32(MemoryLayout<pq_plugin>.size))
        #expect(string(plugin.name) == "examples")
        #expect(string(plugin.version) == "1.0.0")
        #expect(string(plugin.toolchain) == "swift-6.3.1")
        #expect(plugin.free_string != nil)
    }

    @Test func jobsAndOptions() throws {
        let definitions = try Self.definitions()
        let options = definitions.mapValues { string($0.options_json) ?? "" }
        #expect(
            options == [
                "addition": "",
                "asynchronous": "",
                "failing": "",
                "flaky": #"{"max_retries":3,"retry_delay":0.1}"#,
                "slowtask": #"{"timeout":1}"#,
                "notoverlap": #"{"can_overlap":false}"#,
                "limited": #"{"max_concurrency":1}"#,
                "childtask": "",
                "testperiodicjob": #"{"run_every":1}"#,
                "swift.mul": "",
            ])
        #expect(definitions.values.allSatisfy { $0.doc != nil })
    }

    @Test func typedMultiply() throws {
        let mul = try #require(try Self.definitions()["swift.mul"])
        #expect(mul.run == nil)
        #expect(string(mul.signature) == "(a:i64,b:i64)->i64")
        let function = unsafeBitCast(try #require(mul.fn), to: (@convention(c) (Int64, Int64) -> Int64).self)
        #expect(function(6, 7) == 42)
        #expect(function(.max, 2) == -2)  // wraps, never traps
    }

    @Test func jsonJobs() async throws {
        #expect(try await Self.run("addition", #"{"a":1,"b":2}"#).host.completions == [.init(ok: true, text: "3")])
        #expect(
            try await Self.run("addition", #"{"a":1}"#).host.completions == [
                .init(ok: false, text: #"invalid arguments for job "addition": missing key "b""#)
            ])
        #expect(
            try await Self.run("failing").host.completions == [.init(ok: false, text: "this job always fails")])
        #expect(
            try await Self.run("asynchronous", #"{"lag":0.01}"#).host.completions == [.init(ok: true, text: "0.01")]
        )
        #expect(
            try await Self.run("testperiodicjob").host.completions == [.init(ok: true, text: #""periodic""#)])
    }

    @Test func flakyFollowsAttempts() async throws {
        let first = try await Self.run("flaky", #"{"fail_times":1}"#, attempt: 1)
        #expect(first.host.completions.first?.ok == false)
        let second = try await Self.run("flaky", #"{"fail_times":1}"#, attempt: 2)
        #expect(second.host.completions == [.init(ok: true, text: "2")])
    }

    @Test func childTask() async throws {
        let call = try await Self.run("childtask")
        #expect(call.host.submissions == [.init(job: "addition", argumentsJSON: #"{"a":1,"b":2}"#)])
        #expect(call.host.completions.first?.ok == true)
    }

    @Test func revokingSlowTask() async throws {
        let slow = try #require(try Self.definitions()["slowtask"])
        let call = TestCall(job: "slowtask")
        call.run(slow)
        try await Task.sleep(for: .milliseconds(20))
        call.cancel(slow)
        #expect(try #require(await call.completion()) == .init(ok: false, text: "cancelled"))
    }
}
