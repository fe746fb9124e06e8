import Foundation
import PQCore
import PQRedis
import Synchronization
import Testing

/// The conformance suite: every test runs against every store.
@Suite("TaskStore conformance")
struct TaskStoreConformanceTests {
    @Test(arguments: StoreKind.allCases)
    func enqueueAndClaimFIFO(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let queued = try await store.enqueue((1...3).map { NewTask(name: "add", kwargs: #"{"n":\#($0)}"#) })
            #expect(queued.count == 3)
            #expect(queued.allSatisfy { $0.status == .queued && $0.retry == 0 && TaskID.isValid($0.id) })
            let later = try await store.enqueue([NewTask(name: "add", kwargs: #"{"n":4}"#)])

            let now = TaskClock.now()
            let first = try await store.claim(claimRequest(limit: 2, now: now))
            #expect(first.map(\.id) == queued.prefix(2).map(\.id))
            for record in first {
                #expect(record.status == .started)
                #expect(record.retry == 1)
                #expect(record.worker == worker)
                #expect(record.node == "testhost")
                #expect(record.timeStarted == now)
                #expect(record.leaseExpires == now + 30)
            }
            let second = try await store.claim(claimRequest(limit: 5, now: now))
            #expect(second.map(\.id) == [queued[2].id, later[0].id])
            #expect(try await store.claim(claimRequest(now: now)).isEmpty)
            let stored = try await store.task(id: queued[0].id)
            #expect(stored == first[0])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func finishThenClaimRecordsOutcomesAndTakesTheNextTasks(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let queued = try await store.enqueue((1...4).map { NewTask(name: "add", kwargs: #"{"n":\#($0)}"#) })
            let first = try await store.claim(claimRequest(limit: 2))
            #expect(first.map(\.id) == queued.prefix(2).map(\.id))
            let outcomes = [
                TaskOutcome(id: first[0].id, worker: worker, .success(result: "1")),
                TaskOutcome(id: first[1].id, worker: "someone-else:1", .success(result: "2")),
            ]
            let next = try await store.finish(outcomes, thenClaim: claimRequest(limit: 5))
            #expect(next.map(\.id) == queued.suffix(2).map(\.id))
            #expect(next.allSatisfy { $0.status == .started && $0.worker == worker && $0.retry == 1 })
            #expect(try await store.task(id: first[0].id)?.status == .success)
            #expect(try await store.task(id: first[0].id)?.result == "1")
            // Not its lease: skipped, still running.
            #expect(try await store.task(id: first[1].id)?.status == .started)
            // Nothing to claim, or no claim asked: outcomes are still recorded.
            let none = try await store.finish(
                [TaskOutcome(id: next[0].id, worker: worker, .failure("boom"))], thenClaim: nil)
            #expect(none.isEmpty)
            #expect(try await store.task(id: next[0].id)?.status == .failure)
            let empty = try await store.finish(
                [TaskOutcome(id: next[1].id, worker: worker, .success(result: "null"))],
                thenClaim: claimRequest(limit: 3))
            #expect(empty.isEmpty)
            #expect(try await store.task(id: next[1].id)?.status == .success)
        }
    }

    /// Events read a few at a time come each once, in seq order, with no gap, also where a store
    /// records several in one step (a claim of five, a finish of five).
    // Redis keeps no event log (section 6).
    @Test(arguments: [StoreKind.memory, .sqlite])
    func eventsReadInSmallPagesComeOnceInOrder(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let start = try await store.lastEventCursor()
            let queued = try await store.enqueue((0..<5).map { NewTask(name: "add", kwargs: "{\"i\":\($0)}") })
            let claimed = try await store.claim(claimRequest(limit: 5))
            #expect(claimed.count == 5)
            _ = try await store.finish(claimed.map { TaskOutcome(id: $0.id, worker: worker, .success(result: "null")) })
            #expect(try await store.lastEventCursor() == start + 15)
            var cursor = start
            var seen: [TaskEvent] = []
            for _ in 0..<20 {  // 15 events, 2 a page: 8 pages; bounded in case a page comes back empty
                let page = try await store.events(after: cursor, limit: 2)
                guard let last = page.last else { break }
                #expect(page.count <= 2)
                seen += page
                cursor = last.seq
            }
            #expect(seen.map(\.seq) == Array((start + 1)...(start + 15)))
            #expect(
                seen.map(\.kind) == Array(repeating: .queued, count: 5) + Array(repeating: .started, count: 5)
                    + Array(repeating: .done, count: 5))
            #expect(Set(seen.filter { $0.kind == .started }.map(\.taskID)) == Set(queued.map(\.id)))
        }
    }

    /// A busy host ends tasks through `finish(_:thenClaim:)` (on Redis with the task JSON it
    /// renders itself): each done event must carry exactly the task the store then holds.
    @Test(arguments: StoreKind.allCases)
    func doneEventsOfABusyHostCarryTheStoredTask(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            var queued: [TaskRecord] = []
            var claimed: [TaskRecord] = []
            let events = try await recordedEvents(store, count: 9) {
                queued = try await store.enqueue([
                    NewTask(name: "add", kwargs: #" {"a": [1, 2], "é": "x\"y"} "#),
                    NewTask(name: "add", kwargs: #"{"b":2}"#, canOverlap: false),
                    NewTask(name: "mul", kwargs: "{}", timeout: 3, fromTask: "parent-1"),
                ])
                claimed = try await store.claim(claimRequest(limit: 3))
                #expect(claimed.count == 3)
                var outcomes = [
                    TaskOutcome(id: queued[0].id, worker: worker, .success(result: #"{"sum": [3, "ü"]}"#)),
                    TaskOutcome(id: queued[1].id, worker: worker, .failure("line 1\n\"quoted\"\ttab")),
                    TaskOutcome(id: queued[2].id, worker: worker, .revoked("timed out after 3 s")),
                ]
                outcomes[0].plugin = "examples_c"
                outcomes[0].pluginVersion = "1.2.3"
                _ = try await store.finish(outcomes, thenClaim: claimRequest(limit: 5))
            }
            #expect(
                events.map(\.kind) == [.queued, .queued, .queued, .started, .started, .started, .done, .done, .done])
            #expect(zip(events, events.dropFirst()).allSatisfy { $0.seq + 1 == $1.seq })
            for record in claimed {  // a started event carries the task as its claim returned it
                let started = try #require(events.first { $0.taskID == record.id && $0.kind == .started })
                #expect(started.taskJSON == record.json())
            }
            for task in queued {
                let stored = try #require(try await store.task(id: task.id))
                #expect(stored.status.isReady)
                #expect(stored.leaseExpires == nil)
                let done = try #require(events.last { $0.taskID == task.id && $0.kind == .done })
                #expect(done.status == stored.status)
                #expect(done.taskJSON == stored.json())
            }
            let first = try #require(try await store.task(id: queued[0].id))
            #expect(first.result == #"{"sum": [3, "ü"]}"#)
            #expect(first.exception == nil)
            #expect(first.plugin == "examples_c" && first.pluginVersion == "1.2.3")
            #expect(try await store.task(id: queued[1].id)?.exception == "line 1\n\"quoted\"\ttab")
            // The finished can_overlap=false task no longer blocks a new one with its kwargs.
            let again = try await store.enqueue([NewTask(name: "add", kwargs: #"{"b":2}"#, canOverlap: false)])
            #expect(again[0].id != queued[1].id)
            #expect(again[0].status == .queued)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func claimRespectsQueuesAndJobs(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let a = try await store.enqueue([NewTask(name: "a", queue: "q1")])[0]
            let b = try await store.enqueue([NewTask(name: "b", queue: "q2")])[0]
            let c = try await store.enqueue([NewTask(name: "c", queue: "q1")])[0]
            #expect(try await store.claim(claimRequest(queues: ["q2"])).map(\.id) == [b.id])
            #expect(try await store.claim(claimRequest(jobs: ["c"])).map(\.id) == [c.id])
            #expect(try await store.claim(claimRequest()).map(\.id) == [a.id])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func delayedTasksWaitForTheirEta(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let task = try await store.enqueue([NewTask(name: "later", delay: 60)])[0]
            #expect(task.delay == 60)
            #expect(abs(task.eta - (task.timeQueued + 60)) < 1e-6)
            #expect(try await store.claim(claimRequest()).isEmpty)
            #expect(try await store.nextDue(queues: nil) == task.eta)
            #expect(try await store.nextDue(queues: ["other"]) == nil)
            #expect(try await store.nextDue(queues: nil, jobs: ["later"]) == task.eta)
            #expect(try await store.nextDue(queues: nil, jobs: ["sooner"]) == nil)
            let sizes = try await store.queueSizes()
            #expect(sizes == [QueueSize(queue: "default", delayed: 1)])
            let claimed = try await store.claim(claimRequest(now: task.eta + 0.001))
            #expect(claimed.map(\.id) == [task.id])
            #expect(try await store.nextDue(queues: nil) == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func expiredTasksAreRevokedNotClaimed(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let start = TaskClock.now()
            let stale = try await store.enqueue([NewTask(name: "x", expiry: start - 1)])[0]
            let fresh = try await store.enqueue([NewTask(name: "x", expiry: start + 100)])[0]
            let now = TaskClock.now()
            let claimed = try await store.claim(claimRequest(now: now))
            #expect(claimed.map(\.id) == [fresh.id])
            let revoked = try #require(try await store.task(id: stale.id))
            #expect(revoked.status == .revoked)
            #expect(revoked.exception == "expired before it started")
            #expect(revoked.timeEnded == now)
            #expect(revoked.retry == 0)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func maxConcurrencyLimitsRunningTasks(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let tasks = try await store.enqueue(
                (1...3).map { NewTask(name: "slow", kwargs: #"{"i":\#($0)}"#, maxConcurrency: 2) }
                    + [NewTask(name: "free")])
            let first = try await store.claim(claimRequest(limit: 10))
            #expect(Set(first.map(\.id)) == [tasks[0].id, tasks[1].id, tasks[3].id])
            // Another process claims: still limited.
            #expect(try await store.claim(claimRequest(worker: otherWorker)).isEmpty)
            let sizes = try await store.queueSizes()
            #expect(sizes == [QueueSize(queue: "default", queued: 1, started: 3)])
            _ = try await store.finish([TaskOutcome(id: tasks[0].id, worker: worker, .success(result: "1"))])
            #expect(try await store.claim(claimRequest(worker: otherWorker)).map(\.id) == [tasks[2].id])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func canOverlapFalseReturnsTheActiveTwin(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let single = NewTask(name: "sync", kwargs: #"{"repo":"a"}"#, canOverlap: false)
            let first = try await store.enqueue([single])[0]
            let batch = try await store.enqueue([
                single, NewTask(name: "sync", kwargs: #"{"repo":"b"}"#, canOverlap: false), single,
            ])
            #expect(batch[0] == first)
            #expect(batch[2].id == batch[1].id ? false : batch[2].id == first.id)
            #expect(batch[1].id != first.id)
            // Still a twin while running.
            _ = try await store.claim(claimRequest(limit: 10))
            #expect(try await store.enqueue([single])[0].id == first.id)
            // Not once finished.
            _ = try await store.finish([TaskOutcome(id: first.id, worker: worker, .success(result: "null"))])
            let again = try await store.enqueue([single])[0]
            #expect(again.id != first.id)
            #expect(again.status == .queued)
            // Overlapping tasks are always queued.
            let overlapping = try await store.enqueue([NewTask(name: "sync", kwargs: #"{"repo":"a"}"#)])[0]
            #expect(overlapping.id != again.id)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func retriesKeepTheIdAndCountRuns(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let task = try await store.enqueue([NewTask(name: "flaky", maxRetries: 2, retryDelay: 5)])[0]
            let now = TaskClock.now()
            let run1 = try await store.claim(claimRequest(now: now))[0]
            #expect(run1.retry == 1 && run1.mayRetry)
            let eta = run1.retryETA(now: now)
            #expect(abs(eta - (now + 5)) < 1e-6)
            let retried = try await store.finish([
                TaskOutcome(id: task.id, worker: worker, .retry("boom", eta: eta), time: now)
            ])
            #expect(retried.count == 1)
            #expect(retried[0].status == .retry)
            #expect(retried[0].exception == "boom")
            #expect(retried[0].timeEnded == nil)
            #expect(try await store.claim(claimRequest(now: now + 1)).isEmpty)
            #expect(try await store.queueSizes(now: now + 1) == [QueueSize(queue: "default", retry: 1)])
            let run2 = try await store.claim(claimRequest(now: eta))
            #expect(run2.map(\.id) == [task.id])
            #expect(run2[0].retry == 2)
            let done = try await store.finish([TaskOutcome(id: task.id, worker: worker, .failure("boom again"))])
            #expect(done[0].status == .failure)
            #expect(done[0].timeEnded != nil)
            #expect(done[0].exception == "boom again")
        }
    }

    @Test(arguments: StoreKind.allCases)
    func leasesRenewAndExpiredLeasesAreRecovered(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let task = try await store.enqueue([NewTask(name: "job")])[0]
            var now = TaskClock.now()
            _ = try await store.claim(claimRequest(now: now, lease: 30))
            #expect(try await store.renew(ids: [task.id], worker: worker, leaseUntil: now + 60).isEmpty)
            #expect(try await store.task(id: task.id)?.leaseExpires == now + 60)
            #expect(try await store.recoverExpiredLeases(now: now + 59, maxDeadRuns: 3).isEmpty)
            // The host dies: twice it comes back, the third time it fails.
            for deadRun in 1...3 {
                let recovered = try await store.recoverExpiredLeases(now: now + 61, maxDeadRuns: 3)
                #expect(recovered.count == 1)
                #expect(recovered[0].deadRuns == deadRun)
                if deadRun < 3 {
                    #expect(recovered[0].status == .queued)
                    #expect(recovered[0].retry == 0)
                    now += 100
                    let again = try await store.claim(claimRequest(now: now, lease: -39))
                    #expect(again.map(\.id) == [task.id])
                    #expect(again[0].retry == 1)
                } else {
                    #expect(recovered[0].status == .failure)
                    #expect(
                        recovered[0].exception
                            == "run cut short 3 times by a host that died (last: \(worker)); not retried")
                    #expect(recovered[0].timeEnded != nil)
                }
            }
            // A renew by a worker that lost the task tells it to cancel.
            #expect(try await store.renew(ids: [task.id], worker: worker, leaseUntil: now + 60) == [task.id])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func recoverWorkerRequeuesItsTasksAtOnce(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let tasks = try await store.enqueue([NewTask(name: "a"), NewTask(name: "b"), NewTask(name: "c")])
            _ = try await store.claim(claimRequest(limit: 2))
            _ = try await store.claim(claimRequest(limit: 1, worker: otherWorker))
            let recovered = try await store.recoverWorker(worker, now: TaskClock.now(), maxDeadRuns: 3)
            #expect(Set(recovered.map(\.id)) == [tasks[0].id, tasks[1].id])
            #expect(recovered.allSatisfy { $0.status == .queued && $0.deadRuns == 1 })
            #expect(try await store.task(id: tasks[2].id)?.status == .started)
            #expect(try await store.claim(claimRequest(worker: otherWorker)).count == 2)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func revokeInEachState(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let tasks = try await store.enqueue([NewTask(name: "a"), NewTask(name: "b"), NewTask(name: "c")])
            #expect(try await store.revoke(id: "0123456789abcdef0123456789abcdef") == .notFound)
            // QUEUED → REVOKED
            guard case .revoked(let record) = try await store.revoke(id: tasks[0].id) else {
                Issue.record("expected revoked")
                return
            }
            #expect(record.status == .revoked && record.exception == "revoked" && record.timeEnded != nil)
            #expect(try await store.revoke(id: tasks[0].id) == .alreadyFinished(.revoked))
            // STARTED → cancel requested, seen at renew; the worker then reports it revoked.
            let running = try await store.claim(claimRequest(limit: 1))[0]
            #expect(running.id == tasks[1].id)
            #expect(try await store.revoke(id: running.id) == .cancelRequested)
            #expect(try await store.task(id: running.id)?.cancelRequested == true)
            #expect(
                try await store.renew(ids: [running.id], worker: worker, leaseUntil: TaskClock.now() + 30) == [
                    running.id
                ])
            let stopped = try await store.finish([
                TaskOutcome(id: running.id, worker: worker, .revoked("revoked while running"))
            ])
            #expect(stopped[0].status == .revoked && !stopped[0].cancelRequested)
            // RETRY → REVOKED
            _ = try await store.claim(claimRequest(limit: 1))
            _ = try await store.finish([
                TaskOutcome(id: tasks[2].id, worker: worker, .retry("x", eta: TaskClock.now() + 100))
            ])
            guard case .revoked = try await store.revoke(id: tasks[2].id) else {
                Issue.record("expected revoked")
                return
            }
            #expect(try await store.revoke(id: tasks[2].id) == .alreadyFinished(.revoked))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func finishAppliesOnlyForTheLeaseHolder(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let task = try await store.enqueue([NewTask(name: "a")])[0]
            // Not started yet: skipped.
            #expect(try await store.finish([TaskOutcome(id: task.id, worker: worker, .success(result: "1"))]).isEmpty)
            _ = try await store.claim(claimRequest())
            #expect(
                try await store.finish([TaskOutcome(id: task.id, worker: otherWorker, .success(result: "1"))]).isEmpty)
            #expect(try await store.task(id: task.id)?.status == .started)
            let done = try await store.finish([
                TaskOutcome(id: task.id, worker: worker, .success(result: #"{"sum": 3}"#)),
                TaskOutcome(id: "ffffffffffffffffffffffffffffffff", worker: worker, .success(result: "1")),
            ])
            #expect(done.count == 1)
            #expect(done[0].status == .success && done[0].result == #"{"sum": 3}"# && done[0].leaseExpires == nil)
            // Already finished: a second outcome is skipped.
            #expect(try await store.finish([TaskOutcome(id: task.id, worker: worker, .failure("late"))]).isEmpty)
            #expect(try await store.task(id: task.id)?.status == .success)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func releasedTasksGoBackUncounted(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let task = try await store.enqueue([NewTask(name: "a")])[0]
            _ = try await store.claim(claimRequest())
            let released = try await store.finish([TaskOutcome(id: task.id, worker: worker, .released)])
            #expect(released[0].status == .queued && released[0].retry == 0 && released[0].leaseExpires == nil)
            let again = try await store.claim(claimRequest(worker: otherWorker))
            #expect(again.map(\.id) == [task.id] && again[0].retry == 1 && again[0].worker == otherWorker)
        }
    }

    // Redis keeps a finished task until its hash's TTL (RedisTaskStoreTests), not until a purge.
    @Test(arguments: [StoreKind.memory, .sqlite])
    func purgeDeletesOldFinishedTasks(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let tasks = try await store.enqueue([NewTask(name: "a"), NewTask(name: "b"), NewTask(name: "c")])
            _ = try await store.claim(claimRequest(limit: 2))
            let t0 = TaskClock.now()
            _ = try await store.finish([
                TaskOutcome(id: tasks[0].id, worker: worker, .success(result: "1"), time: t0 - 100),
                TaskOutcome(id: tasks[1].id, worker: worker, .failure("x"), time: t0),
            ])
            #expect(try await store.purge(finishedBefore: t0 - 50) == 1)
            #expect(try await store.task(id: tasks[0].id) == nil)
            #expect(try await store.task(id: tasks[1].id) != nil)
            #expect(try await store.purge(finishedBefore: t0 + 1) == 1)
            #expect(try await store.task(id: tasks[2].id)?.status == .queued)
            #expect(try await store.tasks(status: nil, job: nil, limit: 10).map(\.id) == [tasks[2].id])
        }
    }

    /// After a purge of most tasks (the memory store then compacts its table), the rest still
    /// claim in queue order, finish, list and wait for their eta as before.
    // Redis keeps a finished task until its hash's TTL (RedisTaskStoreTests), not until a purge.
    @Test(arguments: [StoreKind.memory, .sqlite])
    func tasksLeftByAPurgeKeepWorking(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let done = try await store.enqueue((0..<8).map { _ in NewTask(name: "a") })
            var delayed = NewTask(name: "a")
            delayed.delay = 3600
            let later = try await store.enqueue([delayed])[0]
            let waiting = try await store.enqueue((0..<3).map { _ in NewTask(name: "a") })
            // The eight first are claimed; seven end long ago, one stays STARTED.
            let claimed = try await store.claim(claimRequest(limit: 8))
            #expect(claimed.map(\.id) == done.map(\.id))
            let t0 = TaskClock.now()
            _ = try await store.finish(
                done.prefix(7).map { TaskOutcome(id: $0.id, worker: worker, .success(result: "1"), time: t0 - 100) })
            #expect(try await store.purge(finishedBefore: t0 - 50) == 7)
            #expect(
                try await store.tasks(status: nil, job: nil, limit: 10).map(\.id)
                    == (waiting.reversed() + [later] + [done[7]]).map(\.id))
            #expect(try await store.tasks(status: .started, job: nil, limit: 10).map(\.id) == [done[7].id])
            // The waiting ones claim in queue order; the delayed one waits.
            #expect(try await store.claim(claimRequest(limit: 10)).map(\.id) == waiting.map(\.id))
            let due = try #require(try await store.nextDue(queues: nil, jobs: nil))
            #expect(abs(due - later.eta) < 0.001)
            let ended = try await store.finish([TaskOutcome(id: done[7].id, worker: worker, .success(result: "2"))])
            #expect(ended.map(\.status) == [.success])
            #expect(try await store.task(id: done[7].id)?.result == "2")
            #expect(try await store.claim(claimRequest(limit: 10, now: later.eta + 1)).map(\.id) == [later.id])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func listingIsNewestFirstAndFiltered(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let tasks = try await store.enqueue([NewTask(name: "a"), NewTask(name: "b"), NewTask(name: "a")])
            _ = try await store.claim(claimRequest(limit: 1))
            #expect(try await store.tasks(status: nil, job: nil, limit: 10).map(\.id) == tasks.reversed().map(\.id))
            #expect(try await store.tasks(status: nil, job: nil, limit: 2).map(\.id) == [tasks[2].id, tasks[1].id])
            #expect(try await store.tasks(status: nil, job: "a", limit: 10).map(\.id) == [tasks[2].id, tasks[0].id])
            #expect(try await store.tasks(status: .started, job: nil, limit: 10).map(\.id) == [tasks[0].id])
            #expect(try await store.tasks(status: .queued, job: "a", limit: 10).map(\.id) == [tasks[2].id])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func queueSizesPerQueue(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            _ = try await store.enqueue([
                NewTask(name: "a", queue: "fast"), NewTask(name: "a", queue: "fast"),
                NewTask(name: "a", queue: "slow", delay: 100), NewTask(name: "a", queue: "fast"),
            ])
            _ = try await store.claim(claimRequest(limit: 1))
            #expect(
                try await store.queueSizes() == [
                    QueueSize(queue: "fast", queued: 2, started: 1), QueueSize(queue: "slow", delayed: 1),
                ])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func eventsFollowEveryStateChangeInOrder(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            var queuedTask: TaskRecord?
            let events = try await recordedEvents(store, count: 5) {
                let queued = try await store.enqueue([NewTask(name: "a", maxRetries: 1)])[0]
                queuedTask = queued
                _ = try await store.claim(claimRequest())
                _ = try await store.finish([TaskOutcome(id: queued.id, worker: worker, .retry("x", eta: 0))])
                _ = try await store.claim(claimRequest())
                _ = try await store.finish([TaskOutcome(id: queued.id, worker: worker, .success(result: "[1,2]"))])
            }
            let task = try #require(queuedTask)
            #expect(events.map(\.kind) == [.queued, .started, .retry, .started, .done])
            #expect(events.map(\.status) == [.queued, .started, .retry, .started, .success])
            #expect(events.allSatisfy { $0.taskID == task.id })
            #expect(zip(events, events.dropFirst()).allSatisfy { $0.seq + 1 == $1.seq })
            if !(store is RedisTaskStore) { #expect(try await store.lastEventCursor() == events.last?.seq) }
            let last = try #require(events.last)
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(last.json().utf8)) as? [String: Any])
            #expect(object["event"] as? String == "done")
            let taskObject = try #require(object["task"] as? [String: Any])
            #expect(taskObject["result"] as? [Int] == [1, 2])
            if !(store is RedisTaskStore) {
                #expect(try await store.events(after: events[2].seq, limit: 1).map(\.seq) == [events[3].seq])
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func eventStreamDeliversNewEvents(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let events = try await recordedEvents(store, count: 2, viaFollower: true) {
                _ = try await store.enqueue([NewTask(name: "a")])
                _ = try await store.claim(claimRequest())
            }
            #expect(events.map(\.kind) == [.queued, .started])
            #expect(Set(events.map(\.taskID)).count == 1)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func publishedJobsStayAndNewestWins(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            #expect(try await store.publishedJobs().isEmpty)
            try await store.publishJobs(
                host: "h1",
                jobs: [
                    JobInfo(name: "add", plugin: "math", pluginVersion: "1.0", signature: "(a:i64,b:i64)->i64"),
                    JobInfo(
                        name: "tick", plugin: "clock", pluginVersion: "1.0", periodic: true, doc: "every minute",
                        options: #"{"run_every":60}"#),
                ])
            try await Task.sleep(for: .milliseconds(5))
            try await store.publishJobs(
                host: "h2", jobs: [JobInfo(name: "add", plugin: "math", pluginVersion: "2.0")])
            let jobs = try await store.publishedJobs()
            #expect(jobs.map(\.name) == ["add", "tick"])
            #expect(jobs[0].pluginVersion == "2.0")
            #expect(
                jobs[1]
                    == JobInfo(
                        name: "tick", plugin: "clock", pluginVersion: "1.0", periodic: true, doc: "every minute",
                        options: #"{"run_every":60}"#))
            // A host republishing replaces its own set only.
            try await store.publishJobs(host: "h1", jobs: [])
            #expect(try await store.publishedJobs().map(\.name) == ["add"])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func changesFireOnWrites(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let changes = store.changes()
            _ = try await store.enqueue([NewTask(name: "a")])
            #expect(await next(changes, timeout: .seconds(2)))
        }
    }

    /// `observeChanges` handlers fire for writes of this store and, for a shared store, of another
    /// instance (another process's writes reach it the same way), and stop when cancelled.
    @Test(arguments: [StoreKind.memory, .sqlite, .redis])
    func observedChangesFireOnWritesUntilCancelled(kind: StoreKind) async throws {
        let folder = kind == .sqlite ? try makeTempFolder() : nil
        defer { if let folder { try? FileManager.default.removeItem(at: folder) } }
        let namespace = TestRedis.uniqueNamespace()
        func open() throws -> any TaskStore {
            switch kind {
            case .sqlite: return try SQLiteTaskStore(path: folder!.appendingPathComponent("pq.db").path)
            case .redis, .rediss, .cluster: return RedisTaskStore(url: try TestRedis.url(namespace: namespace))
            case .memory: return MemoryTaskStore()
            }
        }
        let store = try open()
        let other = kind == .memory ? store : try open()
        let calls = Atomic<Int>(0)
        let observation = store.observeChanges { calls.add(1, ordering: .relaxed) }
        func waitForCall() async throws -> Bool {
            for _ in 0..<400 {  // bounded: 4 s
                if calls.load(ordering: .relaxed) > 0 { return true }
                try await Task.sleep(for: .milliseconds(10))
            }
            return false
        }
        // The pub/sub subscription of a Redis store is made when the first observer registers.
        if kind == .redis { try await Task.sleep(for: .milliseconds(200)) }
        _ = try await store.enqueue([NewTask(name: "a")])
        #expect(try await waitForCall(), "no call after this store's own write")
        calls.store(0, ordering: .relaxed)
        _ = try await other.enqueue([NewTask(name: "a")])
        #expect(try await waitForCall(), "no call after a write by another instance of the store")
        observation.cancel()
        try await Task.sleep(for: .milliseconds(200))  // calls in flight end
        calls.store(0, ordering: .relaxed)
        _ = try await store.enqueue([NewTask(name: "a")])
        _ = try await other.enqueue([NewTask(name: "a")])
        try await Task.sleep(for: .milliseconds(300))
        #expect(calls.load(ordering: .relaxed) == 0, "called after cancel")
        if kind != .memory { await other.close() }
        await store.close()
    }

    @Test(arguments: StoreKind.allCases)
    func badInputIsRefused(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            await #expect(throws: TaskStoreError.self) {
                _ = try await store.enqueue([NewTask(name: "a", kwargs: "[1,2]")])
            }
            await #expect(throws: TaskStoreError.self) {
                _ = try await store.enqueue([NewTask(name: "a", id: "not-an-id")])
            }
            let id = TaskID.make()
            _ = try await store.enqueue([NewTask(name: "a", id: id)])
            do {
                _ = try await store.enqueue([NewTask(name: "a", id: id)])
                Issue.record("a duplicate id was accepted")
            } catch let error as TaskStoreError {
                #expect(error.code == .invalidArgument)
                #expect(error.message.contains(id))
            }
            #expect(try await store.tasks(status: nil, job: nil, limit: 10).count == 1)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func closedStoreRefusesWork(kind: StoreKind) async throws {
        let test = try TestStore(kind)
        await test.close()
        do {
            _ = try await test.store.enqueue([NewTask(name: "a")])
            Issue.record("a closed store accepted work")
        } catch let error as TaskStoreError {
            #expect(error.code == .closed)
        }
    }
}

extension TaskStoreConformanceTests {
    @Test(arguments: StoreKind.allCases)
    func hostStatusKeepsTheLatestPerHost(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            #expect(try await store.hostStatuses(since: 0).isEmpty)
            try await store.publishHostStatus(worker: "a:1", json: #"{"worker":"a:1","processed":1}"#)
            try await store.publishHostStatus(worker: "b:2", json: #"{"worker":"b:2","processed":5}"#)
            try await store.publishHostStatus(worker: "a:1", json: #"{"worker":"a:1","processed":2}"#)
            let all = try await store.hostStatuses(since: 0)
            #expect(all.count == 2)
            #expect(all.first == #"{"worker":"a:1","processed":2}"#)
            #expect(try await store.hostStatuses(since: TaskClock.now() + 60).isEmpty)
        }
    }
}
