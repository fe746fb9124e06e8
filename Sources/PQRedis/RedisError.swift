/// An error of the Redis client: a code to match on, a message for the user, and the server involved.
///
/// ```swift
/// do { _ = try await client.send(["PING"]) }
/// catch let error as RedisError where error.code == .unreachable { print(error) }
/// ```
public struct RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, as a value to match on; new codes may be added.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        fileprivate enum Base: String, Sendable {
            case unreachable, connectionClosed, timeout, server, protocolError, unexpectedReply, closed, tls
        }
        fileprivate let base: Base

        /// The server could not be reached (refused, unknown host, connect timeout).
        public static let unreachable = Code(base: .unreachable)
        /// The connection closed before the reply came.
        public static let connectionClosed = Code(base: .connectionClosed)
        /// No reply within the command timeout.
        public static let timeout = Code(base: .timeout)
        /// The server answered with an error reply (`-ERR ...`).
        public static let server = Code(base: .server)
        /// The server sent bytes that are not RESP.
        public static let protocolError = Code(base: .protocolError)
        /// A reply of another shape than the command expects.
        public static let unexpectedReply = Code(base: .unexpectedReply)
        /// The client was closed.
        public static let closed = Code(base: .closed)
        /// TLS failed: a certificate or key file could not be loaded, the server's certificate did not
        /// verify, or the TLS handshake failed.
        public static let tls = Code(base: .tls)

        /// The code's name.
        public var description: String { base.rawValue }
    }

    /// What went wrong.
    public let code: Code
    /// One line for the user.
    public let message: String

    /// Creates an error.
    /// - Parameters:
    ///   - code: what went wrong.
    ///   - message: one line for the user.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// An error reply of the server.
    /// - Parameter message: the reply text, e.g. `NOSCRIPT No matching script`.
    /// - Returns: the error.
    public static func server(_ message: String) -> RedisError { RedisError(.server, message) }

    /// Whether the command may not have reached the server or its reply was lost: the connection,
    /// not the command, failed (TLS failures included: no command is sent before the handshake).
    public var isConnectionFailure: Bool {
        code == .unreachable || code == .connectionClosed || code == .timeout || code == .tls
    }

    /// The message.
    public var description: String { message }
}
