/// Where the HTTP API listens and who may use it (DESIGN.md section 11).
public struct HTTPOptions: Sendable {
    /// The address to bind: a host name or IP literal (IPv6 without brackets).
    public var host: String
    /// The port; 0 picks a free one (the bound port is reported by ``HTTPServer/onListening``).
    public var port: Int
    /// The bearer token every route but `/healthz` asks for; nil: loopback only, no token.
    public var token: String?
    /// Largest request body accepted (a larger one answers 413).
    public var bodyLimit = 1 << 20
    /// Seconds between keep-alive comments on an idle event stream.
    public var keepAlive: Double = 15
    /// Seconds an aggregate read (queue sizes, host statuses, published jobs) is shared by the
    /// requests that ask for it (0: every request reads the store).
    public var aggregateMaxAge: Double = 0.25

    /// The default address of `pq web`.
    public static let defaultAddress = "127.0.0.1:5555"

    /// Options from `HOST:PORT` (`[::1]:PORT` for IPv6) and an optional token.
    /// - Throws: ``HTTPOptionsError`` naming what is wrong: a bad address, or a non-loopback address
    ///   without a token.
    public init(address: String, token: String?) throws(HTTPOptionsError) {
        let (host, port) = try Self.split(address)
        self.host = host
        self.port = port
        self.token = token.flatMap { $0.isEmpty ? nil : $0 }
        if self.token == nil, !Self.isLoopback(host) {
            throw HTTPOptionsError(
                "refusing to serve HTTP on \(address) without a token: anyone who reaches it could queue and revoke tasks; "
                    + "listen on 127.0.0.1 or give --http-token (env PQ_HTTP_TOKEN, pq.toml http_token)")
        }
    }

    /// Splits `HOST:PORT`.
    static func split(_ address: String) throws(HTTPOptionsError) -> (String, Int) {
        var host: Substring
        var portText: Substring
        if address.hasPrefix("[") {
            guard let close = address.firstIndex(of: "]"), address[address.index(after: close)...].hasPrefix(":") else {
                throw HTTPOptionsError("--http must be HOST:PORT ([ADDRESS]:PORT for IPv6), got '\(address)'")
            }
            host = address[address.index(after: address.startIndex)..<close]
            portText = address[address.index(close, offsetBy: 2)...]
        } else {
            guard let colon = address.lastIndex(of: ":"), !address[..<colon].contains(":") else {
                throw HTTPOptionsError("--http must be HOST:PORT, e.g. 127.0.0.1:5555, got '\(address)'")
            }
            host = address[..<colon]
            portText = address[address.index(after: colon)...]
        }
        guard !host.isEmpty, let port = Int(portText), (0...65_535).contains(port) else {
            throw HTTPOptionsError("--http must be HOST:PORT with a port from 0 to 65535, got '\(address)'")
        }
        return (String(host), port)
    }

    /// Whether `host` names this machine only: `localhost`, 127.0.0.0/8 or `::1`.
    public static func isLoopback(_ host: String) -> Bool {
        let h = host.lowercased()
        if h == "localhost" || h == "::1" || h == "0:0:0:0:0:0:0:1" { return true }
        let parts = h.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts.allSatisfy({ UInt8($0) != nil }) else { return false }
        return parts[0] == "127"
    }
}

/// A refused HTTP setting, as one line.
public struct HTTPOptionsError: Error, CustomStringConvertible, Sendable {
    /// What is wrong and how to fix it.
    public var description: String
    init(_ description: String) { self.description = description }
}
