import Foundation
import Testing

/// Periodic jobs driven through `bin/pq serve --schedule-periodic` on a temporary SQLite store,
/// with the example `testperiodicjob` (every second).
@Suite(.serialized) struct PeriodicEndToEndTests {
    let dir = Fixtures.temporaryDirectory("pqperiodic")
    var store: String { "sqlite:\(dir)/pq.sqlite" }
    var client: PQClient { PQClient(store: store, directory: dir) }

    /// The slots of `testperiodicjob` runs a host logged as queued.
    func slots(_ host: HostProcess) -> [Double] {
        host.log.split(separator: "\n").compactMap { line in
            guard line.contains("queued periodic run"), let r = line.range(of: "job=testperiodicjob slot=") else {
                return nil
            }
            return Double(line[r.upperBound...].prefix { $0 != " " })
        }
    }

    /// Waits (bounded) until `condition` holds.
    func waitFor(_ seconds: Double, _ condition: () async -> Bool) async {
        await poll(timeout: seconds, condition)
    }

    func periodicTasks() async throws -> [[String: Any]] {
        let r = try await client.run(["tasks", "--job", "testperiodicjob", "--limit", "1000", "--json"])
        try #require(r.status == 0, "tasks failed: \(r.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
    }

    @Test func aSchedulingHostQueuesAboutOneRunASecond() async throws {
        let host = try HostProcess(store: store, arguments: ["--schedule-periodic"], directory: dir)
        await waitFor(5) { !slots(host).isEmpty }
        let before = slots(host).count
        try #require(before > 0, "no periodic run queued within 5 s: \(host.log)")
        usleep(3_000_000)
        let queued = slots(host).count - before
        #expect((2...4).contains(queued), "queued \(queued) runs in 3 s")
        // Stopped first, so no run is queued between reading the log and listing the tasks.
        #expect(host.stop() == 0)
        let all = slots(host)
        #expect(Set(all).count == all.count)
        // Consecutive slots, one second apart.
        #expect(zip(all, all.dropFirst()).allSatisfy { $1 - $0 == 1 })
        let tasks = try await periodicTasks()
        #expect(tasks.count == all.count)
        #expect(tasks.contains { $0["status_string"] as? String == "SUCCESS" && $0["result"] as? String == "periodic" })
        // `pq next` reads the published jobs from the store.
        let next = try await client.run(["next", "--json"], taskPaths: false)
        #expect(next.status == 0)
        let jobs = try #require(try JSONSerialization.jsonObject(with: Data(next.stdout.utf8)) as? [[String: Any]])
        let job = try #require(jobs.first { $0["name"] as? String == "testperiodicjob" })
        #expect(job["schedule"] as? String == "every 1s")
        let inSeconds = try #require(job["in_seconds"] as? Double)
        #expect(inSeconds > 0 && inSeconds <= 1)
        #expect(jobs.contains { $0["name"] as? String == "c.tick" })
    }

    @Test func aHostWithoutTheFlagQueuesNone() async throws {
        let host = try HostProcess(store: store, directory: dir)
        try await Task.sleep(for: .milliseconds(2_500))
        #expect(host.stop() == 0)
        #expect(!host.log.contains("periodic scheduler"))
        #expect(try await periodicTasks().isEmpty)
    }

    @Test func twoSchedulersNeverQueueARunTwice() async throws {
        let a = try HostProcess(store: store, arguments: ["--schedule-periodic"], directory: dir)
        let b = try HostProcess(store: store, arguments: ["--schedule-periodic"], directory: dir)
        await waitFor(5) { !(slots(a) + slots(b)).isEmpty }
        let before = (slots(a) + slots(b)).count
        usleep(3_000_000)
        let all = slots(a) + slots(b)
        #expect((2...4).contains(all.count - before), "queued \(all.count - before) runs in 3 s between them")
        #expect(Set(all).count == all.count, "a slot was queued twice: \(all.sorted())")
        // One of them holds the lease and does all the queueing.
        #expect(slots(a).isEmpty || slots(b).isEmpty)
        #expect(a.stop() == 0)
        #expect(b.stop() == 0)
        let final = slots(a) + slots(b)
        #expect(Set(final).count == final.count)
        #expect(try await periodicTasks().count == final.count)
    }

    @Test func aRestartDoesNotRepeatTheLastRun() async throws {
        let first = try HostProcess(store: store, arguments: ["--schedule-periodic"], directory: dir)
        await waitFor(6) { slots(first).count >= 2 }
        #expect(first.stop() == 0)
        let before = slots(first)
        let last = try #require(before.max())
        let second = try HostProcess(store: store, arguments: ["--schedule-periodic"], directory: dir)
        await waitFor(6) { slots(second).count >= 2 }
        #expect(second.stop() == 0)
        let after = slots(second)
        #expect(!after.isEmpty)
        #expect(after.allSatisfy { $0 > last }, "restart repeated a run: before \(before), after \(after)")
        // At most one catch-up run: from the first slot on, the runs follow the schedule.
        #expect(zip(after, after.dropFirst()).allSatisfy { $1 - $0 == 1 })
        #expect(try await periodicTasks().count == before.count + after.count)
    }
}
