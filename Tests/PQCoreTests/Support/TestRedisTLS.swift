import Foundation
import PQCore
import Synchronization
import Testing

/// Private TLS `redis-server`s for the tests, started once per test process on free 127.0.0.1 ports,
/// with a CA, a server certificate (IP SAN 127.0.0.1) and a client certificate made by `openssl`
/// in a temporary folder:
/// - the TLS server: TLS on ``Servers/tlsPort``, plain RESP on ``Servers/plainPort``, no client
///   certificate asked for;
/// - the mutual-TLS server: TLS on ``Servers/mutualPort``, a client certificate signed by the CA
///   required.
///
/// Both stop, and the folder goes, when the test process exits. In CI (`CI=true`) a missing
/// `openssl` or `redis-server` is a failure, not a skip.
enum TestRedisTLS {
    struct Servers: Sendable {
        let folder: String
        let tlsPort: Int
        let plainPort: Int
        let mutualPort: Int

        var caFile: String { folder + "/ca.pem" }
        var clientCertificate: String { folder + "/client.pem" }
        var clientKey: String { folder + "/client.key" }

        /// `rediss://127.0.0.1:PORT/0?namespace=...` and the extra parameters, e.g. `tls_ca=...`.
        func url(port: Int? = nil, namespace: String, _ parameters: String...) -> String {
            let query = (["namespace=" + namespace] + parameters).joined(separator: "&")
            return "rediss://127.0.0.1:\(port ?? tlsPort)/0?\(query)"
        }
    }

    private static let started = Mutex<Servers?>(nil)
    private static let processes = Mutex<(pids: [Int32], folder: String?)>(([], nil))

    /// The servers, started on first use.
    static func servers() throws -> Servers {
        try started.withLock { started in
            if let started { return started }
            let servers = try start()
            started = servers
            return servers
        }
    }

    /// A store URL on the TLS server that trusts the test CA, with a fresh namespace.
    static func storeURL(namespace: String = TestRedis.uniqueNamespace()) throws -> RedisStoreURL {
        let servers = try servers()
        guard
            case .redis(let url) = try StoreURL(parsing: servers.url(namespace: namespace, "tls_ca=" + servers.caFile))
        else { throw TaskStoreError(.invalidStoreURL, "not a Redis URL") }
        return url
    }

    private static func start() throws -> Servers {
        let openssl = try tool("openssl", "apt-get install openssl")
        let redisServer = try tool("redis-server", "apt-get install redis-server")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("pq-tls-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        processes.withLock { $0.folder = folder }
        atexit { TestRedisTLS.stop() }
        try makeCertificates(in: folder, openssl: openssl)

        let common = [
            "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", folder,
            "--tls-cert-file", folder + "/server.pem", "--tls-key-file", folder + "/server.key",
            "--tls-ca-cert-file", folder + "/ca.pem",
        ]
        let (tlsPort, plainPort) = try startServer(redisServer, log: folder + "/tls.log") { tls, plain in
            common + ["--port", String(plain), "--tls-port", String(tls), "--tls-auth-clients", "no"]
        }
        let (mutualPort, _) = try startServer(redisServer, log: folder + "/mutual.log") { tls, _ in
            common + ["--port", "0", "--tls-port", String(tls), "--tls-auth-clients", "yes"]
        }
        return Servers(folder: folder, tlsPort: tlsPort, plainPort: plainPort, mutualPort: mutualPort)
    }

    /// A CA, a server certificate for 127.0.0.1 and a client certificate, EC P-256, valid two days.
    private static func makeCertificates(in folder: String, openssl: String) throws {
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try run(
            openssl,
            ["req", "-x509"] + ec + [
                "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=pq test CA",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ],
            in: folder)
        for (name, subject, usage, san) in [
            ("server", "/CN=127.0.0.1", "serverAuth", "subjectAltName=IP:127.0.0.1\n"),
            ("client", "/CN=pq test client", "clientAuth", ""),
        ] {
            try run(
                openssl, ["req"] + ec + ["-keyout", "\(name).key", "-out", "\(name).csr", "-subj", subject], in: folder)
            try (san + "basicConstraints=CA:FALSE\nextendedKeyUsage=\(usage)\n").write(
                toFile: folder + "/\(name).ext", atomically: true, encoding: .utf8)
            try run(
                openssl,
                [
                    "x509", "-req", "-in", "\(name).csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                    "-out", "\(name).pem", "-days", "2", "-extfile", "\(name).ext",
                ],
                in: folder)
        }
        // redis-server reads its key as this user; the files stay private to the folder.
        _ = chmod(folder + "/server.key", 0o600)
    }

    /// Starts a redis-server on free ports (a few tries: a port may be taken between the check and
    /// the start), waiting (bounded) until it accepts connections.
    /// - Returns: the TLS port and the plain port.
    private static func startServer(
        _ binary: String, log: String, arguments: (_ tlsPort: Int, _ plainPort: Int) -> [String]
    ) throws -> (Int, Int) {
        for _ in 0..<5 {
            let tlsPort = freePort()
            let plainPort = freePort()
            guard tlsPort != plainPort else { continue }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = arguments(tlsPort, plainPort) + ["--logfile", log]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            processes.withLock { $0.pids.append(process.processIdentifier) }
            for _ in 0..<100 where process.isRunning {
                if TestRedis.canConnect(port: tlsPort) { return (tlsPort, plainPort) }
                usleep(50_000)
            }
            kill(process.processIdentifier, SIGKILL)
        }
        let tail = (try? String(contentsOfFile: log, encoding: .utf8))?.split(separator: "\n").suffix(3) ?? []
        throw TaskStoreError(
            .cannotOpen, "the TLS redis-server did not start: \(tail.joined(separator: " | "))")
    }

    private static func freePort() -> Int {
        for _ in 0..<50 {
            let port = Int.random(in: 20_000..<60_000)
            if !TestRedis.canConnect(port: port) { return port }
        }
        return Int.random(in: 20_000..<60_000)
    }

    /// Runs a tool to completion (bounded: 30 s), failing with its error output.
    ///
    /// Spawned and reaped here with `posix_spawn`/`waitpid`, not `Process`: `Process` learns of
    /// the exit on a Dispatch queue, and tests that wait for these servers in parallel can hold
    /// every thread of that pool, so the exit was never seen and each run waited out its bound.
    private static func run(_ binary: String, _ arguments: [String], in folder: String) throws {
        let errorLog = folder + "/tool-errors.log"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, errorLog, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        // In `folder`: coreutils' `env -C` changes directory (posix_spawn has no portable way).
        let argv = (["/usr/bin/env", "-C", folder, binary] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/usr/bin/env", &actions, nil, argv, environ)
        guard rc == 0 else { throw TaskStoreError(.cannotOpen, "cannot start \(binary): errno \(rc)") }
        let deadline = Date().addingTimeInterval(30)
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 {
            if Date() >= deadline {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                throw TaskStoreError(
                    .cannotOpen, "\(binary) \(arguments.joined(separator: " ")) did not finish in 30 s")
            }
            usleep(10_000)
        }
        // Exited normally with status 0 (WIFEXITED && WEXITSTATUS == 0).
        guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else {
            let text = (try? String(contentsOfFile: errorLog, encoding: .utf8)) ?? ""
            throw TaskStoreError(
                .cannotOpen, "\(binary) \(arguments.prefix(2).joined(separator: " ")) failed: \(text)")
        }
    }

    private static func tool(_ name: String, _ install: String) throws -> String {
        let candidates = ["/usr/bin/", "/usr/local/bin/", "/bin/"].map { $0 + name }
        guard let path = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            Issue.record("\(name) is not installed (\(install)); the TLS tests need it")
            throw TaskStoreError(.cannotOpen, "no \(name)")
        }
        return path
    }

    /// Stops the servers. SIGKILL: they hold nothing to save, and a child of the test process starts
    /// with SIGTERM blocked (the mask is inherited), which redis-server does not undo.
    static func stop() {
        let (pids, folder) = processes.withLock { $0 }
        for pid in pids { kill(pid, SIGKILL) }
        if let folder {
            // Give the servers a moment to exit before their folder goes.
            usleep(100_000)
            try? FileManager.default.removeItem(atPath: folder)
        }
    }
}
