import CPQPlugin
import Foundation
import Logging
import Synchronization

/// The log and submit hooks of calls on this process's threads.
extension WorkerPool {

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
                try submitBridge.submit(
                    try prepareChild(job: name, argsJSON: args, parent: call.taskID, registry: registry))
            })
    }
}
