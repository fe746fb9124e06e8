import NIOCore
import Synchronization

/// One write of one or more pipelined commands, answered by as many replies.
struct RedisRequest {
    var bytes: ByteBuffer
    var replyCount: Int
    var promise: EventLoopPromise<[RESPValue]>
    var deadline: NIODeadline
}

/// The requests a connection waits replies for, as a value: which promise the next reply belongs
/// to, when a request is late, what to fail when the connection ends. Tested without I/O.
struct PendingReplies<Promise> {
    struct Entry {
        var promise: Promise
        var expected: Int
        var deadline: NIODeadline
    }

    enum ReceiveAction {
        /// The reply belongs to a request still waiting for more.
        case wait
        /// The request is complete.
        case complete(Promise, [RESPValue])
        /// No request waits: the server sent a reply nobody asked for.
        case unexpected
    }

    private(set) var entries = CircularBuffer<Entry>()
    private(set) var closed = false
    /// The replies received so far for the oldest request. Kept out of `entries`: appending
    /// through `CircularBuffer`'s subscript (get, then set) copied the array on every reply,
    /// which made a pipeline of n commands cost n² copies.
    private var received: [RESPValue] = []

    var isEmpty: Bool { entries.isEmpty }
    var firstDeadline: NIODeadline? { entries.first?.deadline }

    /// Adds a request; `false` when the connection is closed already.
    mutating func append(_ promise: Promise, expected: Int, deadline: NIODeadline) -> Bool {
        guard !closed else { return false }
        entries.append(Entry(promise: promise, expected: expected, deadline: deadline))
        return true
    }

    mutating func receive(_ value: RESPValue) -> ReceiveAction {
        guard let head = entries.first else { return .unexpected }
        if received.isEmpty { received.reserveCapacity(head.expected) }
        received.append(value)
        guard received.count >= head.expected else { return .wait }
        _ = entries.removeFirst()
        defer { received = [] }
        return .complete(head.promise, received)
    }

    /// Whether the oldest request is past its deadline.
    func isLate(now: NIODeadline) -> Bool {
        guard let first = entries.first else { return false }
        return first.deadline <= now
    }

    /// Closes: every waiting request is returned to be failed, later appends are refused.
    mutating func close() -> [Promise] {
        closed = true
        received = []
        defer { entries.removeAll() }
        return entries.map(\.promise)
    }
}

/// Why a connection failed, kept from its first failure: a command sent after it (say, right after
/// a TLS alert closed the connection) fails with that reason rather than a bare "closed".
final class ConnectionFailure: Sendable {
    private let first = Mutex<RedisError?>(nil)

    /// Keeps `error` unless a failure was recorded before.
    func record(_ error: RedisError) {
        first.withLock { if $0 == nil { $0 = error } }
    }

    /// The first failure, if any.
    var recorded: RedisError? { first.withLock { $0 } }
}

/// Matches replies to pipelined requests in order, fails late requests, and hands pub/sub
/// messages to a callback.
final class RedisChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = RESPValue
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = ByteBuffer

    private var pending = PendingReplies<EventLoopPromise<[RESPValue]>>()
    private var timer: Scheduled<Void>?
    private var context: ChannelHandlerContext?
    private let onMessage: (@Sendable (_ channel: String, _ payload: ByteBuffer) -> Void)?
    let failure: ConnectionFailure

    /// - Parameters:
    ///   - onMessage: called for each pub/sub message; `nil` for a command connection.
    ///   - failure: where the first failure of the connection is kept.
    init(
        onMessage: (@Sendable (_ channel: String, _ payload: ByteBuffer) -> Void)? = nil,
        failure: ConnectionFailure = ConnectionFailure()
    ) {
        self.onMessage = onMessage
        self.failure = failure
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        failAll(RedisError(.connectionClosed, "the Redis connection closed"))
        self.context = nil
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        guard pending.append(request.promise, expected: request.replyCount, deadline: request.deadline) else {
            let error = failure.recorded ?? RedisError(.connectionClosed, "the Redis connection closed")
            request.promise.fail(error)
            promise?.fail(error)
            return
        }
        if timer == nil { scheduleTimer(context: context) }
        context.write(wrapOutboundOut(request.bytes), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let value = unwrapInboundIn(data)
        if let onMessage, let message = Self.pubSubMessage(value) {
            onMessage(message.0, message.1)
            return
        }
        if case .push = value { return }  // RESP3 out-of-band data on a command connection
        switch pending.receive(value) {
        case .wait: break
        case .complete(let promise, let values): promise.succeed(values)
        case .unexpected:
            failAll(RedisError(.protocolError, "Redis sent a reply no command asked for"))
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(RedisError(.connectionClosed, "the Redis connection closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let endpoint = context.channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
        let redisError =
            error as? RedisError ?? RedisTLS.describe(error, endpoint: endpoint)
            ?? RedisError(.connectionClosed, "the Redis connection failed: \(error)")
        failAll(redisError)
        context.close(promise: nil)
    }

    private func failAll(_ error: RedisError) {
        failure.record(error)
        timer?.cancel()
        timer = nil
        for promise in pending.close() { promise.fail(error) }
    }

    private func scheduleTimer(context: ChannelHandlerContext) {
        guard let deadline = pending.firstDeadline else { return }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: deadline) {
            loopBound.value.timerFired()
        }
    }

    private func timerFired() {
        timer = nil
        guard let context else { return }
        if pending.isLate(now: .now()) {
            // A reply is late: the stream cannot skip it, so the connection goes.
            failAll(RedisError(.timeout, "Redis did not answer in time"))
            context.close(promise: nil)
        } else if !pending.isEmpty {
            scheduleTimer(context: context)
        }
    }

    /// `["message", channel, payload]` (RESP2 subscriber replies or RESP3 pushes).
    static func pubSubMessage(_ value: RESPValue) -> (String, ByteBuffer)? {
        let items: [RESPValue]
        switch value {
        case .array(let values), .push(let values): items = values
        default: return nil
        }
        guard items.count == 3, case .bulkString(let kind) = items[0],
            kind.readableBytesView.elementsEqual("message".utf8),
            case .bulkString(let channel) = items[1], case .bulkString(let payload) = items[2]
        else { return nil }
        return (String(buffer: channel), payload)
    }
}
