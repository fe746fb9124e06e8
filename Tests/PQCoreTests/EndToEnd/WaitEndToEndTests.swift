import Foundation
import Testing

/// `pq wait` for the ids of a whole batch, as a user runs it after `pq submit --batch`: linear in
/// its ids (read in batches, then only the tasks that `done` events name), ids from stdin with
/// `-`, on SQLite and on Redis.
@Suite(.serialized) struct WaitEndToEndTests {
    let dir = Fixtures.temporaryDirectory("pqwait")

    private func stores() throws -> [String] {
        var stores = ["sqlite:\(dir)/pq.sqlite"]
        stores.append(try TestRedis.urlText(namespace: TestRedis.uniqueNamespace()))
        return stores
    }

    @Test func twentyThousandIdsFromStdinAndAsArguments() async throws {
        for store in try stores() {
            let client = PQClient(store: store, directory: dir)
            let submitted = try await client.run(
                ["submit", "c.noop", "--batch", "-"], stdin: String(repeating: "{}\n", count: 20_000))
            try #require(submitted.status == 0, "submit failed: \(submitted.stderr)")
            let ids = submitted.stdout.split(separator: "\n").map(String.init)
            try #require(ids.count == 20_000)
            // The waiter starts before any host: it follows the tasks as they end.
            let host = try HostProcess(store: store, arguments: ["--concurrent-tasks", "16"], directory: dir)
            let fromStdin = try await client.run(
                ["wait", "-", "--timeout", "120"], stdin: ids.joined(separator: "\n") + "\n", timeout: 150)
            #expect(fromStdin.status == 0, "\(store): \(fromStdin.stderr)")
            let lines = fromStdin.stdout.split(separator: "\n")
            #expect(lines.count == 20_000)
            // Output in the order of the ids given.
            #expect(lines.first == "\(ids[0]) SUCCESS")
            #expect(lines.last == "\(ids[19_999]) SUCCESS")
            #expect(lines.allSatisfy { $0.hasSuffix(" SUCCESS") })
            // All finished now: the same 20,000 ids as arguments (loosely bounded; the figure is in make bench).
            let started = Date()
            let fromArguments = try await client.run(["wait", "--timeout", "60"] + ids, timeout: 90)
            #expect(fromArguments.status == 0, "\(store): \(fromArguments.stderr)")
            #expect(fromArguments.stdout.split(separator: "\n").count == 20_000)
            #expect(
                Date().timeIntervalSince(started) < 20,
                "\(store): pq wait of 20,000 finished tasks took \(Date().timeIntervalSince(started)) s")
            #expect(host.stop() == 0)
        }
    }

    @Test func waitsForTasksThatEndLaterAndNamesUnknownIds() async throws {
        for store in try stores() {
            let client = PQClient(store: store, directory: dir)
            let delayed = try await client.submit(["addition", "a=2", "b=3", "--delay", "1.5"])
            let now = try await client.submit(["addition", "a=1", "b=1"])
            let host = try HostProcess(store: store, directory: dir)
            let started = Date()
            let done = try await client.wait([now, delayed], timeout: 30)
            #expect(done.map { $0["result"] as? Int } == [2, 5])
            #expect(Date().timeIntervalSince(started) >= 1.0)
            // An unknown id among known ones: one line naming it, exit 1, nothing printed.
            let unknown = try await client.run(["wait", now, "no-such-task", delayed, "--timeout", "5"])
            #expect(unknown.status == 1)
            #expect(unknown.stderr == "pq: error: no task with id no-such-task\n")
            #expect(unknown.stdout.isEmpty)
            // `-` with nothing on stdin, and a timeout while a task waits.
            let empty = try await client.run(["wait", "-"], stdin: "")
            #expect(empty.status == 1)
            #expect(empty.stderr.contains("no task ids on standard input"))
            let later = try await client.submit(["addition", "a=1", "b=1", "--delay", "60"])
            let timedOut = try await client.run(["wait", later, "--timeout", "0.5"])
            #expect(timedOut.status == 2)
            #expect(timedOut.stderr.contains("timed out after 0.5 s waiting for 1 task(s)"))
            // Options between ids and `--` keep their meaning when ids are gathered.
            let many = Array(repeating: now, count: 40)
            let mixed = try await client.run(["wait"] + many + ["--json"] + many + ["--timeout", "5"])
            #expect(mixed.status == 0, "\(mixed.stderr)")
            let objects = try JSONSerialization.jsonObject(with: Data(mixed.stdout.utf8)) as? [[String: Any]]
            #expect(objects?.count == 80)
            #expect(host.stop() == 0)
        }
    }
}
