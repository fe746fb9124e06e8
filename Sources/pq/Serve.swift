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

        @Flag(name: .customLong("reload"), inversion: .prefixedNo, help: "Watch plugin directories and load new or replaced .so files (hot reload).")
        var reload = true

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
                let catalog = PluginCatalog(
                    taskPaths: settings.taskPaths, root: settings.pluginsDir, loader: settings.loader, registry: registry)
                let initial: PluginCatalog.Changes
                do { initial = try catalog.rescan() } catch { throw CLIError("\(error)") }
                for failure in initial.failures { logger.error("plugin not loaded: \(failure)") }
                for warning in initial.warnings { logger.warning("\(warning)") }
                logger.info(
                    "plugins loaded",
                    metadata: [
                        "plugins": "\(initial.loaded.count)", "jobs": "\(registry.jobs.count)",
                        "failed": "\(initial.failures.count)", "task_paths": "\(settings.taskPaths.joined(separator: ","))",
                    ])
                let store = try await settings.openStore()
                await recordPluginEvents(initial, store: store, logger: logger)
                let publisher = HostIdentity.node + ":" + settings.pluginsDir + "|" + settings.taskPaths.joined(separator: ",")
                do {
                    try await store.publishJobs(host: publisher, jobs: registry.jobs.map(JobInfo.init(job:)))
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
                var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: pool)]
                do {
                    var watchOptions = PluginWatcher.Options()
                    watchOptions.automatic = reload && settings.file.reload != false
                    let watcher = PluginWatcher(catalog: catalog, options: watchOptions, logger: logger) { [logger] changes in
                        for plugin in changes.loaded {
                            logger.info(
                                "plugin loaded",
                                metadata: [
                                    "plugin": "\(plugin.info.name)", "version": "\(plugin.info.version)",
                                    "generation": "\(plugin.info.generation)", "path": "\(plugin.info.path)",
                                    "jobs": "\(plugin.jobs.map(\.name).joined(separator: ","))",
                                ])
                        }
                        for failure in changes.failures {
                            logger.error("plugin not loaded: \(failure); the previous generation, if any, keeps serving")
                        }
                        for path in changes.removed { logger.info("plugin removed: \(path); its jobs are unregistered") }
                        for warning in changes.warnings { logger.warning("\(warning)") }
                        do {
                            try await store.publishJobs(host: publisher, jobs: registry.jobs.map(JobInfo.init(job:)))
                        } catch {
                            logger.error("publishing the reloaded jobs failed: \(error)")
                        }
                        await recordPluginEvents(changes, store: store, logger: logger)
                        pool.poke()
                    }
                    services.append(.init(service: watcher))
                    services.append(.init(service: ReloadOnHangup(watcher: watcher, logger: logger)))
                }
                if schedulePeriodic || settings.file.schedulePeriodic == true {
                    guard let periodicStore = store as? any PeriodicScheduleStore else {
                        throw CLIError("the store \(settings.store) cannot schedule periodic jobs yet; drop --schedule-periodic or use a sqlite: store")
                    }
                    services.append(.init(service: PeriodicScheduler(store: periodicStore, registry: registry, logger: logger)))
                }
                let group = ServiceGroup(
                    configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
                try await group.run()
                await store.close()
            }
        }
    }
}

/// Publishes `plugin_loaded`, `plugin_failed` and `plugin_removed` events for `pq watch`.
func recordPluginEvents(_ changes: PluginCatalog.Changes, store: any TaskStore, logger: Logger) async {
    let node = JSONValue.string(HostIdentity.node)
    var events: [(TaskEventKind, JSONValue)] = []
    for plugin in changes.loaded {
        events.append((.pluginLoaded, .object([
            ("name", .string(plugin.info.name)), ("version", .string(plugin.info.version)),
            ("path", .string(plugin.info.path)), ("generation", .int(Int64(plugin.info.generation))),
            ("jobs", .array(plugin.jobs.map { .string($0.name) })), ("node", node),
        ])))
    }
    for failure in changes.failures {
        events.append((.pluginFailed, .object([
            ("path", .string(failure.path ?? "")), ("error", .string(failure.message)), ("node", node),
        ])))
    }
    for path in changes.removed {
        events.append((.pluginRemoved, .object([("path", .string(path)), ("node", node)])))
    }
    for (kind, json) in events {
        do { try await store.recordEvent(kind, json: json.jsonText) } catch {
            logger.warning("recording a \(kind.rawValue) event failed: \(error)")
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

/// Rescans plugins when the host gets SIGHUP (what `pq reload` sends).
struct ReloadOnHangup: Service {
    let watcher: PluginWatcher
    let logger: Logger

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in signals {
                logger.info("SIGHUP: rescanning plugin directories")
                watcher.requestRescan()
            }
        }
    }
}
