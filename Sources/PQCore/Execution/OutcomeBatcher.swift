import Foundation
import Logging

/// Records task outcomes in batches: outcomes that arrive while a write is in flight go to the
/// store together in the next one, so a busy host makes one store round trip for many tasks.
///
/// The first outcome of a batch wakes the writer; the rest join without a wake-up. A failed write
/// is retried with backoff (the store may be restarting); an outcome given up on is left to the
/// lease: the task runs again. Either way `stored` is called once per batch.
final class OutcomeBatcher: @unchecked Sendable {
    // @unchecked: `buffer` and `closed` are guarded by `lock`, a pthread mutex: every plugin
    // thread appends here, and Synchronization.Mutex spins on contention, which with more threads
    // than cores burnt a fifth of a busy host's CPU while holders were preempted.
    private let lock = ConditionLock()
    private var buffer: [TaskOutcome] = []
    private var closed = false
    private let wakeup = Wakeup()
    let logger: Logger
    /// How long a failed write is retried before the outcomes are left to their leases.
    let retryFor: Double

    init(logger: Logger, retryFor: Double) {
        self.logger = logger
        self.retryFor = retryFor
    }

    /// Queues `outcome` for the next write. After ``close()`` it is dropped: the pool has already
    /// given such late tasks back.
    func submit(_ outcome: TaskOutcome) {
        let wake = lock.withLock { () -> Bool in
            guard !closed else { return false }
            buffer.append(outcome)
            return buffer.count == 1
        }
        if wake { wakeup.signal() }
    }

    /// Writes batches until ``close()`` was called and nothing is left. Not ended by cancellation,
    /// so no outcome that the pool waits for is dropped.
    /// - Parameters:
    ///   - write: stores one batch (throws to be retried).
    ///   - stored: called after each batch was written or given up on.
    func run(
        write: @escaping @Sendable ([TaskOutcome]) async throws -> Void,
        stored: @escaping @Sendable ([TaskOutcome]) -> Void
    ) async {
        while true {
            let (batch, closed) = lock.withLock { () -> ([TaskOutcome], Bool) in
                defer { buffer = [] }
                return (buffer, self.closed)
            }
            if batch.isEmpty {
                if closed { return }
                await wakeup.wait(timeout: 0.5)
                continue
            }
            await retrying(batch, write)
            stored(batch)
        }
    }

    /// Stops once the buffered outcomes are written.
    func close() {
        lock.withLock { closed = true }
        wakeup.signal()
    }

    private func retrying(_ outcomes: [TaskOutcome], _ write: @Sendable ([TaskOutcome]) async throws -> Void) async {
        let deadline = TaskClock.now() + retryFor
        var delay = 0.05
        while true {
            do {
                try await write(outcomes)
                return
            } catch {
                if TaskClock.now() + delay > deadline {
                    logger.error(
                        "recording \(outcomes.count) task outcome(s) failed: \(error); giving up, their leases expire and they run again"
                    )
                    return
                }
                logger.warning("recording \(outcomes.count) task outcome(s) failed: \(error); retrying in \(delay) s")
                try? await Task.sleep(for: .seconds(delay))
                delay = min(delay * 2, 2)
            }
        }
    }
}
