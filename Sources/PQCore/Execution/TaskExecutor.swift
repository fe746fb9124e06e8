import Synchronization

/// What an executor tells the worker pool about the runs it was given.
struct ExecutorDelegate: Sendable {
    /// A run ended (any thread).
    var ended: @Sendable (WorkerPool.Execution, RunEnd) -> Void
    /// A run began: its timeout counts from now.
    var began: @Sendable (WorkerPool.Execution) -> Void
    /// A job's log line (task id, `PQ_LOG_*` level, message), from a worker process.
    var log: @Sendable (String, Int32, String) -> Void
    /// A job in a worker process queued a child task, which the worker checked and named.
    var submit: @Sendable (_ parent: String, _ childID: String, _ job: String, _ kwargs: String) -> Void
    /// A worker process died or was killed: the `worker_lost` event to record.
    var workerLost: @Sendable (_ eventJSON: String) -> Void
}

/// Runs claimed tasks for the worker pool: on this process's threads (``ThreadExecutor``) or in
/// worker processes (``ProcessExecutor``). The pool decides outcomes, retries and timeouts; an
/// executor only runs, stops and reports.
protocol TaskExecutor: AnyObject, Sendable {
    /// Called once before the first run.
    func start(delegate: ExecutorDelegate)
    /// Runs each execution; each end is reported through the delegate, once.
    func run(_ executions: [WorkerPool.Execution])
    /// Asks a run to stop (revoke, timeout, shutdown): the job's `cancel`.
    func cancel(_ execution: WorkerPool.Execution)
    /// The run ignored its stop for the grace period; the pool records its outcome now.
    func abandon(_ execution: WorkerPool.Execution)
    /// Whether ``abandon(_:)`` ends the run for good (a worker is killed) or leaves it running.
    var abandonEndsTheRun: Bool { get }
    /// After the last run: lets go of threads or processes.
    func shutdown() async
}

/// Runs tasks on a fixed set of this process's threads (thread mode, DESIGN.md section 12), with
/// the jobs this process has loaded itself.
final class ThreadExecutor: TaskExecutor {
    let threads: PluginThreadPool
    let jobs: JobRegistry
    let hooks: CallHooks
    private let delegate = Mutex<ExecutorDelegate?>(nil)

    /// - Parameters:
    ///   - size: threads.
    ///   - jobs: jobs loaded in this process.
    ///   - hooks: log and submit handlers of every call.
    init(size: Int, jobs: JobRegistry, hooks: CallHooks) {
        self.threads = PluginThreadPool(size: size)
        self.jobs = jobs
        self.hooks = hooks
    }

    deinit {
        threads.shutdown()
    }

    func start(delegate: ExecutorDelegate) {
        self.delegate.withLock { $0 = delegate }
    }

    func run(_ executions: [WorkerPool.Execution]) {
        guard !executions.isEmpty, let delegate = delegate.withLock({ $0 }) else { return }
        threads.execute(all: executions.map { e in { self.begin(e, delegate) } })
    }

    /// Calls the job of a claimed task on the newest generation of its plugin, on this thread.
    private func begin(_ execution: WorkerPool.Execution, _ delegate: ExecutorDelegate) {
        let record = execution.record
        delegate.began(execution)
        guard let job = jobs.job(named: record.name) else {
            // The job was unregistered between claim and run: give the task back for a host that has it.
            delegate.ended(execution, .unregistered)
            return
        }
        JobInvoker.run(
            job: job, taskID: record.id, kwargs: record.kwargs, attempt: record.retry, hooks: hooks,
            admit: { call in
                execution.state.withLock { s -> Bool in
                    // A C function cannot be interrupted: on timeout, revoke or shutdown its
                    // outcome is recorded at once (see `WorkerPool.stop`), and a late result is ignored.
                    s.call = call
                    s.typed = call == nil
                    return s.stopReason == nil
                }
            },
            done: { end in delegate.ended(execution, end) })
    }

    func cancel(_ execution: WorkerPool.Execution) {
        execution.state.withLock { $0.call }?.cancel()
    }

    /// A thread cannot be taken back: the call runs on, and its late end is ignored.
    func abandon(_ execution: WorkerPool.Execution) {}

    var abandonEndsTheRun: Bool { false }

    func shutdown() async {}
}
