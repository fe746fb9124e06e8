import CSQLite
import Foundation
import Glibc
import Synchronization

/// Notices commits to a SQLite file by any process, without busy polling.
///
/// Every pq process that commits a change rings a doorbell: it writes one byte to the file
/// `<database>-changed` (see ``SQLiteDoorbell``). The watcher follows that one file with inotify
/// and then checks `PRAGMA data_version`, which changes once a commit is visible. Watching the
/// doorbell rather than the `-wal` file costs one event per commit instead of one per page
/// written (a busy host's own writes woke its watcher dozens of times per transaction). If inotify
/// is not available, or as a safety net, `data_version` is checked every `fallback`.
final class SQLiteChangeWatcher: Sendable {
    private let thread: InotifyThread

    init(path: String, fallback: Duration, onChange: @escaping @Sendable () -> Void) throws(TaskStoreError) {
        let fallbackMs = Int32(
            max(1, fallback.components.seconds * 1000 + fallback.components.attoseconds / 1_000_000_000_000_000))
        let watched = Watched(try SQLiteConnection(path: path, create: false))
        thread = InotifyThread(name: "pq-sqlite-watch", inotify: true, firstTimeout: fallbackMs) { events in
            // Rung after the commit, so the new version should be visible; recheck briefly in
            // case this connection's view lags.
            if !events.isEmpty { watched.recheckUntil = Self.monotonicMs() + 5 }
            if let version = try? watched.db.intPragma("data_version"), version != watched.lastVersion {
                watched.lastVersion = version
                watched.recheckUntil = 0
                onChange()
            }
            return watched.recheckUntil > Self.monotonicMs() ? 1 : fallbackMs
        }
        guard thread.isRunning else {
            throw TaskStoreError(
                .cannotOpen, "cannot watch the task store \(path): no pipe (errno \(errno))", path: path)
        }
        // Without a watch (no inotify, or no doorbell yet) the thread checks every `fallback`.
        _ = thread.watch(SQLiteDoorbell.path(for: path), mask: UInt32(IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB))
    }

    /// Ends the thread.
    func stop() { thread.stop() }

    /// What the watcher's thread keeps between wake-ups.
    private final class Watched: @unchecked Sendable {
        // @unchecked: made before the thread starts, then used by that thread only.
        let db: SQLiteConnection
        var lastVersion: Int64
        var recheckUntil: UInt64 = 0

        init(_ db: SQLiteConnection) {
            self.db = db
            lastVersion = (try? db.intPragma("data_version")) ?? 0
        }
    }

    private static func monotonicMs() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1000 + UInt64(spec.tv_nsec) / 1_000_000
    }
}

/// The file a pq process touches after each commit it makes to a SQLite store, so that watchers
/// in other processes (and its own) wake once per commit.
final class SQLiteDoorbell: Sendable {
    private let fd: Int32

    /// The doorbell's path for a database file.
    static func path(for database: String) -> String { database + "-changed" }

    /// Opens (creating if needed) the doorbell of `database`; a doorbell that cannot be opened
    /// stays silent and watchers fall back to polling.
    init(database: String) {
        fd = open(Self.path(for: database), O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    /// Tells watchers that a commit happened.
    func ring() {
        guard fd >= 0 else { return }
        var byte: UInt8 = 1
        _ = pwrite(fd, &byte, 1, 0)
    }
}
