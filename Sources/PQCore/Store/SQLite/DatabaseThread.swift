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
    ///     is simply queued again). A batch made only of such writes commits without an fsync;
    ///     the next durable commit makes them durable too (the WAL is synced in order).
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

    /// The connection's current `PRAGMA synchronous` (FULL at open); touched only by the thread.
    private var syncFull = true

    private func runTransaction(_ batch: [Job], _ db: SQLiteConnection) {
        let durable = batch.contains { $0.durable }
        if durable != syncFull {
            // synchronous cannot change inside a transaction, so it is set per batch.
            if (try? db.exec(durable ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL")) != nil {
                syncFull = durable
            }
        }
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
        if sqlite3_total_changes64(db.handle) != changesBefore { afterCommit?() }
        for job in batch { job.finish(nil) }
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
