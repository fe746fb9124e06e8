import CPQPlugin
import Foundation
import Glibc
import Logging
import Synchronization

/// Housekeeping: leases, recovery of dead hosts' tasks, host status, purge, child tasks.
extension WorkerPool {

    // MARK: leases, recovery, purge

    func leaseKeeper() async {
        let renewEvery = max(0.05, options.leaseSeconds / 3)
        var lastRecovery = 0.0
        var lastPurge = 0.0
        var sweeps = 0
        var lastStatus = 0.0
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(min(renewEvery, options.recoveryInterval)))
            if Task.isCancelled { break }
            let ids = runningTaskIDs
            if !ids.isEmpty {
                do {
                    let cancel = try await store.renew(
                        ids: ids, worker: worker, leaseUntil: TaskClock.now() + options.leaseSeconds)
                    for id in cancel { stop(id, reason: .revoked) }
                } catch {
                    logger.warning("renewing leases failed: \(error)")
                }
            }
            let now = TaskClock.now()
            if now - lastRecovery >= options.recoveryInterval {
                lastRecovery = now
                // Leases that ran out are cheap to find; looking for owners that died on this
                // machine lists every running task, so it runs less often.
                sweeps += 1
                await recoverDeadHosts(checkLocalOwners: sweeps % 5 == 0)
            }
            if now - lastStatus >= options.statusInterval {
                lastStatus = now
                await publishStatus(state: "running")
            }
            if now - lastPurge >= 60 {
                lastPurge = now
                if let n = try? await store.purge(finishedBefore: now - options.resultTTL), n > 0 {
                    logger.info("purged \(n) finished tasks older than \(formatSeconds(options.resultTTL)) s")
                }
            }
        }
    }

    /// Tasks of a host on this machine whose process is gone go back to the queue at once; tasks
    /// of any host whose lease expired go back too.
    /// The host's status object: who it is, what runs, what it did.
    public func statusJSON(state hostState: String) -> String {
        let (running, processed) = state.withLock { (Array($0.running.keys).sorted(), $0.processed) }
        var pairs: [(String, JSONValue)] = [
            ("worker", .string(worker)), ("node", .string(node)), ("state", .string(hostState)),
            ("time", .double(TaskClock.now())), ("concurrent_tasks", .int(Int64(options.concurrentTasks))),
            ("running", .int(Int64(running.count))), ("running_tasks", .array(running.map(JSONValue.string))),
            ("processed", .int(Int64(processed))),
        ]
        pairs.append(("queues", options.queues.map { .array($0.sorted().map(JSONValue.string)) } ?? .null))
        pairs.append(("jobs", .int(Int64(registry.jobNames.count))))
        pairs.append(("isolation", .string(defaultIsolation.rawValue)))
        if let processes { pairs.append(("workers", processes.workerStatus)) }
        let failures = registry.loadFailures
        if !failures.isEmpty {
            pairs.append(
                (
                    "plugin_failures",
                    .array(failures.map { .object([("path", .string($0.path)), ("error", .string($0.message))]) })
                ))
        }
        return JSONValue.object(pairs).jsonText
    }

    func publishStatus(state hostState: String) async {
        do { try await store.publishHostStatus(worker: worker, json: statusJSON(state: hostState)) } catch {
            logger.debug("publishing the host status failed: \(error)")
        }
    }

    func recoverDeadHosts(checkLocalOwners: Bool = true) async {
        do {
            let started = checkLocalOwners ? try await store.tasks(status: .started, job: nil, limit: 10_000) : []
            var dead = Set<String>()
            for task in started {
                guard let owner = task.worker, owner != worker, let colon = owner.lastIndex(of: ":") else { continue }
                guard owner[..<colon] == node, let pid = Int32(owner[owner.index(after: colon)...]) else { continue }
                if kill(pid, 0) != 0 && errno == ESRCH { dead.insert(owner) }
            }
            for owner in dead {
                let moved = try await store.recoverWorker(owner, now: TaskClock.now(), maxDeadRuns: options.maxDeadRuns)
                if !moved.isEmpty {
                    logger.warning("host \(owner) is gone: \(moved.count) of its tasks were recovered")
                }
            }
            let expired = try await store.recoverExpiredLeases(now: TaskClock.now(), maxDeadRuns: options.maxDeadRuns)
            if !expired.isEmpty { logger.warning("\(expired.count) tasks whose lease expired were recovered") }
        } catch {
            logger.warning("recovering tasks of dead hosts failed: \(error)")
        }
    }

    // MARK: child tasks

    /// Checks a child task asked for by a running task and builds it. Called on a plugin thread
    /// (or a plugin's own async task), so it must not wait for the store.
    static func prepareChild(job name: String, argsJSON: String, parent: String, registry: JobRegistry) throws
        -> NewTask
    {
        guard let job = registry.job(named: name) else {
            throw CallHookError(message: "unknown job '\(name)'")
        }
        let kwargs: String
        do { kwargs = try TaskArguments.validate(argsJSON) } catch {
            throw CallHookError(message: "child task '\(name)': \(error)")
        }
        var task = NewTask(job: job, kwargs: kwargs, fromTask: parent)
        task.id = TaskID.make()
        return task
    }
}
