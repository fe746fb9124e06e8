public import NIOCore

/// Decodes RESP2 and RESP3 replies from a byte stream, one complete reply at a time.
///
/// Decoding has two layers. A ``RESPFrameScanner`` finds where the reply ends, keeping its place
/// across reads, so a large reply arriving in many reads is scanned once (linear, not quadratic, in
/// its size); the reply stays in the buffer until all of it is there. Then the parser turns the
/// complete reply into a ``RESPValue`` in one pass. Strings are slices of the read buffer, not copies.
///
/// ```swift
/// try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RESPDecoder()))
/// ```
public struct RESPDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = RESPValue

    /// Nesting deeper than this is refused rather than recursing without bound.
    public static let maxDepth = 64

    /// How far the reply at the front of the buffer has been scanned.
    private(set) var scanner = RESPFrameScanner()

    /// Creates a decoder.
    public init() {}

    /// Decodes one reply if the buffer holds a complete one.
    /// - Parameter buffer: the bytes received so far; only ever appended to between calls.
    /// - Returns: the reply, or `nil` when more bytes are needed.
    /// - Throws: ``RedisError`` with code `protocolError` for bytes that are not RESP.
    public mutating func decode(buffer: inout ByteBuffer) throws -> RESPValue? {
        guard let length = try scanner.scan(buffer) else { return nil }
        scanner = RESPFrameScanner()
        var frame = buffer.readSlice(length: length)!
        let value = try Self.parse(&frame, depth: 0)
        guard frame.readableBytes == 0 else {
            throw RedisError(.protocolError, "RESP: a reply is longer than its framing says")
        }
        return value
    }

    /// Same as ``decode(buffer:)``: a reply cut short at the end of the stream is simply dropped.
    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> RESPValue? {
        try decode(buffer: &buffer)
    }

    // MARK: - Parsing a complete reply

    /// Parses one reply that the scanner found complete.
    /// - Parameters:
    ///   - frame: the reply's bytes; consumed.
    ///   - depth: how many aggregates enclose it.
    /// - Returns: the reply.
    /// - Throws: ``RedisError`` with code `protocolError` for contents that are not RESP, or for a
    ///   reply cut short (which the scanner rules out).
    static func parse(_ frame: inout ByteBuffer, depth: Int) throws(RedisError) -> RESPValue {
        guard depth < maxDepth else { throw RedisError(.protocolError, "RESP: replies nested too deeply") }
        guard let byte = frame.readInteger(as: UInt8.self) else { throw cutShort }
        guard let type = RESPType(rawValue: byte) else {
            throw RedisError(.protocolError, "RESP: unknown reply type byte \(byte)")
        }
        switch type {
        case .simpleString: return .simpleString(try readLine(&frame))
        case .error: return .error(try readLine(&frame))
        case .integer: return .integer(try readInteger(&frame))
        case .bulkString, .verbatimString: return try readBlob(&frame).map { .bulkString($0) } ?? .null
        case .blobError: return try readBlob(&frame).map { .error($0) } ?? .null
        case .bigNumber: return .bulkString(try readLine(&frame))
        case .null:
            _ = try readLine(&frame)
            return .null
        case .double:
            let text = String(buffer: try readLine(&frame))
            switch text {
            case "inf": return .double(.infinity)
            case "-inf": return .double(-.infinity)
            case "nan": return .double(.nan)
            default:
                guard let value = Double(text) else { throw RedisError(.protocolError, "RESP: bad double \(text)") }
                return .double(value)
            }
        case .boolean:
            return .boolean(try readLine(&frame).readableBytesView.first == UInt8(ascii: "t"))
        case .array, .set, .push:
            let count = try readInteger(&frame)
            if count < 0 { return .null }
            let values = try readElements(&frame, count: Int(count), depth: depth)
            return type == .push ? .push(values) : .array(values)
        case .map:
            let count = try readInteger(&frame)
            if count < 0 { return .null }
            let values = try readElements(&frame, count: Int(count) * 2, depth: depth)
            return .map(stride(from: 0, to: values.count, by: 2).map { (values[$0], values[$0 + 1]) })
        }
    }

    private static var cutShort: RedisError { RedisError(.protocolError, "RESP: a reply was cut short") }

    /// Reads the bytes up to the next CRLF and consumes the CRLF.
    private static func readLine(_ frame: inout ByteBuffer) throws(RedisError) -> ByteBuffer {
        guard let cr = RESPFrameScanner.firstCR(frame, from: 0), cr + 2 <= frame.readableBytes else { throw cutShort }
        let line = frame.readSlice(length: cr)!
        frame.moveReaderIndex(forwardBy: 2)
        return line
    }

    private static func readInteger(_ frame: inout ByteBuffer) throws(RedisError) -> Int64 {
        let line = try readLine(&frame)
        return try RESPFrameScanner.integer(line, from: 0, to: line.readableBytes)
    }

    /// A string's body, or `nil` for a null string (length -1).
    private static func readBlob(_ frame: inout ByteBuffer) throws(RedisError) -> ByteBuffer? {
        let length = try readInteger(&frame)
        if length < 0 { return nil }
        guard let blob = frame.readSlice(length: Int(length)), frame.readableBytes >= 2 else { throw cutShort }
        frame.moveReaderIndex(forwardBy: 2)
        return blob
    }

    private static func readElements(_ frame: inout ByteBuffer, count: Int, depth: Int) throws(RedisError)
        -> [RESPValue]
    {
        var values: [RESPValue] = []
        // The count is bounded by the scanner, and every element takes at least 3 bytes of the frame.
        values.reserveCapacity(min(count, frame.readableBytes / 3))
        for _ in 0..<count { values.append(try parse(&frame, depth: depth + 1)) }
        return values
    }
}

/// Writes commands as RESP arrays of bulk strings.
public enum RESPEncoder {
    /// Appends one command to `buffer`.
    /// - Parameters:
    ///   - arguments: the command name and its arguments.
    ///   - buffer: where to write.
    public static func encode(_ arguments: [RESPArgument], into buffer: inout ByteBuffer) {
        // Built in a plain byte array and written to the buffer once: a ByteBuffer write per
        // piece (four per argument) cost more than the bytes themselves.
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16 + arguments.count * 24)
        bytes.append(UInt8(ascii: "*"))
        appendDecimal(arguments.count, to: &bytes)
        for argument in arguments {
            bytes.append(UInt8(ascii: "$"))
            switch argument {
            case .string(var text):
                text.withUTF8 { utf8 in
                    appendDecimal(utf8.count, to: &bytes)
                    bytes.append(contentsOf: utf8)
                }
            case .bytes(let raw):
                appendDecimal(raw.readableBytes, to: &bytes)
                raw.withUnsafeReadableBytes { bytes.append(contentsOf: $0) }
            }
            bytes.append(UInt8(ascii: "\r"))
            bytes.append(UInt8(ascii: "\n"))
        }
        buffer.writeBytes(bytes)
    }

    /// Appends `value` (≥ 0) in decimal, then CRLF.
    private static func appendDecimal(_ value: Int, to bytes: inout [UInt8]) {
        let value = max(0, value)
        var divisor = 1
        var scan = value
        while scan >= 10 {
            scan /= 10
            divisor *= 10
        }
        var rest = value
        while divisor > 0 {
            bytes.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: rest / divisor))
            rest %= divisor
            divisor /= 10
        }
        bytes.append(UInt8(ascii: "\r"))
        bytes.append(UInt8(ascii: "\n"))
    }
}

/// One argument of a command: text or raw bytes.
public enum RESPArgument: Sendable, Equatable, ExpressibleByStringLiteral {
    /// UTF-8 text.
    case string(String)
    /// Raw bytes.
    case bytes(ByteBuffer)

    /// Creates a text argument from a literal.
    public init(stringLiteral value: String) { self = .string(value) }
}
