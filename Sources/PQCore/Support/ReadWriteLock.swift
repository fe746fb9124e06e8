import Glibc

/// A value behind a `pthread_rwlock_t`: many readers at once, one writer.
///
/// For state read on every task by every plugin thread and written rarely (the job registry):
/// readers never wait for each other, and a contended wait parks in the kernel instead of
/// spinning as `Synchronization.Mutex` does, which matters with more threads than cores.
final class ReadWriteLock<Value>: @unchecked Sendable {
    // @unchecked: `value` is only touched with the lock held (shared for reads, exclusive for writes).
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>
    private var value: Value

    init(_ value: Value) {
        self.value = value
        lock = .allocate(capacity: 1)
        lock.initialize(to: pthread_rwlock_t())
        pthread_rwlock_init(lock, nil)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    /// Runs `body` with shared access.
    func read<T>(_ body: (borrowing Value) throws -> T) rethrows -> T {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body(value)
    }

    /// Runs `body` with exclusive access.
    func write<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body(&value)
    }
}
