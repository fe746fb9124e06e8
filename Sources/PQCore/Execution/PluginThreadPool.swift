import Glibc

/// A fixed set of OS threads that run blocking plugin calls, so that no plugin code ever runs on
/// (or blocks) Swift's cooperative thread pool.
public final class PluginThreadPool: @unchecked Sendable {
    // @unchecked: all mutable state is guarded by `mutex`/`condition` (pthread primitives, which
    // Synchronization.Mutex cannot wait on).
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    private var queue: [@Sendable () -> Void] = []
    private var head = 0
    private var stopping = false
    private var idle = 0
    private var threads: [pthread_t] = []

    /// The number of threads.
    public let size: Int

    /// Starts `size` threads.
    /// - Parameter size: the number of threads (at least 1).
    public init(size: Int) {
        self.size = max(1, size)
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
        for _ in 0..<self.size {
            var thread = pthread_t()
            let box = Unmanaged.passRetained(self)
            let rc = pthread_create(&thread, nil, { raw in
                let pool = Unmanaged<PluginThreadPool>.fromOpaque(raw!).takeRetainedValue()
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
        pthread_mutex_lock(&mutex)
        queue.append(work)
        let wake = idle > 0
        pthread_mutex_unlock(&mutex)
        // Only a sleeping thread needs a wake-up; busy ones take the work when they are done.
        if wake { pthread_cond_signal(&condition) }
    }

    /// Runs each of `works` on the pool's threads, waking only as many idle threads as needed.
    /// - Parameter works: blocking work items.
    public func execute(all works: [@Sendable () -> Void]) {
        guard !works.isEmpty else { return }
        pthread_mutex_lock(&mutex)
        queue.append(contentsOf: works)
        let wake = min(idle, works.count)
        pthread_mutex_unlock(&mutex)
        for _ in 0..<wake { pthread_cond_signal(&condition) }
    }

    /// Lets queued work finish, then stops the threads and waits for them.
    public func shutdown() {
        pthread_mutex_lock(&mutex)
        stopping = true
        pthread_cond_broadcast(&condition)
        let joinable = threads
        threads = []
        pthread_mutex_unlock(&mutex)
        for thread in joinable where !pthread_equal(thread, pthread_self()).isTrue {
            pthread_join(thread, nil)
        }
    }

    private func workLoop() {
        while true {
            pthread_mutex_lock(&mutex)
            while head == queue.count && !stopping {
                idle += 1
                pthread_cond_wait(&condition, &mutex)
                idle -= 1
            }
            if head == queue.count {
                pthread_mutex_unlock(&mutex)
                return
            }
            let work = queue[head]
            head += 1
            if head > 1024 && head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            pthread_mutex_unlock(&mutex)
            work()
        }
    }
}

extension Int32 {
    fileprivate var isTrue: Bool { self != 0 }
}
