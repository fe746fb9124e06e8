import Foundation
import PQCore
import Testing

/// Typed jobs and manifests through `bin/pq`: listing, submitting, argument checks before
/// queueing, binding failures and timeouts in a running host.
@Suite(.serialized) struct TypedJobsEndToEndTests {
    let dir = Fixtures.temporaryDirectory("pqtypede2e")
    var store: String { "sqlite:\(dir)/pq.sqlite" }
    var client: PQClient { PQClient(store: store, directory: dir) }

    @Test func jobsListsTheLibmManifest() async throws {
        _ = try Fixtures.requireBuilt(Fixtures.installedPluginsRoot + "/examples/math/libm.pq.toml")
        let r = try await PQCommand.run([
            "jobs", "--json", "--task-paths", "examples.*", "--plugins-dir", Fixtures.installedPluginsRoot,
        ])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        let array = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
        let pow = try #require(array.first { $0["name"] as? String == "m.pow" })
        #expect(pow["signature"] as? String == "(x:f64,y:f64)->f64")
        #expect(pow["plugin"] as? String == "libm")
        #expect(pow["kind"] as? String == "typed")
        #expect(pow["path"] as? String == Fixtures.installedPluginsRoot + "/examples/math/libm.pq.toml")
        #expect(
            array.contains { $0["name"] as? String == "m.cos" } && array.contains { $0["name"] as? String == "m.hypot" }
        )
    }

    @Test func brokenManifestsAreReportedAndTheOthersListed() async throws {
        let root = Fixtures.temporaryDirectory()
        let sub = root + "/mixed"
        try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            atPath: try Fixtures.requireBuilt(Fixtures.cExamplePlugin), toPath: sub + "/libgood.so")
        try "library = \"libpq-missing.so.3\"\n[[jobs]]\nname = \"x.f\"\nsymbol = \"f\"\nsignature = \"()->void\"\n"
            .write(toFile: sub + "/nolib.pq.toml", atomically: true, encoding: .utf8)
        try
            "library = \"libm.so.6\"\n[[jobs]]\nname = \"x.g\"\nsymbol = \"no_such_symbol_here\"\nsignature = \"()->void\"\n"
            .write(toFile: sub + "/nosym.pq.toml", atomically: true, encoding: .utf8)
        let r = try await PQCommand.run(["jobs", "--task-paths", "mixed", "--plugins-dir", root])
        #expect(r.status == 0)
        #expect(r.stdout.contains("c.echo") && r.stdout.contains("c.mul"))
        #expect(r.stderr.contains(sub + "/nolib.pq.toml") && r.stderr.contains("libpq-missing.so.3"))
        #expect(r.stderr.contains(sub + "/nosym.pq.toml") && r.stderr.contains("no_such_symbol_here"))
    }

    @Test func libmAndCTypedJobsRunInAHost() async throws {
        let host = try HostProcess(store: store, directory: dir)
        let pow = try await client.run(["submit", "m.pow", "x=2", "y=10", "--wait", "--json"])
        #expect(pow.status == 0, "\(pow.stderr)")
        let task = try #require(try JSONSerialization.jsonObject(with: Data(pow.stdout.utf8)) as? [String: Any])
        #expect(task["status"] as? Int == 1)
        #expect((task["result"] as? NSNumber)?.doubleValue == 1024)
        let greet = try await client.run(["submit", "c.greet", "name=wörld \"q\"", "--wait", "--json"])
        #expect(greet.status == 0)
        let g = try #require(try JSONSerialization.jsonObject(with: Data(greet.stdout.utf8)) as? [String: Any])
        #expect(g["result"] as? String == "hello, wörld \"q\"")
        #expect(host.stop() == 0)
    }

    @Test func badTypedArgumentsAreRefusedBeforeQueueing() async throws {
        expectOneLineError(
            try await client.run(["submit", "c.mul", "a=1.5", "b=2"]),
            ["'c.mul'", "argument 'a'", "i64", "fraction", "nothing was queued"])
        expectOneLineError(
            try await client.run(["submit", "c.mul", "a=1"]), ["missing argument 'b'", "nothing was queued"])
        expectOneLineError(try await client.run(["submit", "c.mul", "a=1", "b=2", "c=3"]), ["unexpected argument 'c'"])
        expectOneLineError(
            try await client.run(["submit", "c.mul", "--args", #"{"a":"x","b":2}"#]), ["argument 'a'", "a string"])
        expectOneLineError(try await client.run(["submit", "m.pow", "x=2", "y=true"]), ["argument 'y'", "f64"])
        expectOneLineError(
            try await client.run(
                ["submit", "c.mul", "--batch", "-"], stdin: "{\"a\":1,\"b\":2}\n{\"a\":9223372036854775808,\"b\":1}\n"),
            ["batch line 2", "argument 'a'", "out of range", "nothing was queued"])
        try await client.expectNothingQueued()
    }

    @Test func publishedSignaturesAreCheckedWithoutTaskPaths() async throws {
        let host = try HostProcess(store: store, directory: dir)
        // The host published its jobs; this client knows c.mul only from the store.
        expectOneLineError(
            try await client.run(["submit", "c.mul", "a=1.5", "b=2"], taskPaths: false),
            ["argument 'a'", "fraction", "nothing was queued"])
        try await client.expectNothingQueued()
        #expect(host.stop() == 0)
    }

    @Test func bindingFailuresAndTimeoutsInAHostThatLives() async throws {
        let root = try TypedFixture.root.get()
        let host = try HostProcess(
            store: store, arguments: ["--task-paths", "typed", "--plugins-dir", root], directory: dir)
        // Queued straight into the store, past pq submit's check: the host must refuse them itself.
        let sqlite = try SQLiteTaskStore(path: "\(dir)/pq.sqlite")
        let bad = try await sqlite.enqueue([
            NewTask(name: "t.i32", kwargs: #"{"x":2147483648}"#, maxRetries: 3),
            NewTask(name: "t.bool", kwargs: #"{"x":1}"#),
            NewTask(name: "t.i64", kwargs: #"{"y":1}"#),
            NewTask(name: "t.nan"),
        ]).map(\.id)
        await sqlite.close()
        let failed = try await client.wait(bad)
        let byID = Dictionary(uniqueKeysWithValues: failed.map { ($0["id"] as! String, $0) })
        let expected: [[String]] = [
            ["'t.i32'", "argument 'x'", "i32", "out of range", "not called"], ["argument 'x'", "bool"],
            ["unexpected argument 'y'"], ["nan"],
        ]
        for (id, fragments) in zip(bad, expected) {
            let t = try #require(byID[id])
            #expect(t["status"] as? Int == 2)
            let message = t["exception"] as? String ?? ""
            for f in fragments { #expect(message.contains(f), "'\(message)' lacks '\(f)'") }
        }
        // Refused arguments are not retried: the same kwargs would fail again.
        #expect(byID[bad[0]]?["retry"] as? Int == 1)
        // A C function cannot be interrupted: on timeout the task is REVOKED at once and the call
        // finishes on its thread; the host goes on.
        let started = Date()
        let slow = try await client.submit(["t.sleep", "ms=3000", "--timeout", "0.3"])
        let revoked = try await client.wait([slow])[0]
        #expect(revoked["status"] as? Int == 3)
        #expect((revoked["exception"] as? String)?.contains("timed out") == true)
        #expect(Date().timeIntervalSince(started) < 2.5)
        let good = try await client.run(["submit", "t.u64", "x=18446744073709551615", "--wait", "--json"])
        #expect(good.status == 0)
        #expect(good.stdout.contains("\"result\":18446744073709551615"))
        #expect(host.isRunning)
        #expect(host.stop() == 0)
    }
}
