import Glibc
import Synchronization

/// Watches directories with inotify on a dedicated thread (``InotifyThread``) and calls
/// `onEvent` with the directory and file name of every `IN_MOVED_TO`, `IN_CLOSE_WRITE`,
/// `IN_DELETE`, `IN_MOVED_FROM` and `IN_CREATE` (new subdirectories of wildcard parents).
/// Directories are watched, never files: a watch on a file dies with its first atomic replace.
final class DirectoryWatcher: Sendable {
    private let thread: InotifyThread
    private let directories: Directories

    /// Watch descriptor → directory, shared with the thread.
    private final class Directories: Sendable {
        let byWatch = Mutex<[Int32: String]>([:])
    }

    /// Whether inotify is available; when not, callers poll.
    let isAvailable: Bool

    init(enabled: Bool = true, onEvent: @escaping @Sendable (String, String) -> Void) {
        let directories = Directories()
        self.directories = directories
        // No timeout: the thread wakes for events and for stop() only.
        thread = InotifyThread(name: "pq-plugin-watch", inotify: enabled, firstTimeout: -1) { events in
            for event in events {
                if event.mask & UInt32(IN_IGNORED) != 0 {
                    directories.byWatch.withLock { _ = $0.removeValue(forKey: event.watch) }
                    continue
                }
                if let directory = directories.byWatch.withLock({ $0[event.watch] }) { onEvent(directory, event.name) }
            }
            return -1
        }
        isAvailable = thread.hasInotify && thread.isRunning
    }

    /// Starts watching `directory` (no-op when already watched).
    /// - Returns: false when the watch could not be added.
    @discardableResult
    func watch(_ directory: String) -> Bool {
        let mask = UInt32(
            IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM | IN_CREATE | IN_DELETE_SELF | IN_ONLYDIR)
        let wd = thread.watch(directory, mask: mask)
        guard wd >= 0 else { return false }
        directories.byWatch.withLock { $0[wd] = directory }
        return true
    }

    /// Stops the thread and closes the descriptors (once).
    func stop() { thread.stop() }
}
