import Glibc

/// Everything a host, `pq` and the HTTP API need of a store: the task lifecycle
/// (``TaskQueueStore``), the events (``TaskEventLog``) and the directory of hosts and their jobs
/// (``HostDirectory``). Every store (memory, SQLite, Redis) is all three; a store that schedules
/// periodic jobs across hosts is also a ``PeriodicScheduleStore``.
public typealias TaskStore = TaskQueueStore & TaskEventLog & HostDirectory

/// Where tasks live: queued, claimed under a lease, finished, listed and revoked.
///
/// Every state change a store makes is checked by ``TaskStatus/canMove(to:)`` and recorded as a
/// ``TaskEvent``. Implementations never block the cooperative thread pool on I/O.
///
/// ```swift
/// let store = try makeStore(url: StoreURL(parsing: "sqlite:pq.db"))
/// let queued = try await store.enqueue([NewTask(name: "add", kwargs: #"{"a":1,"b":2}"#)])
/// let claimed = try await store.claim(ClaimRequest(worker: "box:42", node: "box", limit: 8))
/// _ = try await store.finish(claimed.map { TaskOutcome(id: $0.id, worker: "box:42", .success(result: "3")) })
/// ```
public protocol TaskQueueStore: Sendable {
    /// Queues tasks, all in one transaction.
    ///
    /// A task with `canOverlap == false` whose twin (same name, identical kwargs text) is active
    /// is not queued: the twin's record is returned in its place.
    /// - Parameter tasks: what to queue.
    /// - Returns: one record per input, in input order.
    func enqueue(_ tasks: [NewTask]) async throws -> [TaskRecord]

    /// Atomically moves up to `request.limit` due tasks to STARTED under a lease held by `request.worker`.
    ///
    /// Due means QUEUED or RETRY with `eta <= now`, taken FIFO by eta then queue time. Tasks past
    /// their expiry become REVOKED instead. A job's `maxConcurrency` is respected across processes.
    /// - Parameter request: who claims, what it serves, how many.
    /// - Returns: the claimed records, STARTED, `retry` already counting this run.
    func claim(_ request: ClaimRequest) async throws -> [TaskRecord]

    /// Extends the leases of running tasks.
    /// - Parameters:
    ///   - ids: the tasks the worker runs.
    ///   - worker: `<node>:<pid>` of the worker.
    ///   - leaseUntil: the new end of the leases (epoch seconds).
    /// - Returns: the ids the worker must cancel: revoked while running, or no longer its own.
    func renew(ids: [String], worker: String, leaseUntil: Double) async throws -> Set<String>

    /// Records the ends of runs, in one transaction.
    ///
    /// An outcome applies only while its task is STARTED and leased by `outcome.worker`;
    /// others are skipped.
    /// - Parameter outcomes: what happened to each run.
    /// - Returns: the records changed, in input order, skipped ones left out.
    func finish(_ outcomes: [TaskOutcome]) async throws -> [TaskRecord]

    /// Records the ends of runs, then claims the tasks that take their places: what
    /// ``finish(_:)`` and ``claim(_:)`` do, in as few round trips as the store allows (one
    /// transaction on SQLite, one pipelined round trip on Redis). A busy host calls this once per
    /// batch of finished tasks.
    ///
    /// When the outcomes were recorded but the claim failed, it returns no tasks rather than
    /// throwing: the outcomes must not be written twice, and the host claims again later.
    /// - Parameters:
    ///   - outcomes: what happened to each run.
    ///   - request: what to claim; `nil` or a limit of 0 to claim nothing.
    /// - Returns: the claimed records, as ``claim(_:)`` returns them.
    func finish(_ outcomes: [TaskOutcome], thenClaim request: ClaimRequest?) async throws -> [TaskRecord]

    /// Returns STARTED tasks whose lease ended to QUEUED (their host died), counting a dead run;
    /// at `maxDeadRuns` dead runs the task becomes FAILURE instead.
    /// - Parameters:
    ///   - now: the current time.
    ///   - maxDeadRuns: dead runs after which a task is not run again.
    /// - Returns: the records changed.
    func recoverExpiredLeases(now: Double, maxDeadRuns: Int) async throws -> [TaskRecord]

    /// Does what ``recoverExpiredLeases(now:maxDeadRuns:)`` does, at once, for every task leased by
    /// a worker known to be dead (e.g. a host on this machine whose pid is gone).
    /// - Parameters:
    ///   - worker: `<node>:<pid>` of the dead worker.
    ///   - now: the current time.
    ///   - maxDeadRuns: dead runs after which a task is not run again.
    /// - Returns: the records changed.
    func recoverWorker(_ worker: String, now: Double, maxDeadRuns: Int) async throws -> [TaskRecord]

    /// One task.
    /// - Parameter id: the task id.
    /// - Returns: the record, or `nil` when there is none (never queued, or purged).
    func task(id: String) async throws -> TaskRecord?

    /// The tasks with these ids, read together (one read transaction, one round trip of a
    /// pipeline): what `pq wait` reads for a batch. Ids with no task are absent from the result.
    /// - Parameter ids: the task ids.
    /// - Returns: the tasks found, by id.
    func tasks(ids: [String]) async throws -> [String: TaskRecord]

    /// Recent tasks, newest first.
    /// - Parameters:
    ///   - status: only tasks in this state, or all.
    ///   - job: only tasks of this job, or all.
    ///   - queue: only tasks of this queue, or all.
    ///   - limit: at most this many.
    /// - Returns: the records.
    func tasks(status: TaskStatus?, job: String?, queue: String?, limit: Int) async throws -> [TaskRecord]

    /// Revokes a waiting task, or asks a running one to stop (its worker learns it at ``renew(ids:worker:leaseUntil:)``).
    /// - Parameters:
    ///   - id: the task id.
    ///   - now: the current time.
    /// - Returns: what was done.
    func revoke(id: String, now: Double) async throws -> RevokeOutcome

    /// Counts of waiting and running tasks per queue.
    /// - Parameter now: tasks with a later eta count as delayed.
    /// - Returns: one entry per queue that holds waiting or running tasks, sorted by name.
    func queueSizes(now: Double) async throws -> [QueueSize]

    /// The earliest eta among waiting tasks, so a host can sleep exactly until then.
    ///
    /// The time may be in the past when due tasks are held back by `max_concurrency`; a host then
    /// waits for ``changes()`` (a finishing task writes) rather than spinning.
    /// - Parameters:
    ///   - queues: only these queues, or all.
    ///   - jobs: only tasks of these jobs (those the host serves), or all.
    /// - Returns: the time, or `nil` when nothing waits.
    func nextDue(queues: Set<String>?, jobs: Set<String>?) async throws -> Double?

    /// Deletes tasks that reached a ready state before a time.
    /// - Parameter finishedBefore: the cut-off (epoch seconds).
    /// - Returns: how many were deleted.
    func purge(finishedBefore: Double) async throws -> Int

    /// A stream that yields soon after anything was written to the store, by this process or
    /// (for a shared store) by another one. Yields coalesce; a yield may be spurious.
    /// - Returns: a new stream; it ends when the store closes.
    func changes() -> AsyncStream<Void>

    /// Calls `handler` soon after anything was written to the store, like ``changes()`` but on
    /// the thread that noticed the write (a store's own writer, a file watcher, a network event
    /// loop), with no task hop: a host's dispatcher wakes one step sooner. `handler` must be quick
    /// and must not block. Calls coalesce or may be spurious, as with ``changes()``; a store may
    /// skip the calls for its own claims (a claim never makes another task claimable).
    /// - Parameter handler: the callback; it is dropped when the store closes.
    /// - Returns: the registration; cancel it to stop the calls.
    func observeChanges(_ handler: @escaping @Sendable () -> Void) -> ChangeObservation

    /// Finishes pending writes and releases the store's threads and files. Later calls fail with
    /// ``TaskStoreError/Code/closed``.
    func close() async
}

/// The events of a store: task state changes and plugin events, for `pq watch`, `pq wait` and the
/// HTTP API's `/api/events` (DESIGN.md section 7).
public protocol TaskEventLog: Sendable {
    /// Recorded events after a cursor, oldest first. Old events are trimmed, so a reader that
    /// falls far behind misses some.
    /// - Parameters:
    ///   - cursor: the ``TaskEvent/seq`` of the last event seen; 0 for the oldest kept.
    ///   - limit: at most this many.
    /// - Returns: the events.
    func events(after cursor: Int64, limit: Int) async throws -> [TaskEvent]

    /// Follows events after `cursor` as they happen, calling `body` with each, in order, in the
    /// caller's task. The default reads ``events(after:limit:)`` after each
    /// ``TaskQueueStore/changes()``; a store without an event log (Redis) follows its live messages.
    /// - Parameters:
    ///   - cursor: the seq of the last event seen; `nil` for only events from now on.
    ///   - batch: events read per store round trip.
    ///   - following: called once every event from then on will reach `body` (the cursor is
    ///     taken; on Redis, each time the subscription is made), from any thread.
    ///   - body: called with each event; return `false` to stop following.
    /// - Returns: when `body` returned `false`, the calling task was cancelled, or the store closed.
    /// - Throws: what the store or `body` throws.
    func followEvents(
        after cursor: Int64?, batch: Int, following: @escaping @Sendable () -> Void,
        _ body: (TaskEvent) async throws -> Bool
    ) async throws

    /// Whether ``events(after:limit:)`` reads a log of past events (false: the store keeps none,
    /// as Redis, and only ``followEvents(after:batch:following:_:)`` delivers events). Default: true.
    var keepsEventLog: Bool { get }

    /// Records an event that is not a task state change (plugin events of hosts), so `pq watch`
    /// shows it among the task events.
    /// - Parameters:
    ///   - kind: a plugin event kind.
    ///   - json: the JSON object the event carries.
    func recordEvent(_ kind: TaskEventKind, json: String) async throws

    /// The seq of the newest event, 0 when there is none: the cursor to follow only new events.
    /// - Returns: the cursor.
    func lastEventCursor() async throws -> Int64
}

/// The hosts that share a store and the jobs they serve (`pq jobs`, `pq hosts`, `/api/jobs`).
public protocol HostDirectory: Sendable {
    /// Replaces the set of jobs published by one host. The sets stay when hosts stop.
    /// - Parameters:
    ///   - host: a stable name of the publisher (e.g. the node name).
    ///   - jobs: the jobs it serves.
    func publishJobs(host: String, jobs: [JobInfo]) async throws

    /// Publishes a host's periodic status (running tasks, processed count, queues): on Redis on
    /// the `<ns>_host_status` channel; every store keeps the latest status of each host.
    /// - Parameters:
    ///   - worker: `<node>:<pid>` of the host.
    ///   - json: the status object.
    func publishHostStatus(worker: String, json: String) async throws

    /// The latest status of every host that published one, newest first.
    /// - Parameter since: only statuses published at or after this time (epoch seconds).
    /// - Returns: the status objects as JSON text.
    func hostStatuses(since: Double) async throws -> [String]

    /// Every published job, the newest publication winning per job name, sorted by name.
    /// - Returns: the jobs.
    func publishedJobs() async throws -> [JobInfo]
}

extension TaskEventLog {
    /// See ``TaskEventLog/keepsEventLog``: stores keep one unless they say otherwise.
    public var keepsEventLog: Bool { true }
}

extension TaskQueueStore {
    /// Recent tasks of any queue, newest first (``tasks(status:job:queue:limit:)``).
    public func tasks(status: TaskStatus?, job: String?, limit: Int) async throws -> [TaskRecord] {
        try await tasks(status: status, job: job, queue: nil, limit: limit)
    }

    /// See ``TaskQueueStore/tasks(ids:)``: one ``task(id:)`` after another, for stores whose reads
    /// cost no round trip.
    public func tasks(ids: [String]) async throws -> [String: TaskRecord] {
        var found: [String: TaskRecord] = [:]
        found.reserveCapacity(ids.count)
        for id in ids { if let task = try await task(id: id) { found[id] = task } }
        return found
    }

    /// See ``TaskQueueStore/finish(_:thenClaim:)``: two calls, for stores without a combined one.
    public func finish(_ outcomes: [TaskOutcome], thenClaim request: ClaimRequest?) async throws -> [TaskRecord] {
        if !outcomes.isEmpty { _ = try await finish(outcomes) }
        guard let request, request.limit > 0 else { return [] }
        return (try? await claim(request)) ?? []
    }

    /// ``recoverExpiredLeases(now:maxDeadRuns:)`` at the current time with 3 dead runs allowed.
    /// - Returns: the records changed.
    public func recoverExpiredLeases() async throws -> [TaskRecord] {
        try await recoverExpiredLeases(now: TaskClock.now(), maxDeadRuns: 3)
    }

    /// ``revoke(id:now:)`` at the current time.
    /// - Parameter id: the task id.
    /// - Returns: what was done.
    public func revoke(id: String) async throws -> RevokeOutcome {
        try await revoke(id: id, now: TaskClock.now())
    }

    /// ``nextDue(queues:jobs:)`` for tasks of any job.
    /// - Parameter queues: only these queues, or all.
    /// - Returns: the time, or `nil` when nothing waits.
    public func nextDue(queues: Set<String>?) async throws -> Double? {
        try await nextDue(queues: queues, jobs: nil)
    }

    /// ``queueSizes(now:)`` at the current time.
    /// - Returns: one entry per queue.
    public func queueSizes() async throws -> [QueueSize] {
        try await queueSizes(now: TaskClock.now())
    }
}

extension TaskEventLog where Self: TaskQueueStore {
    /// ``followEvents(after:batch:following:_:)`` from now on, in batches of 512.
    /// - Parameter body: called with each event; return `false` to stop.
    public func followEvents(_ body: (TaskEvent) async throws -> Bool) async throws {
        try await followEvents(after: nil, batch: 512, body)
    }

    /// ``followEvents(after:batch:following:_:)`` in batches of 512.
    /// - Parameters:
    ///   - cursor: the seq of the last event seen; `nil` for only events from now on.
    ///   - body: called with each event; return `false` to stop.
    public func followEvents(after cursor: Int64?, _ body: (TaskEvent) async throws -> Bool) async throws {
        try await followEvents(after: cursor, batch: 512, body)
    }

    /// ``followEvents(after:batch:following:_:)`` with no readiness callback.
    public func followEvents(after cursor: Int64?, batch: Int, _ body: (TaskEvent) async throws -> Bool) async throws {
        try await followEvents(after: cursor, batch: batch, following: {}, body)
    }

    /// See ``TaskEventLog/followEvents(after:batch:following:_:)``: the event log, read after each change.
    public func followEvents(
        after cursor: Int64?, batch: Int, following: @escaping @Sendable () -> Void,
        _ body: (TaskEvent) async throws -> Bool
    ) async throws {
        // Subscribe to changes before taking the cursor, so nothing written in between is missed.
        var changes = self.changes().makeAsyncIterator()
        var last: Int64
        if let cursor { last = cursor } else { last = try await lastEventCursor() }
        following()
        while !Task.isCancelled {
            // Drain everything after `last`, then sleep until the store changes.
            while true {
                let events = try await self.events(after: last, limit: batch)
                for event in events where try await !body(event) { return }
                guard let newest = events.last else { break }
                last = newest.seq
                if events.count < batch { break }
            }
            guard await changes.next() != nil else { return }
        }
    }
}

extension TaskQueueStore where Self == MemoryTaskStore {
    /// A new in-process store: `let store: some TaskStore = .memory()`.
    /// - Returns: an empty ``MemoryTaskStore``.
    public static func memory() -> MemoryTaskStore { MemoryTaskStore() }
}

extension TaskQueueStore where Self == SQLiteTaskStore {
    /// Opens a SQLite store: `let store: some TaskStore = try .sqlite(path: "pq.db")`.
    /// - Parameter path: the database file.
    /// - Returns: the store.
    public static func sqlite(path: String) throws -> SQLiteTaskStore { try SQLiteTaskStore(path: path) }
}

/// Wall-clock time as the stores use it: epoch seconds.
public enum TaskClock {
    /// The current time in epoch seconds.
    /// - Returns: seconds since 1970-01-01 UTC, with sub-microsecond resolution.
    public static func now() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }
}

/// What a worker asks of ``TaskQueueStore/claim(_:)``.
public struct ClaimRequest: Sendable, Equatable {
    /// `<node>:<pid>` of the claiming host process.
    public var worker: String
    /// The host name.
    public var node: String
    /// Only tasks of these queues; `nil` for all.
    public var queues: Set<String>?
    /// Only tasks of these jobs (the jobs the host has loaded); `nil` for all.
    public var jobs: Set<String>?
    /// At most this many tasks.
    public var limit: Int
    /// Seconds the lease lasts unless renewed.
    public var leaseSeconds: Double
    /// The current time.
    public var now: Double

    /// Creates a claim request.
    /// - Parameters:
    ///   - worker: `<node>:<pid>` of the claiming process.
    ///   - node: the host name.
    ///   - queues: only these queues, or all.
    ///   - jobs: only these jobs, or all.
    ///   - limit: at most this many tasks.
    ///   - leaseSeconds: lease length, 30 s by default.
    ///   - now: the current time.
    public init(
        worker: String, node: String, queues: Set<String>? = nil, jobs: Set<String>? = nil, limit: Int,
        leaseSeconds: Double = 30, now: Double = TaskClock.now()
    ) {
        self.worker = worker
        self.node = node
        self.queues = queues
        self.jobs = jobs
        self.limit = limit
        self.leaseSeconds = leaseSeconds
        self.now = now
    }
}

/// The end of one run, given to ``TaskQueueStore/finish(_:)``.
public struct TaskOutcome: Sendable, Equatable {
    /// How the run ended.
    public enum Kind: Sendable, Equatable {
        /// Succeeded; `result` is the job's result as JSON text. → SUCCESS
        case success(result: String)
        /// Failed and will not run again. → FAILURE
        case failure(String)
        /// Failed and runs again, not before `eta`. → RETRY
        case retry(String, eta: Double)
        /// Stopped: revoked while running, or timed out. → REVOKED
        case revoked(String)
        /// Given back unrun at a graceful shutdown: QUEUED again, the run not counted.
        case released
    }

    /// The task id.
    public var id: String
    /// `<node>:<pid>` of the worker that ran it; must hold the lease.
    public var worker: String
    /// How the run ended.
    public var kind: Kind
    /// When it ended.
    public var time: Double
    /// The plugin whose generation ran it (recorded on the task unless nil).
    public var plugin: String?
    /// The version of that generation (recorded on the task unless nil).
    public var pluginVersion: String?
    /// The claimed record's ``TaskRecord/storeSlot``.
    var storeSlot = StoreSlot()

    /// Creates an outcome.
    /// - Parameters:
    ///   - id: the task id.
    ///   - worker: the worker that ran it.
    ///   - kind: how the run ended.
    ///   - time: when it ended.
    public init(id: String, worker: String, _ kind: Kind, time: Double = TaskClock.now()) {
        self.id = id
        self.worker = worker
        self.kind = kind
        self.time = time
    }
}

/// What ``TaskQueueStore/revoke(id:now:)`` did.
public enum RevokeOutcome: Sendable, Equatable {
    /// The task was waiting and is now REVOKED.
    case revoked(TaskRecord)
    /// The task is running; its worker was asked to stop it.
    case cancelRequested
    /// The task had already reached this ready state.
    case alreadyFinished(TaskStatus)
    /// No task has that id.
    case notFound
}

/// Task counts of one queue.
public struct QueueSize: Sendable, Equatable {
    /// The queue name.
    public var queue: String
    /// QUEUED tasks that are due.
    public var queued: Int
    /// QUEUED tasks whose eta is still ahead (delayed).
    public var delayed: Int
    /// RETRY tasks, due or not.
    public var retry: Int
    /// STARTED tasks.
    public var started: Int

    /// Creates a queue size.
    public init(queue: String, queued: Int = 0, delayed: Int = 0, retry: Int = 0, started: Int = 0) {
        self.queue = queue
        self.queued = queued
        self.delayed = delayed
        self.retry = retry
        self.started = started
    }
}

/// A job as hosts publish it, so `pq submit` can check a job without loading plugins.
public struct JobInfo: Sendable, Equatable {
    /// The job name.
    public var name: String
    /// The plugin that defines it.
    public var plugin: String
    /// The plugin's version.
    public var pluginVersion: String
    /// `(name:type,...)->type` for typed jobs.
    public var signature: String?
    /// Whether it is a PeriodicJob.
    public var periodic: Bool
    /// Its documentation.
    public var doc: String?
    /// Its options as a JSON object (`options_json`), so clients queue its tasks with them.
    public var options: String?
    /// The plugin file on the publishing host's machine (nil from hosts that did not say).
    public var path: String?

    /// Creates a job description.
    public init(
        name: String, plugin: String, pluginVersion: String, signature: String? = nil, periodic: Bool = false,
        doc: String? = nil, options: String? = nil, path: String? = nil
    ) {
        self.options = options
        self.path = path
        self.name = name
        self.plugin = plugin
        self.pluginVersion = pluginVersion
        self.signature = signature
        self.periodic = periodic
        self.doc = doc
    }
}

/// The kind of a task event (DESIGN.md §7); each has its own channel.
public enum TaskEventKind: String, Sendable, CaseIterable {
    /// The task was queued (also when it is queued again after a lost lease or a release).
    case queued
    /// A run started.
    case started
    /// A run failed and the task will run again.
    case retry
    /// The task reached a ready state.
    case done
    /// A plugin generation loaded on a host (the event carries the plugin, not a task).
    case pluginLoaded = "plugin_loaded"
    /// A plugin file failed to load on a host.
    case pluginFailed = "plugin_failed"
    /// A plugin file was removed and its jobs unregistered on a host.
    case pluginRemoved = "plugin_removed"
    /// A worker process of a host died or was killed (the event carries the worker).
    case workerLost = "worker_lost"

    /// Whether the event is about a task (else about a plugin).
    public var isTaskEvent: Bool {
        switch self {
        case .queued, .started, .retry, .done: true
        case .pluginLoaded, .pluginFailed, .pluginRemoved, .workerLost: false
        }
    }

    /// The key of the object an event line carries: `task`, `plugin` or `worker`.
    public var payloadKey: String {
        switch self {
        case .queued, .started, .retry, .done: "task"
        case .pluginLoaded, .pluginFailed, .pluginRemoved: "plugin"
        case .workerLost: "worker"
        }
    }

    /// The kind of event that a move into `status` publishes.
    /// - Parameter status: the new state.
    public init(for status: TaskStatus) {
        switch status {
        case .queued: self = .queued
        case .started: self = .started
        case .retry: self = .retry
        case .revoked, .failure, .success: self = .done
        }
    }

    /// The channel name without namespace: `task_queued`, `task_started`, `task_retry`,
    /// `task_done`; plugin events use `plugin_loaded`, `plugin_failed`, `plugin_removed`, and `worker_lost`.
    public var channel: String { isTaskEvent ? "task_" + rawValue : rawValue }
}

/// One recorded state change.
public struct TaskEvent: Sendable, Equatable {
    /// Position in the store's event log; increases by one per event.
    public var seq: Int64
    /// The kind of change.
    public var kind: TaskEventKind
    /// The task id.
    public var taskID: String
    /// The task's state after the change.
    public var status: TaskStatus
    /// The task object (``TaskRecord/json()``) after the change.
    public var taskJSON: String

    /// Creates an event.
    public init(seq: Int64, kind: TaskEventKind, taskID: String, status: TaskStatus, taskJSON: String) {
        self.seq = seq
        self.kind = kind
        self.taskID = taskID
        self.status = status
        self.taskJSON = taskJSON
    }

    /// The line `pq watch` prints: `{"event":"queued","task":{...}}`.
    /// - Returns: the JSON text.
    public func json() -> String {
        "{\"event\":\"\(kind.rawValue)\",\"\(kind.payloadKey)\":\(taskJSON)}"
    }
}
