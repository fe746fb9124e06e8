import CSQLite
import Foundation

/// Copies the write-ahead log back into the database file on a thread of its own.
///
/// SQLite's automatic checkpoint runs inside the COMMIT that crosses the threshold, so one commit
/// in every few dozen paid for writing a thousand pages and syncing the database file while the
/// tasks that waited on it stood still. The writer connection now only counts the log's pages
/// (a WAL hook) and asks this thread for a PASSIVE checkpoint, which runs beside further commits
/// and never blocks them. Commits stay as durable as before: they sync the log as they did.
final class WALCheckpointer: @unchecked Sendable {
    // @unchecked: `requested` and `stopping` are guarded by `condition`.
    private let condition = NSCondition()
    private var requested = false
    private var stopping = false
    /// Log size (pages) from which a checkpoint is asked for.
    let threshold: Int32

    /// Opens a connection of its own and starts the thread.
    /// - Parameters:
    ///   - path: the database file.
    ///   - threshold: pages in the log from which a checkpoint is asked for (SQLite's default is 1000).
    init(path: String, threshold: Int32 = 1000) throws(TaskStoreError) {
        self.threshold = threshold
        let connection = try SQLiteConnection(path: path, create: false)
        connection.setBusyTimeout(milliseconds: 5000)
        let box = UncheckedBox(connection)
        let thread = Thread { [self] in
            Thread.current.name = "pq-sqlite-ckpt"
            self.run(box.take())
        }
        thread.start()
    }

    /// Turns off the automatic checkpoint of `writer` and asks this thread instead. The hook holds
    /// this object until the writer connection closes.
    func attach(to writer: SQLiteConnection) {
        let context = Unmanaged.passRetained(self)
        sqlite3_wal_hook(writer.handle, { context, _, _, pages in
            guard let context else { return SQLITE_OK }
            let checkpointer = Unmanaged<WALCheckpointer>.fromOpaque(context).takeUnretainedValue()
            if pages >= checkpointer.threshold { checkpointer.request() }
            return SQLITE_OK
        }, context.toOpaque())
        writer.onClose { context.release() }
    }

    /// Asks for a checkpoint soon; requests made while one runs are merged.
    func request() {
        condition.lock()
        requested = true
        condition.signal()
        condition.unlock()
    }

    /// Ends the thread after the checkpoint in progress, if any.
    func stop() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    private func run(_ db: SQLiteConnection) {
        while true {
            condition.lock()
            while !requested && !stopping { condition.wait() }
            let stop = stopping
            requested = false
            condition.unlock()
            if stop { return }
            // PASSIVE copies what no reader still needs, without waiting for any lock holder; a
            // later request finishes the job. Errors (a busy log) are left for the next request.
            _ = sqlite3_wal_checkpoint_v2(db.handle, nil, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
        }
    }
}
