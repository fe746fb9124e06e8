public import Logging
public import NIOCore
import NIOPosix
import Synchronization

/// A small Redis client: a few pipelined connections made on demand and remade with backoff after
/// a failure, Lua scripts called by SHA, and a pub/sub subscriber.
///
/// ```swift
/// let client = RedisClient(configuration: .init(host: "127.0.0.1", port: 6379))
/// let pong = try await client.send(["PING"]).string  // "PONG"
/// await client.close()
/// ```
public final class RedisClient: Sendable {
    /// Where and how to connect.
    public struct Configuration: Sendable {
        /// The server's host name or address.
        public var host: String
        /// The server's port.
        public var port: Int
        /// The ACL user for AUTH, if any.
        public var user: String?
        /// The password for AUTH, if any.
        public var password: String?
        /// The database SELECTed on each connection.
        public var database: Int
        /// Connections in the pool; commands are spread over them and pipelined on each.
        public var poolSize: Int
        /// How long a connect may take.
        public var connectTimeout: TimeAmount
        /// How long a reply may take before its connection is dropped.
        public var commandTimeout: TimeAmount
        /// The first wait after a failed connect; doubled per failure up to ``maxBackoff``.
        public var initialBackoff: TimeAmount
        /// The longest wait between connects.
        public var maxBackoff: TimeAmount
        /// TLS settings, to connect with TLS; `nil` for plain TCP.
        public var tls: TLSOptions?

        /// Creates a configuration.
        /// - Parameters:
        ///   - host: the server's host.
        ///   - port: the server's port.
        ///   - user: the ACL user, if any.
        ///   - password: the password, if any.
        ///   - database: the database number.
        ///   - poolSize: connections in the pool, 2 by default.
        ///   - connectTimeout: 5 s by default.
        ///   - commandTimeout: 10 s by default.
        ///   - initialBackoff: 50 ms by default.
        ///   - maxBackoff: 2 s by default.
        ///   - tls: TLS settings; `nil` (plain TCP) by default.
        public init(
            host: String, port: Int, user: String? = nil, password: String? = nil, database: Int = 0,
            poolSize: Int = 2, connectTimeout: TimeAmount = .seconds(5), commandTimeout: TimeAmount = .seconds(10),
            initialBackoff: TimeAmount = .milliseconds(50), maxBackoff: TimeAmount = .seconds(2),
            tls: TLSOptions? = nil
        ) {
            self.host = host
            self.port = port
            self.user = user
            self.password = password
            self.database = database
            self.poolSize = max(1, poolSize)
            self.connectTimeout = connectTimeout
            self.commandTimeout = commandTimeout
            self.initialBackoff = initialBackoff
            self.maxBackoff = maxBackoff
            self.tls = tls
        }
    }

    /// Commands sent and round trips made, for benchmarks.
    public struct Statistics: Sendable, Equatable {
        /// Commands sent.
        public var commands = 0
        /// Writes that waited for replies (one per pipeline).
        public var roundTrips = 0
        /// Connections made.
        public var connects = 0
    }

    private struct Slot {
        var connection: RedisConnection?
        var connecting: Task<RedisConnection, any Error>?
        var failures = 0
        var retryAt: NIODeadline = .uptimeNanoseconds(0)
    }

    private struct State {
        var slots: [Slot]
        var next = 0
        var closed = false
        var stats = Statistics()
    }

    /// The configuration.
    public let configuration: Configuration
    let logger: Logger
    let group: any EventLoopGroup
    private let state: Mutex<State>

    /// Creates a client; nothing connects until the first command.
    /// - Parameters:
    ///   - configuration: where and how to connect.
    ///   - logger: where connection losses and reconnects are logged.
    ///   - group: the event loops; NIO's shared group when `nil`.
    public init(
        configuration: Configuration, logger: Logger = Logger(label: "pq.redis"), group: (any EventLoopGroup)? = nil
    ) {
        self.configuration = configuration
        self.logger = logger
        self.group = group ?? MultiThreadedEventLoopGroup.singleton
        self.state = Mutex(State(slots: Array(repeating: Slot(), count: configuration.poolSize)))
    }

    /// Commands and round trips so far.
    public var statistics: Statistics { state.withLock { $0.stats } }

    var endpoint: String { "\(configuration.host):\(configuration.port)" }

    private enum Pick {
        case ready(RedisConnection)
        case wait(Task<RedisConnection, any Error>)
        case backoff(NIODeadline, Int)
    }

    /// A live connection of the pool, made (or remade) if needed.
    private func connection() async throws -> RedisConnection {
        while true {
            let pick: Pick = try state.withLock { state in
                guard !state.closed else { throw RedisError(.closed, "the Redis client was closed") }
                let index = state.next % state.slots.count
                state.next &+= 1
                if let connection = state.slots[index].connection, connection.isActive { return .ready(connection) }
                if let connecting = state.slots[index].connecting { return .wait(connecting) }
                if state.slots[index].retryAt > .now() {
                    return .backoff(state.slots[index].retryAt, state.slots[index].failures)
                }
                let wasConnected = state.slots[index].connection != nil
                state.slots[index].connection = nil
                let task = Task { try await self.connect(slot: index, wasConnected: wasConnected) }
                state.slots[index].connecting = task
                return .wait(task)
            }
            switch pick {
            case .ready(let connection): return connection
            case .wait(let task): return try await task.value
            case .backoff(_, _):
                throw RedisError(.unreachable, "cannot reach Redis at \(endpoint) (retrying with backoff)")
            }
        }
    }

    private func connect(slot index: Int, wasConnected: Bool) async throws -> RedisConnection {
        if wasConnected { logger.warning("lost the connection to Redis at \(endpoint); reconnecting") }
        do {
            let connection = try await RedisConnection.connect(to: configuration, on: group)
            let failures = state.withLock { state in
                let failures = state.slots[index].failures
                state.slots[index] = Slot(connection: connection)
                state.stats.connects += 1
                return failures
            }
            if failures > 0 { logger.notice("reconnected to Redis at \(endpoint) after \(failures) failed attempts") }
            return connection
        } catch {
            let failures = state.withLock { state in
                state.slots[index].connecting = nil
                state.slots[index].failures += 1
                let exponent = min(state.slots[index].failures - 1, 16)
                let backoff = min(
                    configuration.maxBackoff.nanoseconds,
                    configuration.initialBackoff.nanoseconds << exponent)
                state.slots[index].retryAt = .now() + .nanoseconds(backoff)
                return state.slots[index].failures
            }
            if failures == 1 || failures % 10 == 0 {
                logger.warning("Redis at \(endpoint) is unreachable (\(failures) attempts): \(error)")
            }
            throw error
        }
    }

    /// Sends one command.
    /// - Parameter command: its name and arguments.
    /// - Returns: the reply; error replies are returned, not thrown.
    public func send(_ command: [RESPArgument]) async throws -> RESPValue {
        try await pipeline([command])[0]
    }

    /// Sends commands in one write on one connection and waits for all their replies.
    /// - Parameter commands: the commands.
    /// - Returns: one reply per command.
    public func pipeline(_ commands: [[RESPArgument]]) async throws -> [RESPValue] {
        let connection = try await connection()
        state.withLock {
            $0.stats.commands += commands.count
            $0.stats.roundTrips += 1
        }
        return try await connection.send(commands)
    }

    /// Calls a Redis function (`FCALL`), loading its library first if this client did not yet,
    /// and again when the server answers that the function is unknown (it was restarted or
    /// flushed).
    /// - Parameters:
    ///   - library: the library that holds the function.
    ///   - function: the function's full name (``RedisFunctionLibrary/function(_:)``).
    ///   - keys: the keys it declares.
    ///   - arguments: its arguments.
    /// - Returns: the function's reply; an error reply is thrown.
    public func callFunction(
        _ library: RedisFunctionLibrary, _ function: String, keys: [RESPArgument], arguments: [RESPArgument]
    ) async throws -> RESPValue {
        for attempt in 0..<2 {
            if !library.loaded.load(ordering: .relaxed) {
                let reply = try await send(["FUNCTION", "LOAD", .string(library.source)])
                // Another client of this build loaded it first: the same text under the same name.
                if case .error(let buffer) = reply, !String(buffer: buffer).contains("already exists") {
                    try reply.check()
                }
                library.loaded.store(true, ordering: .relaxed)
            }
            var command: [RESPArgument] = ["FCALL", .string(function), .string(String(keys.count))]
            command.reserveCapacity(3 + keys.count + arguments.count)
            command.append(contentsOf: keys)
            command.append(contentsOf: arguments)
            let reply = try await send(command)
            if case .error(let buffer) = reply, attempt == 0, String(buffer: buffer).contains("Function not found") {
                library.loaded.store(false, ordering: .relaxed)
                continue
            }
            try reply.check()
            return reply
        }
        throw RedisError(.server, "function \(function) not found after FUNCTION LOAD")
    }

    /// Closes every connection; later commands fail with ``RedisError/Code/closed``.
    public func close() async {
        let connections = state.withLock { state in
            state.closed = true
            defer { state.slots = state.slots.map { _ in Slot() } }
            return state.slots.compactMap(\.connection)
        }
        for connection in connections { try? await connection.channel.close() }
    }

    /// Subscribes to channels on a connection of its own, remade with backoff when it drops.
    ///
    /// The stream yields `(channel, payload)` per message and an empty channel name after each
    /// (re)subscription, since messages may have been missed while disconnected.
    /// - Parameter channels: the channel names.
    /// - Returns: the messages; cancel the consuming task or close the client to end them.
    public func subscribe(to channels: [String]) -> AsyncStream<(channel: String, payload: String)> {
        let (stream, continuation) = AsyncStream.makeStream(
            of: (channel: String, payload: String).self, bufferingPolicy: .bufferingNewest(1024))
        let task = Task {
            await self.subscribe(to: channels) { channel, payload in continuation.yield((channel, payload)) }
            continuation.finish()
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    /// Subscribes to channels on a connection of its own, remade with backoff when it drops, and
    /// calls `handler` on the connection's event loop for each message (it must be quick), and
    /// with an empty channel name after each (re)subscription, since messages may have been
    /// missed while disconnected.
    /// - Parameters:
    ///   - channels: the channel names.
    ///   - handler: receives `(channel, payload)`.
    /// - Returns: when the calling task is cancelled or the client closes.
    public func subscribe(
        to channels: [String], handler: @escaping @Sendable (_ channel: String, _ payload: String) -> Void
    ) async {
        var failures = 0
        while !Task.isCancelled, !self.state.withLock({ $0.closed }) {
            do {
                let connection = try await RedisConnection.connect(to: configuration, on: group) {
                    channel, payload in
                    handler(channel, String(buffer: payload))
                }
                if failures > 0 { logger.notice("pub/sub reconnected to Redis at \(endpoint)") }
                failures = 0
                var bytes = connection.channel.allocator.buffer(capacity: 64)
                RESPEncoder.encode(["SUBSCRIBE"] + channels.map { .string($0) }, into: &bytes)
                for reply in try await connection.send(bytes: bytes, replyCount: channels.count) {
                    try reply.check()
                }
                handler("", "")
                try await withTaskCancellationHandler {
                    try await connection.channel.closeFuture.get()
                } onCancel: {
                    connection.close()
                }
                if !Task.isCancelled { logger.warning("pub/sub connection to Redis at \(endpoint) closed") }
            } catch {
                failures += 1
                if failures == 1 || failures % 10 == 0 {
                    logger.warning("pub/sub cannot reach Redis at \(endpoint): \(error)")
                }
            }
            let exponent = min(failures, 16)
            let backoff = min(
                configuration.maxBackoff.nanoseconds, configuration.initialBackoff.nanoseconds << exponent)
            try? await Task.sleep(for: .nanoseconds(backoff))
        }
    }
}

/// A library of Redis functions (`FUNCTION LOAD`, Redis 7): its code runs once when it loads,
/// not on every call as a script's does.
public final class RedisFunctionLibrary: Sendable {
    /// The library's name.
    public let name: String
    /// The text `FUNCTION LOAD` takes, with its `#!lua name=` line.
    public let source: String
    let loaded = Atomic<Bool>(false)

    /// Creates a library.
    /// - Parameters:
    ///   - name: its name (unique on the server).
    ///   - body: the Lua code, with its `redis.register_function` calls.
    public init(name: String, body: String) {
        self.name = name
        self.source = "#!lua name=\(name)\n" + body
    }

    /// The full name of one of its functions: `<library>_<name>`.
    /// - Parameter name: the short name.
    /// - Returns: the name to call.
    public func function(_ name: String) -> String { self.name + "_" + name }
}
