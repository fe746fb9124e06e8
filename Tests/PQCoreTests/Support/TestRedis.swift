import Foundation
import PQCore
import Synchronization
import Testing

/// The Redis server the tests use: `PQ_TEST_REDIS_URL` (set by `scripts/with-redis.sh`, which
/// `make test` and `.ci/run` use), or else a private `redis-server` this process starts on a free
/// port. In CI (`CI=true`) the variable must be set: Redis tests never skip there.
enum TestRedis {
    private static let started = Mutex<String?>(nil)

    static func uniqueNamespace() -> String {
        "pqtest" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(12).lowercased()
    }

    /// The base URL, `redis://127.0.0.1:PORT/0`.
    static func baseURL() throws -> String {
        if let url = ProcessInfo.processInfo.environment["PQ_TEST_REDIS_URL"], !url.isEmpty { return url }
        if ProcessInfo.processInfo.environment["CI"] == "true" {
            Issue.record("PQ_TEST_REDIS_URL is not set in CI: run the tests through scripts/with-redis.sh (make test)")
            throw TaskStoreError(.cannotOpen, "PQ_TEST_REDIS_URL is not set in CI")
        }
        return try started.withLock { started in
            if let started { return started }
            let url = try startPrivateServer()
            started = url
            return url
        }
    }

    /// A store URL on the test server with its own namespace.
    static func url(namespace: String) throws -> RedisStoreURL {
        guard case .redis(var url) = try StoreURL(parsing: try baseURL()) else {
            throw TaskStoreError(.invalidStoreURL, "PQ_TEST_REDIS_URL is not a redis:// URL")
        }
        url.namespace = namespace
        return url
    }

    /// The URL text with a namespace, for `--store`.
    static func urlText(namespace: String) throws -> String {
        try baseURL() + "?namespace=" + namespace
    }

    private static func startPrivateServer() throws -> String {
        let candidates = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        guard let binary = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            Issue.record(
                "redis-server is not installed (apt-get install redis-server), and PQ_TEST_REDIS_URL is not set")
            throw TaskStoreError(.cannotOpen, "no redis-server")
        }
        let port = Int.random(in: 20_000..<60_000)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = [
            "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Stops with the test process: redis-server exits when its parent's pipe... it does not, so
        // register a cleanup.
        atexit { TestRedis.stopPrivateServer() }
        privatePID.withLock { $0 = process.processIdentifier }
        // Wait (bounded) until it accepts connections.
        for _ in 0..<100 {
            if canConnect(port: port) { return "redis://127.0.0.1:\(port)/0" }
            usleep(50_000)
        }
        throw TaskStoreError(.cannotOpen, "the private redis-server on port \(port) did not start")
    }

    private static let privatePID = Mutex<Int32>(0)

    /// SIGKILL: the server holds nothing to save, and a child of the test process starts with SIGTERM
    /// blocked (the mask is inherited), which redis-server does not undo, so SIGTERM left it running.
    static func stopPrivateServer() {
        let pid = privatePID.withLock { $0 }
        if pid > 0 { kill(pid, SIGKILL) }
    }

    static func canConnect(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}
