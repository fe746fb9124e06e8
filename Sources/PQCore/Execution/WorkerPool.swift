import CPQPlugin
import Dispatch
import Foundation
public import Logging
public import ServiceLifecycle
import Synchronization

/// Runs tasks of the registered jobs: claims due tasks from the store under a lease, calls the
/// plugins on dedicated threads, renews leases while tasks run, records outcomes with retries,
/// timeouts and revokes, and recovers tasks of hosts that died.
///
/// ```swift
/// let pool = WorkerPool(store: store, registry: registry, options: .init(concurrentTasks: 8), logger: logger)
/// let group = ServiceGroup(services: [pool], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
/// try await group.run()
/// ```
///
/// A claimed task does not get a Swift task of its own: it is handed to a plugin thread, which
/// calls the job; the plugin's `complete` (from any thread) decides the outcome, which joins the
/// next batched store write. Only the dispatcher, the lease keeper, the timeout keeper and the two
/// batchers are Swift tasks. That keeps a task's cost to one thread hand-off and a share of two
/// store round trips.
///
/// On graceful shutdown it stops claiming, lets running tasks finish within
/// ``Options/drainTimeout``, then cancels what is left and gives those tasks back to the queue.
public final class WorkerPool: Service, Sendable {
    /// Settings of the pool.
    public struct Options: Sendable {
        /// At most this many tasks run at once (`--concurrent-tasks`).
        public var concurrentTasks: Int
        /// Only tasks of these queues; nil for all.
        public var queues: Set<String>?
        /// Seconds a claim lasts unless renewed.
        public var leaseSeconds: Double
        /// Runs cut short by a dead host after which a task fails for good.
        public var maxDeadRuns: Int
        /// Seconds running tasks get to finish at shutdown before they are cancelled and released.
        public var drainTimeout: Double
        /// Seconds finished tasks are kept before they are purged.
        public var resultTTL: Double
        /// Longest sleep between looks at the store when no change signal arrives.
        public var idlePoll: Double
        /// Seconds between sweeps for expired leases of other hosts.
        public var recoveryInterval: Double
        /// Seconds a plugin gets to end a call after it was asked to stop (timeout, revoke,
        /// shutdown) before the host records the outcome without it.
        public var cancelGrace: Double
        /// Seconds between host status publications (`<ns>_host_status`, `pq hosts`).
        public var statusInterval: Double = 5
        /// Worker processes (`--isolation process`), or nil to run every task on this process's
        /// threads (`--isolation thread`).
        public var processes: ProcessOptions?
        /// Where tasks of jobs without an `"isolation"` option run; nil: in worker processes when
        /// ``processes`` is set, else on threads. Jobs that ask for the other mode get it.
        public var isolation: JobOptions.Isolation?

        /// Creates options with defaults: 5 tasks, all queues, 30 s leases, 3 dead runs, 10 s
        /// drain, results kept 1 day.
        public init(
            concurrentTasks: Int = 5, queues: Set<String>? = nil, leaseSeconds: Double = 30, maxDeadRuns: Int = 3,
            drainTimeout: Double = 10, resultTTL: Double = 86_400, idlePoll: Double = 1, recoveryInterval: Double = 2,
            cancelGrace: Double = 2, processes: ProcessOptions? = nil
        ) {
            self.concurrentTasks = max(1, concurrentTasks)
            self.queues = queues
            self.leaseSeconds = leaseSeconds
            self.maxDeadRuns = maxDeadRuns
            self.drainTimeout = drainTimeout
            self.resultTTL = resultTTL
            self.idlePoll = idlePoll
            self.recoveryInterval = recoveryInterval
            self.cancelGrace = cancelGrace
            self.processes = processes
        }
    }

    /// Settings of process isolation (DESIGN.md section 12).
    public struct ProcessOptions: Sendable {
        /// Worker processes to keep (`--workers`).
        public var workers: Int
        /// Seconds without a message after which a worker is killed as hung.
        public var heartbeatTimeout: Double
        /// Tasks after which a worker is replaced; 0: never.
        public var maxTasksPerWorker: Int
        /// Resident MiB past which a worker is replaced; 0: never.
        public var maxWorkerMemoryMB: Double
        /// The pq binary workers are started from.
        public var executable: String
        /// Whether workers check the trust of what they load (off with `--trust-all-plugins`).
        public var checkTrust: Bool

        /// Creates options.
        /// - Parameters:
        ///   - workers: worker processes.
        ///   - heartbeatTimeout: seconds before a silent worker is killed.
        ///   - maxTasksPerWorker: tasks before a worker is replaced (0: never).
        ///   - maxWorkerMemoryMB: resident MiB before a worker is replaced (0: never).
        ///   - executable: the pq binary; nil for this program.
        ///   - checkTrust: whether workers check trust.
        public init(
            workers: Int, heartbeatTimeout: Double = 5, maxTasksPerWorker: Int = 0, maxWorkerMemoryMB: Double = 0,
            executable: String? = nil, checkTrust: Bool = true
        ) {
            self.workers = max(1, workers)
            self.heartbeatTimeout = heartbeatTimeout
            self.maxTasksPerWorker = maxTasksPerWorker
            self.maxWorkerMemoryMB = maxWorkerMemoryMB
            self.executable = executable ?? WorkerSpawner.currentExecutable
            self.checkTrust = checkTrust
        }
    }

    /// Why a running call was asked to stop.
    enum StopReason: Sendable { case revoked, shutdown, timeout }

    /// One claimed task, from hand-off to its stored outcome.
    final class Execution: Sendable {
        struct State {
            var call: PluginCall?
            var stopReason: StopReason?
            var stopAt: Double?
            var decided = false
            /// A typed (C function) call: it cannot be cancelled, so a stop decides at once.
            var typed = false
        }

        let record: TaskRecord
        /// Whether it runs in a worker process (else on this process's threads).
        let inWorker: Bool
        let state = Mutex(State())
        /// When the run began on a plugin thread (epoch seconds); 0 until then.
        let began = Atomic<UInt64>(0)

        init(record: TaskRecord, inWorker: Bool) {
            self.record = record
            self.inWorker = inWorker
        }

        /// When the run times out (epoch seconds): its timeout counted from when it began.
        var deadline: Double? {
            let start = Double(bitPattern: began.load(ordering: .acquiring))
            guard start > 0, let timeout = record.timeout, timeout > 0 else { return nil }
            return start + timeout
        }
    }

    struct State {
        /// Claimed tasks whose outcome is not stored yet: running, or waiting for a thread.
        var running: [String: Execution] = [:]
        /// Slots set aside for claims in flight.
        var reserved = 0
        var processed = 0
        var draining = false
    }

    let store: any TaskStore
    let registry: JobRegistry
    let options: Options
    let logger: Logger
    /// Runs tasks on this process's threads.
    let threads: ThreadExecutor
    /// Runs tasks in worker processes, when the pool may.
    let processes: ProcessExecutor?
    /// Where tasks of jobs without an `"isolation"` option run.
    let defaultIsolation: JobOptions.Isolation
    /// `<node>:<pid>`.
    public let worker: String
    /// The host name.
    public let node: String
    let state = Mutex(State())
    let wakeup = Wakeup()
    let timerWakeup = Wakeup()
    let submitBridge = SubmitBridge()
    let outcomes: OutcomeBatcher
    /// Moving average of how long runs take, in nanoseconds (a hint; races are harmless).
    let averageRunNanos = Atomic<Int>(Int.max)
    /// `worker_lost` events waiting to be recorded.
    let lostWorkers = Mutex<[String]>([])
    let lostWakeup = Wakeup()
    /// What the pool counts for the metrics backend (no-ops unless one is bootstrapped).
    let metrics = HostMetrics()

    /// Creates a pool.
    /// - Parameters:
    ///   - store: where tasks live.
    ///   - registry: the jobs this host can run.
    ///   - options: settings.
    ///   - logger: where log lines go.
    ///   - threadJobs: the jobs loaded in this process, for runs on its threads; nil: `registry`
    ///     (in process isolation the registry holds jobs known only by their description).
    public init(
        store: any TaskStore, registry: JobRegistry, options: Options = Options(), logger: Logger,
        threadJobs: JobRegistry? = nil
    ) {
        self.store = store
        self.registry = registry
        self.options = options
        self.logger = logger
        self.threads = ThreadExecutor(
            size: options.concurrentTasks, jobs: threadJobs ?? registry,
            hooks: Self.makeHooks(registry: registry, submitBridge: submitBridge, logger: logger))
        self.defaultIsolation = options.isolation ?? (options.processes == nil ? .thread : .process)
        if let p = options.processes {
            var o = ProcessExecutor.Options(
                workers: p.workers, threads: options.concurrentTasks, executable: p.executable)
            o.heartbeatTimeout = p.heartbeatTimeout
            o.maxTasksPerWorker = p.maxTasksPerWorker
            o.maxWorkerMemoryKB = UInt64(max(0, p.maxWorkerMemoryMB) * 1024)
            o.checkTrust = p.checkTrust
            // Workers start when the first task needs them if tasks run on threads by default.
            o.lazy = defaultIsolation == .thread
            self.processes = ProcessExecutor(options: o, logger: logger)
        } else {
            self.processes = nil
        }
        self.outcomes = OutcomeBatcher(logger: logger, retryFor: options.leaseSeconds)
        self.node = HostIdentity.node
        self.worker = "\(HostIdentity.node):\(getpid())"
    }

    /// Tasks this pool has finished since it started.
    public var processedCount: Int { state.withLock { $0.processed } }

    /// Seconds from spawn to ready of each worker process started so far (process isolation).
    public var workerReadyTimes: [Double] { processes?.readyTimes ?? [] }

    /// Ids of the tasks running now.
    public var runningTaskIDs: [String] { state.withLock { Array($0.running.keys) } }

    /// Wakes the dispatcher (e.g. after a task was queued in this process).
    public func poke() { wakeup.signal() }

    /// Runs until graceful shutdown, then drains.
    public func run() async throws {
        logger.info(
            "worker pool started",
            metadata: [
                "worker": "\(worker)", "concurrent_tasks": "\(options.concurrentTasks)",
                "queues": "\(options.queues.map { $0.sorted().joined(separator: ",") } ?? "all")",
            ])
        let delegate = executorDelegate()
        threads.start(delegate: delegate)
        if let processes {
            processes.reload(plugins: workerPlugins)
            processes.start(delegate: delegate)
        }
        await recoverDeadHosts()
        await publishStatus(state: "running")
        // The store's writes wake the dispatcher from the thread that noticed them.
        let changes = store.observeChanges { [wakeup] in wakeup.signal() }
        defer { changes.cancel() }
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.leaseKeeper() }
                group.addTask { await self.timeoutKeeper() }
                group.addTask {
                    await self.submitBridge.serve(store: self.store, logger: self.logger) { self.wakeup.signal() }
                }
                if self.processes != nil {
                    group.addTask { await self.recordLostWorkers() }
                }
                group.addTask {
                    await self.outcomes.run(
                        write: { batch in try await self.record(batch) },
                        stored: { batch in self.stored(batch) })
                }
                await self.dispatch()
                // Dispatch returned: shutdown. Drain, then stop the helpers.
                await self.drain()
                await self.processes?.shutdown()
                self.submitBridge.finish()
                self.outcomes.close()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            self.state.withLock { $0.draining = true }
            self.wakeup.signal()
        }
        await publishStatus(state: "stopped")
        logger.info("worker pool stopped", metadata: ["processed": "\(processedCount)"])
    }

    var isDraining: Bool { state.withLock { $0.draining } }

    // MARK: dispatching

    /// How many claimed tasks the host holds at most: one per thread, plus as many waiting for a
    /// thread while runs are short (under 2 ms on average), so the threads never wait for a store
    /// round trip. Long runs get no extra, so other hosts are not starved of them.
    var capacity: Int {
        let short = averageRunNanos.load(ordering: .relaxed) < 2_000_000
        return short ? options.concurrentTasks * 8 : options.concurrentTasks
    }

    /// Sets aside free slots for a claim: up to `limit`, or none when fewer than `atLeast` are free.
    /// `handingOver` slots of tasks being finished by the same store call count as free.
    func reserveSlots(atLeast: Int = 1, handingOver: Int = 0) -> Int {
        let capacity = self.capacity
        return state.withLock { s -> Int in
            guard !s.draining else { return 0 }
            let free = capacity - (s.running.count - handingOver) - s.reserved
            guard free >= atLeast, free > 0 else { return 0 }
            s.reserved += free
            return free
        }
    }

    func claimRequest(limit: Int) -> ClaimRequest {
        ClaimRequest(
            worker: worker, node: node, queues: options.queues, jobs: registry.jobNames, limit: limit,
            leaseSeconds: options.leaseSeconds)
    }

    func dispatch() async {
        while !isDraining && !Task.isCancelled {
            let running = state.withLock { $0.running.count + $0.reserved }
            // When idle, claim at once so a lone task starts without delay. A busy host claims
            // as it records outcomes (see `record`), so here it only claims when half of its
            // slots are free: small claims of its own would cost a store transaction each.
            let burst = running == 0 ? 1 : max(1, capacity / 2)
            let free = reserveSlots(atLeast: burst)
            var claimed: [TaskRecord] = []
            if free > 0 {
                do {
                    claimed = try await store.claim(claimRequest(limit: free))
                } catch {
                    state.withLock { $0.reserved -= free }
                    logger.error("claim failed: \(error)")
                    await wakeup.wait(timeout: 1)
                    continue
                }
                start(claimed, reserved: free)
                if claimed.count == free { continue }
            }
            // Sleep until a change, a freed slot, the next delayed task, or the idle poll.
            var timeout = options.idlePoll
            if free > 0, claimed.count < free,
                let due = try? await store.nextDue(queues: options.queues, jobs: registry.jobNames)
            {
                // A due time in the past means due tasks are held back (max_concurrency): the
                // store's change signal wakes us when a slot frees, so do not spin on it.
                let wait = due - TaskClock.now()
                if wait > 0 { timeout = min(timeout, wait + 0.0005) }
            }
            await wakeup.wait(timeout: timeout)
        }
    }

    /// Hands claimed tasks to the plugin threads and gives back the `reserved` slots.
    func start(_ records: [TaskRecord], reserved: Int) {
        // One look at the registry per batch: most jobs take the pool's mode.
        let overrides = processes == nil ? [:] : registry.isolationOptions
        let byDefault = defaultIsolation == .process
        let executions = records.map { r in
            Execution(record: r, inWorker: processes != nil && (overrides[r.name].map { $0 == .process } ?? byDefault))
        }
        let running = state.withLock { s in
            s.reserved -= reserved
            for e in executions { s.running[e.record.id] = e }
            return s.running.count
        }
        if !records.isEmpty {
            metrics.running(running)
            for r in records {
                if let started = r.timeStarted { metrics.waited(queue: r.queue, seconds: started - r.eta) }
            }
        }
        guard let processes else {
            threads.run(executions)
            return
        }
        processes.run(executions.filter(\.inWorker))
        threads.run(executions.filter { !$0.inWorker })
    }

    /// The executor that runs `execution`.
    func executor(of execution: Execution) -> any TaskExecutor {
        if execution.inWorker, let processes { return processes }
        return threads
    }

    /// Writes a batch of outcomes and, in the same store call, claims tasks for the slots they
    /// free (the batcher's `write`).
    func record(_ batch: [TaskOutcome]) async throws {
        let limit = reserveSlots(handingOver: batch.count)
        let claimed: [TaskRecord]
        do {
            claimed = try await store.finish(batch, thenClaim: limit > 0 ? claimRequest(limit: limit) : nil)
        } catch {
            state.withLock { $0.reserved -= limit }
            throw error
        }
        start(claimed, reserved: limit)
    }

    /// A batch of outcomes was written (or given up on, left to the leases). Always follows
    /// `record`: the dispatcher is woken here, once per batch, to claim for slots the batch's
    /// own claim did not fill (the queue ran dry, or holds only later tasks) and to see a drain end.
    func stored(_ batch: [TaskOutcome]) {
        // The metrics of the batch are counted here, by the one task that stores outcomes, not by
        // the plugin threads as runs end: many threads on one lock spin (HostMetrics' handles).
        var ended: [(job: String, kind: TaskOutcome.Kind, seconds: Double?)] = []
        ended.reserveCapacity(batch.count)
        let running = state.withLock { s in
            for outcome in batch {
                guard let execution = s.running.removeValue(forKey: outcome.id) else { continue }
                s.processed += 1
                let began = Double(bitPattern: execution.began.load(ordering: .relaxed))
                ended.append((execution.record.name, outcome.kind, began > 0 ? outcome.time - began : nil))
            }
            return s.running.count
        }
        metrics.running(running)
        for e in ended { metrics.ended(job: e.job, e.kind, seconds: e.seconds) }
        wakeup.signal()
    }

    /// A run ended, in a thread or a worker process: record its outcome.
    func ended(_ execution: Execution, _ end: RunEnd) {
        switch end {
        case .completed(let outcome, let plugin):
            conclude(execution, ranOn: plugin, outcome)
        case .refused(let message, let plugin):
            decide(execution, .failure(message), ranOn: plugin)
        case .unregistered:
            decide(execution, .released, ranOn: nil)
        case .stoppedRunLost:
            let reason = execution.state.withLock { $0.stopReason } ?? .shutdown
            decide(execution, stoppedOutcome(reason, execution, typed: false), ranOn: nil)
        case .notStarted:
            let stopped = execution.state.withLock { $0.stopReason }
            decide(
                execution, stopped == nil || stopped == .shutdown ? .released : .revoked("revoked before it started"),
                ranOn: nil)
        }
    }

    /// The call ended (any thread): turn its result into the task's outcome.
    func conclude(_ execution: Execution, ranOn plugin: PluginInfo?, _ result: CallOutcome) {
        let record = execution.record
        let stop = execution.state.withLock { $0.stopReason }
        let kind: TaskOutcome.Kind
        switch (stop, result) {
        case (_, .success(let json)):
            kind = .success(result: json)
        case (.shutdown, .failure):
            kind = .released
        case (.revoked, .failure):
            kind = .revoked("revoked while running")
        case (.timeout, .failure):
            kind = .revoked("timed out after \(formatSeconds(record.timeout ?? 0)) s")
        case (nil, .failure(let message)) where record.retry <= record.maxRetries:
            kind = .retry(message, eta: record.retryETA(now: TaskClock.now()))
        case (nil, .failure(let message)):
            kind = .failure(message)
        }
        noteRunTime(of: execution)
        decide(execution, kind, ranOn: plugin)
    }

    /// Feeds the moving average of run times that decides how far ahead the host claims.
    func noteRunTime(of execution: Execution) {
        let began = Double(bitPattern: execution.began.load(ordering: .acquiring))
        guard began > 0 else { return }
        let nanos = Int(min(max(0, TaskClock.now() - began), 3600) * 1e9)
        let old = averageRunNanos.load(ordering: .relaxed)
        averageRunNanos.store(old == Int.max ? nanos : old - old / 8 + nanos / 8, ordering: .relaxed)
    }

    /// Records the outcome once (later calls are ignored), after the task's children are stored.
    func decide(_ execution: Execution, _ kind: TaskOutcome.Kind, ranOn: PluginInfo?) {
        let first = execution.state.withLock { s -> Bool in
            defer { s.decided = true }
            return !s.decided
        }
        guard first else { return }
        let id = execution.record.id
        var outcome = TaskOutcome(id: id, worker: worker, kind)
        outcome.storeSlot = execution.record.storeSlot
        outcome.plugin = ranOn?.name
        outcome.pluginVersion = ranOn?.version
        if submitBridge.hasNoPendingChildren(of: id) {
            outcomes.submit(outcome)  // most tasks queue no children: no closure to make
            return
        }
        let end = outcome
        submitBridge.whenChildrenStored(of: id) { [outcomes] in outcomes.submit(end) }
    }

    // MARK: timeouts and stops

    /// Asks a running task to stop; if its plugin does not end the call within
    /// ``Options/cancelGrace``, the timeout keeper records the outcome without it.
    func stop(_ id: String, reason: StopReason) {
        guard let execution = state.withLock({ $0.running[id] }) else { return }
        let (first, typed) = execution.state.withLock { s -> (Bool, Bool) in
            guard s.stopReason == nil, !s.decided else { return (false, false) }
            s.stopReason = reason
            s.stopAt = TaskClock.now()
            return (true, s.typed)
        }
        guard first else { return }
        if typed && !execution.inWorker {
            decide(execution, stoppedOutcome(reason, execution, typed: true), ranOn: nil)
            return
        }
        executor(of: execution).cancel(execution)
        timerWakeup.signal()
    }

    /// The outcome of a run that was stopped without the job's help.
    func stoppedOutcome(_ reason: StopReason, _ execution: Execution, typed: Bool) -> TaskOutcome.Kind {
        let record = execution.record
        var left =
            typed
            ? " (the C function cannot be interrupted and was left to finish on its thread)"
            : " (the job ignored the cancel)"
        let inWorker = executor(of: execution).abandonEndsTheRun
        if inWorker {
            left =
                " (it ignored the cancel; its worker process was killed after a \(formatSeconds(options.cancelGrace)) s grace)"
        }
        switch reason {
        case .shutdown: return .released
        case .revoked: return .revoked("revoked while running" + left)
        case .timeout:
            return .revoked("timed out after \(formatSeconds(record.timeout ?? 0)) s" + (typed || inWorker ? left : ""))
        }
    }

    /// Revokes tasks past their timeout, and ends calls whose plugin ignored a stop.
    func timeoutKeeper() async {
        while !Task.isCancelled {
            let now = TaskClock.now()
            var next = now + 1
            let executions = state.withLock { Array($0.running.values) }
            for execution in executions {
                let (stopAt, reason, decided) = execution.state.withLock { ($0.stopAt, $0.stopReason, $0.decided) }
                if decided { continue }
                if let stopAt, let reason {
                    let giveUp = stopAt + options.cancelGrace
                    if now >= giveUp {
                        // In a worker process the run is ended for good: its worker is killed.
                        executor(of: execution).abandon(execution)
                        decide(execution, stoppedOutcome(reason, execution, typed: false), ranOn: nil)
                    } else {
                        next = min(next, giveUp)
                    }
                } else if let deadline = execution.deadline {
                    if now >= deadline {
                        stop(execution.record.id, reason: .timeout)
                        next = min(next, now + options.cancelGrace)
                    } else {
                        next = min(next, deadline)
                    }
                }
            }
            await timerWakeup.wait(timeout: max(0.001, next - TaskClock.now()))
        }
    }

    func drain() async {
        let deadline = TaskClock.now() + options.drainTimeout
        var stopped = false
        while true {
            let ids = runningTaskIDs
            if ids.isEmpty { return }
            if TaskClock.now() >= deadline && !stopped {
                logger.warning(
                    "\(ids.count) tasks still running after \(formatSeconds(options.drainTimeout)) s: cancelling them and returning them to the queue"
                )
                for id in ids { stop(id, reason: .shutdown) }
                stopped = true
            }
            await wakeup.wait(timeout: 0.05)
        }
    }

}

/// This machine's identity as tasks record it.
public enum HostIdentity {
    /// The host name.
    public static let node: String = {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, 255)
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "localhost" : name
    }()
}

func formatSeconds(_ s: Double) -> String {
    s == s.rounded() ? String(Int(s)) : String(format: "%.3g", s)
}
