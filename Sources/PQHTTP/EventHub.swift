import Logging
import NIOCore
import PQCore
import ServiceLifecycle
import Synchronization

/// Fans the store's event stream out to the `GET /api/events` subscribers.
///
/// One reader of the store however many browsers watch, and none while nobody does: on Redis a
/// subscriber makes every host publish its events (``TaskStore/eventStream(after:batch:)``), so
/// the hub subscribes only while it has subscribers. Each event is rendered once as an SSE
/// message, and the messages of up to ``coalescing`` seconds go out together: one buffer,
/// shared by every subscriber, one write on each connection (a host at 20,000 tasks/s makes
/// 60,000 events/s; a write per event per subscriber would cost more than the tasks). A
/// subscriber that falls more than ``bufferLimit`` writes behind is closed rather than slowing
/// the others: its browser reconnects and reloads the lists.
final class EventHub: Service, Sendable {
    /// Writes a subscriber may fall behind before it is closed.
    static let bufferLimit = 1_024
    /// Seconds of events sent as one write.
    static let coalescing = 0.05

    private struct State {
        var next: UInt64 = 0
        var subscribers: [UInt64: AsyncStream<ByteBuffer>.Continuation] = [:]
        var closed = false
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

    /// A new subscriber's messages; nil once the hub has shut down.
    func subscribe() -> (id: UInt64, messages: AsyncStream<ByteBuffer>)? {
        let (stream, continuation) = AsyncStream.makeStream(of: ByteBuffer.self, bufferingPolicy: .bufferingOldest(Self.bufferLimit))
        let id: UInt64? = state.withLock { s in
            guard !s.closed else { return nil }
            s.next += 1
            s.subscribers[s.next] = continuation
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
        removed?.finish()
        if left == 0 { demand.signal() }
    }

    /// Sends `buffer` to every subscriber; closes those that cannot take it.
    private func broadcast(_ buffer: ByteBuffer) {
        let behind = state.withLock { s -> [AsyncStream<ByteBuffer>.Continuation] in
            var behind: [AsyncStream<ByteBuffer>.Continuation] = []
            for (id, continuation) in s.subscribers {
                if case .dropped = continuation.yield(buffer) {
                    behind.append(continuation)
                    s.subscribers.removeValue(forKey: id)
                }
            }
            return behind
        }
        for continuation in behind { continuation.finish() }
    }

    static func message(_ event: TaskEvent) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeString("event: ")
        buffer.writeString(event.kind.rawValue)
        buffer.writeString("\ndata: ")
        buffer.writeString(event.json())
        buffer.writeString("\n\n")
        return buffer
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                if self.count == 0 {
                    await self.demand.wait(timeout: 3_600)
                    continue
                }
                await self.follow()
            }
        }
        let open = state.withLock { s in
            s.closed = true
            defer { s.subscribers.removeAll() }
            return Array(s.subscribers.values)
        }
        for continuation in open { continuation.finish() }
    }

    /// Reads the store's events while anyone subscribes, sending them in batches, with
    /// keep-alive comments when nothing happens.
    private func follow() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    for try await event in self.store.eventStream() {
                        let wasEmpty = self.pending.withLock { buffer -> Bool in
                            let empty = buffer.readableBytes == 0
                            buffer.writeString("event: ")
                            buffer.writeString(event.kind.rawValue)
                            buffer.writeString("\ndata: ")
                            buffer.writeString(event.json())
                            buffer.writeString("\n\n")
                            return empty
                        }
                        // The first message of a window starts it.
                        if wasEmpty { self.flushWake.signal() }
                    }
                } catch {
                    self.logger.warning("the event stream of the store failed: \(error); reconnecting in 1 s")
                    try? await Task.sleep(for: .seconds(1))
                }
            }
            group.addTask {
                var comment = ByteBuffer()
                comment.writeString(": keep-alive\n\n")
                var quiet = 0.0
                while !Task.isCancelled, self.count > 0 {
                    let began = ContinuousClock.now
                    await self.flushWake.wait(timeout: min(self.keepAlive, 1))
                    if self.pending.withLock({ $0.readableBytes }) > 0 {
                        // Let the window fill, then send what came as one write.
                        try? await Task.sleep(for: .seconds(Self.coalescing))
                        let batch = self.pending.withLock { buffer -> ByteBuffer in
                            defer { buffer = ByteBuffer() }
                            return buffer
                        }
                        if batch.readableBytes > 0 { self.broadcast(batch) }
                        quiet = 0
                    } else {
                        let waited = ContinuousClock.now - began
                        quiet += Double(waited.components.seconds) + Double(waited.components.attoseconds) / 1e18
                        if quiet >= self.keepAlive {
                            self.broadcast(comment)
                            quiet = 0
                        }
                    }
                }
            }
            await group.next()
            group.cancelAll()
        }
    }
}
