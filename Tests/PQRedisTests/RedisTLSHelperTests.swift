import Testing

@testable import PQRedis

/// The parts of TLS support that need no server: SNI names and BoringSSL reason codes.
@Suite("Redis TLS helpers")
struct RedisTLSHelperTests {
    @Test func sniIsTheHostNameButNeverAnAddress() {
        #expect(RedisTLS.serverHostname("redis.example") == "redis.example")
        #expect(RedisTLS.serverHostname("localhost") == "localhost")
        #expect(RedisTLS.serverHostname("127.0.0.1") == nil)
        #expect(RedisTLS.serverHostname("::1") == nil)
        #expect(RedisTLS.serverHostname("fe80::1") == nil)
    }

    private struct FakeError: Error, CustomStringConvertible {
        let description: String
    }

    @Test func reasonCodesAreReadFromBoringSSLErrors() {
        let error = FakeError(
            description: "handshakeFailed(sslError([Error: 268435581 error:1000007d:SSL routines:OPENSSL_internal:"
                + "CERTIFICATE_VERIFY_FAILED at /x/handshake.cc:393, Error: 1 error:10000410:SSL routines:"
                + "OPENSSL_internal:SSLV3_ALERT_HANDSHAKE_FAILURE at /x/s3_pkt.cc:1]))")
        #expect(RedisTLS.reasons(error) == "CERTIFICATE_VERIFY_FAILED, SSLV3_ALERT_HANDSHAKE_FAILURE")
        #expect(RedisTLS.reasons(FakeError(description: "eof")) == nil)
    }

    @Test func otherErrorsAreNotTLSErrors() {
        #expect(RedisTLS.describe(FakeError(description: "x"), endpoint: "h:1") == nil)
    }
}
