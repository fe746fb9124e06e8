import Synchronization

/// A thread-safe counter.
final class AtomicCounter: Sendable {
    private let value = Atomic<Int>(0)
    /// Adds one and returns the new value.
    func increment() -> Int { value.add(1, ordering: .relaxed).newValue }

    private static let tokens = AtomicCounter()
    /// A process-wide unique number.
    static func nextToken() -> Int { tokens.increment() }
}
