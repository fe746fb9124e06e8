import Glibc
import NIOCore
import NIOPosix

/// One TCP connection to Redis: pipelined commands, replies matched in order.
///
/// Made by ``RedisConnection/connect(to:on:onMessage:)``, which also authenticates and selects the
/// database.
final class RedisConnection: Sendable {
    let channel: any Channel
    private let commandTimeout: TimeAmount

    private init(channel: any Channel, commandTimeout: TimeAmount) {
        self.channel = channel
        self.commandTimeout = commandTimeout
    }

    var isActive: Bool { channel.isActive }

    /// Connects, then sends AUTH and SELECT as the configuration asks.
    static func connect(
        to configuration: RedisClient.Configuration, on group: any EventLoopGroup,
        onMessage: (@Sendable (String, ByteBuffer) -> Void)? = nil
    ) async throws -> RedisConnection {
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(configuration.connectTimeout)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            ByteToMessageHandler(RESPDecoder()))
                        try channel.pipeline.syncOperations.addHandler(RedisChannelHandler(onMessage: onMessage))
                    }
                }
                .connect(host: configuration.host, port: configuration.port).get()
        } catch {
            throw RedisError(
                .unreachable,
                "cannot reach Redis at \(configuration.host):\(configuration.port): \(Self.describe(error))")
        }
        let connection = RedisConnection(channel: channel, commandTimeout: configuration.commandTimeout)
        do {
            var setup: [[RESPArgument]] = []
            if let password = configuration.password {
                if let user = configuration.user {
                    setup.append(["AUTH", .string(user), .string(password)])
                } else {
                    setup.append(["AUTH", .string(password)])
                }
            }
            if configuration.database != 0 { setup.append(["SELECT", .string(String(configuration.database))]) }
            if !setup.isEmpty {
                for reply in try await connection.send(setup) { try reply.check() }
            }
        } catch {
            connection.close()
            throw error
        }
        return connection
    }

    private static func describe(_ error: any Error) -> String {
        var underlying: any Error = error
        if let error = error as? NIOConnectionError, let first = error.connectionErrors.first {
            underlying = first.error
        } else if let error = error as? NIOConnectionError, let dns = error.dnsAAAAError ?? error.dnsAError {
            underlying = dns
        }
        if let error = underlying as? IOError { return String(cString: strerror(error.errnoCode)).lowercased() }
        if underlying is ChannelError { return "connect timed out" }
        return "\(underlying)"
    }

    /// Sends commands in one write and waits for all their replies.
    /// - Parameter commands: the commands, each its name and arguments.
    /// - Returns: one reply per command (error replies included, not thrown).
    func send(_ commands: [[RESPArgument]]) async throws -> [RESPValue] {
        var bytes = channel.allocator.buffer(capacity: 64 * commands.count)
        for command in commands { RESPEncoder.encode(command, into: &bytes) }
        return try await send(bytes: bytes, replyCount: commands.count)
    }

    /// Sends encoded commands and waits for `replyCount` replies.
    func send(bytes: ByteBuffer, replyCount: Int) async throws -> [RESPValue] {
        let promise = channel.eventLoop.makePromise(of: [RESPValue].self)
        let request = RedisRequest(
            bytes: bytes, replyCount: replyCount, promise: promise, deadline: .now() + commandTimeout)
        channel.writeAndFlush(request).cascadeFailure(to: promise)
        do {
            return try await promise.futureResult.get()
        } catch let error as RedisError {
            throw error
        } catch {
            throw RedisError(.connectionClosed, "the Redis connection failed: \(error)")
        }
    }

    func close() {
        channel.close(promise: nil)
    }
}
