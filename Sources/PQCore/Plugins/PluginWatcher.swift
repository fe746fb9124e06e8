import Foundation
public import Logging
public import ServiceLifecycle

/// Hot reload: watches every directory the task_paths resolve to (wildcard parents included, so
/// a new subdirectory is picked up) and rescans the ``PluginCatalog`` after changes settle.
///
/// Reacts to `IN_MOVED_TO` and `IN_CLOSE_WRITE` (and removals); falls back to polling the files'
/// identity where inotify is unavailable. A rescan also runs every ``Options/safetyRescan`` seconds.
public final class PluginWatcher: Service, Sendable {
    /// Settings of the watcher.
    public struct Options: Sendable {
        /// Quiet time after the last event before rescanning (a burst of replacements is one rescan).
        public var settle: Double
        /// Seconds between rescans when inotify is unavailable.
        public var pollInterval: Double
        /// Seconds between rescans even with inotify (a missed event is caught up).
        public var safetyRescan: Double
        /// Poll even where inotify works (for tests of the fallback).
        public var forcePolling: Bool
        /// False: neither watch nor poll; rescan only when ``PluginWatcher/requestRescan()`` is
        /// called (`--no-reload` with `pq reload`).
        public var automatic: Bool = true

        /// Creates options: 50 ms settle, 1 s polling fallback, 30 s safety rescan.
        public init(
            settle: Double = 0.05, pollInterval: Double = 1, safetyRescan: Double = 30, forcePolling: Bool = false
        ) {
            self.settle = settle
            self.pollInterval = pollInterval
            self.safetyRescan = safetyRescan
            self.forcePolling = forcePolling
        }
    }

    let catalog: PluginCatalog
    let options: Options
    let logger: Logger
    let onChange: @Sendable (PluginCatalog.Changes) async -> Void
    private let wakeup = Wakeup()

    /// Creates a watcher.
    /// - Parameters:
    ///   - catalog: the plugins to keep in step.
    ///   - options: settings.
    ///   - logger: where reloads are logged.
    ///   - onChange: called after every rescan that changed something or failed to load a file.
    public init(
        catalog: PluginCatalog, options: Options = Options(), logger: Logger,
        onChange: @escaping @Sendable (PluginCatalog.Changes) async -> Void
    ) {
        self.catalog = catalog
        self.options = options
        self.logger = logger
        self.onChange = onChange
    }

    /// Rescans on a thread of its own: loading blocks (dlopen, or a child process that loads the
    /// plugins and may take seconds), which must not hold a thread of the cooperative pool.
    private func rescanOffThePool() async throws -> PluginCatalog.Changes {
        let catalog = self.catalog
        return try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                do { continuation.resume(returning: try catalog.rescan()) } catch {
                    continuation.resume(throwing: error)
                }
            }
            thread.name = "pq-plugin-rescan"
            thread.start()
        }
    }

    /// Asks for a rescan now (`pq reload`).
    public func requestRescan() { wakeup.signal() }

    /// Watches and reloads until shutdown.
    public func run() async throws {
        let wake = wakeup
        let automatic = options.automatic
        let watcher = DirectoryWatcher(enabled: automatic) { _, _ in wake.signal() }
        defer { watcher.stop() }
        let polling = automatic && (options.forcePolling || !watcher.isAvailable)
        if polling {
            logger.info("plugin watcher polls every \(options.pollInterval) s (inotify unavailable or disabled)")
        }
        @Sendable func watchAll() {
            guard automatic, !polling, let dirs = try? TaskPaths.resolve(catalog.taskPaths, root: catalog.root) else {
                return
            }
            for dir in dirs where !watcher.watch(dir.directory) {
                logger.warning("cannot watch \(dir.directory) for plugin changes")
            }
        }
        watchAll()
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await wake.wait(
                    timeout: !automatic ? 86_400 : polling ? self.options.pollInterval : self.options.safetyRescan)
                if Task.isCancelled { break }
                // Let a burst of events settle into one rescan.
                try? await Task.sleep(for: .seconds(self.options.settle))
                await wake.wait(timeout: 0)
                do {
                    let changes = try await self.rescanOffThePool()
                    watchAll()
                    if changes.changedJobs || !changes.failures.isEmpty {
                        await self.onChange(changes)
                    }
                } catch {
                    self.logger.error("plugin rescan failed: \(error); the loaded plugins keep serving")
                }
            }
        }
    }
}
