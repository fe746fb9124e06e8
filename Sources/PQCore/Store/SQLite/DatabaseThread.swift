import CSQLite
import Foundation

/// A dedicated thread that owns one SQLite connection and runs jobs on it, so SQLite never blocks
/// the Swift cooperative thread pool.
///
/// In writer mode every batch of jobs that piled up while the previous batch committed runs in one
/// `BEGIN IMMEDIATE ... COMMIT` (group commit), each job inside its own savepoint so that one
/// failing job does not undo the others. Callers are resumed only after the commit.
final class DatabaseThread: @unchecked Sendable {
    struct Job: Sendable {
        /// Runs the job; stores its own result.
        let perform: @Sendable (SQLiteConnection) -> Void
        /// Delivers the result, or `error` when the batch could not commit.
        let finish: @Sendable ((any Error)?) -> Void
        /// Whether the caller needs the write on disk before it resumes (fsync at commit).
        var durable = true
    }

    private final class ResultBox<T>: @unchecked Sendable {
        var result: Result<T, any Error>?
    }

    private let condition = NSCondition()
    private var pending: [Job] = []  // guarded by `condition`
    private var stopping = false  // guarded by `condition`
    private var stopped = false  // guarded by `condition`
    private var stopWaiters: [CheckedContinuation<Void, Never>] = []  // guarded by `condition`
    private let groupCommit: Bool
    private let name: String
    private let path: String
    /// Called on the thread inside each write transaction, after the jobs, before COMMIT.
    private let beforeCommit: (@Sendable (SQLiteConnection) throws -> Void)?
    /// Called on the thread after each successful commit.
    private let afterCommit: (@Sendable () -> Void)?

    /// Starts the thread; `connection` must not be used by anyone else from now on.
    init(
        name: String, connection: SQLiteConnection, groupCommit: Bool,
        beforeCommit: (@Sendable (SQLiteConnection) throws -> Void)? = nil,
        afterCommit: (@Sendable () -> Void)? = nil
    ) {
        self.groupCommit = groupCommit
        self.name = name
        self.path = connection.path
        self.beforeCommit = beforeCommit
        self.afterCommit = afterCommit
        let box = UncheckedBox(connection)
        // Named from inside: a name set before start does not reach the OS thread here.
        let thread = Thread { [self] in
            Thread.current.name = name
            self.run(box.take())
        }
        thread.start()
    }

    private func closedError() -> TaskStoreError {
        TaskStoreError(.closed, "the task store sqlite:\(path) was closed", path: path)
    }

    /// Runs `body` on the thread and returns its result; in writer mode, after the commit.
    /// - Parameters:
    ///   - durable: false when losing this write in a power cut is harmless (a claim: the task
    ///     is simply queued again). A batch made only of such writes is not synced; the next
    ///     durable commit makes them durable too (the log is synced in order). A durable write's
    ///     caller resumes after the sync (see ``syncLog()``).
    ///   - body: the work, on the thread's connection.
    func perform<T: Sendable>(durable: Bool = true, _ body: @escaping @Sendable (SQLiteConnection) throws -> T) async throws -> T {
        let box = ResultBox<T>()
        let groupCommit = self.groupCommit
        return try await withCheckedThrowingContinuation { continuation in
            var job = Job(
                perform: { db in
                    if groupCommit {
                        do {
                            try db.statement("SAVEPOINT job").run()
                        } catch {
                            box.result = .failure(error)
                            return
                        }
                        do {
                            box.result = .success(try body(db))
                            try? db.statement("RELEASE job").run()
                        } catch {
                            box.result = .failure(error)
                            try? db.statement("ROLLBACK TO job").run()
                            try? db.statement("RELEASE job").run()
                        }
                    } else {
                        box.result = Result { try body(db) }
                    }
                },
                finish: { error in
                    if let error {
                        continuation.resume(throwing: error)
                    } else {
                        continuation.resume(with: box.result!)
                    }
                })
            job.durable = durable
            condition.lock()
            if stopping {
                condition.unlock()
                continuation.resume(throwing: closedError())
                return
            }
            pending.append(job)
            condition.signal()
            condition.unlock()
        }
    }

    /// Lets pending jobs finish, then ends the thread and closes its connection.
    func stop() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let alreadyStopped = condition.withLock {
                stopping = true
                if stopped { return true }
                stopWaiters.append(continuation)
                condition.broadcast()
                return false
            }
            if alreadyStopped { continuation.resume() }
        }
    }

    /// Asks the thread to stop without waiting (for deinit).
    func stopSoon() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }

    private func run(_ db: SQLiteConnection) {
        while true {
            condition.lock()
            while pending.isEmpty && !stopping { condition.wait() }
            if pending.isEmpty && stopping {
                stopped = true
                let waiters = stopWaiters
                stopWaiters = []
                condition.unlock()
                _ = consume db  // closes the connection before waiters resume
                for waiter in waiters { waiter.resume() }
                return
            }
            let batch = pending
            pending = []
            condition.unlock()
            if groupCommit {
                runTransaction(batch, db)
            } else {
                for job in batch {
                    job.perform(db)
                    job.finish(nil)
                }
            }
        }
    }

    /// The write-ahead log, opened after the first commit for ``syncLog()``; touched only by the thread.
    private var logDescriptor: Int32 = -1

    private func runTransaction(_ batch: [Job], _ db: SQLiteConnection) {
        let durable = batch.contains { $0.durable }
        let changesBefore = sqlite3_total_changes64(db.handle)
        do {
            try db.statement("BEGIN IMMEDIATE").run()
        } catch {
            for job in batch { job.finish(error) }
            return
        }
        for job in batch { job.perform(db) }
        do {
            try beforeCommit?(db)
            try db.statement("COMMIT").run()
        } catch {
            try? db.statement("ROLLBACK").run()
            for job in batch { job.finish(error) }
            return
        }
        // Only a transaction that wrote something is news: an empty claim that signalled would
        // wake the dispatcher to claim again, and again.
        let wrote = sqlite3_total_changes64(db.handle) != changesBefore
        if wrote { afterCommit?() }
        // The commit ran with synchronous=NORMAL, so other processes see it now; callers that
        // need it on disk are resumed only after the log is synced (see ``syncLog()``).
        if durable && wrote {
            if let error = syncLog() {
                for job in batch { job.finish(error) }
                return
            }
        }
        for job in batch { job.finish(nil) }
    }

    /// Makes every committed transaction durable: `fdatasync` of the write-ahead log.
    ///
    /// Commits run with `synchronous=NORMAL` and are synced here, after they became visible and
    /// the doorbell rang, so a process waiting for the change (a host for a new task, a client
    /// for a result) starts on it while this thread waits for the disk. The log is appended in
    /// commit order and a sync covers the whole file, so a power cut keeps a prefix of the
    /// commits: never a later one without an earlier one. What a power cut in the sync's window
    /// can cost is a commit that was seen but never acknowledged: a task a host already started
    /// whose submitter got no acknowledgement, or a result seen by `pq wait` whose task then
    /// runs again. Both are the at-least-once of a host killed mid-run.
    private func syncLog() -> (any Error)? {
        if logDescriptor < 0 {
            // The log exists while this connection is open (the last connection to close
            // deletes it), and SQLite rewrites it in place, so one descriptor stays valid.
            logDescriptor = open(path + "-wal", O_RDONLY | O_CLOEXEC)
            if logDescriptor < 0 {
                return TaskStoreError(
                    .database, "cannot open \(path)-wal to sync it: \(String(cString: strerror(errno)))", path: path)
            }
        }
        if fdatasync(logDescriptor) != 0 {
            return TaskStoreError(
                .database, "could not sync \(path)-wal to disk: \(String(cString: strerror(errno)))", path: path)
        }
        return nil
    }

    deinit {
        if logDescriptor >= 0 { close(logDescriptor) }
    }
}

/// Moves a non-Sendable value to another thread exactly once.
final class UncheckedBox<T>: @unchecked Sendable {
    private var value: T?
    init(_ value: T) { self.value = value }
    func take() -> T {
        defer { value = nil }
        return value!
    }
}
