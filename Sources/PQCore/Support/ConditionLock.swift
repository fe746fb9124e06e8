import Glibc

/// The package's lock for threads that must sleep until told: a pthread mutex and condition
/// variable.
///
/// State that is only guarded, never waited on, uses `Synchronization.Mutex`. This type is for
/// the rest: `Mutex` has no condition to wait on (plugin threads, the database threads), and on
/// Linux it spins under contention, which with more threads than cores burnt a fifth of a busy
/// host's CPU while holders were preempted (the outcome batcher every plugin thread appends to,
/// the frame writer of a worker process). The pthread objects live in memory the lock
/// allocates: a pthread object stored in a Swift property and passed with `&` has no address
/// Swift promises to keep (NIOLock keeps its lock in a `ManagedBuffer` for the same reason).
package final class ConditionLock: @unchecked Sendable {
    // @unchecked: the pointers never change; what they point to is the pthread objects'.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    package init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        condition.deinitialize(count: 1)
        condition.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    package func lock() { pthread_mutex_lock(mutex) }

    package func unlock() { pthread_mutex_unlock(mutex) }

    /// Sleeps until signalled; call with the lock held (it is held again on return).
    package func wait() { pthread_cond_wait(condition, mutex) }

    /// Wakes one waiter.
    package func signal() { pthread_cond_signal(condition) }

    /// Wakes every waiter.
    package func broadcast() { pthread_cond_broadcast(condition) }

    /// Runs `body` with the lock held.
    package func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}
