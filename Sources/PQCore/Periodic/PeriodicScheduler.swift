import Foundation
public import Logging
public import ServiceLifecycle
import Synchronization

/// Queues the runs of periodic jobs as ordinary tasks, from the one host started with
/// `--schedule-periodic` that holds the store's scheduler lease.
///
/// The last run of each job lives in the store (``PeriodicScheduleStore``), so a restart neither
/// repeats a run nor queues more than one missed run, and two schedulers on one store never queue
/// the same run twice. Between runs it sleeps exactly until the next one is due (bounded by
/// ``Options/maxSleep``, to renew the lease and notice reloaded jobs) and wakes at shutdown.
///
/// ```swift
/// let scheduler = PeriodicScheduler(store: store, registry: registry, logger: logger)
/// let group = ServiceGroup(services: [pool, scheduler], gracefulShutdownSignals: [.sigterm], logger: logger)
/// try await group.run()
/// ```
public final class PeriodicScheduler: Service, Sendable {
    /// Settings of a scheduler.
    public struct Options: Sendable {
        /// Who holds the lease, e.g. `<node>:<pid>`; unique per scheduler.
        public var holder: String
        /// Seconds the scheduler lease lasts unless renewed; a dead scheduler's lease passes on after this.
        public var leaseSeconds: Double
        /// Longest sleep between looks at the store.
        public var maxSleep: Double

        /// Creates options.
        /// - Parameters:
        ///   - holder: the lease holder's name; `<node>:<pid>` by default.
        ///   - leaseSeconds: lease length, 10 s by default.
        ///   - maxSleep: longest sleep, 3 s by default (and at most a third of the lease).
        public init(holder: String? = nil, leaseSeconds: Double = 10, maxSleep: Double = 3) {
            self.holder = holder ?? "\(HostIdentity.node):\(getpid())"
            self.leaseSeconds = max(0.1, leaseSeconds)
            self.maxSleep = max(0.01, min(maxSleep, self.leaseSeconds / 3))
        }
    }

    /// A periodic job as the scheduler sees it.
    public struct Job: Sendable {
        /// The job name.
        public var name: String
        /// When it runs.
        public var schedule: PeriodicSchedule
        /// The task each run queues (the job's options and fixed kwargs); its id is set per run.
        public var task: NewTask

        /// Creates a job.
        /// - Parameters:
        ///   - name: the job name.
        ///   - schedule: when it runs.
        ///   - task: what each run queues.
        public init(name: String, schedule: PeriodicSchedule, task: NewTask) {
            self.name = name
            self.schedule = schedule
            self.task = task
        }
    }

    private struct State {
        var firstSeen: [String: Double] = [:]
        var leader = false
        var stopping = false
        var queued = 0
    }

    let store: any PeriodicScheduleStore
    let options: Options
    let logger: Logger
    private let jobs: @Sendable () -> [Job]
    private let clock: @Sendable () -> Double
    private let state = Mutex(State())
    private let wakeup = Wakeup()

    /// Creates a scheduler over an explicit list of jobs (for embedding and benchmarks).
    /// - Parameters:
    ///   - store: where the lease and last runs live and tasks are queued.
    ///   - options: settings.
    ///   - logger: where log lines go.
    ///   - clock: the current time in epoch seconds.
    ///   - jobs: the periodic jobs, asked again at each pass.
    public init(
        store: any PeriodicScheduleStore, options: Options = Options(), logger: Logger,
        clock: @escaping @Sendable () -> Double = TaskClock.now, jobs: @escaping @Sendable () -> [Job]
    ) {
        self.store = store
        self.options = options
        self.logger = logger
        self.clock = clock
        self.jobs = jobs
    }

    /// Creates a scheduler for the periodic jobs of a registry, with their options and fixed kwargs.
    /// - Parameters:
    ///   - store: where the lease and last runs live and tasks are queued.
    ///   - registry: the loaded jobs; periodic ones are scheduled.
    ///   - options: settings.
    ///   - logger: where log lines go.
    public convenience init(
        store: any PeriodicScheduleStore, registry: JobRegistry, options: Options = Options(), logger: Logger
    ) {
        let cache = Mutex([String: (key: String, job: Job?)]())
        self.init(store: store, options: options, logger: logger) {
            registry.jobs.compactMap { definition in
                guard definition.options.isPeriodic else { return nil }
                let key =
                    definition.plugin.path + "\u{0}" + definition.plugin.version + "\u{0}"
                    + (definition.optionsJSON ?? "")
                return cache.withLock { cache in
                    if let hit = cache[definition.name], hit.key == key { return hit.job }
                    let job = definition.options.schedule.map {
                        Job(
                            name: definition.name, schedule: $0,
                            task: NewTask(job: definition, kwargs: definition.options.periodicKwargs ?? "{}"))
                    }
                    cache[definition.name] = (key, job)
                    return job
                }
            }
        }
    }

    /// Runs queued by this scheduler since it started.
    public var queuedCount: Int { state.withLock { $0.queued } }

    /// Whether this scheduler held the lease at its last pass.
    public var isLeader: Bool { state.withLock { $0.leader } }

    /// Runs until graceful shutdown, then gives the lease up.
    public func run() async throws {
        logger.info(
            "periodic scheduler started",
            metadata: ["holder": "\(options.holder)", "jobs": "\(jobs().count)"])
        await withGracefulShutdownHandler {
            while !self.state.withLock({ $0.stopping }) && !Task.isCancelled {
                var wake: Double
                do {
                    wake = try await self.pass(now: self.clock())
                } catch {
                    self.logger.error("periodic scheduler pass failed: \(error); trying again in 1 s")
                    wake = self.clock() + 1
                }
                // Slots are exact times; wake just after, never before.
                let sleep = min(self.options.maxSleep, max(0, wake - self.clock()) + 0.0005)
                await self.wakeup.wait(timeout: sleep)
            }
        } onGracefulShutdown: {
            self.state.withLock { $0.stopping = true }
            self.wakeup.signal()
        }
        if isLeader { try? await store.releaseSchedulerLease(holder: options.holder) }
        logger.info("periodic scheduler stopped", metadata: ["queued": "\(queuedCount)"])
    }

    /// One look at the store: takes or renews the lease and, when held, queues every due run.
    /// - Parameter now: the current time.
    /// - Returns: when the next run is due (or the lease needs renewing).
    @discardableResult
    public func pass(now: Double) async throws -> Double {
        let renewAt = now + options.maxSleep
        let held = try await store.acquireSchedulerLease(
            holder: options.holder, until: now + options.leaseSeconds, now: now)
        let wasLeader = state.withLock { s in
            defer { s.leader = held }
            return s.leader
        }
        if held != wasLeader {
            logger.info(held ? "periodic scheduler lease acquired" : "periodic scheduler lease lost to another host")
        }
        guard held else { return renewAt }
        let jobs = self.jobs()
        guard !jobs.isEmpty else { return renewAt }
        let lastRuns = try await store.lastPeriodicRuns()
        var wake = renewAt
        for job in jobs {
            let since =
                lastRuns[job.name]
                ?? state.withLock { s in
                    if let seen = s.firstSeen[job.name] { return seen }
                    s.firstSeen[job.name] = now
                    return now
                }
            var last = since
            if let slot = job.schedule.dueRun(lastRun: since, now: now) {
                last = slot
                var task = job.task
                task.id = Self.taskID(job: job.name, slot: slot)
                do {
                    if let record = try await store.queuePeriodicRun(job: job.name, slot: slot, task: task) {
                        state.withLock { $0.queued += 1 }
                        logger.info(
                            "queued periodic run",
                            metadata: ["job": "\(job.name)", "slot": "\(slot)", "task": "\(record.id)"])
                    }
                } catch {
                    logger.error("queueing the periodic run of '\(job.name)' at \(slot) failed: \(error)")
                }
            }
            if let next = job.schedule.nextRun(after: max(now, last)) { wake = min(wake, next) }
        }
        return wake
    }

    /// The task id of one run: the same for every scheduler, so even a store that lost its last
    /// runs refuses a second task for the run (ids are unique).
    /// - Parameters:
    ///   - job: the job name.
    ///   - slot: the run's time.
    /// - Returns: 32 lowercase hex digits.
    public static func taskID(job: String, slot: Double) -> String {
        func fnv(_ seed: UInt64) -> UInt64 {
            var hash = seed
            for byte in job.utf8 {
                hash ^= UInt64(byte)
                hash &*= 0x100_0000_01b3
            }
            var bits = slot.bitPattern
            for _ in 0..<8 {
                hash ^= bits & 0xff
                hash &*= 0x100_0000_01b3
                bits >>= 8
            }
            return hash
        }
        let high = fnv(0xcbf2_9ce4_8422_2325)
        let low = fnv(0x8422_2325_cbf2_9ce4 ^ high)
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(32)
        for word in [high, low] {
            for i in 0..<16 { out.append(digits[Int((word >> UInt64(60 - 4 * i)) & 0xF)]) }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
