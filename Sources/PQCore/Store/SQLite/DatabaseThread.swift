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
        /// When the write must reach the disk.
        var durability = Durability.acknowledged
    }

    /// When a write must reach the disk. Commits run with `synchronous=NORMAL`: they are visible
    /// to other processes at once, and the log is synced by a thread of its own (``LogSyncer``).
    enum Durability: Sendable {
        /// Losing it in a power cut is harmless (a claim: the task is simply queued again); it is
        /// made durable by the next sync (the log is synced in order).
        case none
        /// Synced right after the commit, without the caller waiting for it (a host's outcomes:
        /// one lost in the sync's window of a power cut runs its task again).
        case soon
        /// The caller resumes only once it is on disk (an acknowledged enqueue).
        case acknowledged
    }

    private final class ResultBox<T>: @unchecked Sendable {
        var result: Result<T, any Error>?
    }

    private let condition = ConditionLock()
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
    /// Syncs the log behind the writer (writer mode only).
    private let syncer: LogSyncer?

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
        self.syncer = groupCommit ? LogSyncer(log: connection.path + "-wal", name: name + "-sync") : nil
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
    ///   - durability: when the write must reach the disk (see ``Durability``); the caller of an
    ///     `acknowledged` write resumes after the sync.
    ///   - body: the work, on the thread's connection.
    func perform<T: Sendable>(
        durability: Durability = .acknowledged, _ body: @escaping @Sendable (SQLiteConnection) throws -> T
    ) async throws -> T {
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
            job.durability = durability
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
                syncer?.stop()  // the last syncs, before the log may go with the connection
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

    private func runTransaction(_ batch: [Job], _ db: SQLiteConnection) {
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
        guard sqlite3_total_changes64(db.handle) != changesBefore else {
            for job in batch { job.finish(nil) }
            return
        }
        afterCommit?()
        // The commit ran with synchronous=NORMAL, so other processes see it now; the log is
        // synced behind it while this thread goes on with the next batch.
        guard let syncer, batch.contains(where: { $0.durability != .none }) else {
            for job in batch { job.finish(nil) }
            return
        }
        let ticket = syncer.request()
        for job in batch {
            if job.durability == .acknowledged {
                syncer.whenSynced(ticket, job.finish)
            } else {
                job.finish(nil)
            }
        }
    }
}

/// Syncs a write-ahead log (`fdatasync`) on a thread of its own, behind the writer.
///
/// The writer commits with `synchronous=NORMAL`, rings the doorbell, asks for a sync and goes on
/// with the next batch; a process waiting for the change (a host for a new task, a client for a
/// result) starts on it while this thread waits for the disk, and callers that need their write
/// on disk are resumed after a sync that began after their commit. The log is appended in commit
/// order and a sync covers the whole file, so a power cut keeps a prefix of the commits: never a
/// later one without an earlier one. What a power cut in a sync's window can cost is a commit
/// that was seen but not yet synced: a task a host already started whose submitter got no
/// acknowledgement, or a result seen by `pq wait` whose task then runs again — the at-least-once
/// of a host killed mid-run.
final class LogSyncer: @unchecked Sendable {
    // @unchecked: all mutable state is guarded by `condition`; `descriptor` is used by the thread only.
    private let condition = ConditionLock()
    private var requested: UInt64 = 0
    private var synced: UInt64 = 0
    private var waiters: [(ticket: UInt64, resume: @Sendable ((any Error)?) -> Void)] = []
    private var stopping = false
    private var stopped = false
    private let log: String
    private var descriptor: Int32 = -1

    init(log: String, name: String) {
        self.log = log
        let thread = Thread { [self] in
            Thread.current.name = name
            self.run()
        }
        thread.start()
    }

    /// Asks for a sync of everything committed so far; returns its ticket.
    func request() -> UInt64 {
        condition.lock()
        requested += 1
        let ticket = requested
        condition.signal()
        condition.unlock()
        return ticket
    }

    /// Calls `resume` (on the syncer's thread) once a sync covering `ticket` ended, with its error if it failed.
    func whenSynced(_ ticket: UInt64, _ resume: @escaping @Sendable ((any Error)?) -> Void) {
        condition.lock()
        if synced >= ticket {
            condition.unlock()
            resume(nil)
            return
        }
        waiters.append((ticket, resume))
        condition.unlock()
    }

    /// Runs the syncs asked for, then ends the thread; waits for it.
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while !stopped { condition.wait() }
        condition.unlock()
    }

    private func run() {
        condition.lock()
        while true {
            while requested == synced && !stopping { condition.wait() }
            if requested == synced {
                stopped = true
                condition.broadcast()
                condition.unlock()
                if descriptor >= 0 { close(descriptor) }
                return
            }
            let target = requested
            condition.unlock()
            let error = sync()
            condition.lock()
            synced = target
            let ready = waiters.filter { $0.ticket <= target }
            waiters.removeAll { $0.ticket <= target }
            condition.unlock()
            for waiter in ready { waiter.resume(error) }
            condition.lock()
        }
    }

    /// `fdatasync` of the log; the error, if it failed.
    private func sync() -> (any Error)? {
        if descriptor < 0 {
            // The log exists while the writer's connection is open (the last connection to close
            // deletes it), and SQLite rewrites it in place, so one descriptor stays valid.
            descriptor = open(log, O_RDONLY | O_CLOEXEC)
            if descriptor < 0 {
                return TaskStoreError(.database, "cannot open \(log) to sync it: \(String(cString: strerror(errno)))")
            }
        }
        if fdatasync(descriptor) != 0 {
            return TaskStoreError(.database, "could not sync \(log) to disk: \(String(cString: strerror(errno)))")
        }
        return nil
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
