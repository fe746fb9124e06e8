import CPQPlugin
import Foundation
import Logging
import Synchronization

/// Thread mode: tasks run on this process's plugin threads.
extension WorkerPool {

    // MARK: running one task (on a plugin thread)

    /// Calls the job of a claimed task on the newest generation of its plugin (thread mode).
    func begin(_ execution: Execution) {
        let record = execution.record
        execution.began.store(TaskClock.now().bitPattern, ordering: .releasing)
        if record.timeout != nil { timerWakeup.signal() }
        guard let job = threadJobs.job(named: record.name) else {
            // The job was unregistered between claim and run: give the task back for a host that has it.
            decide(execution, .released, ranOn: nil)
            return
        }
        JobInvoker.run(
            job: job, taskID: record.id, kwargs: record.kwargs, attempt: record.retry, hooks: callHooks,
            admit: { call in
                execution.state.withLock { s -> Bool in
                    // A C function cannot be interrupted: on timeout, revoke or shutdown its
                    // outcome is recorded at once (see `stop`), and a late result is ignored.
                    s.call = call
                    s.typed = call == nil
                    return s.stopReason == nil
                }
            },
            done: { [self] end in ended(execution, end) })
    }

    static func log(_ logger: Logger, _ level: Int32, _ line: String) {
        let message: Logger.Message = "\(line)"
        switch Int(level) {
        case Int(PQ_LOG_DEBUG): logger.debug(message)
        case Int(PQ_LOG_WARNING): logger.warning(message)
        case Int(PQ_LOG_ERROR): logger.error(message)
        default: logger.info(message)
        }
    }

    /// The hooks of every call of this pool: built once, they read the task from the call.
    static func makeHooks(registry: JobRegistry, submitBridge: SubmitBridge, logger: Logger) -> CallHooks {
        CallHooks(
            forCall: { call, level, message in
                log(logger, level, "\(call.job.name) [\(call.taskID)]: \(message)")
            },
            submit: { call, name, args in
                try submitBridge.submit(try prepareChild(job: name, argsJSON: args, parent: call.taskID, registry: registry))
            })
    }
}
