import CPQPlugin
import Foundation
import Logging
import Synchronization

/// Process mode: tasks run in worker processes (DESIGN.md section 12).
extension WorkerPool {

    /// The plugin generations workers load, in registration order.
    var workerPlugins: [WorkerSetup.Plugin] {
        registry.plugins.map {
            WorkerSetup.Plugin(image: $0.info.image ?? $0.info.path, path: $0.info.path, generation: $0.info.generation)
        }
    }

    /// The registry changed (hot reload): in process isolation, new workers load the new
    /// generations and the old ones drain.
    public func pluginsChanged() {
        processes?.reload(plugins: workerPlugins)
        poke()
    }

    /// How the executors report to this pool.
    func executorDelegate() -> ExecutorDelegate {
        ExecutorDelegate(
            ended: { [self] execution, end in ended(execution, end) },
            began: { [self] execution in
                execution.began.store(TaskClock.now().bitPattern, ordering: .releasing)
                if execution.record.timeout != nil { timerWakeup.signal() }
            },
            log: { [logger] taskID, level, message in
                Self.log(logger, level, "[\(taskID)]: \(message)")
            },
            submit: { [self] parent, childID, job, kwargs in
                do {
                    var task = try Self.prepareChild(job: job, argsJSON: kwargs, parent: parent, registry: registry)
                    task.id = childID
                    _ = try submitBridge.submit(task)
                } catch {
                    logger.error("child task '\(job)' of task \(parent) was not queued: \(error)")
                }
            },
            workerLost: { [self] json in
                metrics.workerLost()
                lostWorkers.withLock { $0.append(json) }
                lostWakeup.signal()
            })
    }

    /// Records `worker_lost` events for `pq watch`.
    func recordLostWorkers() async {
        while !Task.isCancelled {
            await lostWakeup.wait(timeout: 1)
            let events = lostWorkers.withLock { l -> [String] in
                defer { l.removeAll() }
                return l
            }
            for json in events {
                do { try await store.recordEvent(.workerLost, json: json) } catch {
                    logger.warning("recording a worker_lost event failed: \(error)")
                }
            }
            // `pq hosts` shows the replacement without waiting for the next periodic status.
            if !events.isEmpty {
                try? await Task.sleep(for: .milliseconds(100))
                await publishStatus(state: "running")
            }
        }
    }
}
