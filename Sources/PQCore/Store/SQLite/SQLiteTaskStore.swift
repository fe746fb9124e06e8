import CSQLite
import Foundation
import Synchronization

/// The embedded default task store: one SQLite file, durable, shared by every pq process on a machine.
///
/// The file is in WAL mode and every acknowledged write is synced to disk first, so it survives a
/// power cut (commits run with `synchronous=NORMAL` and the writer thread syncs the log itself
/// after the commit became visible to other processes; see `DatabaseThread`). All writes go
/// through one dedicated writer thread, which runs every batch of writes that piled up during
/// the previous commit in one transaction (group commit); reads use a second connection on a
/// second thread. Commits by other processes are noticed through inotify on the
/// file's folder (see ``changes()``).
///
/// ```swift
/// let store = try SQLiteTaskStore(path: "pq.db")
/// let records = try await store.enqueue([NewTask(name: "add", kwargs: #"{"a":1,"b":2}"#)])
/// await store.close()
/// ```
public final class SQLiteTaskStore: TaskStore {
    /// Settings of a SQLite store.
    public struct Options: Sendable {
        /// How long a write waits for another process's write lock before failing.
        public var busyTimeout: Duration
        /// Events kept in the `events` table; older ones are trimmed.
        public var maxEvents: Int
        /// How often `PRAGMA data_version` is checked when inotify reports nothing (or is unavailable).
        public var fallbackPoll: Duration
        /// Whether to watch for commits by other processes (``changes()`` then also fires for them).
        public var watchOtherProcesses: Bool

        /// Creates options.
        /// - Parameters:
        ///   - busyTimeout: lock wait, 5 s by default.
        ///   - maxEvents: events kept, 10,000 by default.
        ///   - fallbackPoll: safety-net poll interval, 100 ms by default.
        ///   - watchOtherProcesses: watch the file for other processes' commits, on by default.
        public init(
            busyTimeout: Duration = .seconds(5), maxEvents: Int = 10_000, fallbackPoll: Duration = .milliseconds(100),
            watchOtherProcesses: Bool = true
        ) {
            self.busyTimeout = busyTimeout
            self.maxEvents = maxEvents
            self.fallbackPoll = fallbackPoll
            self.watchOtherProcesses = watchOtherProcesses
        }
    }

    /// The schema version this code writes (`PRAGMA user_version`).
    public static let schemaVersion = 2

    /// The absolute path of the database file.
    public let path: String
    let writer: DatabaseThread
    let reader: DatabaseThread
    private let watcher: SQLiteChangeWatcher?
    private let broadcaster: ChangeBroadcaster
    private let closed = Mutex(false)

    /// Opens (creating if missing) the store file at `path`.
    ///
    /// Opening is quick file work done on the caller's thread; it may wait up to the busy timeout
    /// when another process is creating the schema at that moment.
    /// - Parameters:
    ///   - path: the database file; a relative path is taken from the current directory.
    ///   - options: settings.
    /// - Throws: ``TaskStoreError`` with code `cannotOpen` naming the path and what to do when the
    ///   folder is missing or not writable or the file is not a database; `schemaTooNew` for a file
    ///   written by a newer pq.
    public init(path: String, options: Options = Options()) throws {
        let absolute = Self.absolutePath(path)
        try Self.checkLocation(absolute, given: path)
        self.path = absolute
        let busyMs =
            options.busyTimeout.components.seconds * 1000
            + options.busyTimeout.components.attoseconds / 1_000_000_000_000_000

        let writeConnection = try SQLiteConnection(path: absolute, create: true)
        writeConnection.setBusyTimeout(milliseconds: Int(busyMs))
        try writeConnection.exec("PRAGMA journal_mode = WAL")
        // NORMAL: the commit itself does not fsync; the writer thread syncs the log after each
        // commit that a caller waits on, once other processes can already see it.
        try writeConnection.exec("PRAGMA synchronous = NORMAL")
        // 32 MiB of page cache (SQLite's default is 2 MiB): a busy host re-reads index and task
        // pages it just wrote, and each miss is a pread.
        try writeConnection.exec("PRAGMA cache_size = -32768")
        try Self.createSchema(writeConnection)

        let readConnection = try SQLiteConnection(path: absolute, create: false)
        readConnection.setBusyTimeout(milliseconds: Int(busyMs))
        try readConnection.exec("PRAGMA query_only = 1")

        let broadcaster = ChangeBroadcaster()
        self.broadcaster = broadcaster
        let doorbell = SQLiteDoorbell(database: absolute)
        let trimmer = EventTrimmer(maxEvents: options.maxEvents)
        writer = DatabaseThread(
            name: "pq-sqlite-write", connection: writeConnection, groupCommit: true,
            beforeCommit: { db in try trimmer.trimIfNeeded(db) },
            afterCommit: {
                broadcaster.signal()
                doorbell.ring()
            })
        reader = DatabaseThread(name: "pq-sqlite-read", connection: readConnection, groupCommit: false)
        if options.watchOtherProcesses {
            watcher = try? SQLiteChangeWatcher(path: absolute, fallback: options.fallbackPoll) {
                broadcaster.signal()
            }
        } else {
            watcher = nil
        }
        self.trimmer = trimmer
    }

    let trimmer: EventTrimmer

    deinit {
        watcher?.stop()
        writer.stopSoon()
        reader.stopSoon()
        broadcaster.finish()
    }

    // MARK: - Opening

    private static func absolutePath(_ path: String) -> String {
        if path.hasPrefix("/") { return URL(fileURLWithPath: path).standardizedFileURL.path }
        let cwd = FileManager.default.currentDirectoryPath
        return URL(fileURLWithPath: cwd).appendingPathComponent(path).standardizedFileURL.path
    }

    private static func checkLocation(_ path: String, given: String) throws(TaskStoreError) {
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw TaskStoreError(
                .cannotOpen,
                "cannot open the task store sqlite:\(given): the folder \(folder) does not exist; create it (mkdir -p \(folder)) or pass another --store",
                path: path)
        }
        guard access(folder, W_OK | X_OK) == 0 else {
            throw TaskStoreError(
                .cannotOpen,
                "cannot open the task store sqlite:\(given): the folder \(folder) is not writable by this user (SQLite needs to create \(URL(fileURLWithPath: path).lastPathComponent)-wal next to it); fix its permissions or pass another --store",
                path: path)
        }
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw TaskStoreError(
                .cannotOpen, "cannot open the task store sqlite:\(given): \(path) is a folder; name a file inside it",
                path: path)
        }
        if FileManager.default.fileExists(atPath: path), access(path, R_OK | W_OK) != 0 {
            throw TaskStoreError(
                .cannotOpen,
                "cannot open the task store sqlite:\(given): \(path) is not readable and writable by this user; fix its permissions or pass another --store",
                path: path)
        }
    }

    private static func createSchema(_ db: SQLiteConnection) throws(TaskStoreError) {
        let version = try db.intPragma("user_version")
        if version == Int64(schemaVersion) { return }
        if version > Int64(schemaVersion) {
            throw TaskStoreError(
                .schemaTooNew,
                "the task store \(db.path) has schema version \(version), newer than this pq understands (\(schemaVersion)); use a newer pq or another --store",
                path: db.path)
        }
        try db.exec("BEGIN IMMEDIATE")
        do {
            // Another process may have created it while we waited for the lock.
            switch try db.intPragma("user_version") {
            case 0:
                try db.exec(schemaSQL)
                try db.exec("PRAGMA user_version = \(schemaVersion)")
            case 1:
                // Version 2: published jobs name their plugin file.
                try db.exec("ALTER TABLE published_jobs ADD COLUMN path TEXT")
                try db.exec("PRAGMA user_version = \(schemaVersion)")
            default:
                break
            }
            try db.exec("COMMIT")
        } catch {
            try? db.exec("ROLLBACK")
            throw error
        }
    }

    /// The tasks table: one column per field of ``TaskField/all``, then the overlap key.
    private static let tasksTableSQL =
        "CREATE TABLE IF NOT EXISTS tasks (\n    seq INTEGER PRIMARY KEY,\n"
        + TaskField.all.map { field in
            "    \(field.name) \(field.sqlType)\(field.required ? " NOT NULL" : "")\(field.name == "id" ? " UNIQUE" : ""),\n"
        }.joined() + "    overlap_key INTEGER\n);\n"

    private static let waiting = TaskStatus.list(TaskStatus.waitingStates)
    private static let active = TaskStatus.list(TaskStatus.activeStates)
    private static let ready = TaskStatus.list(TaskStatus.readyStates)
    private static let started = TaskStatus.started.rawValue

    private static let schemaSQL =
        tasksTableSQL + """
            CREATE INDEX IF NOT EXISTS tasks_waiting ON tasks(eta, time_queued) WHERE status IN \(waiting);
            CREATE INDEX IF NOT EXISTS tasks_started ON tasks(name, lease_expires) WHERE status = \(started);
            CREATE INDEX IF NOT EXISTS tasks_overlap ON tasks(name, overlap_key)
                WHERE can_overlap = 0 AND status IN \(active);
            CREATE INDEX IF NOT EXISTS tasks_ended ON tasks(time_ended) WHERE time_ended IS NOT NULL;
            CREATE TABLE IF NOT EXISTS events (
                seq INTEGER PRIMARY KEY,
                kind TEXT NOT NULL,
                task_id TEXT NOT NULL,
                status INTEGER NOT NULL,
                task TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS host_status (
                worker TEXT PRIMARY KEY,
                status TEXT NOT NULL,
                time REAL NOT NULL
            );
            CREATE TABLE IF NOT EXISTS published_jobs (
                host TEXT NOT NULL,
                name TEXT NOT NULL,
                plugin TEXT NOT NULL,
                plugin_version TEXT NOT NULL,
                signature TEXT,
                periodic INTEGER NOT NULL,
                doc TEXT,
                options TEXT,
                published_at REAL NOT NULL,
                path TEXT,
                PRIMARY KEY (host, name)
            );
            CREATE TABLE IF NOT EXISTS periodic_runs (
                name TEXT PRIMARY KEY,
                last_run REAL NOT NULL,
                task_id TEXT,
                queued_at REAL NOT NULL
            );
            CREATE TABLE IF NOT EXISTS scheduler_lease (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                holder TEXT NOT NULL,
                lease_until REAL NOT NULL
            );
            """

    // MARK: - Row mapping

    /// The task columns in the order of ``TaskField/all`` (a row's indexes).
    static let columns = TaskField.all.map(\.name).joined(separator: ", ")

    static func readRecord(_ s: SQLiteStatement) -> TaskRecord {
        TaskField.record { field, index in
            let column = Int32(index)
            guard !s.isNull(column) else { return .null }
            switch field.kind {
            case .text: return .init(s.string(column))
            case .integer, .flag: return .init(s.int(column))
            case .real: return .init(s.double(column))
            }
        }
    }

    private static func bind(_ s: SQLiteStatement, _ index: Int32, _ value: TaskField.Value) {
        switch value {
        case .null: s.bind(index, nil as String?)
        case .text(let text): s.bind(index, text)
        case .integer(let number): s.bind(index, number)
        case .real(let number): s.bind(index, number)
        }
    }

    private static let insertSQL =
        "INSERT INTO tasks (\(columns), overlap_key) VALUES ("
        + Array(repeating: "?", count: TaskField.all.count + 1).joined(separator: ",") + ")"

    /// The fields a state change can touch, and the statement that writes them.
    private static let changing = TaskField.all.filter(\.changes)
    private static let updateSQL =
        "UPDATE tasks SET " + changing.map { "\($0.name) = ?" }.joined(separator: ", ") + " WHERE id = ?"

    static func insert(_ r: TaskRecord, _ db: SQLiteConnection) throws(TaskStoreError) {
        let s = try db.statement(insertSQL)
        for (index, field) in TaskField.all.enumerated() { bind(s, Int32(index + 1), field.get(r)) }
        s.bind(Int32(TaskField.all.count + 1), r.canOverlap ? nil : Int(overlapKey(r.kwargs)))
        do {
            try s.run()
        } catch {
            if sqlite3_extended_errcode(db.handle) == SQLITE_CONSTRAINT | (8 << 8) {  // SQLITE_CONSTRAINT_UNIQUE
                throw TaskStoreError(.invalidArgument, "task id \(r.id) is already used", taskID: r.id)
            }
            throw error
        }
    }

    /// Writes the fields a state change can touch.
    static func update(_ r: TaskRecord, _ db: SQLiteConnection) throws(TaskStoreError) {
        let s = try db.statement(updateSQL)
        for (index, field) in changing.enumerated() { bind(s, Int32(index + 1), field.get(r)) }
        s.bind(Int32(changing.count + 1), r.id)
        try s.run()
    }

    /// Applies a state change and records its event.
    static func change(
        _ old: TaskRecord, to new: TaskRecord, _ db: SQLiteConnection, _ trimmer: EventTrimmer
    ) throws(TaskStoreError) {
        try update(new, db)
        if old.status != new.status || new.status == .retry {
            try recordEvent(TaskEventKind(for: new.status), new, db, trimmer)
        }
    }

    static func recordEvent(
        _ kind: TaskEventKind, _ r: TaskRecord, _ db: SQLiteConnection, _ trimmer: EventTrimmer
    ) throws(TaskStoreError) {
        let s = try db.statement("INSERT INTO events (kind, task_id, status, task) VALUES (?, ?, ?, ?)")
        s.bind(1, kind.rawValue)
        s.bind(2, r.id)
        s.bind(3, r.status.rawValue)
        s.bind(4, r.json())
        try s.run()
        trimmer.inserted += 1
    }

    static func fetch(id: String, _ db: SQLiteConnection) throws(TaskStoreError) -> TaskRecord? {
        let s = try db.statement("SELECT \(columns) FROM tasks WHERE id = ?")
        defer { s.reset() }
        s.bind(1, id)
        return try s.step() ? readRecord(s) : nil
    }

    /// FNV-1a of the kwargs text, to find `can_overlap` twins through an index.
    static func overlapKey(_ kwargs: String) -> Int64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in kwargs.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x100_0000_01b3
        }
        return Int64(bitPattern: hash)
    }

    // MARK: - TaskStore

    /// See ``TaskQueueStore/enqueue(_:)``.
    public func enqueue(_ tasks: [NewTask]) async throws -> [TaskRecord] {
        for task in tasks { try TaskEngine.validate(task) }
        guard !tasks.isEmpty else { return [] }
        let trimmer = self.trimmer
        return try await writer.perform { db in
            let now = TaskClock.now()
            var out: [TaskRecord] = []
            out.reserveCapacity(tasks.count)
            for task in tasks {
                let record = TaskEngine.newRecord(task, now: now)
                if !record.canOverlap, let twin = try Self.overlapTwin(record, db) {
                    out.append(twin)
                    continue
                }
                try Self.insert(record, db)
                try Self.recordEvent(.queued, record, db, trimmer)
                out.append(record)
            }
            return out
        }
    }

    static func overlapTwin(_ record: TaskRecord, _ db: SQLiteConnection) throws(TaskStoreError) -> TaskRecord? {
        let s = try db.statement(
            "SELECT \(columns) FROM tasks WHERE name = ? AND overlap_key = ? AND can_overlap = 0 AND status IN \(Self.active)"
        )
        defer { s.reset() }
        s.bind(1, record.name)
        s.bind(2, overlapKey(record.kwargs))
        while try s.step() {
            let twin = readRecord(s)
            if twin.kwargs == record.kwargs { return twin }
        }
        return nil
    }

    /// See ``TaskQueueStore/claim(_:)``.
    public func claim(_ request: ClaimRequest) async throws -> [TaskRecord] {
        guard request.limit > 0 else { return [] }
        let trimmer = self.trimmer
        // A claim lost in a power cut leaves the task QUEUED: it runs again, as at-least-once
        // allows, so claims skip the fsync (see DatabaseThread.perform).
        return try await writer.perform(durability: .none) { db in try Self.claim(request, db, trimmer) }
    }

    /// See ``TaskQueueStore/finish(_:thenClaim:)``: one transaction, synced right after it commits
    /// (the host does not wait for the sync: an outcome lost in a power cut runs its task again).
    public func finish(_ outcomes: [TaskOutcome], thenClaim request: ClaimRequest?) async throws -> [TaskRecord] {
        let trimmer = self.trimmer
        let claimLimit = request?.limit ?? 0
        if outcomes.isEmpty && claimLimit <= 0 { return [] }
        return try await writer.perform(durability: outcomes.isEmpty ? .none : .soon) { db in
            if !outcomes.isEmpty { _ = try Self.finish(outcomes, db, trimmer) }
            guard let request, claimLimit > 0 else { return [] }
            return try Self.claim(request, db, trimmer)
        }
    }

    static func claim(_ request: ClaimRequest, _ db: SQLiteConnection, _ trimmer: EventTrimmer) throws(TaskStoreError)
        -> [TaskRecord]
    {
        var picked: [TaskRecord] = []
        var expired: [TaskRecord] = []
        var running: [String: Int] = [:]
        let scan = try db.statement(
            "SELECT \(Self.columns) FROM tasks WHERE status IN \(Self.waiting) AND eta <= ? ORDER BY eta, time_queued, seq"
        )
        scan.bind(1, request.now)
        var scanned = 0
        do {
            defer { scan.reset() }
            while picked.count < request.limit, scanned < 10_000 + request.limit * 100, try scan.step() {
                scanned += 1
                let record = Self.readRecord(scan)
                if let queues = request.queues, !queues.contains(record.queue) { continue }
                if TaskEngine.isExpired(record, now: request.now) {
                    expired.append(record)
                    continue
                }
                if let jobs = request.jobs, !jobs.contains(record.name) { continue }
                if let limit = record.maxConcurrency {
                    var count = running[record.name] ?? -1
                    if count < 0 { count = try Self.startedCount(record.name, db) }
                    guard count < limit else {
                        running[record.name] = count
                        continue
                    }
                    running[record.name] = count + 1
                }
                picked.append(record)
            }
        }
        for old in expired {
            var new = old
            try TaskEngine.expire(&new, now: request.now)
            try Self.change(old, to: new, db, trimmer)
        }
        var claimed: [TaskRecord] = []
        claimed.reserveCapacity(picked.count)
        for old in picked {
            var new = old
            try TaskEngine.claim(&new, request)
            try Self.change(old, to: new, db, trimmer)
            claimed.append(new)
        }
        return claimed
    }

    private static func startedCount(_ name: String, _ db: SQLiteConnection) throws(TaskStoreError) -> Int {
        let s = try db.statement("SELECT count(*) FROM tasks WHERE status = \(Self.started) AND name = ?")
        defer { s.reset() }
        s.bind(1, name)
        return try s.step() ? (s.int(0) ?? 0) : 0
    }

    /// See ``TaskQueueStore/renew(ids:worker:leaseUntil:)``.
    public func renew(ids: [String], worker: String, leaseUntil: Double) async throws -> Set<String> {
        guard !ids.isEmpty else { return [] }
        return try await writer.perform(durability: .none) { db in
            var cancel: Set<String> = []
            let check = try db.statement("SELECT status, worker, cancel_requested FROM tasks WHERE id = ?")
            let extend = try db.statement("UPDATE tasks SET lease_expires = ? WHERE id = ?")
            for id in ids {
                check.reset()
                check.bind(1, id)
                guard try check.step(), check.int(0) == TaskStatus.started.rawValue, check.string(1) == worker else {
                    cancel.insert(id)
                    continue
                }
                if check.bool(2) { cancel.insert(id) }
                check.reset()
                extend.reset()
                extend.bind(1, leaseUntil)
                extend.bind(2, id)
                try extend.run()
            }
            check.reset()
            return cancel
        }
    }

    /// See ``TaskQueueStore/finish(_:)``.
    public func finish(_ outcomes: [TaskOutcome]) async throws -> [TaskRecord] {
        guard !outcomes.isEmpty else { return [] }
        let trimmer = self.trimmer
        return try await writer.perform(durability: .soon) { db in try Self.finish(outcomes, db, trimmer) }
    }

    static func finish(_ outcomes: [TaskOutcome], _ db: SQLiteConnection, _ trimmer: EventTrimmer)
        throws(TaskStoreError) -> [TaskRecord]
    {
        var out: [TaskRecord] = []
        out.reserveCapacity(outcomes.count)
        for outcome in outcomes {
            guard let old = try Self.fetch(id: outcome.id, db), TaskEngine.owns(old, worker: outcome.worker)
            else { continue }
            var new = old
            try TaskEngine.apply(outcome, to: &new)
            try Self.change(old, to: new, db, trimmer)
            out.append(new)
        }
        return out
    }

    /// See ``TaskQueueStore/recoverExpiredLeases(now:maxDeadRuns:)``.
    public func recoverExpiredLeases(now: Double, maxDeadRuns: Int) async throws -> [TaskRecord] {
        let filter = "status = \(Self.started) AND lease_expires < ?"
        return try await recover(filter: filter, now: now, maxDeadRuns: maxDeadRuns) { $0.bind(1, now) }
    }

    /// See ``TaskQueueStore/recoverWorker(_:now:maxDeadRuns:)``.
    public func recoverWorker(_ worker: String, now: Double, maxDeadRuns: Int) async throws -> [TaskRecord] {
        try await recover(filter: "status = \(Self.started) AND worker = ?", now: now, maxDeadRuns: maxDeadRuns) {
            $0.bind(1, worker)
        }
    }

    private func recover(
        filter: String, now: Double, maxDeadRuns: Int, bind: @escaping @Sendable (SQLiteStatement) -> Void
    ) async throws -> [TaskRecord] {
        // Check on the read side first: this runs every few seconds and usually finds nothing.
        let any = try await reader.perform { db in
            let s = try db.statement("SELECT 1 FROM tasks WHERE \(filter) LIMIT 1")
            defer { s.reset() }
            bind(s)
            return try s.step()
        }
        guard any else { return [] }
        let trimmer = self.trimmer
        return try await writer.perform { db in
            let s = try db.statement("SELECT \(Self.columns) FROM tasks WHERE \(filter) ORDER BY eta, seq")
            var victims: [TaskRecord] = []
            do {
                defer { s.reset() }
                bind(s)
                while try s.step() { victims.append(Self.readRecord(s)) }
            }
            var out: [TaskRecord] = []
            for old in victims {
                var new = old
                try TaskEngine.recover(&new, now: now, maxDeadRuns: maxDeadRuns)
                try Self.change(old, to: new, db, trimmer)
                out.append(new)
            }
            return out
        }
    }

    /// See ``TaskQueueStore/task(id:)``.
    public func task(id: String) async throws -> TaskRecord? {
        try await reader.perform { db in try Self.fetch(id: id, db) }
    }

    /// See ``TaskQueueStore/tasks(ids:)``: one read transaction, one prepared statement for all.
    public func tasks(ids: [String]) async throws -> [String: TaskRecord] {
        try await reader.perform { db in
            var found: [String: TaskRecord] = [:]
            found.reserveCapacity(ids.count)
            for id in ids { if let task = try Self.fetch(id: id, db) { found[id] = task } }
            return found
        }
    }

    /// See ``TaskQueueStore/tasks(status:job:queue:limit:)``.
    public func tasks(status: TaskStatus?, job: String?, queue: String?, limit: Int) async throws -> [TaskRecord] {
        try await reader.perform { db in
            let s = try db.statement(
                """
                SELECT \(Self.columns) FROM tasks WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR name = ?2) \
                AND (?4 IS NULL OR queue = ?4) ORDER BY seq DESC LIMIT ?3
                """)
            defer { s.reset() }
            s.bind(1, status?.rawValue)
            s.bind(2, job)
            s.bind(3, limit)
            s.bind(4, queue)
            var out: [TaskRecord] = []
            while try s.step() { out.append(Self.readRecord(s)) }
            return out
        }
    }

    /// See ``TaskQueueStore/revoke(id:now:)``.
    public func revoke(id: String, now: Double) async throws -> RevokeOutcome {
        let trimmer = self.trimmer
        return try await writer.perform { db in
            guard let old = try Self.fetch(id: id, db) else { return .notFound }
            switch old.status {
            case .queued, .retry:
                var new = old
                try TaskEngine.revoke(&new, now: now)
                try Self.change(old, to: new, db, trimmer)
                return .revoked(new)
            case .started:
                var new = old
                new.cancelRequested = true
                try Self.update(new, db)
                return .cancelRequested
            case .revoked, .failure, .success:
                return .alreadyFinished(old.status)
            }
        }
    }

    /// See ``TaskQueueStore/queueSizes(now:)``.
    public func queueSizes(now: Double) async throws -> [QueueSize] {
        try await reader.perform { db in
            // Two parts so that each walks its partial index (waiting, started), not every task
            // ever kept: one query over status IN (4, 5, 6) scans the whole table.
            let s = try db.statement(
                """
                SELECT queue, status, eta > ?1, count(*) FROM tasks WHERE status IN \(Self.waiting) \
                GROUP BY queue, status, eta > ?1 \
                UNION ALL SELECT queue, \(Self.started), 0, count(*) FROM tasks WHERE status = \(Self.started) GROUP BY queue
                """)
            defer { s.reset() }
            s.bind(1, now)
            var sizes: [String: QueueSize] = [:]
            while try s.step() {
                let queue = s.string(0) ?? ""
                let count = s.int(3) ?? 0
                var size = sizes[queue] ?? QueueSize(queue: queue)
                switch TaskStatus(rawValue: s.int(1) ?? 0) {
                case .queued: if s.bool(2) { size.delayed += count } else { size.queued += count }
                case .retry: size.retry += count
                case .started: size.started += count
                default: break
                }
                sizes[queue] = size
            }
            return sizes.values.sorted { $0.queue < $1.queue }
        }
    }

    /// See ``TaskQueueStore/nextDue(queues:jobs:)``.
    public func nextDue(queues: Set<String>?, jobs: Set<String>?) async throws -> Double? {
        try await reader.perform { db in
            let s = try db.statement(
                "SELECT eta, queue, name FROM tasks WHERE status IN \(Self.waiting) ORDER BY eta, time_queued, seq")
            defer { s.reset() }
            while try s.step() {
                if let queues, !queues.contains(s.string(1) ?? "") { continue }
                if let jobs, !jobs.contains(s.string(2) ?? "") { continue }
                return s.double(0)
            }
            return nil
        }
    }

    /// See ``TaskQueueStore/purge(finishedBefore:)``.
    public func purge(finishedBefore: Double) async throws -> Int {
        try await writer.perform { db in
            let s = try db.statement("DELETE FROM tasks WHERE time_ended < ? AND status IN \(Self.ready)")
            s.bind(1, finishedBefore)
            try s.run()
            return db.changes
        }
    }

    /// See ``HostDirectory/publishJobs(host:jobs:)``.
    public func publishJobs(host: String, jobs: [JobInfo]) async throws {
        try await writer.perform { db in
            let now = TaskClock.now()
            let clear = try db.statement("DELETE FROM published_jobs WHERE host = ?")
            clear.bind(1, host)
            try clear.run()
            let add = try db.statement(
                """
                INSERT OR REPLACE INTO published_jobs \
                (host, name, plugin, plugin_version, signature, periodic, doc, published_at, options, path) VALUES (?,?,?,?,?,?,?,?,?,?)
                """)
            for job in jobs {
                add.reset()
                add.bind(1, host)
                add.bind(2, job.name)
                add.bind(3, job.plugin)
                add.bind(4, job.pluginVersion)
                add.bind(5, job.signature)
                add.bind(6, job.periodic)
                add.bind(7, job.doc)
                add.bind(8, now)
                add.bind(9, job.options)
                add.bind(10, job.path)
                try add.run()
            }
        }
    }

    /// See ``HostDirectory/publishedJobs()``.
    public func publishedJobs() async throws -> [JobInfo] {
        try await reader.perform { db in
            let s = try db.statement(
                """
                SELECT name, plugin, plugin_version, signature, periodic, doc, options, path FROM published_jobs \
                ORDER BY name, published_at DESC, rowid DESC
                """)
            defer { s.reset() }
            var out: [JobInfo] = []
            while try s.step() {
                let name = s.string(0) ?? ""
                if out.last?.name == name { continue }
                out.append(
                    JobInfo(
                        name: name, plugin: s.string(1) ?? "", pluginVersion: s.string(2) ?? "",
                        signature: s.string(3), periodic: s.bool(4), doc: s.string(5), options: s.string(6),
                        path: s.string(7)))
            }
            return out
        }
    }

    /// See ``TaskEventLog/events(after:limit:)``.
    public func events(after cursor: Int64, limit: Int) async throws -> [TaskEvent] {
        try await reader.perform { db in
            let s = try db.statement(
                "SELECT seq, kind, task_id, status, task FROM events WHERE seq > ? ORDER BY seq LIMIT ?")
            defer { s.reset() }
            s.bind(1, cursor)
            s.bind(2, limit)
            var out: [TaskEvent] = []
            while try s.step() {
                out.append(
                    TaskEvent(
                        seq: s.int64(0), kind: TaskEventKind(rawValue: s.string(1) ?? "") ?? .done,
                        taskID: s.string(2) ?? "", status: TaskStatus(rawValue: s.int(3) ?? 1) ?? .success,
                        taskJSON: s.string(4) ?? "{}"))
            }
            return out
        }
    }

    /// See ``HostDirectory/publishHostStatus(worker:json:)``.
    public func publishHostStatus(worker: String, json: String) async throws {
        // A status is refreshed every few seconds: losing the last one in a power cut is harmless.
        try await writer.perform(durability: .none) { db in
            let s = try db.statement(
                "INSERT INTO host_status (worker, status, time) VALUES (?, ?, ?) ON CONFLICT (worker) DO UPDATE SET status = excluded.status, time = excluded.time"
            )
            s.bind(1, worker)
            s.bind(2, json)
            s.bind(3, TaskClock.now())
            try s.run()
        }
    }

    /// See ``HostDirectory/hostStatuses(since:)``.
    public func hostStatuses(since: Double) async throws -> [String] {
        try await reader.perform { db in
            let s = try db.statement("SELECT status FROM host_status WHERE time >= ? ORDER BY time DESC")
            defer { s.reset() }
            s.bind(1, since)
            var out: [String] = []
            while try s.step() { if let j = s.string(0) { out.append(j) } }
            return out
        }
    }

    /// See ``TaskEventLog/recordEvent(_:json:)``.
    public func recordEvent(_ kind: TaskEventKind, json: String) async throws {
        let trimmer = self.trimmer
        try await writer.perform { db in
            let s = try db.statement("INSERT INTO events (kind, task_id, status, task) VALUES (?, '', 0, ?)")
            s.bind(1, kind.rawValue)
            s.bind(2, json)
            try s.run()
            trimmer.inserted += 1
        }
    }

    /// See ``TaskEventLog/lastEventCursor()``.
    public func lastEventCursor() async throws -> Int64 {
        try await reader.perform { db in
            let s = try db.statement("SELECT coalesce(max(seq), 0) FROM events")
            defer { s.reset() }
            return try s.step() ? s.int64(0) : 0
        }
    }

    /// See ``TaskQueueStore/observeChanges(_:)``.
    public func observeChanges(_ handler: @escaping @Sendable () -> Void) -> ChangeObservation {
        broadcaster.observe(handler)
    }

    /// See ``TaskQueueStore/changes()``. Fires after each commit of this store and, through inotify on
    /// the file's folder (with a `data_version` poll as a safety net), after commits by other processes.
    public func changes() -> AsyncStream<Void> {
        broadcaster.stream()
    }

    /// See ``TaskQueueStore/close()``.
    public func close() async {
        let wasClosed = closed.withLock { value in
            defer { value = true }
            return value
        }
        guard !wasClosed else { return }
        watcher?.stop()
        await writer.stop()
        await reader.stop()
        broadcaster.finish()
    }
}

/// Counts events inserted since the last trim; touched only on the writer thread.
final class EventTrimmer: @unchecked Sendable {
    let maxEvents: Int
    var inserted = 0

    init(maxEvents: Int) {
        self.maxEvents = maxEvents
    }

    func trimIfNeeded(_ db: SQLiteConnection) throws(TaskStoreError) {
        guard inserted >= max(100, maxEvents / 10) else { return }
        inserted = 0
        let s = try db.statement("DELETE FROM events WHERE seq <= (SELECT max(seq) FROM events) - ?")
        s.bind(1, maxEvents)
        try s.run()
    }
}
