import Foundation
public import Logging
import NIOCore
public import PQCore
import Synchronization

/// A task store in Redis, shared by any number of hosts on any number of machines.
///
/// Every state change is one Redis function call (``RedisFunctions``), atomic across hosts:
/// claims lease tasks in a sorted set by deadline, any host returns expired leases to the queue,
/// and `max_concurrency` counts unexpired leases, so a dead host cannot hold a slot for ever.
/// Each change is published on `<ns>_task_queued`, `<ns>_task_started`, `<ns>_task_retry` and
/// `<ns>_task_done`; Redis keeps no event history (``followEvents(after:batch:following:_:)`` follows the
/// live messages). A finished task's hash expires after ``Options/resultTTL``. Every key carries
/// the namespace's hash tag (`{ns}:…`), so a namespace lives on one Redis Cluster shard.
///
/// ```swift
/// let store = try await RedisTaskStore.connect(url: redisURL)
/// _ = try await store.enqueue([NewTask(name: "add", kwargs: #"{"a":1}"#)])
/// await store.close()
/// ```
public final class RedisTaskStore: TaskStore {
    /// Settings of a Redis store.
    public struct Options: Sendable {
        /// How often the store checks for changes made elsewhere when no pub/sub message came
        /// (a fallback for a lost subscription), in seconds.
        public var pollInterval: Double
        /// How long ``finish(_:)`` keeps retrying while Redis is unreachable, in seconds, so that
        /// runs finished during an outage are not lost.
        public var finishRetryWindow: Double
        /// The number of connections the store's commands are spread over (pub/sub has its own).
        public var poolSize: Int
        /// How long a finished task is kept, in seconds: its hash's Redis TTL (`--result-ttl`).
        public var resultTTL: Double

        /// Creates options.
        /// - Parameters:
        ///   - pollInterval: 1 s by default.
        ///   - finishRetryWindow: 60 s by default.
        ///   - poolSize: 2 connections by default.
        ///   - resultTTL: a day by default.
        public init(
            pollInterval: Double = 1, finishRetryWindow: Double = 60, poolSize: Int = 2, resultTTL: Double = 86_400
        ) {
            self.pollInterval = pollInterval
            self.finishRetryWindow = finishRetryWindow
            self.poolSize = poolSize
            self.resultTTL = resultTTL
        }
    }

    /// The client the store talks through (its statistics count round trips).
    public let client: RedisClient
    /// The URL the store was opened with.
    public let url: RedisStoreURL
    /// The prefix of every key of the namespace, `{ns}:`.
    public let keyPrefix: String
    private let options: Options
    private let logger: Logger
    private let channelPrefix: String
    private let broadcaster = ChangeBroadcaster()
    private let closed = Atomic<Bool>(false)
    private let watcher = Mutex<Task<Void, Never>?>(nil)
    /// Records of tasks this store claimed and has not finished yet, so that a finish can send
    /// the ended record instead of having the function read and render it (see
    /// `finishEnded` in ``RedisFunctions``). A hint: a missing or stale entry only costs the slow path.
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
        self.keyPrefix = "{" + url.namespace + "}:"
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

    /// Opens a store, checks that Redis answers and that the namespace holds no tasks of the
    /// store's previous layout.
    /// - Parameters:
    ///   - url: the server, credentials, database and namespace.
    ///   - options: settings.
    ///   - logger: where connection trouble is logged.
    /// - Returns: the store.
    /// - Throws: ``TaskStoreError`` with code `cannotOpen` naming host:port when Redis does not
    ///   answer or holds the previous layout.
    public static func connect(
        url: RedisStoreURL, options: Options = Options(), logger: Logger = Logger(label: "pq.redis")
    ) async throws -> RedisTaskStore {
        let store = RedisTaskStore(url: url, options: options, logger: logger)
        let old: RESPValue
        do {
            // A connection of its own, so that a failure is reported once, here, not also logged by the pool.
            let probe = try await RedisConnection.connect(to: store.client.configuration, on: store.client.group)
            defer { probe.close() }
            let ns = url.namespace
            let replies = try await probe.send([
                ["PING"],
                [
                    "EXISTS", .string(ns + ":order"), .string(ns + ":all"), .string(ns + ":events"),
                    .string(ns + ":waitkeys"),
                ],
            ])
            try replies[0].check()
            old = replies[1]
        } catch {
            await store.close()
            throw TaskStoreError(.cannotOpen, "cannot open the store \(url): \(error)")
        }
        if (try? old.int) ?? 0 > 0 {
            await store.close()
            let ns = url.namespace
            throw TaskStoreError(
                .cannotOpen,
                "Redis at \(url.host):\(url.port) holds tasks of pq's previous Redis layout in namespace '\(ns)' (keys '\(ns):*'); finish them with the pq that queued them, or delete them (redis-cli --scan --pattern '\(ns):*' | xargs redis-cli del), or use another namespace"
            )
        }
        return store
    }

    // MARK: - Calls

    /// Calls one of the store's functions; its first arguments are the key and channel prefixes.
    func call(_ function: String, _ arguments: [RESPArgument]) async throws -> RESPValue {
        guard !closed.load(ordering: .relaxed) else { throw TaskStoreError(.closed, "the Redis store was closed") }
        do {
            return try await client.callFunction(
                RedisFunctions.library, function, keys: [.string(keyPrefix + "leases")],
                arguments: [.string(keyPrefix), .string(channelPrefix)] + arguments)
        } catch let error as RedisError {
            throw TaskStoreError(.database, "Redis at \(url.host):\(url.port): \(error.message)")
        }
    }

    func key(_ suffix: String) -> RESPArgument { .string(keyPrefix + suffix) }

    private var ttl: RESPArgument { .string(String(max(1, Int(options.resultTTL.rounded(.up))))) }

    private static func set(_ names: Set<String>?) -> [RESPArgument] {
        guard let names else { return ["-1"] }
        return [.string(String(names.count))] + names.sorted().map { .string($0) }
    }

    private func wrote(claimOnly: Bool = false) { broadcaster.signal(claimOnly: claimOnly) }

    // MARK: - TaskStore

    /// See ``TaskQueueStore/enqueue(_:)``.
    public func enqueue(_ tasks: [NewTask]) async throws -> [TaskRecord] {
        guard !tasks.isEmpty else { return [] }
        for task in tasks { try TaskEngine.validate(task) }
        let now = TaskClock.now()
        let records = tasks.map { task -> TaskRecord in
            var record = TaskEngine.newRecord(task, now: now)
            record.status = .queued
            return record
        }
        // Tasks with ids of their own or whose job may not overlap need the function's checks;
        // the others are queued by plain commands in one MULTI/EXEC (no script to run per task).
        if tasks.allSatisfy({ $0.id == nil }) && records.allSatisfy(\.canOverlap) {
            try await enqueuePlain(records, now: now)
            wrote()
            return records
        }
        var arguments: [RESPArgument] = [.string(String(records.count))]
        arguments.reserveCapacity(1 + records.count * 12)
        for (index, (task, record)) in zip(tasks, records).enumerated() {
            let extra = RedisTaskHash.extraFields(record)
            arguments += [
                .string(record.id), task.id == nil ? "0" : "1", .string(RedisTaskHash.text(record.eta)),
                .string(RedisTaskHash.waitName(record)), .string(RedisTaskHash.overlapName(record)),
                .string(record.fixedJSONMembers), .string(String(record.retry)),
                .string(RedisTaskHash.order(time: now, index: index)), .string(String(extra.count / 2)),
            ]
            arguments += extra
        }
        let reply = try await call(RedisFunctions.enqueue, arguments)
        // The function answers a taken id with that id alone (a string), having written nothing.
        if case .bulkString = reply, let id = try reply.string {
            throw TaskStoreError(.invalidArgument, "task id \(id) is already used", taskID: id)
        }
        wrote()
        let items = try reply.array ?? []
        return try zip(records, items).map { record, item in
            if case .integer = item { return record }
            return try RedisTaskHash.record(item)
        }
    }

    /// Queues tasks with store-made ids whose jobs may overlap: what the enqueue function does,
    /// as plain commands in one MULTI/EXEC (atomic; one round trip, after one that asks whether
    /// anyone listens for `queued` events).
    private func enqueuePlain(_ records: [TaskRecord], now: Double) async throws {
        let channel = channelPrefix + "task_queued"
        let numsub = try await command(["PUBSUB", "NUMSUB", .string(channel)])
        let listening = try (numsub.array?.last?.int ?? 0) > 0
        var commands: [[RESPArgument]] = [["MULTI"], ["INCRBY", key("order"), .string(String(records.count))]]
        commands.reserveCapacity(records.count * (listening ? 2 : 1) + 8)
        var waiting: [String: [RESPArgument]] = [:]
        var names: [String] = []
        for (index, record) in records.enumerated() {
            let order = RedisTaskHash.order(time: now, index: index)
            let wait = RedisTaskHash.waitName(record)
            let eta = RESPArgument.string(RedisTaskHash.text(record.eta))
            commands.append(
                [
                    "HSET", key("t:" + record.id), "j", .string(record.fixedJSONMembers), "s",
                    .string(String(TaskStatus.queued.rawValue)), "e", eta, "o", .string(order), "wk", .string(wait),
                    "r",
                    .string(String(record.retry)),
                ] + RedisTaskHash.extraFields(record))
            if waiting[wait] == nil {
                names.append(wait)
                waiting[wait] = ["ZADD", key("w:" + wait)]
            }
            waiting[wait]!.append(eta)
            waiting[wait]!.append(.string(order + record.id))
            if listening {
                commands.append([
                    "PUBLISH", .string(channel), .string("{\"event\":\"queued\",\"task\":" + record.json() + "}"),
                ])
            }
        }
        for name in names { commands.append(waiting[name]!) }
        commands.append(["SADD", key("waitkeys")] + names.map { .string($0) })
        commands.append(["PUBLISH", .string(channelPrefix + "changed"), ""])
        commands.append(["EXEC"])
        let replies = try await pipeline(commands)
        guard let exec = replies.last else { throw TaskStoreError(.database, "Redis: no reply to EXEC") }
        for reply in replies + ((try? exec.array) ?? nil ?? []) {
            if case .error(let buffer) = reply {
                throw TaskStoreError(.database, "Redis at \(url.host):\(url.port): \(String(buffer: buffer))")
            }
        }
        if case .null = exec {
            throw TaskStoreError(.database, "Redis at \(url.host):\(url.port): the queueing transaction was aborted")
        }
    }

    /// See ``TaskQueueStore/claim(_:)``.
    public func claim(_ request: ClaimRequest) async throws -> [TaskRecord] {
        guard request.limit > 0 else { return [] }
        let arguments: [RESPArgument] =
            [
                .string(RedisTaskHash.text(request.now)),
                .string(RedisTaskHash.text(request.now + request.leaseSeconds)),
                .string(request.worker), .string(request.node), .string(String(request.limit)),
            ] + Self.set(request.queues) + Self.set(request.jobs) + [ttl, .string(TaskEngine.expiredMessage)]
        let reply = try await call(RedisFunctions.claim, arguments)
        // The fields as they were before the claim; the claim itself is applied here, as the
        // function applied it (the same texts of now and of the lease end).
        let records = try (reply.array ?? []).map { item in
            var record = try RedisTaskHash.record(item)
            try TaskEngine.claim(&record, request)
            return record
        }
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

    /// See ``TaskQueueStore/renew(ids:worker:leaseUntil:)``.
    public func renew(ids: [String], worker: String, leaseUntil: Double) async throws -> Set<String> {
        guard !ids.isEmpty else { return [] }
        let reply = try await call(
            RedisFunctions.renew, [.string(worker), .string(RedisTaskHash.text(leaseUntil))] + ids.map { .string($0) })
        return Set(try (reply.array ?? []).compactMap { try $0.string })
    }

    /// See ``TaskQueueStore/finish(_:)``.
    ///
    /// All outcomes go in one function call (the worker pool already gathers the outcomes of a
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

    /// The arguments of `finishEnded` (``RedisFunctions``) for outcomes with their ended records.
    private func finishEndedArguments(_ ended: [(TaskOutcome, TaskRecord)]) -> [RESPArgument] {
        var arguments: [RESPArgument] = [ttl, .string(String(ended.count))]
        arguments.reserveCapacity(2 + ended.count * 16)
        for (outcome, record) in ended {
            var sets: [RESPArgument] = [
                "s", .string(String(record.status.rawValue)),
                "te", .string(RedisTaskHash.text(record.timeEnded ?? outcome.time)),
            ]
            var deletes: [RESPArgument] = []
            if record.status == .success {
                sets += ["x", .string(record.result ?? "null")]
                // Only a run after a retry can find an exception left by the run before.
                if record.retry > 1 { deletes.append("f") }
            } else {
                sets += ["f", .string(record.exception ?? "")]
            }
            if let plugin = outcome.plugin {
                sets += ["p", .string(plugin), "v", .string(outcome.pluginVersion ?? "")]
            }
            arguments += [
                .string(outcome.id), .string(outcome.worker), .string(record.maxConcurrency == nil ? "" : record.name),
                .string(RedisTaskHash.overlapName(record)), .string(record.json()), .string(String(sets.count / 2)),
            ]
            arguments += sets
            arguments.append(.string(String(deletes.count)))
            arguments += deletes
        }
        return arguments
    }

    /// See ``TaskQueueStore/finish(_:thenClaim:)``: the outcomes in one quiet function call (no
    /// records sent back), retried like ``finish(_:)``, then the claim.
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
                _ = try await callWithRetry(RedisFunctions.finishEnded, finishEndedArguments(ended), count: ended.count)
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
        var arguments: [RESPArgument] = [ttl, .string(String(quiet ? -outcomes.count : outcomes.count))]
        arguments.reserveCapacity(2 + outcomes.count * 8)
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
                .string(RedisTaskHash.text(eta)), .string(RedisTaskHash.text(outcome.time)),
                .string(outcome.kind == .released ? "" : outcome.plugin ?? ""),
                .string(outcome.kind == .released ? "" : outcome.pluginVersion ?? ""),
            ]
        }
        let reply = try await callWithRetry(RedisFunctions.finish, arguments, count: outcomes.count)
        if quiet { return [] }
        return try (reply.array ?? []).map { item -> TaskRecord? in
            if case .integer = item { return nil }
            return try RedisTaskHash.record(item)
        }
    }

    /// Calls a finishing function, retrying while Redis is unreachable for up to
    /// ``Options/finishRetryWindow`` seconds (a retry cannot apply twice: an outcome applies only
    /// to a task still leased by its worker).
    private func callWithRetry(_ function: String, _ arguments: [RESPArgument], count: Int) async throws -> RESPValue {
        let deadline = TaskClock.now() + options.finishRetryWindow
        var attempt = 0
        while true {
            do {
                let reply = try await client.callFunction(
                    RedisFunctions.library, function, keys: [.string(keyPrefix + "leases")],
                    arguments: [.string(keyPrefix), .string(channelPrefix)] + arguments)
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

    /// See ``TaskQueueStore/recoverExpiredLeases(now:maxDeadRuns:)``.
    public func recoverExpiredLeases(now: Double, maxDeadRuns: Int) async throws -> [TaskRecord] {
        try await recover(mode: "expired", worker: "", now: now, maxDeadRuns: maxDeadRuns)
    }

    /// See ``TaskQueueStore/recoverWorker(_:now:maxDeadRuns:)``.
    public func recoverWorker(_ worker: String, now: Double, maxDeadRuns: Int) async throws -> [TaskRecord] {
        try await recover(mode: "worker", worker: worker, now: now, maxDeadRuns: maxDeadRuns)
    }

    private func recover(mode: String, worker: String, now: Double, maxDeadRuns: Int) async throws -> [TaskRecord] {
        let reply = try await call(
            RedisFunctions.recover,
            [
                .string(mode), .string(RedisTaskHash.text(now)), .string(String(maxDeadRuns)), .string(worker), ttl,
                .string(TaskEngine.revokedAfterHostDied(worker: "{worker}")),
                .string(TaskEngine.failedAfterHostsDied(runs: "{runs}", worker: "{worker}")),
            ])
        let records = try (reply.array ?? []).map(RedisTaskHash.record)
        if !records.isEmpty { wrote() }
        return records
    }

    /// See ``TaskQueueStore/task(id:)``.
    public func task(id: String) async throws -> TaskRecord? {
        try await tasks(ids: [id])[id]
    }

    /// See ``TaskQueueStore/tasks(ids:)``: pipelines of 1,000 reads, two at a time (one is decoded
    /// while the server answers the other).
    public func tasks(ids: [String]) async throws -> [String: TaskRecord] {
        guard !closed.load(ordering: .relaxed) else { throw TaskStoreError(.closed, "the Redis store was closed") }
        let chunks = stride(from: 0, to: ids.count, by: 1_000).map { Array(ids[$0..<min(ids.count, $0 + 1_000)]) }
        var found: [String: TaskRecord] = [:]
        found.reserveCapacity(ids.count)
        try await withThrowingTaskGroup(of: [(String, TaskRecord)].self) { group in
            var next = 0
            func start() {
                guard next < chunks.count else { return }
                let chunk = chunks[next]
                next += 1
                group.addTask { [self] in
                    var out: [(String, TaskRecord)] = []
                    out.reserveCapacity(chunk.count)
                    for (id, reply) in zip(chunk, try await pipeline(chunk.map { ["HGETALL", key("t:" + $0)] })) {
                        guard let items = try reply.array, !items.isEmpty else { continue }
                        out.append((id, try RedisTaskHash.record(reply)))
                    }
                    return out
                }
            }
            start()
            start()
            while let batch = try await group.next() {
                for (id, record) in batch { found[id] = record }
                start()
            }
        }
        return found
    }

    private func pipeline(_ commands: [[RESPArgument]]) async throws -> [RESPValue] {
        guard !closed.load(ordering: .relaxed) else { throw TaskStoreError(.closed, "the Redis store was closed") }
        do {
            return try await client.pipeline(commands)
        } catch let error as RedisError {
            throw TaskStoreError(.database, "Redis at \(url.host):\(url.port): \(error.message)")
        }
    }

    /// See ``TaskQueueStore/tasks(status:job:limit:)``.
    ///
    /// Redis keeps no list of every task (section 6): running tasks come from the lease set,
    /// others from a `SCAN` of the namespace's task keys, newest first by queue order. A listing
    /// costs Redis work in proportion to the tasks it holds; it is for people, not for hosts.
    public func tasks(status: TaskStatus?, job: String?, queue: String?, limit: Int) async throws -> [TaskRecord] {
        guard limit > 0 else { return [] }
        var ids: [String] = []
        if status == .started {
            ids = try (try await command(["ZRANGE", key("leases"), "0", "-1"]).array ?? []).compactMap { try $0.string }
        } else {
            var cursor = "0"
            let prefix = keyPrefix + "t:"
            repeat {
                let reply = try await command([
                    "SCAN", .string(cursor), "MATCH", .string(Self.globEscaped(prefix) + "*"), "COUNT", "1000",
                ])
                guard let parts = try reply.array, parts.count == 2 else { break }
                cursor = try parts[0].string ?? "0"
                for item in try parts[1].array ?? [] {
                    if let name = try item.string, name.hasPrefix(prefix) {
                        ids.append(String(name.dropFirst(prefix.count)))
                    }
                }
            } while cursor != "0"
        }
        var out: [(order: String, record: TaskRecord)] = []
        var start = 0
        while start < ids.count {
            let chunk = ids[start..<min(ids.count, start + 1_000)]
            start = chunk.endIndex
            let replies = try await pipeline(chunk.map { ["HGETALL", key("t:" + $0)] })
            for reply in replies {
                guard let items = try reply.array, !items.isEmpty else { continue }
                let record = try RedisTaskHash.record(reply)
                guard status == nil || record.status == status, job == nil || record.name == job else { continue }
                if let queue, record.queue != queue { continue }
                var order = ""
                var index = 0
                while index + 1 < items.count {
                    if try items[index].string == "o" { order = try items[index + 1].string ?? "" }
                    index += 2
                }
                out.append((order, record))
            }
        }
        out.sort { $0.order > $1.order }
        return out.prefix(limit).map(\.record)
    }

    /// `text` with the glob characters of `SCAN MATCH` escaped (the hash tag's braces are not).
    private static func globEscaped(_ text: String) -> String {
        var out = ""
        for character in text {
            if "*?[]\\".contains(character) { out.append("\\") }
            out.append(character)
        }
        return out
    }

    /// See ``TaskQueueStore/revoke(id:now:)``.
    public func revoke(id: String, now: Double) async throws -> RevokeOutcome {
        let reply = try await call(
            RedisFunctions.revoke,
            [.string(id), .string(RedisTaskHash.text(now)), ttl, .string(TaskEngine.revokedMessage)])
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
            return .revoked(try RedisTaskHash.record(items[1]))
        default:
            let status = try items.count > 1 ? items[1].int.flatMap(TaskStatus.init(rawValue:)) : nil
            return .alreadyFinished(status ?? .success)
        }
    }

    /// See ``TaskQueueStore/queueSizes(now:)``.
    public func queueSizes(now: Double) async throws -> [QueueSize] {
        let items = try await call(RedisFunctions.queueSizes, [.string(RedisTaskHash.text(now))]).array ?? []
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

    /// See ``TaskQueueStore/nextDue(queues:jobs:)``.
    public func nextDue(queues: Set<String>?, jobs: Set<String>?) async throws -> Double? {
        let reply = try await call(RedisFunctions.nextDue, Self.set(queues) + Self.set(jobs))
        return try reply.string.flatMap(Double.init)
    }

    /// See ``TaskQueueStore/purge(finishedBefore:)``: nothing to do, since a finished task's hash
    /// expires by itself after ``Options/resultTTL``.
    public func purge(finishedBefore: Double) async throws -> Int { 0 }

    private struct PublishedSet: Codable {
        struct Job: Codable {
            var name: String
            var plugin: String
            var pluginVersion: String
            var signature: String?
            var periodic: Bool
            var doc: String?
            var options: String?
            var path: String?
        }
        var time: Double
        var jobs: [Job]
    }

    /// See ``HostDirectory/publishJobs(host:jobs:)``.
    public func publishJobs(host: String, jobs: [JobInfo]) async throws {
        let set = PublishedSet(
            time: TaskClock.now(),
            jobs: jobs.map {
                .init(
                    name: $0.name, plugin: $0.plugin, pluginVersion: $0.pluginVersion, signature: $0.signature,
                    periodic: $0.periodic, doc: $0.doc, options: $0.options, path: $0.path)
            })
        let json = String(decoding: try JSONEncoder().encode(set), as: UTF8.self)
        try await command(["HSET", key("jobs"), .string(host), .string(json)]).check()
    }

    /// See ``HostDirectory/publishedJobs()``.
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
                        periodic: job.periodic, doc: job.doc, options: job.options, path: job.path)
                )
            }
        }
        return byName.values.map(\.1).sorted { $0.name < $1.name }
    }

    func command(_ arguments: [RESPArgument]) async throws -> RESPValue {
        try await pipeline([arguments])[0]
    }

    /// See ``TaskEventLog/events(after:limit:)``: none, since Redis keeps no event history
    /// (DESIGN.md section 6); ``followEvents(after:batch:following:_:)`` follows the live messages.
    public func events(after cursor: Int64, limit: Int) async throws -> [TaskEvent] { [] }

    /// See ``TaskEventLog/lastEventCursor()``: always 0 (no history).
    public func lastEventCursor() async throws -> Int64 { 0 }

    /// Redis keeps no event history (DESIGN.md section 6): events come only from pub/sub.
    public var keepsEventLog: Bool { false }

    /// Follows the events published from now on (the pub/sub channels of DESIGN.md section 7):
    /// Redis keeps no history, so `cursor` is ignored. Each event's `seq` counts the messages
    /// this stream received.
    /// - Parameters:
    ///   - cursor: ignored.
    ///   - batch: ignored.
    ///   - body: called with each event, in this task; `false` stops following.
    /// - Returns: when `body` returned `false`, the task was cancelled, or the subscription ended.
    public func followEvents(
        after cursor: Int64?, batch: Int, following: @escaping @Sendable () -> Void,
        _ body: (TaskEvent) async throws -> Bool
    ) async throws {
        let kinds: [TaskEventKind] = TaskEventKind.allCases
        let channels = kinds.map { channelPrefix + ($0.isTaskEvent ? "task_" : "") + $0.rawValue }
        let byChannel = Dictionary(uniqueKeysWithValues: zip(channels, kinds))
        // Messages arrive on the connection's event loop; they are handed to `body` in this task.
        let (stream, continuation) = AsyncStream.makeStream(
            of: TaskEvent.self, bufferingPolicy: .bufferingNewest(100_000))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { [client] in
                let counter = Atomic<Int64>(0)
                await client.subscribe(to: channels) { channel, payload in
                    // An empty channel: the subscription is made (again); messages from now on arrive.
                    if channel.isEmpty { following() }
                    guard let kind = byChannel[channel],
                        let event = Self.event(
                            kind: kind, message: payload, seq: counter.add(1, ordering: .relaxed).newValue)
                    else { return }
                    continuation.yield(event)
                }
                continuation.finish()
            }
            for await event in stream where try await !body(event) { break }
            group.cancelAll()
        }
    }

    /// A published message as an event: `{"event":KIND,"task":{...}}` (or `"plugin"`, `"worker"`).
    static func event(kind: TaskEventKind, message: String, seq: Int64) -> TaskEvent? {
        let head = "{\"event\":\"\(kind.rawValue)\",\"\(kind.payloadKey)\":"
        guard message.hasPrefix(head), message.hasSuffix("}") else { return nil }
        let json = String(message.dropFirst(head.count).dropLast())
        guard kind.isTaskEvent else {
            return TaskEvent(seq: seq, kind: kind, taskID: "", status: .queued, taskJSON: json)
        }
        // The task JSON starts with its id (TaskRecord.fixedJSONMembers) and holds its status.
        let idHead = "{\"id\":\""
        guard json.hasPrefix(idHead), let close = json.dropFirst(idHead.count).firstIndex(of: "\"") else { return nil }
        let id = String(json[json.index(json.startIndex, offsetBy: idHead.count)..<close])
        guard let statusRange = json.range(of: ",\"status\":"),
            let status = Int(json[statusRange.upperBound...].prefix { $0.isNumber }).flatMap(TaskStatus.init(rawValue:))
        else { return nil }
        return TaskEvent(seq: seq, kind: kind, taskID: id, status: status, taskJSON: json)
    }

    /// See ``HostDirectory/publishHostStatus(worker:json:)``: the host's latest status in the `hosts`
    /// hash (`time|json`), published on `<ns>_host_status`.
    public func publishHostStatus(worker: String, json: String) async throws {
        let replies = try await pipeline([
            ["HSET", key("hosts"), .string(worker), .string(RedisTaskHash.text(TaskClock.now()) + "|" + json)],
            ["PUBLISH", .string(channelPrefix + "host_status"), .string(json)],
        ])
        for reply in replies { try reply.check() }
    }

    /// See ``HostDirectory/hostStatuses(since:)``.
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

    /// See ``TaskEventLog/recordEvent(_:json:)``: published on its channel (`<ns>_plugin_loaded`, …).
    public func recordEvent(_ kind: TaskEventKind, json: String) async throws {
        let replies = try await pipeline([
            [
                "PUBLISH", .string(channelPrefix + kind.rawValue),
                .string("{\"event\":\"\(kind.rawValue)\",\"\(kind.payloadKey)\":\(json)}"),
            ],
            ["PUBLISH", .string(channelPrefix + "changed"), ""],
        ])
        for reply in replies { try reply.check() }
        wrote()
    }

    /// See ``TaskQueueStore/observeChanges(_:)``.
    public func observeChanges(_ handler: @escaping @Sendable () -> Void) -> ChangeObservation {
        let observation = broadcaster.observe(handler)
        startWatcher()
        return observation
    }

    /// See ``TaskQueueStore/changes()``.
    ///
    /// Fed by this process's own writes, by a pub/sub subscription to `<ns>_changed` (other
    /// processes' writes), and by a poll of the queue order every ``Options/pollInterval``.
    public func changes() -> AsyncStream<Void> {
        let stream = broadcaster.stream()
        startWatcher()
        return stream
    }

    private func startWatcher() {
        watcher.withLock { watcher in
            guard watcher == nil, !closed.load(ordering: .relaxed) else { return }
            watcher = Task { [client, channelPrefix, broadcaster, options, keyPrefix] in
                await withDiscardingTaskGroup { group in
                    group.addTask {
                        // Signalled on the connection's event loop, not after a hop through a stream.
                        await client.subscribe(to: [channelPrefix + "changed"]) { _, _ in broadcaster.signal() }
                    }
                    group.addTask {
                        // A lost subscription must not stall a host: the queue order and the
                        // lease set change with every enqueue and every claim or end.
                        var last = ""
                        while !Task.isCancelled {
                            try? await Task.sleep(for: .seconds(options.pollInterval))
                            guard
                                let replies = try? await client.pipeline([
                                    ["GET", .string(keyPrefix + "order")], ["ZCARD", .string(keyPrefix + "leases")],
                                ]),
                                replies.count == 2
                            else { continue }
                            let now = "\(replies[0])|\(replies[1])"
                            if now != last, !last.isEmpty { broadcaster.signal() }
                            last = now
                        }
                    }
                }
            }
        }
    }

    /// See ``TaskQueueStore/close()``.
    public func close() async {
        guard !closed.exchange(true, ordering: .relaxed) else { return }
        let task = watcher.withLock { $0 }
        task?.cancel()
        await task?.value
        broadcaster.finish()
        await client.close()
    }
}

extension TaskQueueStore where Self == RedisTaskStore {
    /// Opens a Redis store and checks that it answers: `let store: some TaskStore = try await .redis(url: url)`.
    /// - Parameter url: the server, credentials, database and namespace.
    /// - Returns: the store.
    public static func redis(url: RedisStoreURL) async throws -> RedisTaskStore {
        try await RedisTaskStore.connect(url: url)
    }
}
