import Foundation
import PQCore
import PQRedis
import Testing

/// Several `bin/pq serve` processes on one Redis (the test server, each test in its own namespace).
@Suite(.serialized) struct RedisEndToEndTests {
    let dir = Fixtures.temporaryDirectory("pqredis")

    /// Waits (bounded) until nothing waits or runs in the namespace.
    private func waitUntilIdle(_ store: RedisTaskStore, timeout: Double) async throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try await store.queueSizes().isEmpty { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    @Test func twoHostsRunAThousandTasksEachExactlyOnce() async throws {
        let namespace = TestRedis.uniqueNamespace()
        let url = try TestRedis.urlText(namespace: namespace)
        let store = RedisTaskStore(url: try TestRedis.url(namespace: namespace))
        defer { Task { await store.close() } }
        let hosts = [
            try HostProcess(store: url, arguments: ["--concurrent-tasks", "16"], directory: dir),
            try HostProcess(store: url, arguments: ["--concurrent-tasks", "16"], directory: dir),
        ]
        let client = PQClient(store: url, directory: dir)
        let lines = String(repeating: "{}\n", count: 1000)
        var ids = Set<String>()
        // Follow the live events (Redis keeps no event log), as `pq watch` does.
        let events = try await recordedEvents(store, count: 3000) {
            let submitted = try await client.run(["submit", "c.noop", "--batch", "-"], stdin: lines)
            try #require(submitted.status == 0, "submit failed: \(submitted.stderr)")
            ids = Set(submitted.stdout.split(separator: "\n").map(String.init))
            #expect(ids.count == 1000)
            #expect(try await waitUntilIdle(store, timeout: 60))
        }
        var started: [String: Int] = [:]
        var done: [String: Int] = [:]
        for event in events {
            if event.kind == .started { started[event.taskID, default: 0] += 1 }
            if event.kind == .done { done[event.taskID, default: 0] += 1 }
        }
        #expect(Set(started.keys) == ids)
        #expect(started.values.allSatisfy { $0 == 1 }, "some task started more than once")
        #expect(done.count == 1000 && done.values.allSatisfy { $0 == 1 })
        let tasks = try await store.tasks(status: nil, job: nil, limit: 2000)
        #expect(tasks.count == 1000)
        #expect(tasks.allSatisfy { $0.status == .success && $0.retry == 1 })
        let workers = Set(tasks.compactMap(\.worker))
        #expect(!workers.isEmpty)
        for host in hosts { #expect(host.stop() == 0) }
    }

    @Test func aHostKilledMidTaskHasItsTaskFinishedByTheOther() async throws {
        let namespace = TestRedis.uniqueNamespace()
        let url = try TestRedis.urlText(namespace: namespace)
        let store = RedisTaskStore(url: try TestRedis.url(namespace: namespace))
        defer { Task { await store.close() } }
        let first = try HostProcess(store: url, arguments: ["--lease", "2"], directory: dir)
        let second = try HostProcess(store: url, arguments: ["--lease", "2"], directory: dir)
        let client = PQClient(store: url, directory: dir)
        let id = try await client.submit(["asynchronous", "lag=2"])
        // Wait (bounded) until it runs, then kill its host without warning.
        let deadline = Date().addingTimeInterval(10)
        var running: TaskRecord?
        while Date() < deadline {
            running = try await store.task(id: id)
            if running?.status == .started { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        let owner = try #require(running?.worker)
        let (victim, survivor) = owner.hasSuffix(":\(first.pid)") ? (first, second) : (second, first)
        victim.stop(SIGKILL)
        let task = try await client.wait([id], timeout: 30)[0]
        #expect(task["status"] as? Int == 1)
        #expect((task["worker"] as? String)?.hasSuffix(":\(survivor.pid)") == true)
        #expect(task["retry"] as? Int == 1)
        let record = try #require(try await store.task(id: id))
        #expect(record.deadRuns == 1)
        #expect(survivor.stop() == 0)
    }

    @Test func unreachableRedisIsOneClearErrorLine() async throws {
        let client = PQClient(store: "redis://127.0.0.1:1/0", directory: dir)
        let r = try await client.run(["tasks"], timeout: 30)
        #expect(r.status != 0)
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1, "stderr: \(r.stderr)")
        #expect(r.stderr.contains("127.0.0.1:1"))
    }

    @Test func aHostRidesOutARedisRestart() async throws {
        // A server of this test's own, with an append-only file so its data survives the restart.
        let port = Int.random(in: 20_000..<60_000)
        let redisDir = dir + "/redis-\(port)"
        try FileManager.default.createDirectory(atPath: redisDir, withIntermediateDirectories: true)
        func startRedis() throws -> Process {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
            process.arguments = [
                "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
                "--appendfsync", "always", "--dir", redisDir, "--daemonize", "no",
            ]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            let deadline = Date().addingTimeInterval(5)
            while Date() < deadline, !TestRedis.canConnect(port: port) { usleep(20_000) }
            return process
        }
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/redis-server"))
        func stopRedis(_ process: Process) {
            kill(process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(10)
            while process.isRunning, Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        var redis = try startRedis()
        defer { stopRedis(redis) }
        let url = "redis://127.0.0.1:\(port)/0"
        let host = try HostProcess(store: url, directory: dir)
        let client = PQClient(store: url, directory: dir)
        let before = try await client.submit(["asynchronous", "lag=0.1"])
        #expect(try await client.wait([before])[0]["status"] as? Int == 1)

        stopRedis(redis)
        try await Task.sleep(for: .seconds(2))
        #expect(host.isRunning)
        redis = try startRedis()

        let after = try await client.submit(["asynchronous", "lag=0.1"])
        let task = try await client.wait([after], timeout: 30)[0]
        #expect(task["status"] as? Int == 1)
        #expect(host.isRunning)
        #expect(host.log.contains("Redis"), "the host did not log the outage: \(host.log)")
        #expect(host.stop() == 0)
    }
}

extension RedisEndToEndTests {
    /// DESIGN §7: task events and host status go out on `<ns>_task_*` and `<ns>_host_status`.
    @Test func eventsAndHostStatusArePublishedOnTheirChannels() async throws {
        let namespace = TestRedis.uniqueNamespace()
        let url = try TestRedis.urlText(namespace: namespace)
        let store = RedisTaskStore(url: try TestRedis.url(namespace: namespace))
        let channels = ["task_queued", "task_started", "task_done", "host_status"].map { namespace + "_" + $0 }
        let messages = store.client.subscribe(to: channels)
        try await Task.sleep(for: .milliseconds(300))
        let host = try HostProcess(store: url, directory: dir)
        let client = PQClient(store: url, directory: dir)
        let id = try await client.submit(["addition", "a=2", "b=2"])
        // Collect one message of each channel, for at most 15 s.
        let seen = await withTaskGroup(of: [String: String]?.self) { group in
            group.addTask {
                var seen: [String: String] = [:]
                for await message in messages {
                    if channels.contains(message.channel) { seen[message.channel] = message.payload }
                    if seen.count == channels.count { break }
                }
                return seen
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(15))
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? [:]
        }
        #expect(Set(seen.keys) == Set(channels))
        #expect(seen[namespace + "_task_done"]?.contains(id) == true)
        #expect(seen[namespace + "_host_status"]?.contains(":\(host.pid)") == true)
        #expect(host.stop() == 0)
        await store.close()
    }
}
