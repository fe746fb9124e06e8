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
                [TaskOutcome(id: tasks[0].id, worker: worker, .success(result: "1"))], thenClaim: claimRequest(limit: 5))
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
}
