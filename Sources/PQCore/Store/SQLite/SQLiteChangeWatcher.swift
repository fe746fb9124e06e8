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
final class SQLiteChangeWatcher: @unchecked Sendable {
    private let stopWriteFD: Int32
    private let stopped = Atomic<Bool>(false)
    private let onChange: @Sendable () -> Void

    init(path: String, fallback: Duration, onChange: @escaping @Sendable () -> Void) throws(TaskStoreError) {
        self.onChange = onChange
        let connection = try SQLiteConnection(path: path, create: false)
        var pipeFDs: [Int32] = [-1, -1]
        guard pipe(&pipeFDs) == 0 else {
            throw TaskStoreError(.cannotOpen, "cannot watch the task store \(path): no pipe (errno \(errno))", path: path)
        }
        stopWriteFD = pipeFDs[1]
        for fd in pipeFDs { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let doorbell = SQLiteDoorbell.path(for: path)
        let fallbackMs = Int32(max(1, fallback.components.seconds * 1000 + fallback.components.attoseconds / 1_000_000_000_000_000))
        let box = UncheckedBox(connection)
        let stopFD = pipeFDs[0]
        let thread = Thread {
            Thread.current.name = "pq-sqlite-watch"
            Self.run(
                box.take(), doorbell: doorbell, fallbackMs: fallbackMs, stopFD: stopFD, onChange: onChange)
        }
        thread.start()
    }

    /// Ends the thread (it closes its own connection and file descriptors).
    func stop() {
        // Only once: a second close could hit a descriptor number reused by another file.
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var one: UInt8 = 1
        _ = write(stopWriteFD, &one, 1)
        close(stopWriteFD)
    }

    private static func run(
        _ db: SQLiteConnection, doorbell: String, fallbackMs: Int32, stopFD: Int32, onChange: @Sendable () -> Void
    ) {
        var lastVersion = (try? db.intPragma("data_version")) ?? 0
        let inotifyFD = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        var watching = false
        if inotifyFD >= 0 {
            let mask = UInt32(IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB)
            watching = inotify_add_watch(inotifyFD, doorbell, mask) >= 0
        }
        defer {
            if inotifyFD >= 0 { close(inotifyFD) }
            close(stopFD)
        }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var recheckUntil: UInt64 = 0
        while true {
            var fds = [
                pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0),
                pollfd(fd: watching ? inotifyFD : -1, events: Int16(POLLIN), revents: 0),
            ]
            let now = monotonicMs()
            let timeout: Int32 = recheckUntil > now ? 1 : fallbackMs
            _ = poll(&fds, 2, timeout)
            if fds[0].revents != 0 { return }
            if fds[1].revents != 0 {
                var rung = false
                while true {
                    let count = buffer.withUnsafeMutableBytes { read(inotifyFD, $0.baseAddress, $0.count) }
                    guard count > 0 else { break }
                    rung = true
                }
                // Rung after the commit, so the new version should be visible; recheck briefly
                // in case this connection's view lags.
                if rung { recheckUntil = monotonicMs() + 5 }
            }
            guard let version = try? db.intPragma("data_version") else { continue }
            if version != lastVersion {
                lastVersion = version
                recheckUntil = 0
                onChange()
            }
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
