import Logging
import Synchronization

/// Records task outcomes in batches: outcomes that arrive while a write is in flight go to the
/// store together in the next one, so a busy host makes one store round trip for many tasks.
///
/// Each caller is called back once its outcome is stored. A failed write is retried with backoff (the
/// store may be restarting); an outcome given up on is left to the lease: the task runs again.
final class OutcomeBatcher: Sendable {
    private struct State {
        var buffer: [(TaskOutcome, @Sendable () -> Void)] = []
        var closed = false
    }

    private let state = Mutex(State())
    private let wakeup = Wakeup()
    let store: any TaskStore
    let logger: Logger
    /// How long a failed write is retried before the outcome is left to the lease.
    let retryFor: Double

    init(store: any TaskStore, logger: Logger, retryFor: Double) {
        self.store = store
        self.logger = logger
        self.retryFor = retryFor
    }

    /// Queues `outcome` for the next write; `done` runs once it is written or given up on.
    /// After ``close()`` it runs `done` at once: the pool already gave such late tasks back.
    func submit(_ outcome: TaskOutcome, done: @escaping @Sendable () -> Void) {
        let accepted = state.withLock { s -> Bool in
            guard !s.closed else { return false }
            s.buffer.append((outcome, done))
            return true
        }
        if accepted { wakeup.signal() } else { done() }
    }

    /// Writes batches until ``close()`` was called and nothing is left. Not ended by cancellation,
    /// so no outcome that a caller waits for is dropped.
    func run() async {
        while true {
            let (batch, closed) = state.withLock { s -> ([(TaskOutcome, @Sendable () -> Void)], Bool) in
                defer { s.buffer.removeAll(keepingCapacity: true) }
                return (s.buffer, s.closed)
            }
            if batch.isEmpty {
                if closed { return }
                await wakeup.wait(timeout: 0.5)
                continue
            }
            await write(batch.map(\.0))
            for (_, done) in batch { done() }
        }
    }

    /// Stops once the buffered outcomes are written.
    func close() {
        state.withLock { $0.closed = true }
        wakeup.signal()
    }

    private func write(_ outcomes: [TaskOutcome]) async {
        let deadline = TaskClock.now() + retryFor
        var delay = 0.05
        while true {
            do {
                _ = try await store.finish(outcomes)
                return
            } catch {
                if TaskClock.now() + delay > deadline {
                    logger.error(
                        "recording \(outcomes.count) task outcome(s) failed: \(error); giving up, their leases expire and they run again")
                    return
                }
                logger.warning("recording \(outcomes.count) task outcome(s) failed: \(error); retrying in \(delay) s")
                try? await Task.sleep(for: .seconds(delay))
                delay = min(delay * 2, 2)
            }
        }
    }
}
