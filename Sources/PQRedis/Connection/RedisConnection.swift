import Glibc
import NIOCore
import NIOPosix
import NIOSSL

/// One TCP connection to Redis, with TLS when configured: pipelined commands, replies matched in order.
///
/// Made by ``RedisConnection/connect(to:on:onMessage:)``, which also completes the TLS handshake,
/// authenticates and selects the database. The pipeline is, from the socket up: `NIOSSLClientHandler`
/// (TLS only; with a ``TLSHandshakeHandler`` after it until the handshake is done),
/// `ByteToMessageHandler(RESPDecoder())`, ``RedisChannelHandler``.
final class RedisConnection: Sendable {
    let channel: any Channel
    private let commandTimeout: TimeAmount
    private let failure: ConnectionFailure

    private init(channel: any Channel, commandTimeout: TimeAmount, failure: ConnectionFailure) {
        self.channel = channel
        self.commandTimeout = commandTimeout
        self.failure = failure
    }

    var isActive: Bool { channel.isActive }

    /// Connects (and with TLS, completes the handshake), then sends AUTH and SELECT as the
    /// configuration asks.
    /// - Throws: ``RedisError``: `unreachable` when the TCP connect fails, `tls` when TLS cannot be set
    ///   up or the handshake fails (certificate verification included), or an error of AUTH/SELECT.
    static func connect(
        to configuration: RedisClient.Configuration, on group: any EventLoopGroup,
        onMessage: (@Sendable (String, ByteBuffer) -> Void)? = nil
    ) async throws -> RedisConnection {
        let endpoint = "\(configuration.host):\(configuration.port)"
        // TLS settings are checked (files read) before connecting, so that a bad file is named as such.
        let tls = try configuration.tls.map { options throws(RedisError) in
            (context: try RedisTLS.makeContext(options), serverHostname: RedisTLS.serverHostname(configuration.host))
        }
        let handshake = tls.map { _ in group.any().makePromise(of: Void.self) }
        let failure = ConnectionFailure()
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(configuration.connectTimeout)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let handlers = channel.pipeline.syncOperations
                        if let tls, let handshake {
                            try handlers.addHandler(
                                NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverHostname))
                            try handlers.addHandler(
                                TLSHandshakeHandler(
                                    promise: handshake, timeout: configuration.connectTimeout, endpoint: endpoint))
                        }
                        try handlers.addHandler(ByteToMessageHandler(RESPDecoder()))
                        try handlers.addHandler(RedisChannelHandler(onMessage: onMessage, failure: failure))
                    }
                }
                .connect(host: configuration.host, port: configuration.port).get()
        } catch {
            handshake?.fail(error)
            throw RedisError(.unreachable, "cannot reach Redis at \(endpoint): \(Self.describe(error))")
        }
        if let handshake {
            do {
                try await handshake.futureResult.get()
            } catch {
                channel.close(promise: nil)
                throw error as? RedisError
                    ?? RedisError(.tls, "TLS handshake with Redis at \(endpoint) failed: \(error)")
            }
        }
        let connection = RedisConnection(
            channel: channel, commandTimeout: configuration.commandTimeout, failure: failure)
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
        } catch let error as RedisError where error.code != .connectionClosed {
            throw error
        } catch {
            // A write to a connection that closed already: say why it closed, when that is known.
            if let reason = failure.recorded { throw reason }
            throw error as? RedisError ?? RedisError(.connectionClosed, "the Redis connection failed: \(error)")
        }
    }

    func close() {
        channel.close(promise: nil)
    }
}
