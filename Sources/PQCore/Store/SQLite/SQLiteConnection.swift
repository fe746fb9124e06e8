import CSQLite
import Glibc

/// SQLite's "copy the bytes now" destructor.
private let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// One SQLite connection, used by exactly one thread (opened with `SQLITE_OPEN_NOMUTEX`).
final class SQLiteConnection {
    let handle: OpaquePointer
    let path: String
    private var cache: [String: SQLiteStatement] = [:]

    init(path: String, create: Bool) throws(TaskStoreError) {
        // Task arguments and results often hold secrets: a new store file is the owner's alone
        // (SQLite gives its -wal and -shm files the mode of the database file).
        if create, access(path, F_OK) != 0 {
            let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            if fd >= 0 { close(fd) }
        }
        var db: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let db { sqlite3_close_v2(db) }
            throw TaskStoreError(
                .cannotOpen, "cannot open the task store sqlite:\(path): \(message)", path: path)
        }
        handle = db
        self.path = path
        sqlite3_extended_result_codes(db, 1)
    }

    deinit {
        cache.removeAll()
        sqlite3_close_v2(handle)
    }

    func error(_ rc: Int32, _ what: String) -> TaskStoreError {
        let message = String(cString: sqlite3_errmsg(handle))
        if rc & 0xFF == SQLITE_NOTADB {
            return TaskStoreError(
                .cannotOpen,
                "the task store file \(path) is not a SQLite database; pass another --store path", path: path)
        }
        return TaskStoreError(.database, "task store \(path): \(what) failed: \(message) (code \(rc))", path: path)
    }

    /// Runs SQL without results (several statements allowed).
    /// Waits for a lock held by another connection (another pq process) in short steps: 50 µs
    /// steps for the first 2 ms, then 0.5 ms steps, up to `timeoutMs`. SQLite's default handler
    /// sleeps 1, 2, 5, 10 ms..., which adds milliseconds to every task that meets a client's
    /// commit; locks here are held for well under a millisecond.
    /// - Parameter timeoutMs: give up (SQLITE_BUSY) after about this long.
    func setBusyTimeout(milliseconds timeoutMs: Int) {
        let context = UnsafeMutableRawPointer(bitPattern: max(1, timeoutMs))
        sqlite3_busy_handler(
            handle,
            { context, count in
                let timeout = Int(bitPattern: context)
                let waited = count < 40 ? Double(count) * 0.05 : 2 + Double(count - 40) * 0.5
                guard waited < Double(timeout) else { return 0 }
                usleep(count < 40 ? 50 : 500)
                return 1
            }, context)
    }

    func exec(_ sql: String) throws(TaskStoreError) {
        let rc = sqlite3_exec(handle, sql, nil, nil, nil)
        guard rc == SQLITE_OK else { throw error(rc, String(sql.prefix(40))) }
    }

    /// A cached prepared statement, reset and with bindings cleared.
    func statement(_ sql: String) throws(TaskStoreError) -> SQLiteStatement {
        if let cached = cache[sql] {
            cached.reset()
            return cached
        }
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw error(rc, "prepare \(sql.prefix(60))") }
        let statement = SQLiteStatement(stmt, connection: self)
        cache[sql] = statement
        return statement
    }

    var changes: Int { Int(sqlite3_changes(handle)) }

    func intPragma(_ name: String) throws(TaskStoreError) -> Int64 {
        let statement = try self.statement("PRAGMA \(name)")
        defer { statement.reset() }
        guard try statement.step() else { return 0 }
        return statement.int64(0)
    }
}

/// A prepared statement; bind indexes start at 1, column indexes at 0.
final class SQLiteStatement {
    let stmt: OpaquePointer
    unowned let connection: SQLiteConnection

    init(_ stmt: OpaquePointer, connection: SQLiteConnection) {
        self.stmt = stmt
        self.connection = connection
    }

    deinit { sqlite3_finalize(stmt) }

    func reset() {
        sqlite3_reset(stmt)
        sqlite3_clear_bindings(stmt)
    }

    /// Steps once: `true` when a row is ready, `false` when done.
    @discardableResult
    func step() throws(TaskStoreError) -> Bool {
        let rc = sqlite3_step(stmt)
        if rc == SQLITE_ROW { return true }
        if rc == SQLITE_DONE { return false }
        let error = connection.error(rc, "step")
        sqlite3_reset(stmt)
        throw error
    }

    /// Runs a statement that returns no rows, then resets it.
    func run() throws(TaskStoreError) {
        defer { sqlite3_reset(stmt) }
        try step()
    }

    func bind(_ index: Int32, _ value: String?) {
        guard let value else {
            sqlite3_bind_null(stmt, index)
            return
        }
        sqlite3_bind_text(stmt, index, value, -1, transient)
    }

    func bind(_ index: Int32, _ value: Double?) {
        guard let value else {
            sqlite3_bind_null(stmt, index)
            return
        }
        sqlite3_bind_double(stmt, index, value)
    }

    func bind(_ index: Int32, _ value: Int?) {
        guard let value else {
            sqlite3_bind_null(stmt, index)
            return
        }
        sqlite3_bind_int64(stmt, index, Int64(value))
    }

    func bind(_ index: Int32, _ value: Int64) {
        sqlite3_bind_int64(stmt, index, value)
    }

    func bind(_ index: Int32, _ value: Bool) {
        sqlite3_bind_int(stmt, index, value ? 1 : 0)
    }

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(stmt, column) == SQLITE_NULL }

    func string(_ column: Int32) -> String? {
        guard let text = sqlite3_column_text(stmt, column) else { return nil }
        let count = Int(sqlite3_column_bytes(stmt, column))
        return String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self)
    }

    func double(_ column: Int32) -> Double? {
        isNull(column) ? nil : sqlite3_column_double(stmt, column)
    }

    func int(_ column: Int32) -> Int? {
        isNull(column) ? nil : Int(sqlite3_column_int64(stmt, column))
    }

    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(stmt, column) }

    func bool(_ column: Int32) -> Bool { sqlite3_column_int64(stmt, column) != 0 }
}
