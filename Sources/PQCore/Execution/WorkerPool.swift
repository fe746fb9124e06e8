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

        /// Creates options with defaults: 5 tasks, all queues, 30 s leases, 3 dead runs, 10 s
        /// drain, results kept 1 day.
        public init(
            concurrentTasks: Int = 5, queues: Set<String>? = nil, leaseSeconds: Double = 30, maxDeadRuns: Int = 3,
            drainTimeout: Double = 10, resultTTL: Double = 86_400, idlePoll: Double = 1, recoveryInterval: Double = 2
        ) {
            self.concurrentTasks = max(1, concurrentTasks)
            self.queues = queues
            self.leaseSeconds = leaseSeconds
            self.maxDeadRuns = maxDeadRuns
            self.drainTimeout = drainTimeout
            self.resultTTL = resultTTL
            self.idlePoll = idlePoll
            self.recoveryInterval = recoveryInterval
        }
    }

    /// Why a running call was asked to stop.
    enum StopReason: Sendable { case revoked, shutdown }

    private struct Running {
        var record: TaskRecord
        var call: PluginCall?
        var stopReason: StopReason?
    }

    private struct State {
        var running: [String: Running] = [:]
        var processed = 0
        var draining = false
    }

    let store: any TaskStore
    let registry: JobRegistry
    let options: Options
    let logger: Logger
    let threads: PluginThreadPool
    /// `<node>:<pid>`.
    public let worker: String
    /// The host name.
    public let node: String
    private let state = Mutex(State())
    private let wakeup = Wakeup()
    private let submitBridge = SubmitBridge()
    private let outcomes: OutcomeBatcher

    /// Creates a pool.
    /// - Parameters:
    ///   - store: where tasks live.
    ///   - registry: the jobs this host can run.
    ///   - options: settings.
    ///   - logger: where log lines go.
    public init(store: any TaskStore, registry: JobRegistry, options: Options = Options(), logger: Logger) {
        self.store = store
        self.registry = registry
        self.options = options
        self.logger = logger
        self.threads = PluginThreadPool(size: options.concurrentTasks + 1)
        self.outcomes = OutcomeBatcher(store: store, logger: logger, retryFor: options.leaseSeconds)
        self.node = HostIdentity.node
        self.worker = "\(HostIdentity.node):\(getpid())"
    }

    deinit {
        threads.shutdown()
    }

    /// Tasks this pool has finished since it started.
    public var processedCount: Int { state.withLock { $0.processed } }

    /// Ids of the tasks running now.
    public var runningTaskIDs: [String] { state.withLock { Array($0.running.keys) } }

    /// Wakes the dispatcher (e.g. after a task was queued in this process).
    public func poke() { wakeup.signal() }

    /// Runs until graceful shutdown, then drains.
    public func run() async throws {
        logger.info(
            "worker pool started",
            metadata: ["worker": "\(worker)", "concurrent_tasks": "\(options.concurrentTasks)",
                       "queues": "\(options.queues.map { $0.sorted().joined(separator: ",") } ?? "all")"])
        await recoverOnStart()
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.forwardChanges() }
                group.addTask { await self.leaseKeeper() }
                group.addTask {
                    await self.submitBridge.serve(store: self.store, logger: self.logger) { self.wakeup.signal() }
                }
                group.addTask { await self.outcomes.run() }
                await self.dispatch(group: &group)
                // Dispatch returned: shutdown. Drain, then stop the helpers.
                await self.drain()
                self.submitBridge.finish()
                self.outcomes.close()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            self.state.withLock { $0.draining = true }
            self.wakeup.signal()
        }
        logger.info("worker pool stopped", metadata: ["processed": "\(processedCount)"])
    }

    private var isDraining: Bool { state.withLock { $0.draining } }

    // MARK: dispatching

    private func dispatch(group: inout DiscardingTaskGroup) async {
        while !isDraining && !Task.isCancelled {
            let free = options.concurrentTasks - state.withLock { $0.running.count }
            var claimed: [TaskRecord] = []
            if free > 0 {
                do {
                    claimed = try await store.claim(
                        ClaimRequest(
                            worker: worker, node: node, queues: options.queues, jobs: registry.jobNames, limit: free,
                            leaseSeconds: options.leaseSeconds))
                } catch {
                    logger.error("claim failed: \(error)")
                    await wakeup.wait(timeout: 1)
                    continue
                }
                for record in claimed {
                    state.withLock { $0.running[record.id] = Running(record: record) }
                    group.addTask { await self.execute(record) }
                }
            }
            if free > 0 && claimed.count == free { continue }
            // Sleep until a change, a freed slot, the next delayed task, or the idle poll.
            var timeout = options.idlePoll
            if free > 0, let due = try? await store.nextDue(queues: options.queues, jobs: registry.jobNames) {
                // A due time in the past means due tasks are held back (max_concurrency): the
                // store's change signal wakes us when a slot frees, so do not spin on it.
                let wait = due - TaskClock.now()
                if wait > 0 { timeout = min(timeout, wait + 0.0005) }
            }
            await wakeup.wait(timeout: timeout)
        }
    }

    private func forwardChanges() async {
        for await _ in store.changes() {
            wakeup.signal()
        }
    }

    // MARK: running one task

    private func execute(_ record: TaskRecord) async {
        let (outcome, ranOn) = await runTask(record)
        await submitBridge.waitForChildren(of: record.id)
        var end = TaskOutcome(id: record.id, worker: worker, outcome)
        end.plugin = ranOn?.name
        end.pluginVersion = ranOn?.version
        await outcomes.record(end)
        state.withLock { s in
            s.running[record.id] = nil
            s.processed += 1
        }
        wakeup.signal()
    }

    /// Runs one claimed task on the newest generation of its job.
    /// - Returns: how it ended, and the plugin generation it ran on.
    private func runTask(_ record: TaskRecord) async -> (TaskOutcome.Kind, PluginInfo?) {
        guard let job = registry.job(named: record.name) else {
            // The job was unregistered between claim and run: give the task back for a host that has it.
            return (.released, nil)
        }
        return (await runTask(record, job: job), job.plugin)
    }

    private func runTask(_ record: TaskRecord, job: JobDefinition) async -> TaskOutcome.Kind {
        let hooks = CallHooks(
            log: { [logger] level, message in
                let line: Logger.Message = "\(record.name) [\(record.id)]: \(message)"
                switch Int(level) {
                case Int(PQ_LOG_DEBUG): logger.debug(line)
                case Int(PQ_LOG_WARNING): logger.warning(line)
                case Int(PQ_LOG_ERROR): logger.error(line)
                default: logger.info(line)
                }
            },
            submit: { [submitBridge, self] name, args in
                try submitBridge.submit(try self.prepareChild(job: name, argsJSON: args, parent: record.id))
            })
        let result: CallOutcome
        var stop: StopReason?
        switch job.kind {
        case .typed:
            result = .failure("job '\(job.name)' is a typed job; calling typed jobs through libffi is not available in this build yet")
        case .json:
            let call = PluginCall(job: job, taskID: record.id, argsJSON: record.kwargs, attempt: record.retry, hooks: hooks)
            let stopNow = state.withLock { s -> StopReason? in
                s.running[record.id]?.call = call
                return s.running[record.id]?.stopReason
            }
            if stopNow != nil {
                return stopNow == .shutdown ? .released : .revoked("revoked before it started")
            }
            call.start(on: threads)
            let timed = await awaitOutcome(call, timeout: record.timeout)
            stop = state.withLock { $0.running[record.id]?.stopReason }
            switch timed {
            case .some(let outcome):
                result = outcome
            case .none:
                // Timed out: ask the plugin to stop, give it a moment, then record REVOKED.
                call.cancel()
                _ = await awaitOutcome(call, timeout: 2)
                return .revoked("timed out after \(formatSeconds(record.timeout ?? 0)) s")
            }
        }
        if let stop {
            switch (stop, result) {
            case (_, .success(let json)): return .success(result: json)
            case (.shutdown, _): return .released
            case (.revoked, _): return .revoked("revoked while running")
            }
        }
        switch result {
        case .success(let json):
            return .success(result: json)
        case .failure(let message):
            if record.retry <= record.maxRetries {
                return .retry(message, eta: TaskClock.now() + retryDelay(for: record))
            }
            return .failure(message)
        }
    }

    /// Waits for the call's outcome, or nil when `timeout` seconds pass first.
    private func awaitOutcome(_ call: PluginCall, timeout: Double?) async -> CallOutcome? {
        guard let timeout, timeout > 0 else { return await call.outcome() ?? call.completedOutcome }
        return await withTaskGroup(of: CallOutcome?.self) { group in
            group.addTask { await call.outcome() }
            group.addTask {
                try? await Task.sleep(for: .seconds(timeout))
                return nil
            }
            let first = await group.next() ?? nil
            if first == nil, let done = call.completedOutcome {
                group.cancelAll()
                return done
            }
            group.cancelAll()
            return first
        }
    }

    func retryDelay(for record: TaskRecord) -> Double {
        var delay = record.retryDelay
        if record.retryBackoff { delay *= pow(2, Double(max(0, record.retry - 1))) }
        if record.retryJitter { delay += Double.random(in: 0...(delay * 0.25)) }
        return min(delay, 86_400)
    }

    // MARK: leases, recovery, purge

    private func leaseKeeper() async {
        let renewEvery = max(0.05, options.leaseSeconds / 3)
        var lastRecovery = 0.0
        var lastPurge = 0.0
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(min(renewEvery, options.recoveryInterval)))
            if Task.isCancelled { break }
            let ids = runningTaskIDs
            if !ids.isEmpty {
                do {
                    let cancel = try await store.renew(ids: ids, worker: worker, leaseUntil: TaskClock.now() + options.leaseSeconds)
                    for id in cancel { stop(id, reason: .revoked) }
                } catch {
                    logger.warning("renewing leases failed: \(error)")
                }
            }
            let now = TaskClock.now()
            if now - lastRecovery >= options.recoveryInterval {
                lastRecovery = now
                await recoverDeadHosts()
            }
            if now - lastPurge >= 60 {
                lastPurge = now
                if let n = try? await store.purge(finishedBefore: now - options.resultTTL), n > 0 {
                    logger.info("purged \(n) finished tasks older than \(formatSeconds(options.resultTTL)) s")
                }
            }
        }
    }

    private func recoverOnStart() async {
        await recoverDeadHosts()
    }

    /// Tasks of a host on this machine whose process is gone go back to the queue at once; tasks
    /// of any host whose lease expired go back too.
    private func recoverDeadHosts() async {
        do {
            let started = try await store.tasks(status: .started, job: nil, limit: 10_000)
            var dead = Set<String>()
            for task in started {
                guard let owner = task.worker, owner != worker, let colon = owner.lastIndex(of: ":") else { continue }
                guard owner[..<colon] == node, let pid = Int32(owner[owner.index(after: colon)...]) else { continue }
                if kill(pid, 0) != 0 && errno == ESRCH { dead.insert(owner) }
            }
            for owner in dead {
                let moved = try await store.recoverWorker(owner, now: TaskClock.now(), maxDeadRuns: options.maxDeadRuns)
                if !moved.isEmpty { logger.warning("host \(owner) is gone: \(moved.count) of its tasks were recovered") }
            }
            let expired = try await store.recoverExpiredLeases(now: TaskClock.now(), maxDeadRuns: options.maxDeadRuns)
            if !expired.isEmpty { logger.warning("\(expired.count) tasks whose lease expired were recovered") }
        } catch {
            logger.warning("recovering tasks of dead hosts failed: \(error)")
        }
    }

    /// Asks a running task to stop.
    func stop(_ id: String, reason: StopReason) {
        let call = state.withLock { s -> PluginCall? in
            guard s.running[id] != nil else { return nil }
            if s.running[id]!.stopReason == nil { s.running[id]!.stopReason = reason }
            return s.running[id]!.call
        }
        call?.cancel()
    }

    private func drain() async {
        let deadline = TaskClock.now() + options.drainTimeout
        var cancelled = false
        while true {
            let ids = runningTaskIDs
            if ids.isEmpty { return }
            let now = TaskClock.now()
            if now >= deadline && !cancelled {
                logger.warning("\(ids.count) tasks still running after \(formatSeconds(options.drainTimeout)) s: cancelling them and returning them to the queue")
                for id in ids { stop(id, reason: .shutdown) }
                cancelled = true
            }
            if cancelled && now >= deadline + 3 {
                // Plugins that ignore cancel: give their tasks back; their late completion is ignored.
                let stuck = state.withLock { s -> [String] in
                    defer { s.running = [:] }
                    return Array(s.running.keys)
                }
                _ = try? await store.finish(stuck.map { TaskOutcome(id: $0, worker: worker, .released) })
                return
            }
            await wakeup.wait(timeout: 0.05)
        }
    }

    // MARK: child tasks

    /// Checks a child task asked for by a running task and builds it. Called on a plugin thread
    /// (or a plugin's own async task), so it must not wait for the store.
    func prepareChild(job name: String, argsJSON: String, parent: String) throws -> NewTask {
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

/// Carries child tasks from plugin threads to the store without blocking them.
///
/// A plugin's `submit` may run on a thread of Swift's cooperative pool (PQKit jobs are async), so
/// waiting there for the store could starve the very pool the store's continuation needs. The
/// bridge checks the request at once, assigns the id, and queues the task in the background; the
/// parent's own outcome is recorded only after its children are in the store.
final class SubmitBridge: Sendable {
    private struct State {
        var pending: [String: Int] = [:]  // parent id -> children not yet stored
        var waiters: [String: [CheckedContinuation<Void, Never>]] = [:]
        var closed = false
    }

    private let state = Mutex(State())
    private let buffer = Mutex<[NewTask]>([])
    private let wakeup = Wakeup()

    /// Accepts a checked child task; returns its id at once.
    func submit(_ task: NewTask) throws -> String {
        let parent = task.fromTask ?? ""
        let accepted = state.withLock { s -> Bool in
            guard !s.closed else { return false }
            s.pending[parent, default: 0] += 1
            return true
        }
        guard accepted else {
            throw CallHookError(message: "host is shutting down; child task '\(task.name)' not queued")
        }
        buffer.withLock { $0.append(task) }
        wakeup.signal()
        return task.id ?? ""
    }

    /// Waits until every child of `parent` accepted so far is stored (or failed to be).
    func waitForChildren(of parent: String) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.pending[parent] == nil { return true }
                s.waiters[parent, default: []].append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    private func done(parent: String) {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            let left = (s.pending[parent] ?? 1) - 1
            if left > 0 {
                s.pending[parent] = left
                return []
            }
            s.pending[parent] = nil
            return s.waiters.removeValue(forKey: parent) ?? []
        }
        for w in waiters { w.resume() }
    }

    /// Stores accepted children, a burst in one store call, until ``finish()`` was called and
    /// every accepted child is stored. Not ended by task cancellation, so no child is dropped.
    func serve(store: any TaskStore, logger: Logger, onStored: @escaping @Sendable () -> Void) async {
        while true {
            let batch = buffer.withLock { b -> [NewTask] in
                defer { b.removeAll(keepingCapacity: true) }
                return b
            }
            if batch.isEmpty {
                if state.withLock({ $0.closed }) { return }
                await wakeup.wait(timeout: 0.25)
                continue
            }
            do {
                _ = try await store.enqueue(batch)
            } catch {
                logger.error("queueing \(batch.count) child task(s) failed: \(error)")
            }
            for task in batch { done(parent: task.fromTask ?? "") }
            onStored()
        }
    }

    /// Stops accepting children; the ones accepted are still stored.
    func finish() {
        state.withLock { $0.closed = true }
        wakeup.signal()
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
