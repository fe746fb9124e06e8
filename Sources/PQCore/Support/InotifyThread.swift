import Foundation
import Glibc
import Synchronization

/// One inotify event: the watch it came from, what happened, and the file name within a watched
/// directory (empty for a watched file).
struct InotifyEvent: Sendable {
    var watch: Int32
    var mask: UInt32
    var name: String
}

/// A dedicated thread asleep in `poll(2)` on an inotify descriptor and a wake pipe: the loop the
/// plugin directory watcher and the SQLite change watcher share.
///
/// After each wake-up (events, or the timeout) it calls `body` with the events read (possibly
/// none) on its own thread; `body` answers the next timeout in milliseconds (-1: none). ``stop()`` ends the
/// thread through the pipe, so a sleeping poll returns at once; the thread closes the inotify
/// descriptor and the pipe's read end as it ends.
final class InotifyThread: @unchecked Sendable {
    // @unchecked: the descriptors are immutable after init; `stopped` is atomic.
    private let inotifyFD: Int32
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let stopped = Atomic<Bool>(false)

    /// Whether inotify is available (else `body` runs on timeouts only).
    let hasInotify: Bool
    /// Whether the thread runs (false when no pipe could be made).
    let isRunning: Bool

    /// Starts the thread.
    /// - Parameters:
    ///   - name: the thread's name.
    ///   - inotify: whether to make an inotify descriptor (``watch(_:mask:)`` adds to it).
    ///   - firstTimeout: milliseconds before the first call of `body` when nothing happens.
    ///   - body: called on the thread after each wake-up; returns the next timeout.
    init(name: String, inotify: Bool, firstTimeout: Int32, body: @escaping @Sendable ([InotifyEvent]) -> Int32) {
        inotifyFD = inotify ? inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC)) : -1
        hasInotify = inotifyFD >= 0
        var fds: [Int32] = [-1, -1]
        if pipe(&fds) == 0 {
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        } else {
            fds = [-1, -1]
        }
        wakeRead = fds[0]
        wakeWrite = fds[1]
        isRunning = wakeRead >= 0
        guard isRunning else {
            if inotifyFD >= 0 { close(inotifyFD) }
            return
        }
        let thread = Thread { [self] in
            Thread.current.name = name
            self.loop(firstTimeout: firstTimeout, body: body)
        }
        thread.start()
    }

    /// Adds a watch; returns its descriptor, or -1.
    func watch(_ path: String, mask: UInt32) -> Int32 {
        guard hasInotify, isRunning, !stopped.load(ordering: .acquiring) else { return -1 }
        return inotify_add_watch(inotifyFD, path, mask)
    }

    /// Ends the thread (once; later calls do nothing).
    func stop() {
        guard isRunning, !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var one: UInt8 = 1
        _ = write(wakeWrite, &one, 1)
        // Closed here, once: the thread never writes to it, and a second close could hit a
        // descriptor number reused by another file.
        close(wakeWrite)
    }

    private func loop(firstTimeout: Int32, body: ([InotifyEvent]) -> Int32) {
        defer {
            if inotifyFD >= 0 { close(inotifyFD) }
            close(wakeRead)
        }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var timeout = firstTimeout
        while true {
            var fds = [
                pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
                pollfd(fd: inotifyFD, events: Int16(POLLIN), revents: 0),
            ]
            let n = poll(&fds, 2, timeout)
            if n < 0 && errno != EINTR { return }
            if fds[0].revents != 0 || stopped.load(ordering: .acquiring) { return }
            var events: [InotifyEvent] = []
            if fds[1].revents & Int16(POLLIN) != 0 {
                while true {
                    let count = buffer.withUnsafeMutableBytes { read(inotifyFD, $0.baseAddress, $0.count) }
                    guard count > 0 else { break }
                    Self.parse(buffer, count: count, into: &events)
                }
            }
            timeout = body(events)
        }
    }

    private static func parse(_ buffer: [UInt8], count: Int, into events: inout [InotifyEvent]) {
        let headerSize = MemoryLayout<inotify_event>.size
        var offset = 0
        while offset + headerSize <= count {
            let (wd, mask, len) = buffer.withUnsafeBytes { raw -> (Int32, UInt32, Int) in
                let event = raw.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                return (event.wd, event.mask, Int(event.len))
            }
            let nameStart = offset + headerSize
            let nameBytes = buffer[nameStart..<min(count, nameStart + len)].prefix { $0 != 0 }
            events.append(InotifyEvent(watch: wd, mask: mask, name: String(decoding: nameBytes, as: UTF8.self)))
            offset = nameStart + len
        }
    }
}
