import Logging
import NIOCore
import PQCore
import ServiceLifecycle
import Synchronization

/// Fans the store's event stream out to the `GET /api/events` subscribers.
///
/// One reader of the store however many browsers watch, and none while nobody does: on Redis a
/// subscriber makes every host publish its events (``TaskEventLog/followEvents(after:batch:following:_:)``), so
/// the hub subscribes only while it has subscribers. Each event is rendered once as an SSE
/// message, and the messages of up to ``coalescing`` seconds go out together: one buffer,
/// shared by every subscriber, one write on each connection (a host at 20,000 tasks/s makes
/// 60,000 events/s; a write per event per subscriber would cost more than the tasks). A
/// subscriber more than ``byteLimit`` bytes behind is closed rather than held in memory: its
/// browser reconnects and reloads its lists.
final class EventHub: Sendable {
    /// Bytes a subscriber may fall behind before it is closed.
    static let byteLimit = 8 << 20
    /// Seconds of events sent as one write.
    static let coalescing = 0.05

    private struct Subscriber {
        let continuation: AsyncStream<ByteBuffer>.Continuation
        /// Bytes handed to it and not yet written to its connection.
        var bytes = 0
    }

    private struct State {
        var next: UInt64 = 0
        var subscribers: [UInt64: Subscriber] = [:]
        var closed = false
        /// Whether the store's stream is followed from a known position.
        var following = false
        var followWaiters: [CheckedContinuation<Void, Never>] = []
        /// The last event seen, to resume after a failed stream without a gap.
        var lastSeq: Int64 = 0
    }

    private let store: any TaskStore
    private let keepAlive: Double
    private let logger: Logger
    private let state = Mutex(State())
    private let demand = Wakeup()
    /// Rendered messages not yet sent.
    private let pending = Mutex(ByteBuffer())
    private let flushWake = Wakeup()

    init(store: any TaskStore, keepAlive: Double, logger: Logger) {
        self.store = store
        self.keepAlive = keepAlive
        self.logger = logger
    }

    /// Subscribers now.
    var count: Int { state.withLock { $0.subscribers.count } }

    /// Whether the hub has shut down (new subscribers are refused).
    var isClosed: Bool { state.withLock { $0.closed } }

    /// A new subscriber's messages; nil once the hub has shut down.
    func subscribe() -> (id: UInt64, messages: AsyncStream<ByteBuffer>)? {
        let (stream, continuation) = AsyncStream.makeStream(of: ByteBuffer.self, bufferingPolicy: .unbounded)
        let id: UInt64? = state.withLock { s in
            guard !s.closed else { return nil }
            s.next += 1
            s.subscribers[s.next] = Subscriber(continuation: continuation)
            return s.next
        }
        guard let id else { return nil }
        continuation.onTermination = { [weak self] _ in self?.unsubscribe(id) }
        demand.signal()
        return (id, stream)
    }

    // A continuation is finished outside the lock: finishing runs its `onTermination`, which
    // unsubscribes, which takes the lock.

    func unsubscribe(_ id: UInt64) {
        let (removed, left) = state.withLock { s in (s.subscribers.removeValue(forKey: id), s.subscribers.count) }
        removed?.continuation.finish()
        if left == 0 { demand.signal() }
    }

    /// `bytes` of a subscriber's messages reached its connection.
    func written(_ id: UInt64, bytes: Int) {
        state.withLock { s in s.subscribers[id]?.bytes -= bytes }
    }

    /// Returns once the hub follows the store from a known position (events after this moment
    /// reach the subscribers), or it has shut down. It follows as soon as it has a subscriber.
    func waitUntilFollowing() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.following || s.closed { return true }
                s.followWaiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    private func setFollowing(_ on: Bool) {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.following = on
            guard on || s.closed else { return [] }
            defer { s.followWaiters.removeAll() }
            return s.followWaiters
        }
        for w in waiters { w.resume() }
    }

    /// Sends `buffer` to every subscriber; closes those too far behind.
    private func broadcast(_ buffer: ByteBuffer) {
        let size = buffer.readableBytes
        let behind = state.withLock { s -> [AsyncStream<ByteBuffer>.Continuation] in
            var behind: [AsyncStream<ByteBuffer>.Continuation] = []
            for (id, subscriber) in s.subscribers {
                if subscriber.bytes + size > Self.byteLimit {
                    behind.append(subscriber.continuation)
                    s.subscribers.removeValue(forKey: id)
                    continue
                }
                s.subscribers[id]?.bytes += size
                subscriber.continuation.yield(buffer)
            }
            return behind
        }
        for continuation in behind {
            logger.notice("an event stream client fell \(Self.byteLimit >> 20) MiB behind and was closed")
            continuation.finish()
        }
    }

    /// Runs until the task is cancelled or the surrounding service group shuts down.
    func run() async {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                if self.count == 0 {
                    await self.demand.wait(timeout: 3_600)
                    continue
                }
                await self.follow()
            }
        }
        let (open, waiters) = state.withLock { s in
            s.closed = true
            defer {
                s.subscribers.removeAll()
                s.followWaiters.removeAll()
            }
            return (s.subscribers.values.map(\.continuation), s.followWaiters)
        }
        for continuation in open { continuation.finish() }
        for w in waiters { w.resume() }
    }

    /// Reads the store's events while anyone subscribes, sending them in batches, with
    /// keep-alive comments when nothing happens.
    private func follow() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.readStore() }
            group.addTask { await self.flushBatches() }
            await group.next()
            group.cancelAll()
        }
        setFollowing(false)
    }

    private func readStore() async {
        do {
            let resume = state.withLock { $0.lastSeq }
            let cursor = resume > 0 ? resume : try await store.lastEventCursor()
            if store.keepsEventLog {
                try await readLog(after: cursor)
            } else {
                // Following once the subscription is made: clients let in after that miss nothing.
                let following: @Sendable () -> Void = { [self] in setFollowing(true) }
                try await store.followEvents(after: cursor, batch: 512, following: following) { event in
                    take([event])
                    return true
                }
            }
            if !Task.isCancelled { logger.warning("the event stream of the store ended; following it again in 1 s") }
        } catch {
            if !Task.isCancelled {
                logger.warning("the event stream of the store failed: \(error); following it again in 1 s")
            }
        }
        // Back off before the next follow, whatever ended this one.
        try? await Task.sleep(for: .seconds(1))
    }

    /// Reads the store's event log a page at a time after each change (a stream of single
    /// events costs a task switch per event; at 60,000 events/s that was most of the hub's CPU).
    private func readLog(after cursor: Int64) async throws {
        var last = cursor
        var changes = store.changes().makeAsyncIterator()
        setFollowing(true)
        while !Task.isCancelled {
            while true {
                let events = try await store.events(after: last, limit: 2_048)
                guard let newest = events.last else { break }
                take(events)
                last = newest.seq
                if events.count < 2_048 { break }
            }
            guard await changes.next() != nil else { return }
        }
    }

    /// Renders `events` into the pending batch.
    private func take(_ events: [TaskEvent]) {
        guard let newest = events.last else { return }
        let wasEmpty = pending.withLock { buffer -> Bool in
            let empty = buffer.readableBytes == 0
            for event in events {
                buffer.writeString("event: ")
                buffer.writeString(event.kind.rawValue)
                buffer.writeString("\ndata: ")
                buffer.writeString(event.json())
                buffer.writeString("\n\n")
            }
            return empty
        }
        if newest.seq > 0 { state.withLock { $0.lastSeq = newest.seq } }
        // The first message of a window starts it.
        if wasEmpty { flushWake.signal() }
    }

    private func flushBatches() async {
        var comment = ByteBuffer()
        comment.writeString(": keep-alive\n\n")
        var quiet = 0.0
        while !Task.isCancelled, count > 0 {
            let began = ContinuousClock.now
            await flushWake.wait(timeout: min(keepAlive, 1))
            if pending.withLock({ $0.readableBytes }) > 0 {
                // Let the window fill, then send what came as one write.
                try? await Task.sleep(for: .seconds(Self.coalescing))
                let batch = pending.withLock { buffer -> ByteBuffer in
                    defer { buffer = ByteBuffer() }
                    return buffer
                }
                if batch.readableBytes > 0 { broadcast(batch) }
                quiet = 0
            } else {
                let waited = ContinuousClock.now - began
                quiet += Double(waited.components.seconds) + Double(waited.components.attoseconds) / 1e18
                if quiet >= keepAlive {
                    broadcast(comment)
                    quiet = 0
                }
            }
        }
    }
}
