import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

@testable import PQRedis

/// Replies that arrive in pieces: every reply type split anywhere, and large replies in many small
/// reads, which the decoder must scan once rather than again from the start on every read.
@Suite("RESP streaming")
struct RESPStreamingTests {
    private static func bulk(_ text: String) -> RESPValue { .bulkString(ByteBuffer(string: text)) }
    private static func simple(_ text: String) -> RESPValue { .simpleString(ByteBuffer(string: text)) }

    /// One sample of every reply type the decoder knows, with what it decodes to.
    static let samples: [(String, RESPValue)] = [
        ("+OK\r\n", simple("OK")),
        ("+\r\n", simple("")),
        ("-ERR bad\r\n", .error(ByteBuffer(string: "ERR bad"))),
        (":42\r\n", .integer(42)),
        (":-9223372036854775808\r\n", .integer(.min)),
        ("$5\r\nhello\r\n", bulk("hello")),
        ("$0\r\n\r\n", bulk("")),
        ("$4\r\na\r\nb\r\n", bulk("a\r\nb")),
        ("$-1\r\n", .null),
        ("=8\r\ntxt:abcd\r\n", bulk("txt:abcd")),
        ("!5\r\nERR x\r\n", .error(ByteBuffer(string: "ERR x"))),
        ("(12345678901234567890\r\n", bulk("12345678901234567890")),
        ("_\r\n", .null),
        (",3.5\r\n", .double(3.5)),
        (",-inf\r\n", .double(-.infinity)),
        ("#t\r\n", .boolean(true)),
        ("#f\r\n", .boolean(false)),
        ("*-1\r\n", .null),
        ("*0\r\n", .array([])),
        ("*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n*0\r\n", .array([.integer(1), .array([bulk("a"), .null]), .array([])])),
        ("~2\r\n+a\r\n+b\r\n", .array([simple("a"), simple("b")])),
        (">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n", .push([bulk("message"), bulk("ch"), bulk("x")])),
        (
            "%2\r\n+k\r\n:2\r\n$1\r\nm\r\n%1\r\n+n\r\n_\r\n",
            .map([(simple("k"), .integer(2)), (bulk("m"), .map([(simple("n"), .null)]))])
        ),
        ("%0\r\n", .map([])),
        ("*1\r\n*1\r\n*1\r\n*0\r\n", .array([.array([.array([.array([])])])])),
    ]

    /// Feeds `chunks` one after the other into one decoder, as reads would arrive.
    private func decode(chunks: [String]) throws -> [RESPValue] {
        var decoder = RESPDecoder()
        var buffer = ByteBuffer()
        var out: [RESPValue] = []
        for chunk in chunks {
            buffer.writeString(chunk)
            while let value = try decoder.decode(buffer: &buffer) { out.append(value) }
        }
        #expect(buffer.readableBytes == 0)
        return out
    }

    @Test func everyReplyTypeSplitAtEveryPoint() throws {
        for (text, expected) in Self.samples {
            let bytes = Array(text.utf8)
            // Two reads, split at every point; the sample is followed by a PING reply in the second.
            for split in 1..<bytes.count {
                let first = String(decoding: bytes[..<split], as: UTF8.self)
                let second = String(decoding: bytes[split...], as: UTF8.self) + "+PONG\r\n"
                let out = try decode(chunks: [first, second])
                #expect(out == [expected, Self.simple("PONG")], "\(text.debugDescription) split at \(split)")
            }
            // One byte a read.
            let out = try decode(chunks: bytes.map { String(decoding: [$0], as: UTF8.self) })
            #expect(out == [expected], "\(text.debugDescription) one byte a read")
        }
    }

    @Test func everyReplyTypePassesNIOsDecoderVerifier() throws {
        try ByteToMessageDecoderVerifier.verifyDecoder(
            stringInputOutputPairs: Self.samples.map { ($0.0, [$0.1]) },
            decoderFactory: { RESPDecoder() })
    }

    /// `*N` followed by N bulk strings `v0`, `v1`, ...
    private static func bigArray(_ count: Int) -> (text: String, value: RESPValue) {
        var text = "*\(count)\r\n"
        var values: [RESPValue] = []
        values.reserveCapacity(count)
        for index in 0..<count {
            let item = "v\(index)"
            text += "$\(item.utf8.count)\r\n\(item)\r\n"
            values.append(bulk(item))
        }
        return (text, .array(values))
    }

    /// The bytes of `text` in pieces of `size`.
    private static func chunks(_ text: String, size: Int) -> [ByteBuffer] {
        let bytes = Array(text.utf8)
        return stride(from: 0, to: bytes.count, by: size).map {
            ByteBuffer(bytes: bytes[$0..<min($0 + size, bytes.count)])
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func bigArrayInSevenByteReadsThroughAChannel() throws {
        let (text, expected) = Self.bigArray(50_000)
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(RESPDecoder()))
        for chunk in Self.chunks(text + "+OK\r\n", size: 7) { try channel.writeInbound(chunk) }
        let first = try #require(try channel.readInbound(as: RESPValue.self))
        #expect(first == expected)
        #expect(try channel.readInbound(as: RESPValue.self) == Self.simple("OK"))
        #expect(try channel.readInbound(as: RESPValue.self) == nil)
        #expect(try channel.finish().isClean)
    }

    @Test(.timeLimit(.minutes(1)))
    func bigReplyIsScannedOnceNotFromTheStartOnEveryRead() throws {
        let (text, expected) = Self.bigArray(50_000)
        // The longest element, "$6\r\nv49999\r\n": at most that much may wait for its end.
        let longestElement = 12
        var decoder = RESPDecoder()
        var buffer = ByteBuffer()
        var decoded: RESPValue?
        for chunk in Self.chunks(text, size: 7) {
            var chunk = chunk
            buffer.writeBuffer(&chunk)
            #expect(decoded == nil)
            decoded = try decoder.decode(buffer: &buffer)
            if decoded == nil {
                // The scan kept up with the bytes: only the element still arriving is left to scan.
                #expect(decoder.scanner.scanned > buffer.readableBytes - longestElement)
            }
        }
        #expect(decoded == expected)
        #expect(buffer.readableBytes == 0)
        #expect(decoder.scanner.scanned == 0)
    }

    @Test func bigStringArrivingInManyReads() throws {
        let body = String(repeating: "x", count: 100_000)
        let reads = Self.chunks("$\(body.utf8.count)\r\n\(body)\r\n", size: 7).map { String(buffer: $0) }
        #expect(try decode(chunks: reads) == [Self.bulk(body)])
    }

    @Test func longLineArrivingInManyReads() throws {
        let text = String(repeating: "y", count: 50_000)
        let reads = Self.chunks("+\(text)\r\n", size: 7).map { String(buffer: $0) }
        #expect(try decode(chunks: reads) == [Self.simple(text)])
    }

    /// Bytes that are not RESP, named for the test report.
    struct BadFraming: CustomTestStringConvertible, Sendable {
        let name: String
        let bytes: String
        var testDescription: String { name }
    }

    @Test(arguments: [
        BadFraming(name: "CR not followed by LF", bytes: "+OK\rX\n"),
        BadFraming(name: "string longer than its length", bytes: "$3\r\nabcde\r\n"),
        BadFraming(name: "integer with a letter", bytes: ":1x\r\n"),
        BadFraming(name: "count with a letter", bytes: "*1x\r\n"),
        BadFraming(name: "string larger than Redis allows", bytes: "$99999999999\r\n"),
        BadFraming(name: "more elements than Redis sends", bytes: "*99999999999\r\n"),
        BadFraming(name: "unknown type", bytes: "?what\r\n"),
        BadFraming(name: "unknown type inside an array", bytes: "*1\r\n?\r\n"),
        BadFraming(name: "nested too deeply", bytes: String(repeating: "*1\r\n", count: 70) + ":1\r\n"),
    ])
    func badFramingIsAProtocolError(_ bad: BadFraming) {
        var decoder = RESPDecoder()
        var buffer = ByteBuffer(string: bad.bytes)
        #expect(throws: RedisError.self) {
            while try decoder.decode(buffer: &buffer) != nil {}
        }
    }

    @Test func decimals() {
        #expect(RESPFrameScanner.decimal("0".utf8) == 0)
        #expect(RESPFrameScanner.decimal("-12".utf8) == -12)
        #expect(RESPFrameScanner.decimal("+7".utf8) == 7)
        #expect(RESPFrameScanner.decimal("9223372036854775807".utf8) == .max)
        #expect(RESPFrameScanner.decimal("-9223372036854775808".utf8) == .min)
        #expect(RESPFrameScanner.decimal("9223372036854775808".utf8) == nil)
        #expect(RESPFrameScanner.decimal("".utf8) == nil)
        #expect(RESPFrameScanner.decimal("-".utf8) == nil)
        #expect(RESPFrameScanner.decimal("1 ".utf8) == nil)
    }
}
