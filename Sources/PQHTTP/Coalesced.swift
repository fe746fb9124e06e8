import Synchronization

/// A store read shared by concurrent requests and reused for a moment.
///
/// Queue sizes, host statuses and the published jobs are aggregates that every dashboard and
/// every Prometheus scrape asks for; however many ask at once, the store answers one read per
/// ``maxAge`` seconds. A request arriving while a read is in flight waits for that read.
final class Coalesced<Value: Sendable>: Sendable {
    private struct State {
        var value: Value?
        var time = ContinuousClock.now
        var fetching = false
        var waiters: [CheckedContinuation<Value?, any Error>] = []
    }

    private enum Step {
        case cached(Value)
        case wait
        case fetch
    }

    private let state = Mutex(State())
    private let maxAge: Duration
    private let fetch: @Sendable () async throws -> Value

    init(maxAge: Double, _ fetch: @escaping @Sendable () async throws -> Value) {
        self.maxAge = .nanoseconds(Int64(max(0, maxAge) * 1e9))
        self.fetch = fetch
    }

    func get() async throws -> Value {
        while true {
            let now = ContinuousClock.now
            let step = state.withLock { s -> Step in
                if let v = s.value, now - s.time < maxAge { return .cached(v) }
                if s.fetching { return .wait }
                s.fetching = true
                return .fetch
            }
            switch step {
            case .cached(let value):
                return value
            case .wait:
                // nil: the read ended between the two looks; look again.
                let shared = try await withCheckedThrowingContinuation { (c: CheckedContinuation<Value?, any Error>) in
                    let enqueued = state.withLock { s -> Bool in
                        guard s.fetching else { return false }
                        s.waiters.append(c)
                        return true
                    }
                    if !enqueued { c.resume(returning: nil) }
                }
                if let shared { return shared }
            case .fetch:
                let result: Result<Value, any Error>
                do { result = .success(try await fetch()) } catch { result = .failure(error) }
                let waiters = state.withLock { s -> [CheckedContinuation<Value?, any Error>] in
                    s.fetching = false
                    if case .success(let v) = result {
                        s.value = v
                        s.time = ContinuousClock.now
                    }
                    defer { s.waiters.removeAll() }
                    return s.waiters
                }
                // The reader was cancelled (its client left): the others read again themselves.
                if case .failure(let error) = result, error is CancellationError {
                    for w in waiters { w.resume(returning: nil) }
                } else {
                    for w in waiters { w.resume(with: result.map { Optional($0) }) }
                }
                return try result.get()
            }
        }
    }
}
