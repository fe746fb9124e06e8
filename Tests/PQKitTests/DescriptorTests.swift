import CPQPlugin
import Foundation
import PQKit
import PQToolchain
import Testing

@Suite struct DescriptorTests {
    @Test func pluginFields() throws {
        let plugin = try testPlugin().pointee
        #expect(plugin.abi_version == 1)
        #expect(plugin.struct_size == UInt32(MemoryLayout<pq_plugin>.size))
        #expect(string(plugin.name) == "testkit")
        #expect(string(plugin.version) == "0.1.0")
        #expect(string(plugin.toolchain) == "swift-6.3.1")
        #expect(plugin.free_string != nil)
        #expect(plugin.job_count == UInt32(testJobs.count + testTypedJobs.count))
    }

    @Test func toolchainOfThisCompiler() {
        #expect(pqSwiftToolchain == "swift-6.3.1")
    }

    @Test func builtOnce() throws {
        let first = try testPlugin()
        let second = try testPlugin()
        #expect(first == second)
        #expect(first.pointee.jobs == second.pointee.jobs)
    }

    @Test func otherABIVersionsGetNil() {
        #expect(PQPlugin.entry(2, name: "testkit", version: "0.1.0", jobs: testJobs) == nil)
        #expect(PQPlugin.entry(0, name: "testkit", version: "0.1.0", jobs: testJobs) == nil)
    }

    @Test func jobNames() throws {
        let names = Set(try testDefinitions().keys)
        #expect(
            names == [
                "sum", "greeting", "plain", "boom", "sleeper", "poller", "parent", "notanumber", "test.local",
                "configured-job", "tick", "nightly", "triple",
            ])
    }

    @Test(arguments: [
        ("Addition", "addition"), ("SlowTask", "slowtask"), ("Test_Local", "test.local"),
        ("NotOverlap", "notoverlap"), ("Job2Go", "job2go"), ("Crème", "cr.me"), ("a-b c", "a.b.c"),
    ])
    func nameFromTypeName(typeName: String, expected: String) {
        #expect(jobName(fromTypeName: typeName) == expected)
    }

    @Test func defaultNameOfAType() {
        #expect(Test_Local.name == "test.local")
        #expect(Sum.name == "sum")
        #expect(Configured.name == "configured-job")
    }

    @Test func validNames() {
        #expect(isValidJobName("a"))
        #expect(isValidJobName("swift.mul"))
        #expect(isValidJobName("0-a_b.c"))
        #expect(!isValidJobName(""))
        #expect(!isValidJobName(".hidden"))
        #expect(!isValidJobName("Upper"))
        #expect(!isValidJobName("a b"))
    }

    @Test func jsonJobFields() throws {
        let sum = try definition("sum")
        #expect(string(sum.doc) == "Adds a and b.")
        #expect(sum.options_json == nil)
        #expect(sum.run != nil)
        #expect(sum.cancel != nil)
        #expect(sum.fn == nil)
        #expect(sum.signature == nil)
        #expect(try definition("plain").doc == nil)
    }

    @Test func allOptions() throws {
        let configured = try definition("configured-job")
        #expect(string(configured.doc) == "Has every option.")
        let json = try #require(string(configured.options_json))
        #expect(
            json
                == #"{"can_overlap":false,"max_concurrency":1,"max_retries":3,"queue":"slow/queue","retry_delay":0.1,"timeout":2.5}"#
        )
    }

    @Test func periodicOptions() throws {
        #expect(string(try definition("tick").options_json) == #"{"anchor":"00:00:30","run_every":60}"#)
        #expect(string(try definition("nightly").options_json) == #"{"cron":"0 3 * * *"}"#)
    }

    @Test func optionsJSON() {
        #expect(JobOptions().json == nil)
        #expect(JobOptions(timeout: 1).json == #"{"timeout":1}"#)
        #expect(JobOptions(canOverlap: true, runEvery: 0.5).json == #"{"can_overlap":true,"run_every":0.5}"#)
        #expect(JobOptions(timeout: .infinity).json == nil)
        #expect(JobOptions(of: Tick.self) == JobOptions(runEvery: 60, anchor: "00:00:30"))
    }

    @Test func typedJobFields() throws {
        let triple = try definition("triple")
        #expect(triple.run == nil)
        #expect(triple.cancel == nil)
        #expect(string(triple.signature) == "(x:i64)->i64")
        #expect(string(triple.doc) == "Triples x.")
        #expect(string(triple.options_json) == #"{"timeout":1}"#)
        let function = unsafeBitCast(try #require(triple.fn), to: (@convention(c) (Int64) -> Int64).self)
        #expect(function(14) == 42)
    }

    @Test func freeStringFreesResultStrings() throws {
        let plugin = try testPlugin().pointee
        let result = try #require(TypedJob.makeResultString("héllo"))
        #expect(String(cString: result) == "héllo")
        plugin.free_string?(result)
    }

    @Test func problemsOfGoodJobs() {
        #expect(PQPlugin.problems(jobs: testJobs, typedJobs: testTypedJobs) == [])
    }

    @Test func problemsOfBadJobs() {
        struct Bad_: Job {
            static let name = "_bad"
            static let timeout: Double? = .nan
            func run(_ arguments: NoArguments, context: JobContext) async throws -> Int { 0 }
        }
        struct Early: PeriodicJob {
            static let anchor: String? = "25:00"
            func run(_ arguments: NoArguments, context: JobContext) async throws -> Int { 0 }
        }
        let function = unsafeBitCast(triple as @convention(c) (Int64) -> Int64, to: UnsafeMutableRawPointer.self)
        let problems = PQPlugin.problems(
            jobs: [Bad_.self, Early.self, Sum.self, Sum.self],
            typedJobs: [TypedJob(name: "t", function: function, signature: "(x:int)->i64")]
        )
        #expect(problems.count == 5, "\(problems)")
        #expect(problems.contains { $0.contains("\"_bad\" is not a slug") })
        #expect(problems.contains { $0.contains("not a finite number") })
        #expect(problems.contains { $0.contains("\"sum\" is used twice") })
        #expect(problems.contains { $0.contains("anchor \"25:00\"") })
        #expect(problems.contains { $0.contains("signature \"(x:int)->i64\"") })
    }
}
