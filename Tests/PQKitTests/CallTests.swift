import CPQPlugin
import Foundation
import PQKit
import Testing

/// Calls through the C ABI, as the host makes them: a hand-built `pq_call`, `run`, `cancel`, and the
/// callbacks recorded by a fake host.
@Suite struct CallTests {
    @Test func jsonResult() async throws {
        let call = TestCall(job: "sum", arguments: #"{"a": 2, "b": 40}"#)
        call.run(try definition("sum"))
        let completion = try #require(await call.completion())
        #expect(completion == .init(ok: true, text: "42"))
    }

    @Test func contextAndStructResult() async throws {
        let call = TestCall(job: "greeting", arguments: #"{"who":"pq"}"#, attempt: 3, taskID: "feedface")
        call.run(try definition("greeting"))
        let completion = try #require(await call.completion())
        #expect(completion == .init(ok: true, text: #"{"attempt":3,"greeting":"hello pq","task":"feedface"}"#))
        #expect(call.host.logs == ["2:greeting pq"])
    }

    @Test func stringResultIsAJSONString() async throws {
        let call = TestCall(job: "plain")
        call.run(try definition("plain"))
        #expect(try #require(await call.completion()) == .init(ok: true, text: #""plain/plain""#))
    }

    @Test func nullArgumentsMeanNone() async throws {
        let call = TestCall(job: "plain", arguments: nil)
        call.run(try definition("plain"))
        #expect(try #require(await call.completion()).ok)
    }

    @Test func missingKey() async throws {
        let call = TestCall(job: "sum", arguments: #"{"a": 1}"#)
        call.run(try definition("sum"))
        let completion = try #require(await call.completion())
        #expect(completion == .init(ok: false, text: #"invalid arguments for job "sum": missing key "b""#))
    }

    @Test func wrongType() async throws {
        let call = TestCall(job: "sum", arguments: #"{"a": "one", "b": 2}"#)
        call.run(try definition("sum"))
        let completion = try #require(await call.completion())
        #expect(!completion.ok)
        #expect(completion.text.hasPrefix(#"invalid arguments for job "sum": wrong type for "a", expected Int"#))
    }

    @Test(arguments: ["not json", "[1,2]", "", "{\"a\":1,", "null"])
    func malformedArguments(arguments: String) async throws {
        let call = TestCall(job: "sum", arguments: arguments)
        call.run(try definition("sum"))
        let completion = try #require(await call.completion())
        #expect(!completion.ok)
        #expect(completion.text.hasPrefix(#"invalid arguments for job "sum": "#), "\(completion.text)")
    }

    @Test func unknownJobName() async throws {
        let call = TestCall(job: "nosuchjob")
        call.run(try definition("sum"))
        let completion = try #require(await call.completion())
        #expect(completion == .init(ok: false, text: #"plugin "testkit" has no job "nosuchjob""#))
    }

    @Test func throwingJob() async throws {
        let call = TestCall(job: "boom")
        call.run(try definition("boom"))
        #expect(try #require(await call.completion()) == .init(ok: false, text: "boom: it broke"))
    }

    @Test func resultThatIsNotJSON() async throws {
        let call = TestCall(job: "notanumber")
        call.run(try definition("notanumber"))
        let completion = try #require(await call.completion())
        #expect(!completion.ok)
        #expect(completion.text.hasPrefix(#"job "notanumber" returned a result that is not JSON"#))
    }

    @Test func optionalAndArrayResults() async throws {
        let configured = TestCall(job: "configured-job")
        configured.run(try definition("configured-job"))
        #expect(try #require(await configured.completion()) == .init(ok: true, text: "null"))
        let nightly = TestCall(job: "nightly")
        nightly.run(try definition("nightly"))
        #expect(try #require(await nightly.completion()) == .init(ok: true, text: #"["a","b"]"#))
    }

    @Test func periodicArgumentsForEmptyKwargs() async throws {
        let scheduled = TestCall(job: "tick", arguments: " { } ")
        scheduled.run(try definition("tick"))
        #expect(try #require(await scheduled.completion()) == .init(ok: true, text: #""scheduled""#))
        let manual = TestCall(job: "tick", arguments: #"{"label":"by hand"}"#)
        manual.run(try definition("tick"))
        #expect(try #require(await manual.completion()) == .init(ok: true, text: #""by hand""#))
    }

    @Test func cancelSleepingJob() async throws {
        let sleeper = try definition("sleeper")
        let call = TestCall(job: "sleeper")
        call.run(sleeper)
        #expect(await waitUntil { call.host.logs == ["1:sleeping"] })
        #expect(call.host.completions.isEmpty)
        call.cancel(sleeper)
        let completion = try #require(await call.completion())
        #expect(completion == .init(ok: false, text: "cancelled"))
        // A second cancel after the end is harmless, and nothing completes twice.
        call.cancel(sleeper)
        try await Task.sleep(for: .milliseconds(100))
        #expect(call.host.completions.count == 1)
    }

    @Test func cancelRightAfterRun() async throws {
        let sleeper = try definition("sleeper")
        let call = TestCall(job: "sleeper")
        call.run(sleeper)
        call.cancel(sleeper)
        #expect(try #require(await call.completion(within: .seconds(5))) == .init(ok: false, text: "cancelled"))
    }

    @Test func cancelSeenThroughIsCancelled() async throws {
        let poller = try definition("poller")
        let call = TestCall(job: "poller")
        call.run(poller)
        try await Task.sleep(for: .milliseconds(50))
        call.host.setHostCancelled()
        #expect(try #require(await call.completion()) == .init(ok: true, text: #""saw cancel""#))
    }

    @Test func completesExactlyOnce() async throws {
        let calls = (0..<50).map { TestCall(job: "sum", arguments: #"{"a":\#($0),"b":1}"#) }
        let sum = try definition("sum")
        for call in calls { call.run(sum) }
        for (index, call) in calls.enumerated() {
            #expect(try #require(await call.completion()) == .init(ok: true, text: "\(index + 1)"))
        }
        try await Task.sleep(for: .milliseconds(50))
        #expect(calls.allSatisfy { $0.host.completions.count == 1 })
    }

    @Test func childTaskThroughSubmit() async throws {
        let call = TestCall(job: "parent")
        call.run(try definition("parent"))
        let completion = try #require(await call.completion())
        #expect(completion == .init(ok: true, text: #""\#(String(repeating: "c", count: 31))1""#))
        #expect(call.host.submissions == [.init(job: "sum", argumentsJSON: #"{"a":1,"b":2}"#)])
    }

    @Test func refusedChildTask() async throws {
        let call = TestCall(job: "parent")
        call.host.setSubmitStatus(7)
        call.run(try definition("parent"))
        let completion = try #require(await call.completion())
        #expect(
            completion
                == .init(
                    ok: false, text: #"job "parent" could not submit a "sum" task: the host refused it (status 7)"#))
        #expect(call.host.submissions.isEmpty)
    }
}
