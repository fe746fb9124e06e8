import CPQPlugin
import Foundation
import PQCore
import Testing

/// The shipped example plugins load and their jobs run through the registry, JSON in and out.
@Suite struct ExamplePluginTests {
    let pool = PluginThreadPool(size: 2)

    func call(_ registry: JobRegistry, _ name: String, _ args: String, attempt: Int = 1, hooks: CallHooks = CallHooks())
        async throws -> CallOutcome
    {
        let job = try #require(registry.job(named: name))
        let call = PluginCall(
            job: job, taskID: String(repeating: "a", count: 32), argsJSON: args, attempt: attempt, hooks: hooks)
        call.start(on: pool)
        return await call.outcome() ?? .failure("wait cancelled")
    }

    func loadExamples() throws -> JobRegistry {
        let registry = JobRegistry()
        let loader = PluginLoader()
        registry.register(try loader.load(path: try Fixtures.requireBuilt(Fixtures.cExamplePlugin)))
        registry.register(try loader.load(path: try Fixtures.requireBuilt(Fixtures.swiftExamplePlugin)))
        return registry
    }

    @Test func cExampleRunsJSONJobs() async throws {
        let registry = try loadExamples()
        #expect(try await call(registry, "c.echo", #"{"x":[1,2,"three"]}"#) == .success(#"{"x":[1,2,"three"]}"#))
        #expect(try await call(registry, "c.fail", "{}") == .failure("c.fail failed on purpose"))
        guard case .failure(let message) = try await call(registry, "c.badjson", "{}") else {
            Issue.record("c.badjson must fail")
            return
        }
        #expect(message.contains("not valid JSON"))
        #expect(registry.job(named: "c.mul")?.signature == "(a:i64,b:i64)->i64")
        #expect(registry.job(named: "c.tick")?.options.isPeriodic == true)
    }

    @Test func cExampleChildTaskGoesThroughSubmitHook() async throws {
        let registry = try loadExamples()
        let submitted = DataBox()
        let hooks = CallHooks(submit: { job, args in
            submitted.set(Data("\(job) \(args)".utf8))
            return "0123456789abcdef0123456789abcdef"
        })
        #expect(
            try await call(registry, "c.child", "{}", hooks: hooks) == .success(#""0123456789abcdef0123456789abcdef""#))
        #expect(String(decoding: submitted.get(), as: UTF8.self) == #"c.echo {"from":"c.child"}"#)
    }

    @Test func cancelStopsARunningCJob() async throws {
        let registry = try loadExamples()
        let job = try #require(registry.job(named: "c.sleep"))
        let call = PluginCall(
            job: job, taskID: String(repeating: "b", count: 32), argsJSON: #"{"seconds":30}"#, attempt: 1,
            hooks: CallHooks())
        call.start(on: pool)
        try await Task.sleep(for: .milliseconds(50))
        call.cancel()
        #expect(await call.outcome() == .failure("c.sleep cancelled"))
    }

    @Test func swiftExampleRunsJSONJobs() async throws {
        let registry = try loadExamples()
        let addition = try #require(registry.job(named: "addition"))
        #expect(addition.plugin.toolchain == hostSwiftToolchain)
        #expect(try await call(registry, "addition", #"{"a":40,"b":2}"#) == .success("42"))
        guard case .failure(let message) = try await call(registry, "failing", "{}") else {
            Issue.record("failing must fail")
            return
        }
        #expect(message.contains("always fails"))
        guard case .failure(let bad) = try await call(registry, "addition", #"{"a":1}"#) else {
            Issue.record("addition without b must fail")
            return
        }
        #expect(bad.contains("b"))
    }
}
