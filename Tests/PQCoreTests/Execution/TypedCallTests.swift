import Foundation
import PQCore
import Testing

/// Typed jobs called in process through libffi: every type both ways, 64-bit extremes, strings,
/// results that JSON cannot hold, and every way kwargs can miss the signature.
@Suite struct TypedCallTests {
    func expectSuccess(
        _ job: String, _ kwargs: String, _ result: String, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        #expect(try TypedFixture.call(job, kwargs) == .success(result), sourceLocation: sourceLocation)
    }

    @Test func everyTypeBothWays() throws {
        try expectSuccess("t.bool", #"{"x":true}"#, "true")
        try expectSuccess("t.bool", #"{"x":false}"#, "false")
        try expectSuccess("t.not", #"{"x":false}"#, "true")
        try expectSuccess("t.i32", #"{"x":-123}"#, "-123")
        try expectSuccess("t.neg", #"{"x":77}"#, "-77")
        try expectSuccess("t.i64", #"{"x":-5000000000}"#, "-5000000000")
        try expectSuccess("t.u32", #"{"x":4000000000}"#, "4000000000")
        try expectSuccess("t.u64", #"{"x":12345678901234567890}"#, "12345678901234567890")
        try expectSuccess("t.dec", #"{"x":1}"#, "0")
        try expectSuccess("t.f32", #"{"x":0.1}"#, "0.1")
        try expectSuccess("t.half", #"{"x":3}"#, "1.5")
        try expectSuccess("t.f64", #"{"x":0.1}"#, "0.1")
        try expectSuccess("t.f64", #"{"x":-2.5e-300}"#, "-2.5e-300")
        try expectSuccess("t.f64", #"{"x":7}"#, "7.0")
        try expectSuccess("t.str", #"{"x":"plain"}"#, #""plain""#)
        try expectSuccess("t.len", #"{"x":"héllo"}"#, "6")
        try expectSuccess("t.remember", #"{"x":42}"#, "null")
        try expectSuccess("t.recall", "{}", "42")
        try expectSuccess(
            "t.mix", #"{"h":7,"g":-9,"f":0.5,"e":18446744073709551615,"d":true,"c":"s","b":2.25,"a":-1}"#,
            #""-1|2.25|s|1|18446744073709551615|0.5|-9|7""#)
    }

    @Test func integralNumbersWrittenAsFloatsAreExactIntegers() throws {
        try expectSuccess("t.i64", #"{"x":2.0}"#, "2")
        try expectSuccess("t.i32", #"{"x":-1e3}"#, "-1000")
    }

    @Test func sixtyFourBitExtremesAreExact() throws {
        try expectSuccess("t.i64", #"{"x":9223372036854775807}"#, "9223372036854775807")
        try expectSuccess("t.i64", #"{"x":-9223372036854775808}"#, "-9223372036854775808")
        try expectSuccess("t.u64", #"{"x":18446744073709551615}"#, "18446744073709551615")
        try expectSuccess("t.u64", #"{"x":0}"#, "0")
        try expectSuccess("t.dec", #"{"x":0}"#, "18446744073709551615")
        try expectSuccess("t.i32", #"{"x":2147483647}"#, "2147483647")
        try expectSuccess("t.i32", #"{"x":-2147483648}"#, "-2147483648")
        try expectSuccess("t.u32", #"{"x":4294967295}"#, "4294967295")
        try expectSuccess("t.f64", #"{"x":1.7976931348623157e308}"#, "1.7976931348623157e+308")
        try expectSuccess("t.f32", #"{"x":3.4028235e38}"#, "3.4028235e+38")
    }

    @Test func stringsKeepUTF8QuotesAndEscapes() throws {
        let text = "héllo \"wörld\" \\ ✓ 日本 🎉\n\ttab 'single'"
        let kwargs = JSONValue.object([("x", .string(text))]).jsonText
        let before = try TypedFixture.call("t.frees", "{}")
        guard case .success(let json) = try TypedFixture.call("t.str", kwargs) else {
            Issue.record("t.str failed")
            return
        }
        #expect(try JSONValue.parse(json) == .string(text))
        // The host handed the result to the plugin's free_string once.
        guard case .success(let b) = before, case .success(let a) = try TypedFixture.call("t.frees", "{}") else {
            Issue.record("t.frees failed")
            return
        }
        #expect(Int(a)! == Int(b)! + 1)
        try expectSuccess("t.str", #"{"x":""}"#, #""""#)
    }

    @Test func nullStringResultIsJSONNull() throws {
        try expectSuccess("t.nullstr", "{}", "null")
    }

    @Test func nonFiniteResultsFailClearly() throws {
        guard case .failure(let nan) = try TypedFixture.call("t.nan", "{}") else {
            Issue.record("NaN result did not fail")
            return
        }
        #expect(nan.contains("t.nan") && nan.contains("nan") && nan.contains("JSON"))
        guard case .failure(let inf) = try TypedFixture.call("t.inf", "{}") else {
            Issue.record("inf result did not fail")
            return
        }
        #expect(inf.contains("t.inf") && inf.contains("inf") && inf.contains("finite"))
    }

    /// Kwargs that miss the signature, the error code, and fragments the message must hold.
    static let badArguments: [(job: String, kwargs: String, code: TypedArgumentError.Code, fragments: [String])] = [
        ("t.i32", #"{"x":2147483648}"#, .outOfRange, ["'x'", "i32", "out of range"]),
        ("t.i32", #"{"x":-2147483649}"#, .outOfRange, ["'x'", "i32"]),
        ("t.u32", #"{"x":-1}"#, .outOfRange, ["'x'", "u32", "out of range"]),
        ("t.u32", #"{"x":4294967296}"#, .outOfRange, ["'x'", "u32"]),
        ("t.u64", #"{"x":-1}"#, .outOfRange, ["'x'", "u64"]),
        ("t.u64", #"{"x":18446744073709551616}"#, .outOfRange, ["'x'", "u64"]),
        ("t.i64", #"{"x":9223372036854775808}"#, .outOfRange, ["'x'", "i64", "out of range"]),
        ("t.i64", #"{"x":-9223372036854775809}"#, .outOfRange, ["'x'", "i64"]),
        ("t.i64", #"{"x":1e19}"#, .outOfRange, ["'x'", "i64", "exact"]),
        ("t.i64", #"{"x":1.5}"#, .fraction, ["'x'", "i64", "fraction"]),
        ("t.u32", #"{"x":0.001}"#, .fraction, ["'x'", "u32", "fraction"]),
        ("t.i64", #"{"x":"12"}"#, .wrongType, ["'x'", "i64", "a string"]),
        ("t.i64", #"{"x":true}"#, .wrongType, ["'x'", "i64", "a boolean"]),
        ("t.i64", #"{"x":null}"#, .wrongType, ["'x'", "i64", "null"]),
        ("t.bool", #"{"x":1}"#, .wrongType, ["'x'", "bool", "an integer"]),
        ("t.bool", #"{"x":"true"}"#, .wrongType, ["'x'", "bool", "a string"]),
        ("t.f64", #"{"x":"1.5"}"#, .wrongType, ["'x'", "f64", "a string"]),
        ("t.f64", #"{"x":[1]}"#, .wrongType, ["'x'", "f64", "an array"]),
        ("t.f32", #"{"x":1e39}"#, .outOfRange, ["'x'", "f32", "out of range"]),
        ("t.str", #"{"x":5}"#, .wrongType, ["'x'", "str", "an integer"]),
        ("t.str", #"{"x":{"a":1}}"#, .wrongType, ["'x'", "str", "an object"]),
        ("t.str", #"{"x":"a\u0000b"}"#, .wrongType, ["'x'", "str", "NUL"]),
        ("t.i64", "{}", .missing, ["missing argument 'x'", "i64", "(x:i64)->i64"]),
        ("t.i64", #"{"x":1,"y":2}"#, .unexpected, ["unexpected argument 'y'", "(x:i64)->i64"]),
        ("t.i64", "[1]", .notAnObject, ["JSON object", "an array"]),
    ]

    @Test(arguments: badArguments.indices) func badArgumentsAreRefusedBeforeTheCall(_ index: Int) throws {
        let (job, kwargs, code, fragments) = Self.badArguments[index]
        let typed = try #require(try TypedFixture.job(job).typedCall)
        do {
            _ = try typed.bind(json: kwargs)
            Issue.record("\(job) \(kwargs) was accepted")
        } catch {
            #expect(error.code == code, "\(kwargs): \(error)")
            for f in fragments { #expect(error.message.contains(f), "'\(error.message)' lacks '\(f)'") }
        }
    }

    @Test func submitCheckUsesTheSameRules() throws {
        let signature = try TypedSignature.parse("(a:i64,b:i64)->i64")
        try signature.check(kwargsJSON: #"{"a":1,"b":2}"#)
        #expect(throws: TypedArgumentError.self) { try signature.check(kwargsJSON: #"{"a":1.5,"b":2}"#) }
    }

    @Test func callsRunOnPluginThreadsAndCanBeAbandoned() async throws {
        let threads = PluginThreadPool(size: 2)
        defer { threads.shutdown() }
        let typed = try #require(try TypedFixture.job("t.sleep").typedCall)
        let quick = TypedInvocation()
        typed.start(try typed.bind(json: #"{"ms":1}"#), on: threads, reportingTo: quick)
        #expect(await quick.outcome(timeout: 10) == .success("1"))
        // A call that outlives its timeout: the waiter gets nil while the call still runs, the
        // thread finishes it later. The call is long because other tests block the cooperative
        // pool (their subprocess waits) for seconds at a time, which delays the waiter's timer.
        let slow = TypedInvocation()
        typed.start(try typed.bind(json: #"{"ms":10000}"#), on: threads, reportingTo: slow)
        #expect(await slow.outcome(timeout: 0.05) == nil)
        #expect(slow.completedOutcome == nil, "the waiter was released only after the call ended")
        for _ in 0..<300 where slow.completedOutcome == nil {  // bounded: 15 s
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(slow.completedOutcome == .success("10000"))
    }
}
