import Foundation
import PQCore
import PQRedis
import Testing

/// `rediss://` store URLs against private TLS redis-servers (``TestRedisTLS``): the store works
/// over TLS, and each way TLS can fail is one clear line. The conformance suites run over TLS too
/// (``StoreKind/rediss``).
@Suite("Redis over TLS")
struct RedisTLSTests {
    /// Opens the store a URL names, as the command line does.
    private func open(_ text: String) async throws -> RedisTaskStore {
        guard case .redis(let url) = try StoreURL(parsing: text) else {
            throw TaskStoreError(.invalidStoreURL, "not a Redis URL: \(text)")
        }
        return try await RedisTaskStore.connect(url: url)
    }

    /// The one-line error of opening the store a URL names.
    private func openingError(_ text: String) async throws -> String {
        do {
            let store = try await open(text)
            await store.close()
        } catch let error as TaskStoreError {
            #expect(error.code == .cannotOpen)
            #expect(!error.message.contains("\n"), "not one line: \(error.message)")
            return error.message
        }
        Issue.record("\(text) opened")
        return ""
    }

    /// Queues, claims and finishes one task through the store.
    private func roundTrip(_ store: RedisTaskStore) async throws {
        let queued = try await store.enqueue([NewTask(name: "add", kwargs: #"{"a":1}"#)])
        let claimed = try await store.claim(claimRequest())
        #expect(claimed.map(\.id) == queued.map(\.id))
        _ = try await store.finish([TaskOutcome(id: queued[0].id, worker: worker, .success(result: "2"))])
        let done = try await store.task(id: queued[0].id)
        #expect(done?.status == .success)
        #expect(done?.result == "2")
    }

    @Test func enqueueClaimFinishWithTheCAOfTheURL() async throws {
        let servers = try TestRedisTLS.servers()
        let store = try await open(
            servers.url(namespace: TestRedis.uniqueNamespace(), "tls_ca=" + servers.caFile))
        try await roundTrip(store)
        await store.close()
    }

    @Test func theSystemTrustStoreRejectsAPrivateCA() async throws {
        let servers = try TestRedisTLS.servers()
        let message = try await openingError(servers.url(namespace: "x"))
        #expect(message.contains("certificate verification failed"), "\(message)")
        #expect(message.contains("127.0.0.1:\(servers.tlsPort)"), "\(message)")
        #expect(message.contains("tls_ca="), "the message should say how to trust a private CA: \(message)")
    }

    @Test func verifyNoneConnectsWithoutTheCA() async throws {
        let servers = try TestRedisTLS.servers()
        let store = try await open(servers.url(namespace: TestRedis.uniqueNamespace(), "tls_verify=none"))
        try await roundTrip(store)
        await store.close()
    }

    @Test func mutualTLSPresentsTheClientCertificate() async throws {
        let servers = try TestRedisTLS.servers()
        let store = try await open(
            servers.url(
                port: servers.mutualPort, namespace: TestRedis.uniqueNamespace(), "tls_ca=" + servers.caFile,
                "tls_cert=" + servers.clientCertificate, "tls_key=" + servers.clientKey))
        try await roundTrip(store)
        await store.close()
    }

    @Test func mutualTLSWithoutAClientCertificateIsRefused() async throws {
        let servers = try TestRedisTLS.servers()
        let message = try await openingError(
            servers.url(port: servers.mutualPort, namespace: "x", "tls_ca=" + servers.caFile))
        #expect(message.contains("127.0.0.1:\(servers.mutualPort)"), "\(message)")
        #expect(message.contains("tls_cert"), "the message should point at tls_cert: \(message)")
    }

    @Test func aMissingCAFileIsNamed() async throws {
        let servers = try TestRedisTLS.servers()
        let missing = servers.folder + "/no-such-ca.pem"
        let message = try await openingError(servers.url(namespace: "x", "tls_ca=" + missing))
        #expect(message.contains("CA file (tls_ca) \(missing) was not found"), "\(message)")
    }

    @Test func aFileThatIsNotPEMIsNamed() async throws {
        let servers = try TestRedisTLS.servers()
        let notPEM = servers.folder + "/server.ext"  // a text file, not a certificate
        let message = try await openingError(servers.url(namespace: "x", "tls_ca=" + notPEM))
        #expect(message.contains(notPEM) && message.contains("tls_ca"), "\(message)")
        let keyMessage = try await openingError(
            servers.url(
                port: servers.mutualPort, namespace: "x", "tls_ca=" + servers.caFile,
                "tls_cert=" + servers.clientCertificate, "tls_key=" + notPEM))
        #expect(keyMessage.contains(notPEM) && keyMessage.contains("tls_key"), "\(keyMessage)")
    }

    @Test func aKeyThatDoesNotBelongToTheCertificateIsNamed() async throws {
        let servers = try TestRedisTLS.servers()
        let message = try await openingError(
            servers.url(
                port: servers.mutualPort, namespace: "x", "tls_ca=" + servers.caFile,
                "tls_cert=" + servers.clientCertificate, "tls_key=" + servers.folder + "/ca.key"))
        #expect(message.contains("tls_key"), "\(message)")
    }

    @Test func aPlainPortIsNotTLS() async throws {
        let servers = try TestRedisTLS.servers()
        let message = try await openingError(
            servers.url(port: servers.plainPort, namespace: "x", "tls_verify=none"))
        #expect(message.contains("127.0.0.1:\(servers.plainPort)"), "\(message)")
        #expect(message.contains("TLS"), "\(message)")
    }

    @Test func pubSubOverTLS() async throws {
        // Change notifications come over a pub/sub connection of the client's own, over TLS as well.
        let store = RedisTaskStore(url: try TestRedisTLS.storeURL())
        let channel = store.url.namespace + "_tls_check"
        let messages = store.client.subscribe(to: [channel])
        let payload = await withTaskGroup(of: String?.self) { group in
            group.addTask {
                for await message in messages {
                    // An empty channel name marks each (re)subscription: publish once subscribed.
                    if message.channel.isEmpty {
                        _ = try? await store.client.send(["PUBLISH", .string(channel), "hi"])
                    }
                    if message.channel == channel { return message.payload }
                }
                return nil
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(15))
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        #expect(payload == "hi")
        await store.close()
    }
}
