import Foundation
import PQCore
import Synchronization
import Testing

/// A one-node Redis Cluster (`cluster-enabled yes`, every slot on its one node) that this test
/// process starts on a free port, so the store conformance suite also runs where Redis checks
/// that a function's keys live in one slot (DESIGN.md section 6: every key carries `{ns}`).
enum TestRedisCluster {
    private static let started = Mutex<(url: String?, pid: Int32)>((nil, 0))

    /// A store URL on the cluster node with its own namespace.
    static func url(namespace: String) throws -> RedisStoreURL {
        guard case .redis(var url) = try StoreURL(parsing: try baseURL()) else {
            throw TaskStoreError(.invalidStoreURL, "bad cluster URL")
        }
        url.namespace = namespace
        return url
    }

    static func baseURL() throws -> String {
        try started.withLock { started in
            if let url = started.url { return url }
            let (url, pid) = try start()
            started = (url, pid)
            atexit { TestRedisCluster.stop() }
            return url
        }
    }

    static func stop() {
        let pid = started.withLock { $0.pid }
        if pid > 0 { kill(pid, SIGKILL) }
    }

    private static func start() throws -> (String, Int32) {
        let binary = "/usr/bin/redis-server"
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            Issue.record("redis-server is not installed (apt-get install redis-server)")
            throw TaskStoreError(.cannotOpen, "no redis-server")
        }
        let folder = Fixtures.temporaryDirectory("pqcluster")
        // The cluster bus listens 10,000 ports above: keep both under 65536.
        let port = Int.random(in: 20_000..<55_000)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.currentDirectoryURL = URL(fileURLWithPath: folder)
        process.arguments = [
            "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--cluster-enabled", "yes", "--cluster-config-file", folder + "/nodes.conf",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        for _ in 0..<100 where !TestRedis.canConnect(port: port) { usleep(50_000) }
        // Started once per test process under the lock of `baseURL` (not async): redis-cli is
        // waited for with waitUntilExit, the node's readiness by a bounded loop.
        func cli(_ args: [String]) throws -> String {
            let cli = Process()
            cli.executableURL = URL(fileURLWithPath: "/usr/bin/redis-cli")
            cli.arguments = ["-p", String(port)] + args
            let out = Pipe()
            cli.standardOutput = out
            cli.standardError = FileHandle.nullDevice
            try cli.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            cli.waitUntilExit()
            return String(decoding: data, as: UTF8.self)
        }
        _ = try cli(["CLUSTER", "ADDSLOTSRANGE", "0", "16383"])
        for _ in 0..<200 {  // bounded: 10 s
            if try cli(["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                return ("redis://127.0.0.1:\(port)/0", process.processIdentifier)
            }
            usleep(50_000)
        }
        kill(process.processIdentifier, SIGKILL)
        throw TaskStoreError(.cannotOpen, "the one-node Redis Cluster on port \(port) did not reach cluster_state:ok")
    }
}
