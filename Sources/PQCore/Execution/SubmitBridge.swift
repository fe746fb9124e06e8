import Logging
import Synchronization

/// Carries child tasks from plugin threads to the store without blocking them.
///
/// A plugin's `submit` may run on a thread of Swift's cooperative pool (PQKit jobs are async), so
/// waiting there for the store could starve the very pool the store's continuation needs. The
/// bridge checks the request at once, assigns the id, and queues the task in the background; the
/// parent's own outcome is recorded only after its children are in the store.
final class SubmitBridge: Sendable {
    private struct State {
        var pending: [String: Int] = [:]  // parent id -> children not yet stored
        var waiters: [String: [@Sendable () -> Void]] = [:]
        var closed = false
    }

    // Asked by every finishing task on every plugin thread: a lock that parks, not spins.
    private let state = ReadWriteLock(State())
    private let buffer = Mutex<[NewTask]>([])
    private let wakeup = Wakeup()

    /// Accepts a checked child task; returns its id at once.
    func submit(_ task: NewTask) throws -> String {
        let parent = task.fromTask ?? ""
        let accepted = state.write { s -> Bool in
            guard !s.closed else { return false }
            s.pending[parent, default: 0] += 1
            return true
        }
        guard accepted else {
            throw CallHookError(message: "host is shutting down; child task '\(task.name)' not queued")
        }
        buffer.withLock { $0.append(task) }
        wakeup.signal()
        return task.id ?? ""
    }

    /// Whether no child of `parent` accepted so far waits to be stored. A child accepted after
    /// this look belongs to a run that already ended, so it is not this outcome's to wait for.
    func hasNoPendingChildren(of parent: String) -> Bool {
        state.read { $0.pending.isEmpty || $0.pending[parent] == nil }
    }

    /// Runs `then` once every child of `parent` accepted so far is stored (or failed to be):
    /// at once when there are none.
    func whenChildrenStored(of parent: String, then: @escaping @Sendable () -> Void) {
        // Most tasks have no children: a shared look settles them without excluding anyone.
        if hasNoPendingChildren(of: parent) {
            then()
            return
        }
        let now = state.write { s -> Bool in
            if s.pending[parent] == nil { return true }
            s.waiters[parent, default: []].append(then)
            return false
        }
        if now { then() }
    }

    private func done(parent: String) {
        let waiters = state.write { s -> [@Sendable () -> Void] in
            let left = (s.pending[parent] ?? 1) - 1
            if left > 0 {
                s.pending[parent] = left
                return []
            }
            s.pending[parent] = nil
            return s.waiters.removeValue(forKey: parent) ?? []
        }
        for w in waiters { w() }
    }

    /// Stores accepted children, a burst in one store call, until ``finish()`` was called and
    /// every accepted child is stored. Not ended by task cancellation, so no child is dropped.
    func serve(store: any TaskStore, logger: Logger, onStored: @escaping @Sendable () -> Void) async {
        while true {
            let batch = buffer.withLock { b -> [NewTask] in
                defer { b.removeAll(keepingCapacity: true) }
                return b
            }
            if batch.isEmpty {
                if state.write({ $0.closed }) { return }
                await wakeup.wait(timeout: 0.25)
                continue
            }
            do {
                _ = try await store.enqueue(batch)
            } catch {
                logger.error("queueing \(batch.count) child task(s) failed: \(error)")
            }
            for task in batch { done(parent: task.fromTask ?? "") }
            onStored()
        }
    }

    /// Stops accepting children; the ones accepted are still stored.
    func finish() {
        state.write { $0.closed = true }
        wakeup.signal()
    }
}
