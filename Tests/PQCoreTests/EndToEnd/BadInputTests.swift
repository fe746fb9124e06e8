import Foundation
import Testing

/// Every way a user can get a command wrong: one clear line on stderr, non-zero exit, nothing queued.
@Suite struct BadInputTests {
    let dir = Fixtures.temporaryDirectory("pqbad")
    var store: String { "sqlite:\(dir)/pq.sqlite" }
    var client: PQClient { PQClient(store: store, directory: dir) }

    @Test func unknownJobQueuesNothing() async throws {
        expectOneLineError(
            try await client.run(["submit", "no.such.job", "a=1"]), ["'no.such.job'", "nothing was queued"])
        try await client.expectNothingQueued()
    }

    @Test func argsThatAreNotAJSONObject() async throws {
        expectOneLineError(try await client.run(["submit", "addition", "--args", "[1,2]"]), ["JSON object"])
        expectOneLineError(try await client.run(["submit", "addition", "--args", "{not json"]), ["not valid JSON"])
        expectOneLineError(try await client.run(["submit", "addition", "novalue"]), ["KEY=VALUE"])
        try await client.expectNothingQueued()
    }

    @Test func oversizedArguments() async throws {
        let big = "{\"blob\":\"" + String(repeating: "x", count: (1 << 20) + 10) + "\"}"
        let path = dir + "/big.json"
        try big.write(toFile: path, atomically: true, encoding: .utf8)
        expectOneLineError(try await client.run(["submit", "addition", "--args", "-"], stdin: big), ["over the limit"])
        expectOneLineError(
            try await client.run(["submit", "addition", "--batch", path]), ["batch line 1", "over the limit"])
        try await client.expectNothingQueued()
    }

    @Test func badBatchLineQueuesNothing() async throws {
        let r = try await client.run(["submit", "addition", "--batch", "-"], stdin: "{\"a\":1,\"b\":2}\n[3]\n")
        expectOneLineError(r, ["batch line 2", "nothing was queued"])
        try await client.expectNothingQueued()
    }

    @Test func malformedStoreURLs() async throws {
        for url in ["postgres://x", "sqlite:", "redis://host:notaport/0", "memory:extra"] {
            let r = try await PQCommand.run(["tasks", "--store", url], currentDirectory: dir)
            expectOneLineError(r, [url])
        }
    }

    @Test func storeInAMissingOrUnwritableFolder() async throws {
        let missing = "sqlite:\(dir)/no/such/folder/pq.sqlite"
        expectOneLineError(
            try await PQCommand.run(["tasks", "--store", missing], currentDirectory: dir), ["\(dir)/no/such/folder"])
        // /proc refuses new files even to root.
        expectOneLineError(
            try await PQCommand.run(["tasks", "--store", "sqlite:/proc/pq.sqlite"], currentDirectory: dir),
            ["/proc/pq.sqlite"])
    }

    @Test func statusOfAnUnknownID() async throws {
        expectOneLineError(
            try await client.run(["status", "0123456789abcdef0123456789abcdef"]),
            ["no task with id 0123456789abcdef0123456789abcdef"])
        expectOneLineError(try await client.run(["revoke", "0123456789abcdef0123456789abcdef"]), ["no task with id"])
    }

    @Test func badOptionValues() async throws {
        let r = try await client.run(["submit", "addition", "--delay", "-1"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("--delay"))
        try await client.expectNothingQueued()
    }
}
