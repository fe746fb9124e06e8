/// Where tasks are stored, as given by `--store` / `PQ_STORE` (DESIGN.md §6).
///
/// ```swift
/// let url = try StoreURL(parsing: "sqlite:var/pq.db")
/// let store = try makeStore(url: url)
/// ```
public enum StoreURL: Sendable, Equatable, CustomStringConvertible {
    /// `memory:` — in this process only.
    case memory
    /// `sqlite:PATH` — a SQLite file; PATH may be relative to the current directory.
    case sqlite(path: String)
    /// `redis://[user:password@]host:port/db?namespace=pq`, or `rediss://...` for TLS.
    case redis(RedisStoreURL)

    /// The accepted forms, for error messages.
    public static let acceptedForms =
        "memory:, sqlite:PATH, redis://[user:password@]host:port/db?namespace=pq, "
        + "rediss://...?tls_ca=CA.pem&tls_cert=CERT.pem&tls_key=KEY.pem (TLS)"

    /// Parses a store URL.
    /// - Parameter text: e.g. `memory:`, `sqlite:pq.db`, `sqlite:///var/pq.db`, `redis://localhost:6379/0`,
    ///   `rediss://redis.example:6380/0?tls_ca=ca.pem`.
    /// - Throws: ``TaskStoreError`` with code `invalidStoreURL`: one line naming the URL and the accepted forms.
    public init(parsing text: String) throws(TaskStoreError) {
        let trimmed = text.trimmingWhitespace()
        func invalid(_ why: String) -> TaskStoreError {
            TaskStoreError(
                .invalidStoreURL,
                "invalid store URL \"\(text)\": \(why); accepted forms: \(StoreURL.acceptedForms)")
        }
        if trimmed == "memory:" || trimmed == "memory" || trimmed == "memory://" {
            self = .memory
            return
        }
        if trimmed.hasPrefix("sqlite:") {
            var path = String(trimmed.dropFirst("sqlite:".count))
            if path.hasPrefix("//") { path = String(path.dropFirst(2)) }  // sqlite:///abs or sqlite://rel
            guard !path.isEmpty else { throw invalid("the sqlite: form needs a file path, e.g. sqlite:pq.db") }
            guard !path.hasSuffix("/") else { throw invalid("\(path) names a folder; name a file, e.g. \(path)pq.db") }
            self = .sqlite(path: path)
            return
        }
        if trimmed.hasPrefix("redis://") || trimmed.hasPrefix("rediss://") {
            self = .redis(try RedisStoreURL(parsing: trimmed, invalid: invalid))
            return
        }
        if !trimmed.contains(":") || trimmed.hasPrefix("/") || trimmed.hasPrefix(".") {
            throw invalid("no scheme; for a SQLite file write sqlite:\(trimmed)")
        }
        throw invalid("unknown scheme \"\(trimmed.prefix { $0 != ":" })\"")
    }

    /// The URL in its canonical form (a Redis password is masked).
    public var description: String {
        switch self {
        case .memory: "memory:"
        case .sqlite(let path): "sqlite:\(path)"
        case .redis(let redis): redis.description
        }
    }
}

/// The parts of a `redis://` or `rediss://` store URL.
///
/// `rediss://` connects with TLS, verifying the server's certificate against the system's trust
/// store, or against the CA file of `tls_ca=PATH`; `tls_cert=PATH&tls_key=PATH` present a client
/// certificate (mutual TLS); `tls_verify=none` skips verification (insecure, for tests).
public struct RedisStoreURL: Sendable, Equatable, CustomStringConvertible {
    /// The TLS settings of a `rediss://` URL, from its `tls_*` parameters.
    public struct TLS: Sendable, Equatable {
        /// `tls_ca`: a PEM file of the CA certificates to trust instead of the system's.
        public var caFile: String?
        /// `tls_cert`: a PEM file of the client certificate (chain) to present.
        public var certificateFile: String?
        /// `tls_key`: a PEM file of the client certificate's private key.
        public var keyFile: String?
        /// Whether the server's certificate and name are verified; `tls_verify=none` turns it off.
        public var verifyCertificate: Bool

        /// Creates TLS settings.
        /// - Parameters:
        ///   - caFile: CA certificates to trust instead of the system's; `nil` for the system's.
        ///   - certificateFile: a client certificate, for mutual TLS.
        ///   - keyFile: the client certificate's key.
        ///   - verifyCertificate: `true` by default; `false` accepts any server certificate.
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

    /// The user name, if any.
    public var user: String?
    /// The password, if any.
    public var password: String?
    /// The host name or address.
    public var host: String
    /// The port, 6379 by default.
    public var port: Int
    /// The database number, 0 by default.
    public var database: Int
    /// The key and channel prefix (channels are `<namespace>_task_done`, ...), `pq` by default.
    public var namespace: String
    /// TLS settings for a `rediss://` URL; `nil` for plain `redis://`.
    public var tls: TLS?

    /// Creates the parts of a Redis URL.
    /// - Parameters:
    ///   - host: the host name or address.
    ///   - port: 6379 by default.
    ///   - database: 0 by default.
    ///   - namespace: `pq` by default.
    ///   - user: the ACL user, if any.
    ///   - password: the password, if any.
    ///   - tls: TLS settings to connect with TLS (`rediss://`); `nil` by default.
    public init(
        host: String, port: Int = 6379, database: Int = 0, namespace: String = "pq", user: String? = nil,
        password: String? = nil, tls: TLS? = nil
    ) {
        self.host = host
        self.port = port
        self.database = database
        self.namespace = namespace
        self.user = user
        self.password = password
        self.tls = tls
    }

    init(parsing text: String, invalid: (String) -> TaskStoreError) throws(TaskStoreError) {
        let secure = text.hasPrefix("rediss://")
        var rest = Substring(text.dropFirst(secure ? "rediss://".count : "redis://".count))
        var query: Substring = ""
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        var user: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let info = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = info.firstIndex(of: ":") {
                user = Self.decode(info[..<colon])
                password = Self.decode(info[info.index(after: colon)...])
            } else {
                user = Self.decode(info)
            }
            if user?.isEmpty == true { user = nil }
        }
        var host = rest
        var port = 6379
        if rest.hasPrefix("[") {  // [::1]:6379
            guard let close = rest.firstIndex(of: "]") else { throw invalid("unclosed [ in the host") }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") {
                guard let number = Int(after.dropFirst()), (1...65535).contains(number) else {
                    throw invalid("the port must be a number from 1 to 65535")
                }
                port = number
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            guard let number = Int(rest[rest.index(after: colon)...]), (1...65535).contains(number) else {
                throw invalid("the port must be a number from 1 to 65535")
            }
            port = number
        }
        guard !host.isEmpty else {
            throw invalid("the \(secure ? "rediss" : "redis"):// form needs a host, e.g. redis://localhost:6379/0")
        }
        var database = 0
        if !path.isEmpty {
            guard let number = Int(path), number >= 0 else {
                throw invalid("the database after the / must be a number, e.g. /0")
            }
            database = number
        }
        var namespace = "pq"
        var tls = TLS()
        for pair in query.split(separator: "&") where !pair.isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = parts[0]
            guard parts.count == 2, name == "namespace" || name.hasPrefix("tls_") else {
                throw invalid(
                    "unknown parameter \"\(pair)\" (accepted: namespace=NAME; with rediss://, "
                        + "tls_ca=PATH, tls_cert=PATH, tls_key=PATH, tls_verify=none)")
            }
            let value = Self.decode(parts[1])
            guard !value.isEmpty else { throw invalid("\(name) must not be empty") }
            guard name == "namespace" || secure else {
                throw invalid("\(name) is a TLS setting: write rediss:// to connect with TLS")
            }
            switch name {
            case "namespace": namespace = value
            case "tls_ca": tls.caFile = value
            case "tls_cert": tls.certificateFile = value
            case "tls_key": tls.keyFile = value
            case "tls_verify":
                guard value == "none" || value == "full" else {
                    throw invalid("tls_verify must be none (insecure) or full (the default)")
                }
                tls.verifyCertificate = value == "full"
            default:
                throw invalid("unknown TLS parameter \"\(name)\" (accepted: tls_ca, tls_cert, tls_key, tls_verify)")
            }
        }
        guard (tls.certificateFile == nil) == (tls.keyFile == nil) else {
            throw invalid("tls_cert and tls_key go together: give the client certificate and its key")
        }
        self.init(
            host: String(host), port: port, database: database, namespace: namespace, user: user, password: password,
            tls: secure ? tls : nil)
    }

    /// Percent-decodes a URL part (invalid escapes are kept as they are).
    private static func decode(_ part: Substring) -> String {
        var bytes: [UInt8] = []
        var utf8 = Array(part.utf8)[...]
        while let byte = utf8.first {
            if byte == 0x25, utf8.count >= 3,
                let value = UInt8(String(decoding: utf8.dropFirst().prefix(2), as: UTF8.self), radix: 16)
            {
                bytes.append(value)
                utf8 = utf8.dropFirst(3)
            } else {
                bytes.append(byte)
                utf8 = utf8.dropFirst()
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The URL with the password masked.
    public var description: String {
        var auth = ""
        if let user { auth = user }
        if password != nil { auth += ":***" }
        if !auth.isEmpty { auth += "@" }
        let shownHost = host.contains(":") ? "[\(host)]" : host
        var text = "\(tls == nil ? "redis" : "rediss")://\(auth)\(shownHost):\(port)/\(database)?namespace=\(namespace)"
        if let tls {
            if let caFile = tls.caFile { text += "&tls_ca=\(caFile)" }
            if let certificateFile = tls.certificateFile { text += "&tls_cert=\(certificateFile)" }
            if let keyFile = tls.keyFile { text += "&tls_key=\(keyFile)" }
            if !tls.verifyCertificate { text += "&tls_verify=none" }
        }
        return text
    }
}

/// Opens the store a URL names.
///
/// - Parameters:
///   - url: the store URL.
///   - sqliteOptions: settings for a SQLite store.
/// - Returns: a ``MemoryTaskStore`` or a ``SQLiteTaskStore``.
/// - Throws: ``TaskStoreError`` with code `unsupportedStore` for `redis://` (served by the Redis
///   target, not by PQCore), or the errors of ``SQLiteTaskStore/init(path:options:)``.
public func makeStore(
    url: StoreURL, sqliteOptions: SQLiteTaskStore.Options = SQLiteTaskStore.Options()
) throws -> any PeriodicScheduleStore {
    switch url {
    case .memory:
        return MemoryTaskStore()
    case .sqlite(let path):
        return try SQLiteTaskStore(path: path, options: sqliteOptions)
    case .redis:
        throw TaskStoreError(
            .unsupportedStore,
            "the store \(url) needs the Redis store, which this build does not include; use sqlite:PATH or memory:")
    }
}
