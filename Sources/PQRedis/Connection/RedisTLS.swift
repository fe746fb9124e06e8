import Foundation
import NIOCore
import NIOSSL
import NIOTLS

extension RedisClient {
    /// How to connect with TLS (`rediss://`): whom to trust, which client certificate to present.
    ///
    /// ```swift
    /// let configuration = RedisClient.Configuration(
    ///     host: "redis.example", port: 6380, tls: .init(caFile: "/etc/pq/redis-ca.pem"))
    /// ```
    public struct TLSOptions: Sendable, Equatable {
        /// A PEM file of the CA certificates to trust; `nil` trusts the system's trust store.
        public var caFile: String?
        /// A PEM file of the client certificate (chain) to present, for mutual TLS.
        public var certificateFile: String?
        /// A PEM file of the client certificate's private key.
        public var keyFile: String?
        /// Whether the server's certificate, and that it names the host, are verified. Off is insecure:
        /// anyone on the path can pose as the server. For tests.
        public var verifyCertificate: Bool

        /// Creates TLS options.
        /// - Parameters:
        ///   - caFile: CA certificates to trust instead of the system's.
        ///   - certificateFile: a client certificate, for mutual TLS; needs `keyFile`.
        ///   - keyFile: the client certificate's key.
        ///   - verifyCertificate: `true` by default.
        public init(
            caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil,
            verifyCertificate: Bool = true
        ) {
            self.caFile = caFile
            self.certificateFile = certificateFile
            self.keyFile = keyFile
            self.verifyCertificate = verifyCertificate
        }
    }
}

/// TLS for Redis connections on swift-nio-ssl: the client context made from ``RedisClient/TLSOptions``,
/// the handler that waits for the handshake, and one-line errors for what can go wrong.
enum RedisTLS {
    /// Makes the TLS context of a connection: the files are read on each connect, so a renewed
    /// certificate is picked up by the next connection.
    /// - Parameter options: the TLS options.
    /// - Returns: the context.
    /// - Throws: ``RedisError`` with code `tls`, naming the file and its URL parameter.
    static func makeContext(_ options: RedisClient.TLSOptions) throws(RedisError) -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        if !options.verifyCertificate { configuration.certificateVerification = .none }
        if let caFile = options.caFile {
            configuration.trustRoots = .certificates(try certificates(in: caFile, what: "CA file (tls_ca)"))
        }
        if options.certificateFile != nil || options.keyFile != nil {
            guard let certificateFile = options.certificateFile, let keyFile = options.keyFile else {
                throw RedisError(.tls, "TLS: a client certificate needs both tls_cert and tls_key")
            }
            let chain = try certificates(in: certificateFile, what: "client certificate (tls_cert)")
            configuration.certificateChain = chain.map { .certificate($0) }
            try requireReadable(keyFile, what: "client key (tls_key)")
            do {
                configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem))
            } catch {
                throw RedisError(.tls, "TLS: the client key (tls_key) \(keyFile) holds no PEM private key")
            }
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch NIOSSLError.failedToLoadPrivateKey {
            // The key parsed, but BoringSSL refused it for the certificate.
            throw RedisError(
                .tls,
                "TLS: the client key (tls_key) \(options.keyFile ?? "") does not belong to the client certificate "
                    + "(tls_cert) \(options.certificateFile ?? "")")
        } catch {
            throw RedisError(.tls, "TLS: cannot set up the TLS context: \(reasons(error) ?? "\(error)")")
        }
    }

    /// The name to send as SNI and verify the certificate against: the host, unless it is an IP
    /// address (SNI carries names only; an address is checked against the certificate's IP entries).
    static func serverHostname(_ host: String) -> String? {
        (try? SocketAddress(ipAddress: host, port: 0)) == nil ? host : nil
    }

    private static func requireReadable(_ path: String, what: String) throws(RedisError) {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw RedisError(.tls, "TLS: the \(what) \(path) was not found")
        }
        guard !isFolder.boolValue else {
            throw RedisError(.tls, "TLS: the \(what) \(path) is a folder; name a PEM file")
        }
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw RedisError(.tls, "TLS: the \(what) \(path) cannot be read (permissions)")
        }
    }

    private static func certificates(in path: String, what: String) throws(RedisError) -> [NIOSSLCertificate] {
        try requireReadable(path, what: what)
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMFile(path)
        } catch {
            throw RedisError(.tls, "TLS: the \(what) \(path) is not a PEM certificate file")
        }
        guard !certificates.isEmpty else {
            throw RedisError(.tls, "TLS: the \(what) \(path) holds no PEM certificate")
        }
        return certificates
    }

    // MARK: - Errors

    /// A one-line ``RedisError`` for an error of the TLS layer; `nil` for other errors.
    /// - Parameters:
    ///   - error: what NIOSSL reported.
    ///   - endpoint: `host:port`.
    /// - Returns: the error, code `tls`, or `connectionClosed` when the server just hung up.
    static func describe(_ error: any Error, endpoint: String) -> RedisError? {
        if let error = error as? NIOSSLExtraError, error == .failedToValidateHostname {
            return RedisError(
                .tls,
                "TLS: certificate verification failed for Redis at \(endpoint): the certificate does not name "
                    + "this host")
        }
        if let error = error as? BoringSSLError {
            // After the handshake, e.g. an alert of a server that checks the client certificate only then (TLS 1.3).
            return explain(reasons(error) ?? "\(error)", endpoint: endpoint, during: "connection")
        }
        guard let error = error as? NIOSSLError else { return nil }
        switch error {
        case .uncleanShutdown:
            return RedisError(
                .connectionClosed, "the Redis connection at \(endpoint) closed (without TLS close_notify)")
        case .handshakeFailed(let inner):
            return explain(reasons(inner) ?? "\(inner)", endpoint: endpoint, during: "handshake")
        case .shutdownFailed(let inner):
            return explain(reasons(inner) ?? "\(inner)", endpoint: endpoint, during: "shutdown")
        default:
            return RedisError(.tls, "TLS with Redis at \(endpoint) failed: \(error)")
        }
    }

    /// The message for BoringSSL's reason codes, in words where the cause is common.
    private static func explain(_ reasons: String, endpoint: String, during phase: String) -> RedisError {
        if reasons.contains("CERTIFICATE_VERIFY_FAILED") {
            return RedisError(
                .tls,
                "TLS: certificate verification failed for Redis at \(endpoint): its certificate is not signed by a "
                    + "trusted CA (for a private CA add tls_ca=CA.pem to the URL)")
        }
        if reasons.contains("CERTIFICATE_REQUIRED") {
            return RedisError(
                .tls,
                "TLS: Redis at \(endpoint) requires a client certificate: give one with tls_cert=CERT.pem&tls_key=KEY.pem"
            )
        }
        if reasons.contains("ALERT_BAD_CERTIFICATE") || reasons.contains("ALERT_UNKNOWN_CA")
            || reasons.contains("ALERT_CERTIFICATE_UNKNOWN")
        {
            return RedisError(
                .tls,
                "TLS: Redis at \(endpoint) refused the client certificate (\(reasons)): give one signed by a CA it "
                    + "trusts with tls_cert= and tls_key=")
        }
        if reasons.contains("WRONG_VERSION_NUMBER") || reasons.contains("PACKET_LENGTH_TOO_LONG")
            || reasons.contains("RECORD_TOO_LARGE")
        {
            return RedisError(
                .tls,
                "TLS handshake with Redis at \(endpoint) failed: the server does not speak TLS on this port "
                    + "(use redis:// for a plain port)")
        }
        return RedisError(.tls, "TLS \(phase) with Redis at \(endpoint) failed: \(reasons)")
    }

    /// BoringSSL's reason codes in an error (`CERTIFICATE_VERIFY_FAILED`, ...), comma-separated; `nil`
    /// when it has none.
    static func reasons(_ error: any Error) -> String? {
        // Each entry reads "Error: 268435581 error:1000007d:SSL routines:OPENSSL_internal:REASON at file:line".
        let text = "\(error)"
        var found: [String] = []
        var rest = text[...]
        while let marker = rest.range(of: "OPENSSL_internal:") {
            let reason = rest[marker.upperBound...].prefix { $0.isUppercase || $0.isNumber || $0 == "_" }
            if !reason.isEmpty, !found.contains(String(reason)) { found.append(String(reason)) }
            rest = rest[marker.upperBound...]
        }
        return found.isEmpty ? nil : found.joined(separator: ", ")
    }
}

/// Waits for the TLS handshake of a new connection, so that a failure is reported when connecting
/// rather than as the failure of the first command: completes its promise when NIOSSL reports the
/// handshake done (then leaves the pipeline), and fails it on the first error, when the channel
/// closes, or when the timeout passes first.
final class TLSHandshakeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let promise: EventLoopPromise<Void>
    private let timeout: TimeAmount
    private let endpoint: String
    private var timer: Scheduled<Void>?
    private var done = false

    /// - Parameters:
    ///   - promise: completed when the handshake is done, failed with a ``RedisError`` otherwise.
    ///   - timeout: how long the handshake may take once connected.
    ///   - endpoint: `host:port`, for messages.
    init(promise: EventLoopPromise<Void>, timeout: TimeAmount, endpoint: String) {
        self.promise = promise
        self.timeout = timeout
        self.endpoint = endpoint
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startTimer(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        startTimer(context: context)
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            complete(.success(()))
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        complete(
            .failure(
                RedisTLS.describe(error, endpoint: endpoint)
                    ?? RedisError(.tls, "TLS handshake with Redis at \(endpoint) failed: \(error)")))
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        complete(
            .failure(
                RedisError(
                    .tls,
                    "TLS handshake with Redis at \(endpoint) failed: the server closed the connection "
                        + "(is it a TLS port? does it want a client certificate?)")))
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        complete(.failure(RedisError(.connectionClosed, "the Redis connection at \(endpoint) closed")))
    }

    private func startTimer(context: ChannelHandlerContext) {
        guard timer == nil, !done else { return }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = loopBound.value
            handler.complete(
                .failure(
                    RedisError(
                        .timeout, "TLS handshake with Redis at \(handler.endpoint) timed out (is it a TLS port?)")))
            context.close(promise: nil)
        }
    }

    private func complete(_ result: Result<Void, RedisError>) {
        guard !done else { return }
        done = true
        timer?.cancel()
        timer = nil
        promise.completeWith(result.mapError { $0 as any Error })
    }
}
