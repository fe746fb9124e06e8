import Dispatch
import Synchronization

/// A level-triggered wake-up signal for one waiter: `signal()` from anywhere; `wait(timeout:)`
/// returns at once if a signal is pending, else at the next signal or when the timeout passes.
///
/// A wait costs one continuation: the timeout is one dispatch timer per signal, re-armed by each
/// wait, not a sleeping child task. A wait may return early (a stale timer firing); callers loop.
public final class Wakeup: @unchecked Sendable {
    // @unchecked: `timer` is a let whose methods are thread-safe; the rest is in the Mutex.
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
        /// When the current wait times out.
        var deadline = DispatchTime.distantFuture
    }

    private let state = Mutex(State())
    private let timer: any DispatchSourceTimer
    private static let timerQueue = DispatchQueue(label: "pq.wakeup-timers")

    /// Creates a signal with nothing pending.
    public init() {
        timer = DispatchSource.makeTimerSource(queue: Self.timerQueue)
        timer.setEventHandler { [weak self] in self?.timeUp() }
        timer.activate()
    }

    deinit {
        timer.cancel()
    }

    /// Wakes the waiter (or the next one).
    public func signal() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if let w = s.waiter {
                s.waiter = nil
                return w
            }
            s.pending = true
            return nil
        }
        waiter?.resume()
    }

    private func timeUp() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard s.waiter != nil, DispatchTime.now() >= s.deadline else { return nil }
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume()
    }

    /// Waits for a signal, at most `timeout` seconds; returns early on task cancellation.
    public func wait(timeout: Double) async {
        let consumed = state.withLock { s -> Bool in
            if s.pending {
                s.pending = false
                return true
            }
            return false
        }
        if consumed || timeout <= 0 { return }
        let deadline = DispatchTime.now() + .nanoseconds(Int(min(timeout, 86_400) * 1e9))
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = self.state.withLock { s -> Bool in
                    if s.pending || Task.isCancelled {
                        s.pending = false
                        return true
                    }
                    s.waiter = continuation
                    s.deadline = deadline
                    // Armed under the lock: armed after it, a late arming by a wait that a signal
                    // already ended could replace the next wait's deadline with its own, earlier one.
                    timer.schedule(deadline: deadline, leeway: .microseconds(100))
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = self.state.withLock { s -> CheckedContinuation<Void, Never>? in
                defer { s.waiter = nil }
                return s.waiter
            }
            waiter?.resume()
        }
    }
}
