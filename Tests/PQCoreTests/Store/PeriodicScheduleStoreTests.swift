import Foundation
import Logging
import PQCore
import Synchronization
import Testing

/// The periodic-scheduling ability of every store that has it.
@Suite("PeriodicScheduleStore conformance")
struct PeriodicScheduleStoreTests {
    func withPeriodicStore(_ kind: StoreKind, _ body: (any PeriodicScheduleStore) async throws -> Void) async throws {
        try await withStore(kind) { store in
            try await body(try #require(store as? any PeriodicScheduleStore))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func leaseHasOneHolderUntilItEndsOrIsReleased(kind: StoreKind) async throws {
        try await withPeriodicStore(kind) { store in
            #expect(try await store.acquireSchedulerLease(holder: "a", until: 110, now: 100))
            #expect(try await !store.acquireSchedulerLease(holder: "b", until: 115, now: 105))
            // The holder renews.
            #expect(try await store.acquireSchedulerLease(holder: "a", until: 120, now: 109))
            #expect(try await !store.acquireSchedulerLease(holder: "b", until: 125, now: 115))
            // Ended: another holder takes it, and the old one no longer has it.
            #expect(try await store.acquireSchedulerLease(holder: "b", until: 131, now: 121))
            #expect(try await !store.acquireSchedulerLease(holder: "a", until: 132, now: 122))
            // Released by someone else: nothing; by the holder: free at once.
            try await store.releaseSchedulerLease(holder: "a")
            #expect(try await !store.acquireSchedulerLease(holder: "a", until: 133, now: 123))
            try await store.releaseSchedulerLease(holder: "b")
            #expect(try await store.acquireSchedulerLease(holder: "a", until: 134, now: 124))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aRunIsQueuedOncePerSlot(kind: StoreKind) async throws {
        try await withPeriodicStore(kind) { store in
            #expect(try await store.lastPeriodicRuns().isEmpty)
            let task = NewTask(name: "tick", kwargs: #"{"n":1}"#, queue: "periodic")
            let first = try #require(
                try await store.queuePeriodicRun(
                    job: "tick", slot: 100, task: task.withID(PeriodicScheduler.taskID(job: "tick", slot: 100))))
            #expect(first.name == "tick")
            #expect(first.kwargs == #"{"n":1}"#)
            #expect(first.queue == "periodic")
            #expect(first.status == .queued)
            #expect(try await store.lastPeriodicRuns() == ["tick": 100])
            // The same slot, or an earlier one: refused, nothing queued.
            #expect(try await store.queuePeriodicRun(job: "tick", slot: 100, task: task) == nil)
            #expect(try await store.queuePeriodicRun(job: "tick", slot: 90, task: task) == nil)
            #expect(try await store.lastPeriodicRuns() == ["tick": 100])
            // A later slot and another job are independent.
            #expect(try await store.queuePeriodicRun(job: "tick", slot: 101, task: task) != nil)
            #expect(try await store.queuePeriodicRun(job: "tock", slot: 50, task: NewTask(name: "tock")) != nil)
            #expect(try await store.lastPeriodicRuns() == ["tick": 101, "tock": 50])
            #expect(try await store.tasks(status: nil, job: "tick", limit: 10).count == 2)
            #expect(try await store.claim(claimRequest(queues: ["periodic"])).map(\.id).contains(first.id))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func racingSchedulersQueueEachSlotOnce(kind: StoreKind) async throws {
        try await withPeriodicStore(kind) { store in
            let slots = (1...20).map(Double.init)
            try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        var queued = 0
                        for slot in slots {
                            if try await store.queuePeriodicRun(job: "race", slot: slot, task: NewTask(name: "race"))
                                != nil
                            {
                                queued += 1
                            }
                        }
                        return queued
                    }
                }
                var total = 0
                for try await n in group { total += n }
                // Each slot at most once; interleaving may skip slots a faster scheduler passed.
                #expect(total <= slots.count)
                #expect(total >= 1)
            }
            let tasks = try await store.tasks(status: nil, job: "race", limit: 100)
            #expect(tasks.count <= slots.count)
            #expect(try await store.lastPeriodicRuns()["race"] == 20)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func schedulerWithAFakeClock(kind: StoreKind) async throws {
        try await withPeriodicStore(kind) { store in
            let job = PeriodicScheduler.Job(
                name: "every10", schedule: .every(seconds: 10, anchor: 0),
                task: NewTask(name: "every10", kwargs: #"{"fixed":true}"#))
            func scheduler(_ holder: String) -> PeriodicScheduler {
                PeriodicScheduler(
                    store: store, options: .init(holder: holder, leaseSeconds: 30, maxSleep: 10),
                    logger: Logger(label: "test"), clock: { 0 }, jobs: { [job] })
            }
            let a = scheduler("a")
            // First sight at 1003: nothing at once; wake at the next slot.
            #expect(try await a.pass(now: 1003) == 1010)
            #expect(try await store.tasks(status: nil, job: "every10", limit: 10).isEmpty)
            #expect(try await a.pass(now: 1010.001) == 1020)
            #expect(try await a.pass(now: 1010.5) == 1020)
            #expect(a.queuedCount == 1)
            // Another scheduler waits for the lease (wakes to try again within maxSleep).
            let b = scheduler("b")
            #expect(try await b.pass(now: 1020.2) == 1030.2)
            #expect(!b.isLeader)
            #expect(try await a.pass(now: 1020.3) == 1030)
            // a dies; after its lease ends b takes over with one catch-up run (1080), not five.
            #expect(try await b.pass(now: 1085) == 1090)
            #expect(b.isLeader)
            #expect(b.queuedCount == 1)
            #expect(try await store.lastPeriodicRuns()["every10"] == 1080)
            // a comes back (restart: new scheduler, same store): nothing repeated.
            let a2 = scheduler("a")
            try await store.releaseSchedulerLease(holder: "b")
            #expect(try await a2.pass(now: 1086) == 1090)
            #expect(a2.queuedCount == 0)
            let tasks = try await store.tasks(status: nil, job: "every10", limit: 10)
            #expect(tasks.count == 3)
            #expect(tasks.allSatisfy { $0.kwargs == #"{"fixed":true}"# })
            #expect(
                Set(tasks.map(\.id))
                    == Set([1010.0, 1020, 1080].map { PeriodicScheduler.taskID(job: "every10", slot: $0) }))
        }
    }
}

extension NewTask {
    func withID(_ id: String) -> NewTask {
        var copy = self
        copy.id = id
        return copy
    }
}
