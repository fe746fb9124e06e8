import CSQLite
import Foundation
import Glibc
import Synchronization

/// Notices commits to a SQLite file by any process, without busy polling.
///
/// It watches the database's folder with inotify for writes to the `-wal` file (and the file
/// itself) and then checks `PRAGMA data_version`, which changes only once a commit is visible; a
/// write seen before its commit is visible is rechecked every millisecond for a short while. If
/// inotify is not available, or as a safety net, `data_version` is checked every `fallback`.
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
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent().path
        let names: Set<String> = [url.lastPathComponent + "-wal", url.lastPathComponent]
        let fallbackMs = Int32(max(1, fallback.components.seconds * 1000 + fallback.components.attoseconds / 1_000_000_000_000_000))
        let box = UncheckedBox(connection)
        let stopFD = pipeFDs[0]
        let thread = Thread {
            Thread.current.name = "pq-sqlite-watch"
            Self.run(
                box.take(), directory: directory, names: names, fallbackMs: fallbackMs, stopFD: stopFD,
                onChange: onChange)
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
        _ db: SQLiteConnection, directory: String, names: Set<String>, fallbackMs: Int32, stopFD: Int32,
        onChange: @Sendable () -> Void
    ) {
        var lastVersion = (try? db.intPragma("data_version")) ?? 0
        let inotifyFD = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        var watching = false
        if inotifyFD >= 0 {
            let mask = UInt32(IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE)
            watching = inotify_add_watch(inotifyFD, directory, mask) >= 0
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
                var relevant = false
                while true {
                    let count = buffer.withUnsafeMutableBytes { read(inotifyFD, $0.baseAddress, $0.count) }
                    guard count > 0 else { break }
                    relevant = relevant || containsName(buffer, count: count, names: names)
                }
                if relevant { recheckUntil = monotonicMs() + 50 }
            }
            guard let version = try? db.intPragma("data_version") else { continue }
            if version != lastVersion {
                lastVersion = version
                recheckUntil = 0
                onChange()
            }
        }
    }

    private static func containsName(_ buffer: [UInt8], count: Int, names: Set<String>) -> Bool {
        var offset = 0
        let header = 16  // wd, mask, cookie, len
        var found = false
        buffer.withUnsafeBytes { raw in
            while offset + header <= count {
                let length = Int(raw.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
                let start = offset + header
                if length > 0, start + length <= count {
                    let bytes = raw[start..<(start + length)]
                    let end = bytes.firstIndex(of: 0) ?? bytes.endIndex
                    let name = String(decoding: raw[start..<end], as: UTF8.self)
                    if names.contains(name) { found = true }
                }
                offset = start + length
            }
        }
        return found
    }

    private static func monotonicMs() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1000 + UInt64(spec.tv_nsec) / 1_000_000
    }
}
