import ArgumentParser
import Foundation
import Logging
import PQCore
import PQHTTP
import ServiceLifecycle
import UnixSignals

extension PQ {
    /// `pq serve`: the host.
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the host: load the plugins and run their tasks until SIGINT/SIGTERM, then drain.")

        @OptionGroup var common: CommonOptions
        @OptionGroup var http: HTTPFlags

        @Option(name: .customLong("concurrent-tasks"), help: "Tasks run at once (default 5).")
        var concurrentTasks: Int?

        @Flag(name: .customLong("schedule-periodic"), help: "Queue the runs of periodic jobs.")
        var schedulePeriodic = false

        @Option(help: "Comma-separated queues to take tasks from (default: all).")
        var queues: String?

        @Option(
            name: .customLong("drain-timeout"), help: "Seconds running tasks get to finish at shutdown (default 10).")
        var drainTimeout: Double = 10

        @Option(name: .customLong("lease"), help: "Seconds a claimed task stays leased unless renewed (default 30).")
        var lease: Double = 30

        @Option(name: .customLong("result-ttl"), help: "Seconds finished tasks are kept (default 86400).")
        var resultTTL: Double?

        @Flag(
            name: .customLong("reload"), inversion: .prefixedNo,
            help: "Watch plugin directories and load new or replaced .so files (hot reload).")
        var reload = true

        @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error (default info).")
        var logLevel: String = "info"

        @Option(
            help:
                "process: tasks run in worker processes (a crash costs one task); thread: on the host's threads (env PQ_ISOLATION; default process)."
        )
        var isolation: String?

        @Option(help: "Worker processes in process isolation (env PQ_WORKERS; default: the number of cores).")
        var workers: Int?

        @Option(
            name: .customLong("kill-grace"),
            help:
                "Seconds a task gets after its cancel (timeout, revoke, shutdown) before its worker is killed (default 2)."
        )
        var killGrace: Double = 2

        @Option(
            name: .customLong("max-tasks-per-worker"),
            help: "Replace a worker after this many tasks (default 0: never).")
        var maxTasksPerWorker: Int = 0

        @Option(
            name: .customLong("max-worker-memory"),
            help: "Replace a worker whose resident memory passes this many MB, read between tasks (default 0: never).")
        var maxWorkerMemory: String = "0"

        @Option(
            name: .customLong("heartbeat-timeout"),
            help: "Seconds a worker may stay silent before it is killed as hung (default 5).")
        var heartbeatTimeout: Double = 5

        func validate() throws {
            if let n = concurrentTasks, n < 1 || n > 10_000 {
                throw ValidationError("--concurrent-tasks must be between 1 and 10000")
            }
            if drainTimeout < 0 { throw ValidationError("--drain-timeout must be >= 0") }
            if lease < 0.1 { throw ValidationError("--lease must be at least 0.1 seconds") }
            if Logger.Level(rawValue: logLevel) == nil {
                throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error")
            }
            if let isolation, Isolation(rawValue: isolation) == nil {
                throw ValidationError("--isolation must be process or thread, got '\(isolation)'")
            }
            if let n = workers, n < 1 || n > 1_000 { throw ValidationError("--workers must be between 1 and 1000") }
            if !(killGrace >= 0) || !killGrace.isFinite {
                throw ValidationError("--kill-grace must be a number of seconds >= 0")
            }
            if maxTasksPerWorker < 0 { throw ValidationError("--max-tasks-per-worker must be >= 0 (0: never)") }
            guard let mb = Double(maxWorkerMemory), mb >= 0, mb.isFinite else {
                throw ValidationError(
                    "--max-worker-memory must be a number of MB >= 0 (0: never), got '\(maxWorkerMemory)'")
            }
            if !(heartbeatTimeout > 0) { throw ValidationError("--heartbeat-timeout must be a number of seconds > 0") }
        }

        typealias Isolation = JobOptions.Isolation

        /// The isolation mode: flag, then env PQ_ISOLATION, then pq.toml, else process.
        func isolationMode(_ settings: Settings) throws -> Isolation {
            let env = ProcessInfo.processInfo.environment
            let chosen = isolation ?? env["PQ_ISOLATION"] ?? settings.file.isolation ?? "process"
            guard let mode = Isolation(rawValue: chosen) else {
                throw CLIError("PQ_ISOLATION must be process or thread, got '\(chosen)'")
            }
            return mode
        }

        /// Worker processes: flag, then env PQ_WORKERS, then pq.toml, else the number of cores.
        func workerCount(_ settings: Settings) throws -> Int {
            if let workers { return workers }
            if let text = ProcessInfo.processInfo.environment["PQ_WORKERS"] {
                guard let n = Int(text), n >= 1, n <= 1_000 else {
                    throw CLIError("PQ_WORKERS must be a whole number from 1 to 1000, got '\(text)'")
                }
                return n
            }
            return settings.file.workers ?? ProcessInfo.processInfo.activeProcessorCount
        }

        func run() async throws {
            try await reportingErrors {
                let settings = try common.resolve()
                var logger = Logger(label: "pq")
                logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
                let httpOptions = try http.resolve(settings)
                // The host's counters go to a Prometheus registry for /metrics (bootstrapped
                // before the pool makes its handles).
                let metricsRegistry = httpOptions == nil ? nil : HostMetricsExport.registry
                let registry = JobRegistry()
                let mode = try isolationMode(settings)
                let workers = try workerCount(settings)
                // In process isolation no plugin code runs here: plugins are loaded by a child
                // process (which reports their jobs) from snapshots that workers load in turn.
                var snapshots: String?
                let loader: any PluginFileLoader
                if mode == .process {
                    let dir: String
                    do { dir = try IsolatedPluginLoader.makeSnapshotDirectory() } catch { throw CLIError("\(error)") }
                    snapshots = dir
                    loader = IsolatedPluginLoader(
                        options: .init(trustAll: settings.trustAllPlugins, snapshotDirectory: dir))
                } else {
                    loader = settings.loader
                }
                defer { if let snapshots { try? FileManager.default.removeItem(atPath: snapshots) } }
                let catalog = PluginCatalog(
                    taskPaths: settings.taskPaths, root: settings.pluginsDir, loader: loader, registry: registry)
                let initial: PluginCatalog.Changes
                do { initial = try catalog.rescan() } catch { throw CLIError("\(error)") }
                // Jobs that ask for `"isolation": "thread"` run on this process's threads: their
                // plugin (and only theirs) is loaded here too.
                let threadJobs = mode == .process ? JobRegistry() : registry
                if mode == .process { mirrorThreadJobs(initial, into: threadJobs, logger: logger) }
                HostMetrics.plugins(loaded: initial.loaded.count, failed: initial.failures.count)
                for failure in initial.failures { logger.error("plugin not loaded: \(failure)") }
                for warning in initial.warnings { logger.warning("\(warning)") }
                logger.info(
                    "plugins loaded",
                    metadata: [
                        "plugins": "\(initial.loaded.count)", "jobs": "\(registry.jobs.count)",
                        "failed": "\(initial.failures.count)",
                        "task_paths": "\(settings.taskPaths.joined(separator: ","))",
                    ])
                let store = try await settings.openStore(resultTTL: resultTTL)
                registry.noteLoadResults(initial)
                await recordPluginEvents(initial, store: store, logger: logger)
                let publisher =
                    HostIdentity.node + ":" + settings.pluginsDir + "|" + settings.taskPaths.joined(separator: ",")
                do {
                    try await store.publishJobs(host: publisher, jobs: registry.jobs.map(JobInfo.init(job:)))
                } catch {
                    throw CLIError("cannot publish jobs to the store \(settings.store): \(error)")
                }
                let queueList = (queues.map(TaskPaths.split) ?? settings.file.queues).map(Set.init)
                var poolOptions = WorkerPool.Options(
                    concurrentTasks: concurrentTasks ?? settings.file.concurrentTasks ?? 5, queues: queueList,
                    leaseSeconds: lease, drainTimeout: drainTimeout,
                    resultTTL: resultTTL ?? settings.file.resultTTL ?? 86_400,
                    cancelGrace: killGrace)
                poolOptions.processes = WorkerPool.ProcessOptions(
                    workers: workers, heartbeatTimeout: heartbeatTimeout, maxTasksPerWorker: maxTasksPerWorker,
                    maxWorkerMemoryMB: Double(maxWorkerMemory) ?? 0, checkTrust: !settings.trustAllPlugins)
                poolOptions.isolation = mode
                let pool = WorkerPool(
                    store: store, registry: registry, options: poolOptions, logger: logger, threadJobs: threadJobs)
                var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: pool)]
                do {
                    var watchOptions = PluginWatcher.Options()
                    watchOptions.automatic = reload && settings.file.reload != false
                    let watcher = PluginWatcher(catalog: catalog, options: watchOptions, logger: logger) {
                        [logger] changes in
                        HostMetrics.plugins(loaded: changes.loaded.count, failed: changes.failures.count)
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
                            logger.error(
                                "plugin not loaded: \(failure); the previous generation, if any, keeps serving")
                        }
                        for path in changes.removed {
                            logger.info("plugin removed: \(path); its jobs are unregistered")
                        }
                        for warning in changes.warnings { logger.warning("\(warning)") }
                        do {
                            try await store.publishJobs(host: publisher, jobs: registry.jobs.map(JobInfo.init(job:)))
                        } catch {
                            logger.error("publishing the reloaded jobs failed: \(error)")
                        }
                        if mode == .process { mirrorThreadJobs(changes, into: threadJobs, logger: logger) }
                        registry.noteLoadResults(changes)
                        await recordPluginEvents(changes, store: store, logger: logger)
                        pool.pluginsChanged()
                    }
                    services.append(.init(service: watcher))
                    services.append(.init(service: ReloadOnHangup(watcher: watcher, logger: logger)))
                }
                if schedulePeriodic || settings.file.schedulePeriodic == true {
                    services.append(.init(service: PeriodicScheduler(store: store, registry: registry, logger: logger)))
                }
                if let httpOptions {
                    services.append(
                        .init(
                            service: HTTPServer(
                                store: store, options: httpOptions, registry: metricsRegistry, logger: logger
                            ) { url in
                                announceHTTP(url, token: httpOptions.token != nil)
                            }))
                }
                let group = ServiceGroup(
                    configuration: .init(
                        services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
                try await group.run()
                await store.close()
            }
        }
    }
}

/// Loads into this process the plugins that have jobs asking for `"isolation": "thread"` (the
/// host runs those on its own threads), keeping `local` in step with a rescan's changes.
func mirrorThreadJobs(_ changes: PluginCatalog.Changes, into local: JobRegistry, logger: Logger) {
    // The isolated loader checked trust on the original; the snapshot is private to this host.
    let loader = PluginLoader(options: .init(trustAll: true))
    for plugin in changes.loaded {
        guard plugin.jobs.contains(where: { $0.options.isolation == .thread }) else {
            local.unregister(path: plugin.info.path)
            continue
        }
        do {
            let loaded = try loader.load(
                path: plugin.info.path, image: plugin.info.image ?? plugin.info.path, generation: plugin.info.generation
            )
            local.register(loaded)
            logger.info(
                "plugin \(plugin.info.name) is loaded in the host too: jobs of it run on the host's threads (\"isolation\": \"thread\")"
            )
        } catch {
            logger.error(
                "plugin \(plugin.info.path) has jobs asking for thread isolation but does not load in the host: \(error)"
            )
        }
    }
    for path in changes.removed { local.unregister(path: path) }
}

/// Publishes `plugin_loaded`, `plugin_failed` and `plugin_removed` events for `pq watch`.
func recordPluginEvents(_ changes: PluginCatalog.Changes, store: any TaskStore, logger: Logger) async {
    let node = JSONValue.string(HostIdentity.node)
    var events: [(TaskEventKind, JSONValue)] = []
    for plugin in changes.loaded {
        events.append(
            (
                .pluginLoaded,
                .object([
                    ("name", .string(plugin.info.name)), ("version", .string(plugin.info.version)),
                    ("path", .string(plugin.info.path)), ("generation", .int(Int64(plugin.info.generation))),
                    ("jobs", .array(plugin.jobs.map { .string($0.name) })), ("node", node),
                ])
            ))
    }
    for failure in changes.failures {
        events.append(
            (
                .pluginFailed,
                .object([
                    ("path", .string(failure.path ?? "")), ("error", .string(failure.message)), ("node", node),
                ])
            ))
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
            options: job.optionsJSON, path: job.plugin.path)
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
