// The example Swift plugin "examples": pulsar-queue's test jobs, written with PQKit.
// Built as libpq_examples.so; the host finds it through `pq_plugin_entry` below.

import PQKit

/// The plugin's only exported symbol: `const pq_plugin *pq_plugin_entry(uint32_t host_abi_version)`.
/// - Parameter hostABI: The ABI version the host speaks.
/// - Returns: The plugin description, or `nil` when the host speaks another ABI version.
@_cdecl("pq_plugin_entry")
public func pqPluginEntry(_ hostABI: UInt32) -> UnsafeRawPointer? {
    PQPlugin.entry(hostABI, name: "examples", version: "1.0.0", jobs: exampleJobs, typedJobs: exampleTypedJobs)
}

/// The JSON jobs of the plugin.
let exampleJobs: [any Job.Type] = [
    Addition.self,
    Asynchronous.self,
    Failing.self,
    Flaky.self,
    SlowTask.self,
    NotOverlap.self,
    Limited.self,
    ChildTask.self,
    TestPeriodicJob.self,
]

/// The typed jobs of the plugin.
let exampleTypedJobs: [TypedJob] = [
    TypedJob(
        name: "swift.mul",
        doc: "Multiplies two 64-bit integers (typed job, wraps on overflow).",
        function: unsafeBitCast(multiply as @convention(c) (Int64, Int64) -> Int64, to: UnsafeMutableRawPointer.self),
        signature: "(a:i64,b:i64)->i64"
    )
]

/// `swift.mul`: called by the host through libffi. Wrapping multiplication, because a trap would
/// take the host down with it.
func multiply(_ a: Int64, _ b: Int64) -> Int64 { a &* b }

/// Kwargs of the jobs that wait: `lag` seconds, 1 when not given.
struct Lag: Decodable, Sendable {
    var lag: Double

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        lag = try container.decodeIfPresent(Double.self, forKey: .lag) ?? 1
    }

    private enum CodingKeys: String, CodingKey { case lag }

    /// Sleeps `lag` seconds; stops with `CancellationError` when the task is revoked.
    func sleep() async throws {
        guard lag.isFinite, lag > 0 else { return }
        try await Task.sleep(for: .seconds(min(lag, 86_400)))
    }
}

/// `addition`: a + b.
struct Addition: Job {
    struct Arguments: Decodable, Sendable {
        var a: Int
        var b: Int
    }

    static let doc = "Adds two integers."

    func run(_ arguments: Arguments, context: JobContext) async throws -> Int {
        let (sum, overflow) = arguments.a.addingReportingOverflow(arguments.b)
        if overflow { throw JobFailure("\(arguments.a) + \(arguments.b) does not fit in a 64-bit integer") }
        return sum
    }
}

/// `asynchronous`: waits `lag` seconds without blocking a thread.
struct Asynchronous: Job {
    static let doc = "Sleeps lag seconds (default 1), then returns lag."

    func run(_ arguments: Lag, context: JobContext) async throws -> Double {
        try await arguments.sleep()
        return arguments.lag
    }
}

/// `failing`: for testing failures.
struct Failing: Job {
    static let doc = "Always fails."

    func run(_ arguments: NoArguments, context: JobContext) async throws -> String {
        throw JobFailure("this job always fails")
    }
}

/// `flaky`: for testing retries.
struct Flaky: Job {
    struct Arguments: Decodable, Sendable {
        var failTimes: Int
        private enum CodingKeys: String, CodingKey { case failTimes = "fail_times" }
    }

    static let doc = "Fails on its first fail_times runs, then returns the attempt number."
    static let maxRetries: Int? = 3
    static let retryDelay: Double? = 0.1

    func run(_ arguments: Arguments, context: JobContext) async throws -> Int {
        if context.attempt <= arguments.failTimes {
            throw JobFailure("flaky failure on attempt \(context.attempt) of \(arguments.failTimes) planned")
        }
        return context.attempt
    }
}

/// `slowtask`: for testing timeouts.
struct SlowTask: Job {
    static let doc = "Sleeps 10 seconds; its 1 second timeout revokes it first."
    static let timeout: Double? = 1

    func run(_ arguments: NoArguments, context: JobContext) async throws -> String {
        try await Task.sleep(for: .seconds(10))
        return "finished"
    }
}

/// `notoverlap`: for testing `can_overlap`.
struct NotOverlap: Job {
    static let doc = "Sleeps lag seconds; no two tasks with the same kwargs queued at once."
    static let canOverlap: Bool? = false

    func run(_ arguments: Lag, context: JobContext) async throws -> Double {
        try await arguments.sleep()
        return arguments.lag
    }
}

/// `limited`: for testing `max_concurrency`.
struct Limited: Job {
    static let doc = "Sleeps lag seconds; at most one runs at a time."
    static let maxConcurrency: Int? = 1

    func run(_ arguments: Lag, context: JobContext) async throws -> Double {
        try await arguments.sleep()
        return arguments.lag
    }
}

/// `childtask`: for testing child tasks.
struct ChildTask: Job {
    static let doc = "Submits an addition child task (a=1, b=2) and returns its id."

    func run(_ arguments: NoArguments, context: JobContext) async throws -> String {
        let child = try context.submit(job: Addition.name, arguments: ["a": 1, "b": 2])
        context.log(.info, "submitted addition child \(child)")
        return child
    }
}

/// `testperiodicjob`: for testing the scheduler.
struct TestPeriodicJob: PeriodicJob {
    static let doc = "Runs every second and returns \"periodic\"."
    static let runEvery: Double? = 1

    func run(_ arguments: NoArguments, context: JobContext) async throws -> String {
        "periodic"
    }
}
