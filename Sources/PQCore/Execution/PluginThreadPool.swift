import Foundation
import Glibc

/// A fixed set of OS threads that run blocking plugin calls, so that no plugin code ever runs on
/// (or blocks) Swift's cooperative thread pool.
///
/// Wake-ups cost more than short jobs (a futex wake and a context switch, several microseconds),
/// so the pool keeps at most one wake-up in flight: queueing work wakes one idle thread, and a
/// thread that takes work while more is waiting wakes the next one before it runs its own. Short
/// jobs are drained by the threads already awake before the next one gets up; long jobs spread
/// over all threads in a cascade.
public final class PluginThreadPool: @unchecked Sendable {
    // @unchecked: all mutable state is guarded by `lock` (a ``ConditionLock``: threads sleep on it).
    private let lock = ConditionLock()
    private var queue: [@Sendable () -> Void] = []
    private var head = 0
    private var stopping = false
    private var idle = 0
    /// A thread was signalled and has not yet woken up.
    private var waking = false
    private var threads: [pthread_t] = []

    /// The number of threads.
    public let size: Int

    /// Starts `size` threads.
    /// - Parameter size: the number of threads (at least 1).
    public init(size: Int) {
        self.size = max(1, size)
        for _ in 0..<self.size {
            var thread = pthread_t()
            let box = Unmanaged.passRetained(self)
            let rc = pthread_create(
                &thread, nil,
                { raw in
                    let pool = Unmanaged<PluginThreadPool>.fromOpaque(raw!).takeRetainedValue()
                    Thread.current.name = "pq-plugin"
                    pool.workLoop()
                    return nil
                }, box.toOpaque())
            if rc == 0 {
                threads.append(thread)
            } else {
                box.release()
            }
        }
    }

    /// Runs `work` on one of the pool's threads, as soon as one is free.
    /// - Parameter work: the blocking work.
    public func execute(_ work: @escaping @Sendable () -> Void) {
        lock.lock()
        queue.append(work)
        let wake = takeWakeLocked()
        lock.unlock()
        if wake { lock.signal() }
    }

    /// Runs each of `works` on the pool's threads; threads wake one after another while work is
    /// left (see the type's notes).
    /// - Parameter works: blocking work items.
    public func execute(all works: [@Sendable () -> Void]) {
        guard !works.isEmpty else { return }
        lock.lock()
        queue.append(contentsOf: works)
        let wake = takeWakeLocked()
        lock.unlock()
        if wake { lock.signal() }
    }

    /// Work items queued and not yet taken by a thread.
    public var backlog: Int {
        lock.lock()
        defer { lock.unlock() }
        return queue.count - head
    }

    /// Whether the caller should signal one thread: some sleep and none is already being woken.
    /// Call with `lock` held.
    private func takeWakeLocked() -> Bool {
        guard idle > 0, !waking else { return false }
        waking = true
        return true
    }

    /// Lets queued work finish, then stops the threads and waits for them.
    public func shutdown() {
        lock.lock()
        stopping = true
        lock.broadcast()
        let joinable = threads
        threads = []
        lock.unlock()
        for thread in joinable where !pthread_equal(thread, pthread_self()).isTrue {
            pthread_join(thread, nil)
        }
    }

    private func workLoop() {
        while true {
            lock.lock()
            while head == queue.count && !stopping {
                idle += 1
                lock.wait()
                idle -= 1
                waking = false
            }
            if head == queue.count {
                lock.unlock()
                return
            }
            let work = queue[head]
            head += 1
            if head > 1024 && head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            // More is waiting: get the next thread up while this one runs its job.
            let wake = head < queue.count && takeWakeLocked()
            lock.unlock()
            if wake { lock.signal() }
            work()
        }
    }
}

extension Int32 {
    fileprivate var isTrue: Bool { self != 0 }
}
