import ArgumentParser
import Foundation
import Logging
import PQCore
import ServiceLifecycle
import UnixSignals

extension PQ {
    /// `pq serve`: the host.
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the host: load the plugins and run their tasks until SIGINT/SIGTERM, then drain.")

        @OptionGroup var common: CommonOptions

        @Option(name: .customLong("concurrent-tasks"), help: "Tasks run at once (default 5).")
        var concurrentTasks: Int?

        @Flag(name: .customLong("schedule-periodic"), help: "Queue the runs of periodic jobs.")
        var schedulePeriodic = false

        @Option(help: "Comma-separated queues to take tasks from (default: all).")
        var queues: String?

        @Option(name: .customLong("drain-timeout"), help: "Seconds running tasks get to finish at shutdown (default 10).")
        var drainTimeout: Double = 10

        @Option(name: .customLong("lease"), help: "Seconds a claimed task stays leased unless renewed (default 30).")
        var lease: Double = 30

        @Option(name: .customLong("result-ttl"), help: "Seconds finished tasks are kept (default 86400).")
        var resultTTL: Double?

        @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error (default info).")
        var logLevel: String = "info"

        func validate() throws {
            if let n = concurrentTasks, n < 1 || n > 10_000 {
                throw ValidationError("--concurrent-tasks must be between 1 and 10000")
            }
            if drainTimeout < 0 { throw ValidationError("--drain-timeout must be >= 0") }
            if lease < 0.1 { throw ValidationError("--lease must be at least 0.1 seconds") }
            if Logger.Level(rawValue: logLevel) == nil { throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error") }
        }

        func run() async throws {
            try await reportingErrors {
                let settings = try common.resolve()
                var logger = Logger(label: "pq")
                logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
                let registry = JobRegistry()
                let report = try settings.loadPlugins(into: registry)
                logger.info(
                    "plugins loaded",
                    metadata: [
                        "plugins": "\(report.loaded.count)", "jobs": "\(registry.jobs.count)",
                        "failed": "\(report.failures.count)", "task_paths": "\(settings.taskPaths.joined(separator: ","))",
                    ])
                let store = try await settings.openStore()
                let jobs = registry.jobs.map(JobInfo.init(job:))
                do {
                    try await store.publishJobs(host: HostIdentity.node + ":" + settings.pluginsDir + "|" + settings.taskPaths.joined(separator: ","), jobs: jobs)
                } catch {
                    throw CLIError("cannot publish jobs to the store \(settings.store): \(error)")
                }
                let queueList = (queues.map(TaskPaths.split) ?? settings.file.queues).map(Set.init)
                let pool = WorkerPool(
                    store: store, registry: registry,
                    options: .init(
                        concurrentTasks: concurrentTasks ?? settings.file.concurrentTasks ?? 5, queues: queueList,
                        leaseSeconds: lease, drainTimeout: drainTimeout, resultTTL: resultTTL ?? settings.file.resultTTL ?? 86_400),
                    logger: logger)
                let group = ServiceGroup(
                    configuration: .init(services: [.init(service: pool)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
                try await group.run()
                await store.close()
            }
        }
    }
}

extension JobInfo {
    /// The published description of a loaded job.
    init(job: JobDefinition) {
        self.init(
            name: job.name, plugin: job.plugin.name, pluginVersion: job.plugin.version, signature: job.signature,
            periodic: job.options.isPeriodic, doc: job.doc,
            options: job.optionsJSON)
    }
}
