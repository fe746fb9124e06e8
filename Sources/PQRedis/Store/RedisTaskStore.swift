import Foundation
public import Logging
public import PQCore
import Synchronization

/// A task store in Redis, shared by any number of hosts on any number of machines.
///
/// Every state change is one Lua script (see ``RedisScripts``), atomic across hosts: claims lease
/// tasks in a sorted set by deadline, any host returns expired leases to the queue, and
/// `max_concurrency` counts unexpired leases, so a dead host cannot hold a slot for ever. Each
/// change is recorded in a capped stream (``events(after:limit:)``) and published on
/// `<ns>_task_queued`, `<ns>_task_started`, `<ns>_task_retry` and `<ns>_task_done`. Concurrent
/// ``finish(_:)`` calls are sent together as one script call.
///
/// ```swift
/// let store = try await RedisTaskStore.connect(url: redisURL)
/// _ = try await store.enqueue([NewTask(name: "add", kwargs: #"{"a":1}"#)])
/// await store.close()
/// ```
public final class RedisTaskStore: TaskStore {
    /// Settings of a Redis store.
    public struct Options: Sendable {
        /// Events kept in the stream; older ones are trimmed.
        public var maxEvents: Int
        /// How often the store checks for changes made elsewhere when no pub/sub message came
        /// (a fallback for a lost subscription), in seconds.
        public var pollInterval: Double
        /// How long ``finish(_:)`` keeps retrying while Redis is unreachable, in seconds, so that
        /// runs finished during an outage are not lost.
        public var finishRetryWindow: Double
        /// Settings of the connections (host, port, auth and database come from the URL).
        public var poolSize: Int

        /// Creates options.
        /// - Parameters:
        ///   - maxEvents: 10,000 by default.
        ///   - pollInterval: 1 s by default.
        ///   - finishRetryWindow: 60 s by default.
        ///   - poolSize: 2 connections by default.
        public init(maxEvents: Int = 10_000, pollInterval: Double = 1, finishRetryWindow: Double = 60, poolSize: Int = 2)
        {
            self.maxEvents = maxEvents
            self.pollInterval = pollInterval
            self.finishRetryWindow = finishRetryWindow
            self.poolSize = poolSize
        }
    }

    /// The client the store talks through (its statistics count round trips).
    public let client: RedisClient
    /// The URL the store was opened with.
    public let url: RedisStoreURL
    private let options: Options
    private let logger: Logger
    private let keyPrefix: String
    private let channelPrefix: String
    private let broadcaster = ChangeBroadcaster()
    private let closed = Atomic<Bool>(false)
    private let watcher = Mutex<Task<Void, Never>?>(nil)
    /// Records of tasks this store claimed and has not finished yet, so that a finish can send
    /// the ended record instead of having the script read and render it (see
    /// ``RedisScripts/finishEnded``). A hint: a missing or stale entry only costs the slow path.
    private let claimedRecords = Mutex<[String: TaskRecord]>([:])

    /// Creates a store; nothing connects until the first call. ``connect(url:options:logger:)``
    /// checks that Redis answers.
    /// - Parameters:
    ///   - url: the server, credentials, database and namespace.
    ///   - options: settings.
    ///   - logger: where connection trouble is logged.
    public init(url: RedisStoreURL, options: Options = Options(), logger: Logger = Logger(label: "pq.redis")) {
        self.url = url
        self.options = options
        self.logger = logger
        self.keyPrefix = url.namespace + ":"
        self.channelPrefix = url.namespace + "_"
        self.client = RedisClient(
            configuration: .init(
                host: url.host, port: url.port, user: url.user, password: url.password, database: url.database,
                poolSize: options.poolSize,
                tls: url.tls.map {
                    RedisClient.TLSOptions(
                        caFile: $0.caFile, certificateFile: $0.certificateFile, keyFile: $0.keyFile,
                        verifyCertificate: $0.verifyCertificate)
                }),
            logger: logger)
    }

    /// Opens a store and checks that Redis answers.
    /// - Parameters:
    ///   - url: the server, credentials, database and namespace.
    ///   - options: settings.
    ///   - logger: where connection trouble is logged.
    /// - Returns: the store.
    /// - Throws: ``TaskStoreError`` with code `cannotOpen` naming host:port when Redis does not answer.
    public static func connect(
        url: RedisStoreURL, options: Options = Options(), logger: Logger = Logger(label: "pq.redis")
    ) async throws -> RedisTaskStore {
        let store = RedisTaskStore(url: url, options: options, logger: logger)
        do {
            // A connection of its own, so that a failure is reported once, here, not also logged by the pool.
            let probe = try await RedisConnection.connect(to: store.client.configuration, on: store.client.group)
            defer { probe.close() }
            try await probe.send([["PING"]])[0].check()
        } catch {
            await store.close()
            throw TaskStoreError(.cannotOpen, "cannot open the store \(url): \(error)")
        }
        return store
    }

    // MARK: - Calls

    func run(_ script: RedisScript, _ arguments: [RESPArgument]) async throws -> RESPValue {
        guard !closed.load(ordering: .relaxed) else { throw TaskStoreError(.closed, "the Redis store was closed") }
        do {
            return try await client.evalScript(script, arguments: scriptPrefix + arguments)
        } catch let error as RedisError {
            throw TaskStoreError(.database, "Redis at \(url.host):\(url.port): \(error.message)")
        }
    }

    func key(_ suffix: String) -> RESPArgument { .string(keyPrefix + suffix) }

    /// ARGV[1...3] of every script (see ``RedisScripts``).
    private var scriptPrefix: [RESPArgument] {
        [.string(keyPrefix), .string(channelPrefix), .string(String(options.maxEvents))]
    }

    private static func set(_ names: Set<String>?) -> [RESPArgument] {
        guard let names else { return ["-1"] }
        return [.string(String(names.count))] + names.sorted().map { .string($0) }
    }

    private func wrote(claimOnly: Bool = false) { broadcaster.signal(claimOnly: claimOnly) }

    // MARK: - TaskStore

    /// See ``TaskStore/enqueue(_:)``.
    public func enqueue(_ tasks: [NewTask]) async throws -> [TaskRecord] {
        guard !tasks.isEmpty else { return [] }
        for task in tasks { try TaskEngine.validate(task) }
        let now = TaskClock.now()
        let records = tasks.map { task -> TaskRecord in
            var record = TaskEngine.newRecord(task, now: now)
            record.status = .queued
            return record
        }
        var arguments: [RESPArgument] = [.string(String(records.count))]
        for record in records {
            let fields = RedisRecordCoding.fields(record)
            arguments.append(.string(String(fields.count / 2)))
            arguments.append(contentsOf: fields)
        }
        let reply: RESPValue
        do {
            reply = try await run(RedisScripts.enqueue, arguments)
        } catch let error as TaskStoreError where error.message.contains("DUPLICATE ") {
            let id = error.message.components(separatedBy: "DUPLICATE ").last?.prefix(32).description ?? "?"
            throw TaskStoreError(.invalidArgument, "task id \(id) is already used", taskID: id)
        }
        wrote()
        let items = try reply.array ?? []
        return try zip(records, items).map { record, item in
            if case .integer = item { return record }
            return try RedisRecordCoding.record(item)
        }
    }

    /// See ``TaskStore/claim(_:)``.
    public func claim(_ request: ClaimRequest) async throws -> [TaskRecord] {
        guard request.limit > 0 else { return [] }
        let arguments: [RESPArgument] =
            [
                .string(RedisRecordCoding.text(request.now)),
                .string(RedisRecordCoding.text(request.now + request.leaseSeconds)),
                .string(request.worker), .string(request.node), .string(String(request.limit)),
            ] + Self.set(request.queues) + Self.set(request.jobs)
        let reply = try await run(RedisScripts.claim, arguments)
        let records = try (reply.array ?? []).map(RedisRecordCoding.record(row:))
        if !records.isEmpty {
            claimedRecords.withLock { known in
                // Tasks taken from this host by lease recovery are never finished here; do not
                // let them pile up.
                if known.count > 100_000 { known.removeAll() }
                for record in records { known[record.id] = record }
            }
            wrote(claimOnly: true)
        }
        return records
    }

    /// See ``TaskStore/renew(ids:worker:leaseUntil:)``.
    public func renew(ids: [String], worker: String, leaseUntil: Double) async throws -> Set<String> {
        guard !ids.isEmpty else { return [] }
        let reply = try await run(
            RedisScripts.renew,
            [.string(worker), .string(RedisRecordCoding.text(leaseUntil))] + ids.map { .string($0) })
        return Set(try (reply.array ?? []).compactMap { try $0.string })
    }

    /// See ``TaskStore/finish(_:)``.
    ///
    /// All outcomes go in one script call (the worker pool already gathers the outcomes of a
    /// burst into one call). While Redis is unreachable the call is retried for
    /// ``Options/finishRetryWindow`` seconds; a retry cannot apply twice since an outcome applies
    /// only to a task still leased by its worker.
    public func finish(_ outcomes: [TaskOutcome]) async throws -> [TaskRecord] {
        guard !outcomes.isEmpty else { return [] }
        guard !closed.load(ordering: .relaxed) else { throw TaskStoreError(.closed, "the Redis store was closed") }
        forget(outcomes)
        return try await finishWithRetry(outcomes).compactMap { $0 }
    }

    private func forget(_ outcomes: [TaskOutcome]) {
        claimedRecords.withLock { known in
            for outcome in outcomes { known.removeValue(forKey: outcome.id) }
        }
    }

    /// Splits off the outcomes that end a task this store claimed, with the ended record for each.
    private func endedRecords(_ outcomes: [TaskOutcome]) -> (ended: [(TaskOutcome, TaskRecord)], rest: [TaskOutcome]) {
        claimedRecords.withLock { known in
            var ended: [(TaskOutcome, TaskRecord)] = []
            var rest: [TaskOutcome] = []
            for outcome in outcomes {
                let record = known.removeValue(forKey: outcome.id)
                switch outcome.kind {
                case .success, .failure, .revoked:
                    if var record, record.worker == outcome.worker, record.status == .started,
                        (try? TaskEngine.apply(outcome, to: &record)) != nil
                    {
                        ended.append((outcome, record))
                        continue
                    }
                case .retry, .released:
                    break
                }
                rest.append(outcome)
            }
            return (ended, rest)
        }
    }

    /// The arguments of ``RedisScripts/finishEnded`` for outcomes with their ended records.
    private static func finishEndedArguments(_ ended: [(TaskOutcome, TaskRecord)]) -> [RESPArgument] {
        var arguments: [RESPArgument] = [.string(String(ended.count))]
        arguments.reserveCapacity(1 + ended.count * 24)
        for (outcome, record) in ended {
            let status = RESPArgument.string(String(record.status.rawValue))
            let ended = RESPArgument.string(RedisRecordCoding.text(record.timeEnded ?? outcome.time))
            var sets: [RESPArgument] = ["status", status, "time_ended", ended, "cancel_requested", "0"]
            var deletes: [RESPArgument] = ["lease_expires"]
            if record.status == .success {
                sets += ["result", .string(record.result ?? "null")]
                deletes.append("exception")
            } else {
                sets += ["exception", .string(record.exception ?? "")]
            }
            if let plugin = outcome.plugin {
                sets += ["plugin", .string(plugin), "plugin_version", .string(outcome.pluginVersion ?? "")]
            }
            arguments += [
                .string(outcome.id), .string(outcome.worker), status,
                .string(record.name), .string(record.canOverlap ? "" : record.name + "\u{0}" + record.kwargs),
                ended, .string(record.json()),
                .string(String(sets.count / 2)),
            ]
            arguments += sets
            arguments.append(.string(String(deletes.count)))
            arguments += deletes
        }
        return arguments
    }

    /// See ``TaskStore/finish(_:thenClaim:)``: the outcomes in one quiet script call (no records
    /// sent back), retried like ``finish(_:)``, then the claim.
    ///
    /// The claim runs beside the finish, on another connection of the pool: the host's encoding
    /// and decoding of one overlaps the server's work on the other. When the finish fails, the
    /// tasks the claim took are given back before the error is thrown.
    public func finish(_ outcomes: [TaskOutcome], thenClaim request: ClaimRequest?) async throws -> [TaskRecord] {
        guard !outcomes.isEmpty else { return await claimIfAsked(request) }
        guard !closed.load(ordering: .relaxed) else { throw TaskStoreError(.closed, "the Redis store was closed") }
        async let claimed = claimIfAsked(request)
        do {
            let (ended, rest) = endedRecords(outcomes)
            if !ended.isEmpty {
                _ = try await evalWithRetry(RedisScripts.finishEnded, Self.finishEndedArguments(ended), count: ended.count)
            }
            if !rest.isEmpty { _ = try await finishWithRetry(rest, quiet: true) }
        } catch {
            let taken = await claimed
            if !taken.isEmpty, let request {
                _ = try? await finishWithRetry(
                    taken.map { TaskOutcome(id: $0.id, worker: request.worker, .released) }, quiet: true)
            }
            throw error
        }
        return await claimed
    }

    /// The claim of ``finish(_:thenClaim:)``: a failed claim takes nothing (the dispatcher claims again).
    private func claimIfAsked(_ request: ClaimRequest?) async -> [TaskRecord] {
        guard let request, request.limit > 0 else { return [] }
        return (try? await claim(request)) ?? []
    }

    private func finishWithRetry(_ outcomes: [TaskOutcome], quiet: Bool = false) async throws -> [TaskRecord?] {
        var arguments: [RESPArgument] = [.string(String(quiet ? -outcomes.count : outcomes.count))]
        arguments.reserveCapacity(1 + outcomes.count * 8)
        for outcome in outcomes {
            let (kind, text, eta): (String, String, Double) =
                switch outcome.kind {
                case .success(let result): ("success", result, 0)
                case .failure(let message): ("failure", message, 0)
                case .retry(let message, let eta): ("retry", message, eta)
                case .revoked(let message): ("revoked", message, 0)
                case .released: ("released", "", 0)
                }
            arguments += [
                .string(outcome.id), .string(outcome.worker), .string(kind), .string(text),
                .string(RedisRecordCoding.text(eta)), .string(RedisRecordCoding.text(outcome.time)),
                .string(outcome.kind == .released ? "" : outcome.plugin ?? ""),
                .string(outcome.kind == .released ? "" : outcome.pluginVersion ?? ""),
            ]
        }
        let reply = try await evalWithRetry(RedisScripts.finish, arguments, count: outcomes.count)
        if quiet { return [] }
        return try (reply.array ?? []).map { item -> TaskRecord? in
            if case .integer = item { return nil }
            return try RedisRecordCoding.record(item)
        }
    }

    /// Runs a finish script, retrying while Redis is unreachable for up to
    /// ``Options/finishRetryWindow`` seconds (a retry cannot apply twice: an outcome applies only
    /// to a task still leased by its worker).
    private func evalWithRetry(_ script: RedisScript, _ arguments: [RESPArgument], count: Int) async throws -> RESPValue {
        let deadline = TaskClock.now() + options.finishRetryWindow
        var attempt = 0
        while true {
            do {
                let reply = try await client.evalScript(
                    script,
                    arguments: scriptPrefix + arguments)
                wrote()
                return reply
            } catch let error as RedisError where error.isConnectionFailure && !closed.load(ordering: .relaxed) {
                attempt += 1
                guard TaskClock.now() < deadline else {
                    throw TaskStoreError(.database, "Redis at \(url.host):\(url.port): \(error.message)")
                }
                if attempt == 1 {
                    logger.warning("recording \(count) outcomes failed (\(error)); retrying until Redis is back")
                }
                try? await Task.sleep(for: .milliseconds(min(1000, 50 << min(attempt, 5))))
            } catch let error as RedisError {
                throw TaskStoreError(.database, "Redis at \(url.host):\(url.port): \(error.message)")
            }
        }
    }

    /// See ``TaskStore/recoverExpiredLeases(now:maxDeadRuns:)``.
    public func recoverExpiredLeases(now: Double, maxDeadRuns: Int) async throws -> [TaskRecord] {
        try await recover(mode: "expired", worker: "", now: now, maxDeadRuns: maxDeadRuns)
    }

    /// See ``TaskStore/recoverWorker(_:now:maxDeadRuns:)``.
    public func recoverWorker(_ worker: String, now: Double, maxDeadRuns: Int) async throws -> [TaskRecord] {
        try await recover(mode: "worker", worker: worker, now: now, maxDeadRuns: maxDeadRuns)
    }

    private func recover(mode: String, worker: String, now: Double, maxDeadRuns: Int) async throws -> [TaskRecord] {
        let reply = try await run(
            RedisScripts.recover,
            [.string(mode), .string(RedisRecordCoding.text(now)), .string(String(maxDeadRuns)), .string(worker)])
        let records = try (reply.array ?? []).map { try RedisRecordCoding.record($0) }
        if !records.isEmpty { wrote() }
        return records
    }

    /// See ``TaskStore/task(id:)``.
    public func task(id: String) async throws -> TaskRecord? {
        guard !closed.load(ordering: .relaxed) else { throw TaskStoreError(.closed, "the Redis store was closed") }
        let reply: RESPValue
        do {
            reply = try await client.send(["HGETALL", key("task:" + id)])
        } catch let error as RedisError {
            throw TaskStoreError(.database, "Redis at \(url.host):\(url.port): \(error.message)")
        }
        guard let items = try reply.array, !items.isEmpty else { return nil }
        return try RedisRecordCoding.record(reply)
    }

    /// See ``TaskStore/tasks(ids:)``: pipelines of 1,000 reads, one round trip each.
    public func tasks(ids: [String]) async throws -> [String: TaskRecord] {
        guard !closed.load(ordering: .relaxed) else { throw TaskStoreError(.closed, "the Redis store was closed") }
        var found: [String: TaskRecord] = [:]
        found.reserveCapacity(ids.count)
        var start = 0
        while start < ids.count {
            let chunk = ids[start..<min(ids.count, start + 1_000)]
            start = chunk.endIndex
            let replies: [RESPValue]
            do {
                replies = try await client.pipeline(chunk.map { ["HGETALL", key("task:" + $0)] })
            } catch let error as RedisError {
                throw TaskStoreError(.database, "Redis at \(url.host):\(url.port): \(error.message)")
            }
            for (id, reply) in zip(chunk, replies) {
                guard let items = try reply.array, !items.isEmpty else { continue }
                found[id] = try RedisRecordCoding.record(reply)
            }
        }
        return found
    }

    /// See ``TaskStore/tasks(status:job:limit:)``.
    public func tasks(status: TaskStatus?, job: String?, limit: Int) async throws -> [TaskRecord] {
        guard limit > 0 else { return [] }
        let reply = try await run(
            RedisScripts.list,
            [.string(status.map { String($0.rawValue) } ?? ""), .string(job ?? ""), .string(String(limit))])
        return try (reply.array ?? []).map { try RedisRecordCoding.record($0) }
    }

    /// See ``TaskStore/revoke(id:now:)``.
    public func revoke(id: String, now: Double) async throws -> RevokeOutcome {
        let reply = try await run(RedisScripts.revoke, [.string(id), .string(RedisRecordCoding.text(now))])
        let items = try reply.array ?? []
        guard let first = try items.first?.string else {
            throw TaskStoreError(.database, "Redis: unexpected reply to a revoke: \(reply)")
        }
        switch first {
        case "notfound": return .notFound
        case "cancel":
            wrote()
            return .cancelRequested
        case "revoked":
            wrote()
            return .revoked(try RedisRecordCoding.record(items[1]))
        default:
            let status = try items.count > 1 ? items[1].int.flatMap(TaskStatus.init(rawValue:)) : nil
            return .alreadyFinished(status ?? .success)
        }
    }

    /// See ``TaskStore/queueSizes(now:)``.
    public func queueSizes(now: Double) async throws -> [QueueSize] {
        let reply = try await run(RedisScripts.queueSizes, [.string(RedisRecordCoding.text(now))])
        let items = try reply.array ?? []
        var sizes: [QueueSize] = []
        var index = 0
        while index + 4 < items.count {
            let numbers = try items[index + 1...index + 4].map { try $0.int ?? 0 }
            let size = QueueSize(
                queue: try items[index].string ?? "", queued: numbers[0], delayed: numbers[1], retry: numbers[2],
                started: numbers[3])
            if size.queued + size.delayed + size.retry + size.started > 0 { sizes.append(size) }
            index += 5
        }
        return sizes.sorted { $0.queue < $1.queue }
    }

    /// See ``TaskStore/nextDue(queues:jobs:)``.
    public func nextDue(queues: Set<String>?, jobs: Set<String>?) async throws -> Double? {
        let reply = try await run(RedisScripts.nextDue, Self.set(queues) + Self.set(jobs))
        return try reply.string.flatMap(Double.init)
    }

    /// See ``TaskStore/purge(finishedBefore:)``.
    public func purge(finishedBefore: Double) async throws -> Int {
        var total = 0
        while true {
            let count = try await run(RedisScripts.purge, [.string(RedisRecordCoding.text(finishedBefore))]).int ?? 0
            total += count
            if count < 10_000 { break }
        }
        if total > 0 { wrote() }
        return total
    }

    private struct PublishedSet: Codable {
        struct Job: Codable {
            var name: String
            var plugin: String
            var pluginVersion: String
            var signature: String?
            var periodic: Bool
            var doc: String?
            var options: String?
        }
        var time: Double
        var jobs: [Job]
    }

    /// See ``TaskStore/publishJobs(host:jobs:)``.
    public func publishJobs(host: String, jobs: [JobInfo]) async throws {
        let set = PublishedSet(
            time: TaskClock.now(),
            jobs: jobs.map {
                .init(
                    name: $0.name, plugin: $0.plugin, pluginVersion: $0.pluginVersion, signature: $0.signature,
                    periodic: $0.periodic, doc: $0.doc, options: $0.options)
            })
        let json = String(decoding: try JSONEncoder().encode(set), as: UTF8.self)
        try await command(["HSET", key("jobs"), .string(host), .string(json)]).check()
    }

    /// See ``TaskStore/publishedJobs()``.
    public func publishedJobs() async throws -> [JobInfo] {
        let items = try await command(["HGETALL", key("jobs")]).array ?? []
        var byName: [String: (Double, JobInfo)] = [:]
        var index = 1
        while index < items.count {
            defer { index += 2 }
            guard let text = try items[index].string,
                let set = try? JSONDecoder().decode(PublishedSet.self, from: Data(text.utf8))
            else { continue }
            for job in set.jobs where (byName[job.name]?.0 ?? -.infinity) <= set.time {
                byName[job.name] = (
                    set.time,
                    JobInfo(
                        name: job.name, plugin: job.plugin, pluginVersion: job.pluginVersion, signature: job.signature,
                        periodic: job.periodic, doc: job.doc, options: job.options)
                )
            }
        }
        return byName.values.map(\.1).sorted { $0.name < $1.name }
    }

    func command(_ arguments: [RESPArgument]) async throws -> RESPValue {
        guard !closed.load(ordering: .relaxed) else { throw TaskStoreError(.closed, "the Redis store was closed") }
        do {
            return try await client.send(arguments)
        } catch let error as RedisError {
            throw TaskStoreError(.database, "Redis at \(url.host):\(url.port): \(error.message)")
        }
    }

    /// See ``TaskStore/events(after:limit:)``.
    public func events(after cursor: Int64, limit: Int) async throws -> [TaskEvent] {
        guard limit > 0 else { return [] }
        let reply = try await command([
            "XRANGE", key("events"), .string(String(max(cursor, 0) + 1)), "+", "COUNT", .string(String(limit)),
        ])
        var events: [TaskEvent] = []
        for entry in try reply.array ?? [] {
            guard let parts = try entry.array, parts.count == 2, let id = try parts[0].string,
                let seq = Int64(id.prefix { $0 != "-" }), let fields = try parts[1].array
            else { continue }
            var map: [String: String] = [:]
            var index = 0
            while index + 1 < fields.count {
                if let key = try fields[index].string { map[key] = try fields[index + 1].string }
                index += 2
            }
            guard let kind = map["k"].flatMap(TaskEventKind.init(rawValue:)), let taskID = map["i"],
                let status = kind.isTaskEvent
                    ? map["s"].flatMap({ Int($0) }).flatMap(TaskStatus.init(rawValue:)) : .queued,
                let json = map["j"]
            else { continue }
            events.append(TaskEvent(seq: seq, kind: kind, taskID: taskID, status: status, taskJSON: json))
        }
        return events
    }

    /// See ``TaskStore/publishHostStatus(worker:json:)``.
    public func publishHostStatus(worker: String, json: String) async throws {
        _ = try await run(RedisScripts.hostStatus, [.string(worker), .string(json), .string(RedisRecordCoding.text(TaskClock.now()))])
    }

    /// See ``TaskStore/hostStatuses(since:)``.
    public func hostStatuses(since: Double) async throws -> [String] {
        let items = try await command(["HGETALL", key("hosts")]).array ?? []
        var found: [(Double, String)] = []
        var index = 1
        while index < items.count {
            if let text = try items[index].string, let bar = text.firstIndex(of: "|"), let time = Double(text[..<bar]),
                time >= since
            {
                found.append((time, String(text[text.index(after: bar)...])))
            }
            index += 2
        }
        return found.sorted { $0.0 > $1.0 }.map(\.1)
    }

    /// See ``TaskStore/recordEvent(_:json:)``.
    public func recordEvent(_ kind: TaskEventKind, json: String) async throws {
        _ = try await run(RedisScripts.recordEvent, [.string(kind.rawValue), .string(json), .string(kind.payloadKey)])
        wrote()
    }

    /// See ``TaskStore/lastEventCursor()``.
    public func lastEventCursor() async throws -> Int64 {
        Int64(try await command(["GET", key("eventseq")]).int ?? 0)
    }

    /// See ``TaskStore/observeChanges(_:)``.
    public func observeChanges(_ handler: @escaping @Sendable () -> Void) -> ChangeObservation {
        let observation = broadcaster.observe(handler)
        startWatcher()
        return observation
    }

    /// See ``TaskStore/changes()``.
    ///
    /// Fed by this process's own writes, by a pub/sub subscription to `<ns>_changed` (other
    /// processes' writes), and by a poll of the event counter every ``Options/pollInterval``.
    public func changes() -> AsyncStream<Void> {
        let stream = broadcaster.stream()
        startWatcher()
        return stream
    }

    private func startWatcher() {
        watcher.withLock { watcher in
            guard watcher == nil, !closed.load(ordering: .relaxed) else { return }
            watcher = Task { [client, channelPrefix, broadcaster, options] in
                await withDiscardingTaskGroup { group in
                    group.addTask {
                        // Signalled on the connection's event loop, not after a hop through a stream.
                        await client.subscribe(to: [channelPrefix + "changed"]) { _, _ in broadcaster.signal() }
                    }
                    group.addTask {
                        var last: Int64 = -1
                        while !Task.isCancelled {
                            try? await Task.sleep(for: .seconds(options.pollInterval))
                            guard let seq = try? await self.lastEventCursor() else { continue }
                            if seq != last, last >= 0 { broadcaster.signal() }
                            last = seq
                        }
                    }
                }
            }
        }
    }

    /// See ``TaskStore/close()``.
    public func close() async {
        guard !closed.exchange(true, ordering: .relaxed) else { return }
        let task = watcher.withLock { $0 }
        task?.cancel()
        await task?.value
        broadcaster.finish()
        await client.close()
    }
}

extension TaskStore where Self == RedisTaskStore {
    /// Opens a Redis store and checks that it answers: `let store: some TaskStore = try await .redis(url: url)`.
    /// - Parameter url: the server, credentials, database and namespace.
    /// - Returns: the store.
    public static func redis(url: RedisStoreURL) async throws -> RedisTaskStore {
        try await RedisTaskStore.connect(url: url)
    }
}
