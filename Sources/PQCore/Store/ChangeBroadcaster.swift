import Synchronization

/// Fans a "something changed" signal out to any number of `AsyncStream<Void>`s and handlers.
///
/// Each stream buffers at most one pending signal, so a burst of writes wakes a slow consumer once.
/// Handlers are called on the signalling thread, with no task hop in between.
package final class ChangeBroadcaster: Sendable {
    private struct State {
        var next = 0
        var continuations: [Int: AsyncStream<Void>.Continuation] = [:]
        var handlers: [Int: @Sendable () -> Void] = [:]
        var finished = false
    }
    private let state = Mutex(State())

    package init() {}

    /// Gives a new registration a key and stores it with `add`; nil once finished.
    private func register(_ add: (inout State, Int) -> Void) -> Int? {
        state.withLock { state in
            if state.finished { return nil }
            state.next += 1
            add(&state, state.next)
            return state.next
        }
    }

    package func stream() -> AsyncStream<Void> {
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        guard let key = register({ $0.continuations[$1] = continuation }) else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.continuations.removeValue(forKey: key) }
        }
        return stream
    }

    /// Calls `handler` on each later signal until the observation is cancelled or the
    /// broadcaster finishes.
    package func observe(_ handler: @escaping @Sendable () -> Void) -> ChangeObservation {
        guard let key = register({ $0.handlers[$1] = handler }) else { return ChangeObservation {} }
        return ChangeObservation { [weak self] in
            _ = self?.state.withLock { $0.handlers.removeValue(forKey: key) }
        }
    }

    /// Wakes the streams and calls the handlers. After a write that only claimed tasks
    /// (`claimOnly`), the handlers are left out: a claim never makes a task claimable, so a
    /// host's dispatcher is not woken by its own claim to claim again in vain. Streams still
    /// wake: their readers follow events, and a claim records them.
    package func signal(claimOnly: Bool = false) {
        let (continuations, handlers) = state.withLock {
            ($0.continuations.values, claimOnly ? [] : Array($0.handlers.values))
        }
        for continuation in continuations { continuation.yield() }
        for handler in handlers { handler() }
    }

    package func finish() {
        let continuations = state.withLock { state in
            state.finished = true
            state.handlers = [:]
            defer { state.continuations = [:] }
            return Array(state.continuations.values)
        }
        for continuation in continuations { continuation.finish() }
    }
}

/// A handler registered with ``TaskQueueStore/observeChanges(_:)``; ``cancel()`` unregisters it.
public struct ChangeObservation: Sendable {
    private let cancelHandler: @Sendable () -> Void

    init(cancel: @escaping @Sendable () -> Void) {
        cancelHandler = cancel
    }

    /// Stops the handler being called (it may still run once, concurrently).
    public func cancel() { cancelHandler() }
}
