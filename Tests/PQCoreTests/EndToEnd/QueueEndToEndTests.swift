import Foundation
import Testing

/// The queue driven as a user would: `bin/pq serve` on a temporary SQLite store, and
/// `bin/pq submit/status/wait/revoke` from other processes.
@Suite(.serialized) struct QueueEndToEndTests {
    let dir = Fixtures.temporaryDirectory("pqe2e")
    var store: String { "sqlite:\(dir)/pq.sqlite" }
    var client: PQClient { PQClient(store: store, directory: dir) }

    @Test func successWithResultFailureWithMessageAndRetries() async throws {
        let host = try HostProcess(store: store, directory: dir)
        let add = try await client.submit(["addition", "a=40", "b=2"])
        let failing = try await client.submit(["failing"])
        let flaky = try await client.submit(["flaky", "fail_times=2"])
        let done = try await client.wait([add, failing, flaky])
        #expect(done.count == 3)
        let byID = Dictionary(uniqueKeysWithValues: done.map { ($0["id"] as! String, $0) })
        #expect(byID[add]?["status"] as? Int == 1)
        #expect(byID[add]?["status_string"] as? String == "SUCCESS")
        #expect(byID[add]?["result"] as? Int == 42)
        #expect(byID[failing]?["status"] as? Int == 2)
        #expect((byID[failing]?["exception"] as? String)?.contains("always fails") == true)
        // Retries keep the id: two failed runs, then success on the third.
        #expect(byID[flaky]?["status"] as? Int == 1)
        #expect(byID[flaky]?["retry"] as? Int == 3)
        #expect(byID[flaky]?["result"] as? Int == 3)
        // `pq wait` exits 1 when one is not SUCCESS, 0 when all are.
        #expect(try await client.run(["wait", add, failing, "--timeout", "5"]).status == 1)
        #expect(try await client.run(["wait", add, flaky, "--timeout", "5"]).status == 0)
        // submit --wait: exit 0 only on SUCCESS.
        let ok = try await client.run(["submit", "addition", "a=1", "b=1", "--wait", "--json"])
        #expect(ok.status == 0)
        #expect(ok.stdout.contains("\"result\":2"))
        let bad = try await client.run(["submit", "failing", "--wait"])
        #expect(bad.status == 1)
        #expect(bad.stderr.contains("FAILURE"))
        #expect(host.stop() == 0)
    }

    @Test func timeoutRevokesAndCancelsThePluginCall() async throws {
        let host = try HostProcess(store: store, directory: dir)
        let started = Date()
        let id = try await client.submit(["slowtask"])
        let task = try await client.wait([id])[0]
        #expect(task["status"] as? Int == 3)
        #expect((task["exception"] as? String)?.contains("timed out") == true)
        // The job sleeps 10 s; cancel must have stopped it well before.
        #expect(Date().timeIntervalSince(started) < 8)
        // A per-task --timeout on a C job that honours is_cancelled.
        let c = try await client.submit(["c.sleep", "seconds=20", "--timeout", "0.5"])
        let ct = try await client.wait([c])[0]
        #expect(ct["status"] as? Int == 3)
        #expect(ct["timeout"] as? Double == 0.5)
        #expect(host.stop() == 0)
    }

    @Test func delayIsHonouredAndQueuedTasksCanBeRevoked() async throws {
        let host = try HostProcess(store: store, directory: dir)
        let revoked = try await client.submit(["addition", "a=1", "b=1", "--delay", "60"])
        let queues = try await client.run(["queues", "--json"])
        #expect(queues.stdout.contains("\"delayed\":1"))
        let delayed = try await client.submit(["addition", "a=1", "b=1", "--delay", "1.5"])
        let r = try await client.run(["revoke", revoked])
        #expect(r.status == 0)
        #expect(r.stdout.contains("revoked"))
        let task = try await client.wait([delayed])[0]
        let queued = task["time_queued"] as! Double
        let start = task["time_started"] as! Double
        #expect(start - queued >= 1.5)
        #expect(task["delay"] as? Double == 1.5)
        #expect(try await client.status(revoked)["status"] as? Int == 3)
        // Revoking a finished task says so and fails.
        let again = try await client.run(["revoke", delayed])
        #expect(again.status != 0)
        #expect(again.stderr.contains("already finished"))
        #expect(host.stop() == 0)
    }

    @Test func sleepingTasksRunInRoundsOfConcurrentTasks() async throws {
        let host = try HostProcess(store: store, arguments: ["--concurrent-tasks", "4"], directory: dir)
        let lines = String(repeating: "{\"lag\": 0.5}\n", count: 8)
        let r = try await client.run(["submit", "asynchronous", "--batch", "-"], stdin: lines)
        #expect(r.status == 0)
        let ids = r.stdout.split(separator: "\n").map(String.init)
        #expect(ids.count == 8)
        let tasks = try await client.wait(ids)
        #expect(tasks.allSatisfy { $0["status"] as? Int == 1 })
        // At most 4 ran at once, and 4 did: two rounds.
        let spans = tasks.map { ($0["time_started"] as! Double, $0["time_ended"] as! Double) }
        func overlapAt(_ t: Double) -> Int { spans.filter { $0.0 <= t && t < $0.1 }.count }
        let peak = spans.map { overlapAt($0.0) }.max() ?? 0
        #expect(peak == 4)
        let total = spans.map(\.1).max()! - spans.map(\.0).min()!
        #expect(total >= 1.0)
        #expect(total < 2.5)
        #expect(host.stop() == 0)
    }

    @Test func tasksQueuedWithoutAHostRunWhenOneStarts() async throws {
        // No host yet: submit resolves the job through --task-paths.
        let id = try await client.submit(["addition", "a=2", "b=3"])
        #expect(try await client.status(id)["status"] as? Int == 6)
        let host = try HostProcess(store: store, directory: dir)
        let task = try await client.wait([id])[0]
        #expect(task["result"] as? Int == 5)
        // Now the host published its jobs: submit works without task_paths.
        let r = try await client.run(["submit", "addition", "a=1", "b=1"], taskPaths: false)
        #expect(r.status == 0)
        #expect(host.stop() == 0)
    }

    @Test func aHostKilledMidTaskLosesNothing() async throws {
        let first = try HostProcess(store: store, directory: dir)
        let id = try await client.submit(["asynchronous", "lag=2"])
        // Wait (bounded) until it runs, then kill the host without warning.
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, try await client.status(id)["status"] as? Int != 5 { usleep(20_000) }
        #expect(try await client.status(id)["status"] as? Int == 5)
        first.stop(SIGKILL)
        #expect(try await client.status(id)["status"] as? Int == 5)
        // A new host sees the owner is gone and runs the task again.
        let second = try HostProcess(store: store, directory: dir)
        let task = try await client.wait([id])[0]
        #expect(task["status"] as? Int == 1)
        // A run cut short by a dead host does not use up the job's retries (dead runs are counted apart).
        #expect(task["retry"] as? Int == 1)
        #expect(task["worker"] as? String != nil)
        #expect((task["worker"] as? String)?.hasSuffix(":\(second.pid)") == true)
        #expect(second.stop() == 0)
    }

    @Test func childTaskRecordsItsParent() async throws {
        let host = try HostProcess(store: store, directory: dir)
        let parent = try await client.submit(["childtask"])
        let task = try await client.wait([parent])[0]
        let childID = try #require(task["result"] as? String)
        let child = try await client.wait([childID])[0]
        #expect(child["from_task"] as? String == parent)
        #expect(child["result"] as? Int == 3)
        // The C plugin's child through the raw ABI.
        let cParent = try await client.submit(["c.child"])
        let cChildID = try #require(try await client.wait([cParent])[0]["result"] as? String)
        #expect(try await client.wait([cChildID])[0]["from_task"] as? String == cParent)
        #expect(host.stop() == 0)
    }

    @Test func gracefulShutdownReturnsUnfinishedTasksToTheQueue() async throws {
        let host = try HostProcess(store: store, arguments: ["--drain-timeout", "0.3"], directory: dir)
        let quick = try await client.submit(["asynchronous", "lag=0.1"])
        let long = try await client.submit(["c.sleep", "seconds=30"])
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, try await client.status(long)["status"] as? Int != 5 { usleep(20_000) }
        _ = try await client.wait([quick])
        #expect(host.stop(SIGTERM) == 0)
        let after = try await client.status(long)
        #expect(after["status"] as? Int == 6)
        #expect(after["retry"] as? Int == 0)
    }

    @Test func badResultJSONFailsTheTaskAndTheHostLives() async throws {
        let host = try HostProcess(store: store, directory: dir)
        let bad = try await client.submit(["c.badjson"])
        let task = try await client.wait([bad])[0]
        #expect(task["status"] as? Int == 2)
        #expect((task["exception"] as? String)?.contains("not valid JSON") == true)
        let ok = try await client.submit(["addition", "a=1", "b=2"])
        #expect(try await client.wait([ok])[0]["result"] as? Int == 3)
        #expect(host.isRunning)
        #expect(host.stop() == 0)
    }

    @Test func watchPrintsEventsAsJSONLines() async throws {
        let host = try HostProcess(store: store, directory: dir)
        // Start watching, then queue a task from another process.
        let watch = try PQCommand.startWatch(["--count", "3"], store: store)
        usleep(300_000)
        let id = try await client.submit(["addition", "a=1", "b=2"])
        let events = watch.collect(15)
        #expect(events.map { $0["event"] as? String } == ["queued", "started", "done"])
        #expect(events.allSatisfy { ($0["task"] as? [String: Any])?["id"] as? String == id })
        #expect((events.last?["task"] as? [String: Any])?["status"] as? Int == 1)
        #expect(host.stop() == 0)
    }
}

extension QueueEndToEndTests {
    @Test func hostsPublishTheirStatus() async throws {
        let host = try HostProcess(store: store, directory: dir)
        let r = try await client.run(["hosts", "--json"])
        #expect(r.status == 0)
        let list = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
        let mine = try #require(list.first { ($0["worker"] as? String)?.hasSuffix(":\(host.pid)") == true })
        #expect(mine["state"] as? String == "running")
        #expect(mine["concurrent_tasks"] as? Int == 5)
        #expect(host.stop() == 0)
        let after = try await client.run(["hosts", "--json"])
        #expect(after.stdout.contains("\"state\":\"stopped\""))
    }
}
