import NIOCore

/// Finds where the next complete reply in a byte stream ends, and keeps its place between reads.
///
/// ``RESPDecoder`` parses a reply only once all of it has arrived. Telling whether it has is this
/// scanner's job: it walks the reply's framing (type bytes, lines, string lengths, element counts)
/// without building values, and remembers how far it got. A reply of many elements that arrives in
/// many reads is so scanned once in all, not again from its start on every read, which would take
/// time quadratic in its size.
///
/// Offsets count from the buffer's reader index, which only moves when the decoder takes a whole
/// reply; the bytes after it are only appended to between calls (`ByteToMessageHandler` may compact
/// the buffer, which keeps the readable bytes as they are). The scanner checks the framing as the
/// parser reads it: a CR must be followed by LF, a string by CRLF, and nesting stays below
/// ``RESPDecoder/maxDepth``. Element contents (digits of an integer, a double) are the parser's.
struct RESPFrameScanner {
    /// Bytes of the current reply scanned so far: whole elements, and the header of each open aggregate.
    private(set) var scanned = 0
    /// Where the search for the current line's CR goes on (the bytes before it hold no CR).
    private var searchFrom = 0
    /// The end of the current element when its header gave its length: a string whose body is still
    /// arriving.
    private var elementEnd: Int?
    /// Elements still to come in each open aggregate, innermost last.
    private var missing: [Int] = []

    /// The longest string Redis sends (its `proto-max-bulk-len` limit).
    static let maxStringLength: Int64 = 512 * 1024 * 1024
    /// The most elements an aggregate may announce; more is taken for garbage, not waited for.
    static let maxElements: Int64 = Int64(Int32.max)

    /// Scans on from where the last call stopped.
    /// - Parameter buffer: the bytes received so far, the reply starting at the reader index.
    /// - Returns: the length of the reply once all of it is in `buffer`; `nil` while bytes are missing.
    ///   After a length is returned, start a new scanner for the next reply.
    /// - Throws: ``RedisError`` with code `protocolError` for bytes that are not RESP framing.
    mutating func scan(_ buffer: ByteBuffer) throws(RedisError) -> Int? {
        let available = buffer.readableBytes
        while true {
            if let end = elementEnd {
                guard available >= end else { return nil }
                guard Self.byte(buffer, at: end - 2) == cr, Self.byte(buffer, at: end - 1) == lf else {
                    throw RedisError(.protocolError, "RESP: a string is not followed by CRLF")
                }
                if completeElement(endingAt: end) { return scanned }
                continue
            }
            guard missing.count < RESPDecoder.maxDepth else {
                throw RedisError(.protocolError, "RESP: replies nested too deeply")
            }
            guard let byte = Self.byte(buffer, at: scanned) else { return nil }
            guard let type = RESPType(rawValue: byte) else {
                throw RedisError(.protocolError, "RESP: unknown reply type byte \(byte)")
            }
            guard let lineEnd = try findLineEnd(buffer) else { return nil }
            let afterLine = lineEnd + 2
            let end: Int
            switch type {
            case .simpleString, .error, .integer, .bigNumber, .null, .double, .boolean:
                end = afterLine
            case .bulkString, .verbatimString, .blobError:
                let length = try Self.integer(buffer, from: scanned + 1, to: lineEnd)
                if length < 0 {
                    end = afterLine  // $-1: null
                } else {
                    guard length <= Self.maxStringLength else {
                        throw RedisError(
                            .protocolError, "RESP: a string of \(length) bytes is larger than Redis allows")
                    }
                    elementEnd = afterLine + Int(length) + 2
                    continue
                }
            case .array, .set, .push, .map:
                let count = try Self.integer(buffer, from: scanned + 1, to: lineEnd)
                if count <= 0 {
                    end = afterLine  // *-1: null; *0: empty
                } else {
                    guard count <= Self.maxElements else {
                        throw RedisError(
                            .protocolError, "RESP: an aggregate of \(count) elements is larger than Redis sends")
                    }
                    // The aggregate's header is scanned; its elements come next.
                    missing.append(Int(type == .map ? count * 2 : count))
                    scanned = afterLine
                    searchFrom = afterLine
                    continue
                }
            }
            if completeElement(endingAt: end) { return scanned }
        }
    }

    /// Records an element as scanned, and with it every aggregate it was the last element of.
    /// - Returns: whether the reply is complete.
    private mutating func completeElement(endingAt end: Int) -> Bool {
        scanned = end
        searchFrom = end
        elementEnd = nil
        while let innermost = missing.indices.last {
            missing[innermost] -= 1
            if missing[innermost] > 0 { return false }
            missing.removeLast()
        }
        return true
    }

    /// The offset of the CR ending the line that starts at ``scanned``; `nil` until its CRLF arrived.
    private mutating func findLineEnd(_ buffer: ByteBuffer) throws(RedisError) -> Int? {
        let from = max(searchFrom, scanned + 1)
        guard let found = Self.firstCR(buffer, from: from) else {
            searchFrom = max(from, buffer.readableBytes)
            return nil
        }
        guard let next = Self.byte(buffer, at: found + 1) else {
            searchFrom = found  // look at this CR again once its LF may have come
            return nil
        }
        guard next == lf else { throw RedisError(.protocolError, "RESP: a CR not followed by LF") }
        return found
    }

    // MARK: - Bytes

    /// The byte at `offset` after the reader index, `nil` past the end.
    static func byte(_ buffer: ByteBuffer, at offset: Int) -> UInt8? {
        guard offset < buffer.readableBytes else { return nil }
        return buffer.getInteger(at: buffer.readerIndex + offset, as: UInt8.self)
    }

    /// The offset of the first CR at or after `offset` (offsets from the reader index).
    static func firstCR(_ buffer: ByteBuffer, from offset: Int) -> Int? {
        buffer.withUnsafeReadableBytes { bytes in
            guard offset < bytes.count else { return nil }
            return bytes[offset...].firstIndex(of: cr)
        }
    }

    /// The decimal integer in the bytes `from..<to` after the reader index.
    /// - Throws: ``RedisError`` with code `protocolError` when they are not one.
    static func integer(_ buffer: ByteBuffer, from: Int, to: Int) throws(RedisError) -> Int64 {
        let value = buffer.withUnsafeReadableBytes { bytes in decimal(bytes[from..<to]) }
        guard let value else {
            let text = buffer.getString(at: buffer.readerIndex + from, length: to - from) ?? ""
            throw RedisError(.protocolError, "RESP: expected an integer, got \"\(text)\"")
        }
        return value
    }

    /// Parses an optionally signed decimal integer without making a `String`; `nil` when the bytes are
    /// not one or it overflows.
    static func decimal(_ bytes: some Collection<UInt8>) -> Int64? {
        var digits = bytes[...]
        let negative = digits.first == UInt8(ascii: "-")
        if negative || digits.first == UInt8(ascii: "+") { digits = digits.dropFirst() }
        guard !digits.isEmpty else { return nil }
        var value: Int64 = 0
        for byte in digits {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let digit = Int64(byte - UInt8(ascii: "0"))
            let (shifted, overflow) = value.multipliedReportingOverflow(by: 10)
            let (next, overflow2) =
                negative ? shifted.subtractingReportingOverflow(digit) : shifted.addingReportingOverflow(digit)
            guard !overflow, !overflow2 else { return nil }
            value = next
        }
        return value
    }
}

/// The type bytes of RESP2 and RESP3 replies.
enum RESPType: UInt8 {
    case simpleString = 43  // +
    case error = 45  // -
    case integer = 58  // :
    case bulkString = 36  // $
    case verbatimString = 61  // =
    case blobError = 33  // !
    case bigNumber = 40  // (
    case null = 95  // _
    case double = 44  // ,
    case boolean = 35  // #
    case array = 42  // *
    case set = 126  // ~
    case push = 62  // >
    case map = 37  // %
}

private let cr = UInt8(ascii: "\r")
private let lf = UInt8(ascii: "\n")
