import Foundation
import PQCore
import PQRedis
import Testing

/// Behaviour of the Redis store that the conformance suite cannot reach through the protocol.
@Suite struct RedisTaskStoreTests {
    /// A busy host's claim runs beside its finish; when the finish fails, the tasks that claim
    /// took are given back before the error is thrown, so none is left leased to a host that
    /// will not run it.
    @Test func aFailedFinishGivesBackWhatItsClaimTook() async throws {
        let namespace = TestRedis.uniqueNamespace()
        let store = RedisTaskStore(url: try TestRedis.url(namespace: namespace))
        let tasks = try await store.enqueue((0..<3).map { _ in NewTask(name: "a") })
        let first = try await store.claim(claimRequest(limit: 1))
        #expect(first.map(\.id) == [tasks[0].id])
        // Break the first task's hash so that the finish script fails on it (before writing).
        _ = try await store.client.send(["SET", .string("{\(namespace)}:t:\(tasks[0].id)"), "not a hash"])
        await #expect(throws: (any Error).self) {
            _ = try await store.finish(
                [TaskOutcome(id: tasks[0].id, worker: worker, .success(result: "1"))], thenClaim: claimRequest(limit: 5)
            )
        }
        // The two others were claimed beside the failed finish and given back: QUEUED, no run counted.
        for task in tasks.dropFirst() {
            let record = try #require(try await store.task(id: task.id))
            #expect(record.status == .queued)
            #expect(record.retry == 0)
        }
        #expect(try await store.claim(claimRequest(limit: 5)).map(\.id) == tasks.dropFirst().map(\.id))
        await store.close()
    }

    /// A finished task's hash expires after the result TTL (DESIGN.md section 6); waiting and
    /// running tasks have none.
    @Test func finishedTasksAreGoneAfterTheirResultTTL() async throws {
        let namespace = TestRedis.uniqueNamespace()
        let store = RedisTaskStore(url: try TestRedis.url(namespace: namespace), options: .init(resultTTL: 1))
        let tasks = try await store.enqueue((0..<3).map { _ in NewTask(name: "a") })
        let claimed = try await store.claim(claimRequest(limit: 2))
        #expect(claimed.count == 2)
        // One through the host's fast path (finish then claim), one through the plain finish.
        _ = try await store.finish(
            [TaskOutcome(id: tasks[0].id, worker: worker, .success(result: "1"))], thenClaim: nil)
        _ = try await store.finish([TaskOutcome(id: tasks[1].id, worker: worker, .failure("no"))])
        for task in tasks.prefix(2) {
            let ttl = try await store.client.send(["PTTL", .string("{\(namespace)}:t:\(task.id)")]).int ?? -9
            #expect(ttl > 0 && ttl <= 1_000, "TTL of a finished task: \(ttl) ms")
        }
        #expect(try await store.client.send(["PTTL", .string("{\(namespace)}:t:\(tasks[2].id)")]).int == -1)
        #expect(try await store.task(id: tasks[0].id)?.result == "1")
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, try await store.task(id: tasks[0].id) != nil {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(try await store.task(id: tasks[0].id) == nil)
        #expect(try await store.task(id: tasks[1].id) == nil)
        #expect(try await store.task(id: tasks[2].id)?.status == .queued)
        await store.close()
    }

    /// A namespace that holds pq's previous Redis layout (keys `ns:…` without the hash tag) is
    /// named in one line and left alone; nothing of the new layout is written beside it.
    @Test func aNamespaceOfThePreviousLayoutIsRefused() async throws {
        let namespace = TestRedis.uniqueNamespace()
        let url = try TestRedis.url(namespace: namespace)
        let probe = RedisTaskStore(url: url)
        _ = try await probe.client.send(["SET", .string("\(namespace):order"), "41"])
        _ = try await probe.client.send(["HSET", .string("\(namespace):task:x"), "id", "x"])
        let error = await #expect(throws: TaskStoreError.self) { _ = try await RedisTaskStore.connect(url: url) }
        #expect(error?.code == .cannotOpen)
        #expect(
            error?.message.contains("holds tasks of pq's previous Redis layout in namespace '\(namespace)'") == true)
        #expect(error?.message.contains("\n") == false)
        let keys =
            try await probe.client.send(["KEYS", .string("*\(namespace)*")]).array?.compactMap { try $0.string } ?? []
        #expect(Set(keys) == ["\(namespace):order", "\(namespace):task:x"])
        // The CLI says the same, in one line, and queues nothing.
        let client = PQClient(
            store: try TestRedis.urlText(namespace: namespace), directory: Fixtures.temporaryDirectory("pqold"))
        let submitted = try await client.run(["submit", "addition", "a=1", "b=2"])
        #expect(submitted.status != 0)
        #expect(submitted.stderr.contains("previous Redis layout"))
        #expect(submitted.stderr.split(separator: "\n").count == 1)
        await probe.close()
    }
}
