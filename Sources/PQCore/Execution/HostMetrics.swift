import CoreMetrics
import Synchronization

/// What a host counts about its own work, through swift-metrics: the embedding program chooses
/// the backend (`pq serve --http` exports them as Prometheus text, DESIGN.md section 11); with no
/// backend bootstrapped every call is a no-op.
///
/// The handles of each job are made once and kept (a factory lookup per task would cost a lock
/// in the backend), so a pool made before `MetricsSystem.bootstrap` keeps reporting to no-ops.
package final class HostMetrics: Sendable {
    /// The metric names, one place for the code and the tests.
    package enum Name {
        /// Counter of finished runs by job and status (SUCCESS, FAILURE, REVOKED).
        package static let tasks = "pq_tasks_total"
        /// Histogram of run durations by job, in seconds.
        package static let duration = "pq_task_duration_seconds"
        /// Gauge of the tasks this host runs now.
        package static let running = "pq_running_tasks"
        /// Counter of runs that failed and will run again, by job.
        package static let retries = "pq_task_retries_total"
        /// Histogram of the time a task waited from when it could run to its claim, by queue.
        package static let queueLatency = "pq_queue_latency_seconds"
        /// Counter of worker processes that died or were killed.
        package static let workerCrashes = "pq_worker_crashes_total"
        /// Counter of plugin generations loaded.
        package static let pluginLoads = "pq_plugin_loads_total"
        /// Counter of plugin files that failed to load.
        package static let pluginFailures = "pq_plugin_load_failures_total"
        /// Counter of tasks handed back unrun at a graceful shutdown, or whose job was unloaded.
        package static let released = "pq_tasks_released_total"
    }

    private struct JobHandles {
        let success: Counter
        let failure: Counter
        let revoked: Counter
        let retries: Counter
        let duration: Timer
    }

    private let jobs = Mutex<[String: JobHandles]>([:])
    private let queues = Mutex<[String: Timer]>([:])
    private let running = Gauge(label: Name.running)
    private let crashes = Counter(label: Name.workerCrashes)
    private let released = Counter(label: Name.released)

    package init() {}

    private func handles(_ job: String) -> JobHandles {
        Self.cached(jobs, job) {
            JobHandles(
                success: Counter(label: Name.tasks, dimensions: [("job", job), ("status", "SUCCESS")]),
                failure: Counter(label: Name.tasks, dimensions: [("job", job), ("status", "FAILURE")]),
                revoked: Counter(label: Name.tasks, dimensions: [("job", job), ("status", "REVOKED")]),
                retries: Counter(label: Name.retries, dimensions: [("job", job)]),
                duration: Timer(label: Name.duration, dimensions: [("job", job)], preferredDisplayUnit: .seconds))
        }
    }

    /// The handles kept under `key`, made by `make` the first time (outside the lock: a factory
    /// may take locks of its own).
    private static func cached<Value: Sendable>(
        _ table: borrowing Mutex<[String: Value]>, _ key: String, make: () -> Value
    ) -> Value {
        if let value = table.withLock({ $0[key] }) { return value }
        let made = make()
        return table.withLock { dict in
            if let value = dict[key] { return value }
            dict[key] = made
            return made
        }
    }

    /// A run of `job` ended as `kind` after `seconds` (nil: it never began on a thread).
    package func ended(job: String, _ kind: TaskOutcome.Kind, seconds: Double?) {
        if case .released = kind {
            released.increment()
            return
        }
        let h = handles(job)
        switch kind {
        case .success: h.success.increment()
        case .failure: h.failure.increment()
        case .revoked: h.revoked.increment()
        case .retry: h.retries.increment()
        case .released: break
        }
        if let seconds, seconds >= 0 { h.duration.recordNanoseconds(Int64(min(seconds, 1e9) * 1e9)) }
    }

    /// A task of `queue` was claimed `seconds` after it could first run.
    package func waited(queue: String, seconds: Double) {
        let timer = Self.cached(queues, queue) {
            Timer(label: Name.queueLatency, dimensions: [("queue", queue)], preferredDisplayUnit: .seconds)
        }
        timer.recordNanoseconds(Int64(min(max(0, seconds), 1e9) * 1e9))
    }

    /// The host runs `count` tasks now.
    package func running(_ count: Int) { running.record(count) }

    /// A worker process died or was killed.
    package func workerLost() { crashes.increment() }

    /// Plugin generations loaded and plugin files that failed, after a scan.
    package static func plugins(loaded: Int, failed: Int) {
        if loaded > 0 { Counter(label: Name.pluginLoads).increment(by: loaded) }
        if failed > 0 { Counter(label: Name.pluginFailures).increment(by: failed) }
    }
}
