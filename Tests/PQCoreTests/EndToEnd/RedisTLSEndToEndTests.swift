import Foundation
import PQCore
import Testing

/// `bin/pq` on a `rediss://` store: a host serves over TLS, and a certificate it cannot verify is one
/// clear line.
@Suite(.serialized) struct RedisTLSEndToEndTests {
    let dir = Fixtures.temporaryDirectory("pqrediss")

    @Test func aHostServesASubmittedTaskOverTLS() async throws {
        let servers = try TestRedisTLS.servers()
        let url = servers.url(namespace: TestRedis.uniqueNamespace(), "tls_ca=" + servers.caFile)
        let host = try HostProcess(store: url, directory: dir)
        let client = PQClient(store: url, directory: dir)
        let id = try await client.submit(["addition", "a=2", "b=3"])
        let task = try await client.wait([id])[0]
        #expect(task["status"] as? Int == 1)
        #expect(task["result"] as? Int == 5)
        #expect(host.stop() == 0)
    }

    @Test func anUnverifiableCertificateIsOneClearLine() async throws {
        let servers = try TestRedisTLS.servers()
        let client = PQClient(store: servers.url(namespace: TestRedis.uniqueNamespace()), directory: dir)
        let r = try await client.run(["submit", "addition", "a=1", "b=1"], timeout: 30)
        expectOneLineError(r, ["certificate verification failed", "127.0.0.1:\(servers.tlsPort)"])
    }
}
