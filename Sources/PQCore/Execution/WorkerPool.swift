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
        var typed: TypedInvocation?
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
                group.addTask { await self.submitBridge.serve(self) }
                await self.dispatch(group: &group)
                // Dispatch returned: shutdown. Drain, then stop the helpers.
                await self.drain()
                group.cancelAll()
                self.submitBridge.finish()
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
            if free > 0, let due = try? await store.nextDue(queues: options.queues) {
                timeout = min(timeout, max(0, due - TaskClock.now()) + 0.0005)
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
        let outcome = await runTask(record)
        do {
            _ = try await store.finish([TaskOutcome(id: record.id, worker: worker, outcome)])
        } catch {
            logger.error("recording the outcome of task \(record.id) failed: \(error); its lease will expire and it runs again")
        }
        state.withLock { s in
            s.running[record.id] = nil
            s.processed += 1
        }
        wakeup.signal()
    }

    private func runTask(_ record: TaskRecord) async -> TaskOutcome.Kind {
        guard let job = registry.job(named: record.name) else {
            // The job was unregistered between claim and run: give the task back for a host that has it.
            return .released
        }
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
            submit: { [submitBridge] name, args in
                try submitBridge.submit(SubmitBridge.Request(job: name, argsJSON: args, fromTask: record.id))
            })
        let result: CallOutcome
        var stop: StopReason?
        switch job.kind {
        case .typed:
            guard let typed = job.typedCall else {
                return .failure("typed job '\(job.name)' has no prepared call interface")
            }
            // Kwargs that do not fit the signature fail at once, without retries: the function is
            // not called, and another run would get the same kwargs.
            let arguments: TypedCall.Arguments
            do { arguments = try typed.bind(json: record.kwargs) } catch {
                return .failure("job '\(job.name)': \(error); the function was not called")
            }
            let invocation = TypedInvocation()
            let stopNow = state.withLock { s -> StopReason? in
                s.running[record.id]?.typed = invocation
                return s.running[record.id]?.stopReason
            }
            if let stopNow { return stopNow == .shutdown ? .released : .revoked("revoked before it started") }
            typed.start(arguments, on: threads, reportingTo: invocation)
            // A C function cannot be interrupted: on timeout, revoke or shutdown the host stops
            // waiting and the thread runs the function to its end; its result is dropped.
            let outcome = await invocation.outcome(timeout: record.timeout)
            stop = state.withLock { $0.running[record.id]?.stopReason }
            guard let outcome = outcome ?? (stop == nil ? nil : invocation.completedOutcome) else {
                switch stop {
                case .shutdown: return .released
                case .revoked: return .revoked("revoked while running (the C function was left to finish on its thread)")
                case nil:
                    return .revoked(
                        "timed out after \(formatSeconds(record.timeout ?? 0)) s (the C function cannot be interrupted and was left to finish on its thread)")
                }
            }
            result = outcome
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
        let (call, typed) = state.withLock { s -> (PluginCall?, TypedInvocation?) in
            guard s.running[id] != nil else { return (nil, nil) }
            if s.running[id]!.stopReason == nil { s.running[id]!.stopReason = reason }
            return (s.running[id]!.call, s.running[id]!.typed)
        }
        call?.cancel()
        typed?.abandon()
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

    /// Queues a child task of a running task (called by the submit bridge).
    func enqueueChild(_ request: SubmitBridge.Request) async throws -> String {
        guard let job = registry.job(named: request.job) else {
            throw CallHookError(message: "unknown job '\(request.job)'")
        }
        let kwargs = try TaskArguments.validate(request.argsJSON, limit: TaskArguments.defaultLimit)
        let records = try await store.enqueue([NewTask(job: job, kwargs: kwargs, fromTask: request.fromTask)])
        wakeup.signal()
        return records[0].id
    }
}

/// Carries child-task submissions from plugin threads (which may block) to the async store.
final class SubmitBridge: Sendable {
    struct Request: Sendable {
        var job: String
        var argsJSON: String
        var fromTask: String
    }

    private final class Pending: @unchecked Sendable {
        // @unchecked: `result` is written before `done.signal()` and read after `done.wait()`.
        let request: Request
        let done = DispatchSemaphore(value: 0)
        var result: Result<String, any Error> = .failure(CallHookError(message: "host is shutting down"))
        init(_ request: Request) { self.request = request }
    }

    private let stream: AsyncStream<Pending>
    private let continuation: AsyncStream<Pending>.Continuation

    init() {
        (stream, continuation) = AsyncStream.makeStream(of: Pending.self)
    }

    /// Blocks the calling (plugin) thread until the child task is queued.
    func submit(_ request: Request) throws -> String {
        let pending = Pending(request)
        guard case .enqueued = continuation.yield(pending) else {
            throw CallHookError(message: "host is shutting down; child task '\(request.job)' not queued")
        }
        guard pending.done.wait(timeout: .now() + 30) == .success else {
            throw CallHookError(message: "queueing child task '\(request.job)' timed out")
        }
        return try pending.result.get()
    }

    func serve(_ pool: WorkerPool) async {
        await withDiscardingTaskGroup { group in
            for await pending in stream {
                group.addTask {
                    do {
                        pending.result = .success(try await pool.enqueueChild(pending.request))
                    } catch {
                        pending.result = .failure(error)
                    }
                    pending.done.signal()
                }
            }
        }
    }

    func finish() { continuation.finish() }
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
