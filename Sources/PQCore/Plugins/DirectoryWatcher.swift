import Foundation
import Glibc
import Synchronization

/// Watches directories with inotify on a dedicated thread and calls `onEvent` with the directory
/// and file name of every `IN_MOVED_TO`, `IN_CLOSE_WRITE`, `IN_DELETE`, `IN_MOVED_FROM` and
/// `IN_CREATE` (new subdirectories of wildcard parents). Directories are watched, never files: a
/// watch on a file dies with its first atomic replace.
final class DirectoryWatcher: @unchecked Sendable {
    // @unchecked: `watches` is guarded by `lock`; the fds are immutable after init.
    private let inotifyFD: Int32
    private let stopRead: Int32
    private let stopWrite: Int32
    private let stopped = Atomic<Bool>(false)
    private let lock = Mutex<[Int32: String]>([:])  // wd -> directory
    private let onEvent: @Sendable (_ directory: String, _ name: String) -> Void

    /// Whether inotify is available; when not, callers poll.
    let isAvailable: Bool

    init(enabled: Bool = true, onEvent: @escaping @Sendable (String, String) -> Void) {
        self.onEvent = onEvent
        inotifyFD = enabled ? inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC)) : -1
        var fds: [Int32] = [-1, -1]
        if pipe(&fds) == 0 {
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        }
        stopRead = fds[0]
        stopWrite = fds[1]
        isAvailable = inotifyFD >= 0 && stopRead >= 0
        if isAvailable {
            let thread = Thread { [self] in
                Thread.current.name = "pq-plugin-watch"
                self.loop()
            }
            thread.start()
        }
    }

    /// Starts watching `directory` (no-op when already watched).
    /// - Returns: false when the watch could not be added.
    @discardableResult
    func watch(_ directory: String) -> Bool {
        guard isAvailable else { return false }
        let mask = UInt32(IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM | IN_CREATE | IN_DELETE_SELF | IN_ONLYDIR)
        let wd = inotify_add_watch(inotifyFD, directory, mask)
        guard wd >= 0 else { return false }
        lock.withLock { $0[wd] = directory }
        return true
    }

    /// Stops the thread and closes the descriptors (once).
    func stop() {
        guard isAvailable, !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var one: UInt8 = 1
        _ = write(stopWrite, &one, 1)
    }

    private func loop() {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        defer {
            close(inotifyFD)
            close(stopRead)
            close(stopWrite)
        }
        while true {
            var fds = [pollfd(fd: inotifyFD, events: Int16(POLLIN), revents: 0), pollfd(fd: stopRead, events: Int16(POLLIN), revents: 0)]
            let n = poll(&fds, 2, 1000)
            if n < 0 && errno != EINTR { return }
            if fds[1].revents != 0 || stopped.load(ordering: .acquiring) { return }
            guard fds[0].revents & Int16(POLLIN) != 0 else { continue }
            let count = buffer.withUnsafeMutableBytes { read(inotifyFD, $0.baseAddress, $0.count) }
            guard count > 0 else { continue }
            var offset = 0
            let headerSize = MemoryLayout<inotify_event>.size
            while offset + headerSize <= count {
                let (wd, mask, len) = buffer.withUnsafeBytes { raw -> (Int32, UInt32, Int) in
                    let event = raw.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                    return (event.wd, event.mask, Int(event.len))
                }
                let nameStart = offset + headerSize
                let nameBytes = buffer[nameStart..<min(count, nameStart + len)].prefix { $0 != 0 }
                let name = String(decoding: nameBytes, as: UTF8.self)
                offset = nameStart + len
                if mask & UInt32(IN_IGNORED) != 0 {
                    lock.withLock { _ = $0.removeValue(forKey: wd) }
                    continue
                }
                if let directory = lock.withLock({ $0[wd] }) {
                    onEvent(directory, name)
                }
            }
        }
    }
}
