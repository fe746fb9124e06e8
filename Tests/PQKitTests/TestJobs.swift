import CPQPlugin
import PQKit
import Testing

// The jobs of the in-process test plugin "testkit". PQKit builds a plugin description once per name,
// so every test goes through `testPlugin()` with this one list.

struct Sum: Job {
    struct Arguments: Decodable, Sendable {
        var a: Int
        var b: Int
    }

    static let doc = "Adds a and b."

    func run(_ arguments: Arguments, context: JobContext) async throws -> Int { arguments.a + arguments.b }
}

struct Greeting: Job {
    struct Arguments: Decodable, Sendable { var who: String }
    struct Output: Encodable, Sendable {
        var greeting: String
        var task: String
        var attempt: Int
    }

    func run(_ arguments: Arguments, context: JobContext) async throws -> Output {
        context.log(.warning, "greeting \(arguments.who)")
        return Output(greeting: "hello \(arguments.who)", task: context.taskID, attempt: context.attempt)
    }
}

struct Plain: Job {
    func run(_ arguments: NoArguments, context: JobContext) async throws -> String { "plain/\(context.jobName)" }
}

struct Boom: Job {
    func run(_ arguments: NoArguments, context: JobContext) async throws -> Int { throw JobFailure("boom: it broke") }
}

struct Sleeper: Job {
    func run(_ arguments: NoArguments, context: JobContext) async throws -> String {
        context.log(.info, "sleeping")
        try await Task.sleep(for: .seconds(10))
        return "woke up"
    }
}

/// Ignores Swift cancellation and polls `isCancelled`, as a CPU-bound job would.
struct Poller: Job {
    func run(_ arguments: NoArguments, context: JobContext) async throws -> String {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(10))
        while clock.now < deadline {
            if context.isCancelled { return "saw cancel" }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return "no cancel"
    }
}

struct Parent: Job {
    func run(_ arguments: NoArguments, context: JobContext) async throws -> String {
        try context.submit(job: "sum", arguments: ["a": 1, "b": 2])
    }
}

struct NotANumber: Job {
    func run(_ arguments: NoArguments, context: JobContext) async throws -> Double { .nan }
}

struct Test_Local: Job {
    func run(_ arguments: NoArguments, context: JobContext) async throws -> Bool { true }
}

struct Configured: Job {
    static let name = "configured-job"
    static let doc = "Has every option."
    static let timeout: Double? = 2.5
    static let maxRetries: Int? = 3
    static let retryDelay: Double? = 0.1
    static let maxConcurrency: Int? = 1
    static let canOverlap: Bool? = false
    static let queue: String? = "slow/queue"

    func run(_ arguments: NoArguments, context: JobContext) async throws -> String? { nil }
}

struct Tick: PeriodicJob {
    struct Arguments: Decodable, Sendable { var label: String }

    static let runEvery: Double? = 60
    static let anchor: String? = "00:00:30"
    static let periodicArguments: Arguments? = Arguments(label: "scheduled")

    func run(_ arguments: Arguments, context: JobContext) async throws -> String { arguments.label }
}

struct Nightly: PeriodicJob {
    static let cron: String? = "0 3 * * *"

    func run(_ arguments: NoArguments, context: JobContext) async throws -> [String] { ["a", "b"] }
}

func triple(_ x: Int64) -> Int64 { x &* 3 }

let testJobs: [any Job.Type] = [
    Sum.self, Greeting.self, Plain.self, Boom.self, Sleeper.self, Poller.self, Parent.self, NotANumber.self,
    Test_Local.self, Configured.self, Tick.self, Nightly.self,
]

let testTypedJobs: [TypedJob] = [
    TypedJob(
        name: "triple",
        doc: "Triples x.",
        function: unsafeBitCast(triple as @convention(c) (Int64) -> Int64, to: UnsafeMutableRawPointer.self),
        signature: "(x:i64)->i64",
        options: JobOptions(timeout: 1)
    )
]

/// The test plugin's description, as the host would get it from `pq_plugin_entry(1)`.
func testPlugin() throws -> UnsafePointer<pq_plugin> {
    let raw = PQPlugin.entry(1, name: "testkit", version: "0.1.0", jobs: testJobs, typedJobs: testTypedJobs)
    return try #require(raw).assumingMemoryBound(to: pq_plugin.self)
}

/// The test plugin's job definitions, by name.
func testDefinitions() throws -> [String: pq_job_def] {
    let plugin = try testPlugin()
    let jobs = UnsafeBufferPointer(start: plugin.pointee.jobs, count: Int(plugin.pointee.job_count))
    return Dictionary(uniqueKeysWithValues: jobs.map { (String(cString: $0.name), $0) })
}

/// One test job's definition.
func definition(_ name: String) throws -> pq_job_def {
    try #require(try testDefinitions()[name], "no job \(name)")
}

/// A C string field as a Swift string (`nil` for NULL).
func string(_ pointer: UnsafePointer<CChar>?) -> String? {
    pointer.map { String(cString: $0) }
}
