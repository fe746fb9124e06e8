/// The rules every store applies to records, as pure functions on values, so that the memory and
/// SQLite stores behave the same and the rules are tested without I/O.
package enum TaskEngine {
    /// Checks what a store is asked to queue.
    package static func validate(_ task: NewTask) throws(TaskStoreError) {
        guard !task.name.isEmpty else {
            throw TaskStoreError(.invalidArgument, "a task needs a job name")
        }
        if let id = task.id, !TaskID.isValid(id) {
            throw TaskStoreError(.invalidArgument, "task id \"\(id)\" is not 32 lowercase hex digits", taskID: id)
        }
        // A cheap shape check (callers parse the JSON): first and last non-blank bytes are { and }.
        let utf8 = task.kwargs.utf8
        let isBlank: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }
        let first = utf8.first(where: { !isBlank($0) })
        let last = utf8.reversed().first(where: { !isBlank($0) })
        guard first == nil || (first == 0x7B && last == 0x7D) else {
            throw TaskStoreError(
                .invalidArgument,
                "the arguments of a \(task.name) task must be a JSON object, got: \(task.kwargs.prefix(80))")
        }
    }

    package static func newRecord(_ task: NewTask, now: Double) -> TaskRecord {
        let delay = task.delay.map { max(0, $0) }
        return TaskRecord(
            id: task.id ?? TaskID.make(), name: task.name, status: .queued, queue: task.queue,
            kwargs: task.kwargs.isEmpty ? "{}" : task.kwargs, timeQueued: now, delay: delay, timeout: task.timeout,
            expiry: task.expiry, retry: 0, maxRetries: task.maxRetries, fromTask: task.fromTask,
            plugin: task.plugin, pluginVersion: task.pluginVersion, eta: now + (delay ?? 0),
            retryDelay: task.retryDelay, retryBackoff: task.retryBackoff, retryJitter: task.retryJitter,
            maxConcurrency: task.maxConcurrency, canOverlap: task.canOverlap)
    }

    /// Whether a waiting record may be claimed by `request`, ignoring concurrency limits.
    static func serves(_ request: ClaimRequest, _ record: TaskRecord) -> Bool {
        if let queues = request.queues, !queues.contains(record.queue) { return false }
        if let jobs = request.jobs, !jobs.contains(record.name) { return false }
        return true
    }

    static func isExpired(_ record: TaskRecord, now: Double) -> Bool {
        if let expiry = record.expiry { return expiry < now }
        return false
    }

    package static func claim(_ record: inout TaskRecord, _ request: ClaimRequest) throws(TaskStoreError) {
        record.status = try record.status.moving(to: .started, taskID: record.id)
        record.timeStarted = request.now
        record.timeEnded = nil
        record.worker = request.worker
        record.node = request.node
        record.leaseExpires = request.now + request.leaseSeconds
        record.retry += 1
        record.cancelRequested = false
    }

    static func expire(_ record: inout TaskRecord, now: Double) throws(TaskStoreError) {
        record.status = try record.status.moving(to: .revoked, taskID: record.id)
        record.exception = expiredMessage
        record.timeEnded = now
        record.leaseExpires = nil
    }

    /// Whether `outcome` applies to `record` (STARTED, leased by that worker).
    static func owns(_ record: TaskRecord, worker: String) -> Bool {
        record.status == .started && record.worker == worker
    }

    package static func apply(_ outcome: TaskOutcome, to record: inout TaskRecord) throws(TaskStoreError) {
        switch outcome.kind {
        case .success(let result):
            record.status = try record.status.moving(to: .success, taskID: record.id)
            record.result = result
            record.exception = nil
            record.timeEnded = outcome.time
        case .failure(let message):
            record.status = try record.status.moving(to: .failure, taskID: record.id)
            record.exception = message
            record.timeEnded = outcome.time
        case .retry(let message, let eta):
            record.status = try record.status.moving(to: .retry, taskID: record.id)
            record.exception = message
            record.eta = eta
        case .revoked(let message):
            record.status = try record.status.moving(to: .revoked, taskID: record.id)
            record.exception = message
            record.timeEnded = outcome.time
        case .released:
            record.status = try record.status.moving(to: .queued, taskID: record.id)
            record.retry = max(0, record.retry - 1)
            record.eta = min(record.eta, outcome.time)
        }
        record.leaseExpires = nil
        record.cancelRequested = false
        if outcome.kind != .released {
            if let plugin = outcome.plugin { record.plugin = plugin }
            if let version = outcome.pluginVersion { record.pluginVersion = version }
        }
    }

    /// A run cut short by a dead host: QUEUED again (the run does not count against `max_retries`),
    /// or FAILURE at `maxDeadRuns`; a task whose revoke was pending becomes REVOKED.
    static func recover(_ record: inout TaskRecord, now: Double, maxDeadRuns: Int) throws(TaskStoreError) {
        let worker = record.worker ?? "?"
        record.deadRuns += 1
        record.leaseExpires = nil
        if record.cancelRequested {
            record.status = try record.status.moving(to: .revoked, taskID: record.id)
            record.exception = revokedAfterHostDied(worker: worker)
            record.timeEnded = now
        } else if record.deadRuns >= maxDeadRuns {
            record.status = try record.status.moving(to: .failure, taskID: record.id)
            record.exception = failedAfterHostsDied(runs: String(record.deadRuns), worker: worker)
            record.timeEnded = now
        } else {
            record.status = try record.status.moving(to: .queued, taskID: record.id)
            record.retry = max(0, record.retry - 1)
            record.eta = min(record.eta, now)
        }
        record.cancelRequested = false
    }

    static func revoke(_ record: inout TaskRecord, now: Double) throws(TaskStoreError) {
        record.status = try record.status.moving(to: .revoked, taskID: record.id)
        record.exception = revokedMessage
        record.timeEnded = now
    }

    // The exceptions the engine writes, also sent to stores that apply the rules elsewhere (the
    // Redis functions get them as arguments, with `{worker}` and `{runs}` to fill in).

    /// A task revoked while it waited.
    package static let revokedMessage = "revoked"
    /// A task whose expiry passed before a host took it.
    package static let expiredMessage = "expired before it started"
    /// A task whose revoke was pending when its host died.
    package static func revokedAfterHostDied(worker: String) -> String {
        "revoked; its host died while running it (\(worker))"
    }
    /// A task whose runs were cut short by dead hosts `runs` times.
    package static func failedAfterHostsDied(runs: String, worker: String) -> String {
        "run cut short \(runs) times by a host that died (last: \(worker)); not retried"
    }
}

extension TaskRecord {
    /// When a failed run should run again: now plus the retry delay, doubled per earlier run with
    /// backoff, plus up to a quarter of it at random with jitter; at most a day. The one retry
    /// rule of every host and store.
    /// - Parameter now: the time the run failed.
    /// - Returns: the eta for ``TaskOutcome/Kind/retry(_:eta:)``.
    public func retryETA(now: Double) -> Double {
        var delay = max(0, retryDelay)
        if retryBackoff { delay *= Double(1 << min(max(0, retry - 1), 30)) }
        if retryJitter, delay > 0 { delay += Double.random(in: 0...(delay / 4)) }
        return now + min(delay, 86_400)
    }

    /// Whether a failed run may be retried: `max_retries` counts runs after the first, and
    /// ``retry`` counts runs so far including the one that failed, so `retry <= maxRetries`.
    public var mayRetry: Bool { retry <= maxRetries }
}
