import NIOCore
import NIOEmbedded
import Testing

@testable import PQRedis

/// RESP decoding and encoding, and the reply matching of the channel handler, without a server.
@Suite("RESP")
struct RESPTests {
    private func decodeAll(_ text: String) throws -> [RESPValue] {
        var buffer = ByteBuffer(string: text)
        var decoder = RESPDecoder()
        var out: [RESPValue] = []
        while let value = try decoder.decode(buffer: &buffer) { out.append(value) }
        #expect(buffer.readableBytes == 0)
        return out
    }

    private func bulk(_ text: String) -> RESPValue { .bulkString(ByteBuffer(string: text)) }

    @Test func everyReplyType() throws {
        let values = try decodeAll(
            "+OK\r\n-ERR bad\r\n:42\r\n:-7\r\n$5\r\nhello\r\n$0\r\n\r\n$-1\r\n*-1\r\n_\r\n,3.5\r\n,inf\r\n#t\r\n#f\r\n"
                + "(12345678901234567890\r\n=8\r\ntxt:abcd\r\n!5\r\nERR x\r\n")
        #expect(
            values == [
                .simpleString(ByteBuffer(string: "OK")), .error(ByteBuffer(string: "ERR bad")), .integer(42),
                .integer(-7),
                bulk("hello"), bulk(""), .null, .null, .null, .double(3.5), .double(.infinity), .boolean(true),
                .boolean(false), bulk("12345678901234567890"), bulk("txt:abcd"), .error(ByteBuffer(string: "ERR x")),
            ])
    }

    @Test func nestedArraysMapsSetsAndPushes() throws {
        let values = try decodeAll(
            "*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n*0\r\n%1\r\n+k\r\n:2\r\n~1\r\n+s\r\n>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n"
        )
        #expect(values.count == 4)
        #expect(values[0] == .array([.integer(1), .array([bulk("a"), .null]), .array([])]))
        #expect(values[1] == .map([(.simpleString(ByteBuffer(string: "k")), .integer(2))]))
        #expect(values[2] == .array([.simpleString(ByteBuffer(string: "s"))]))
        #expect(values[3] == .push([bulk("message"), bulk("ch"), bulk("x")]))
        #expect(RedisChannelHandler.pubSubMessage(values[3])?.0 == "ch")
    }

    @Test func partialFramesWaitForTheRest() throws {
        let whole = "*2\r\n$5\r\nhello\r\n:12\r\n+OK\r\n"
        // Every split point: nothing is decoded before the frame is complete, and all of it after.
        for split in 1..<whole.utf8.count {
            var decoder = RESPDecoder()
            var buffer = ByteBuffer(string: String(whole.prefix(split)))
            var out: [RESPValue] = []
            while let value = try decoder.decode(buffer: &buffer) { out.append(value) }
            buffer.writeString(String(whole.dropFirst(split)))
            while let value = try decoder.decode(buffer: &buffer) { out.append(value) }
            #expect(out == [.array([bulk("hello"), .integer(12)]), .simpleString(ByteBuffer(string: "OK"))])
        }
    }

    @Test func badBytesAreAProtocolError() {
        var buffer = ByteBuffer(string: "?what\r\n")
        var decoder = RESPDecoder()
        #expect(throws: RedisError.self) { _ = try decoder.decode(buffer: &buffer) }
        var bad = ByteBuffer(string: ":12x\r\n")
        #expect(throws: RedisError.self) { _ = try decoder.decode(buffer: &bad) }
    }

    @Test func encodesCommandsAsArraysOfBulkStrings() {
        var buffer = ByteBuffer()
        RESPEncoder.encode(["SET", "k", .string("héllo"), .bytes(ByteBuffer(bytes: [0, 13, 10]))], into: &buffer)
        #expect(
            buffer.readableBytesView.elementsEqual(
                Array("*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$6\r\nhéllo\r\n$3\r\n".utf8) + [0, 13, 10] + Array("\r\n".utf8)))
    }

    @Test func replyAccessors() throws {
        #expect(try bulk("12").int == 12)
        #expect(try RESPValue.null.string == nil)
        #expect(throws: RedisError.self) { try RESPValue.error(ByteBuffer(string: "ERR no")).check() }
        #expect(try RESPValue.array([bulk("a")]).array?.count == 1)
    }

    @Test func pendingRepliesMatchInOrder() {
        var pending = PendingReplies<String>()
        let later = NIODeadline.now() + .seconds(10)
        let first = pending.append("first", expected: 2, deadline: later)
        #expect(first)
        let second = pending.append("second", expected: 1, deadline: later)
        #expect(second)
        guard case .wait = pending.receive(.integer(1)) else {
            Issue.record("expected wait")
            return
        }
        guard case .complete("first", let values) = pending.receive(.integer(2)) else {
            Issue.record("expected first")
            return
        }
        #expect(values == [.integer(1), .integer(2)])
        guard case .complete("second", _) = pending.receive(.null) else {
            Issue.record("expected second")
            return
        }
        guard case .unexpected = pending.receive(.null) else {
            Issue.record("expected unexpected")
            return
        }
        let late = pending.append("late", expected: 1, deadline: .now() - .seconds(1))
        #expect(late)
        #expect(pending.isLate(now: .now()))
        let failed = pending.close()
        #expect(failed == ["late"])
        let afterClose = pending.append("after close", expected: 1, deadline: later)
        #expect(!afterClose)
    }

    @Test func handlerPipelinesOverAnEmbeddedChannel() async throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(
            ByteToMessageHandler(RESPDecoder()))
        try channel.pipeline.syncOperations.addHandler(RedisChannelHandler())
        let promise = channel.eventLoop.makePromise(of: [RESPValue].self)
        var bytes = ByteBuffer()
        RESPEncoder.encode(["PING"], into: &bytes)
        RESPEncoder.encode(["GET", "k"], into: &bytes)
        try channel.writeOutbound(
            RedisRequest(bytes: bytes, replyCount: 2, promise: promise, deadline: .now() + .seconds(10)))
        let written = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(String(buffer: written) == "*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
        // The replies arrive split across reads.
        try channel.writeInbound(ByteBuffer(string: "+PONG\r\n$3\r\nv"))
        try channel.writeInbound(ByteBuffer(string: "al\r\n"))
        let replies = try await promise.futureResult.get()
        #expect(replies == [.simpleString(ByteBuffer(string: "PONG")), bulk("val")])
        // A request outstanding when the channel closes fails.
        let orphan = channel.eventLoop.makePromise(of: [RESPValue].self)
        try channel.writeOutbound(
            RedisRequest(
                bytes: ByteBuffer(string: "*1\r\n$4\r\nPING\r\n"), replyCount: 1, promise: orphan,
                deadline: .now() + .seconds(10)))
        _ = try channel.finish()
        await #expect(throws: RedisError.self) { _ = try await orphan.futureResult.get() }
    }
}
