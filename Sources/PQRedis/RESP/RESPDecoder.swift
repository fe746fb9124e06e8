public import NIOCore

/// Decodes RESP2 and RESP3 replies from a byte stream, one complete reply at a time.
///
/// A reply split over several reads is left in the buffer until it is complete; strings are slices of
/// the read buffer, not copies.
public struct RESPDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = RESPValue

    /// Nesting deeper than this is refused rather than recursing without bound.
    public static let maxDepth = 64

    /// Creates a decoder.
    public init() {}

    /// Decodes one reply if the buffer holds a complete one.
    /// - Parameter buffer: the bytes received so far.
    /// - Returns: the reply, or `nil` when more bytes are needed.
    /// - Throws: ``RedisError`` with code `protocolError` for bytes that are not RESP.
    public mutating func decode(buffer: inout ByteBuffer) throws -> RESPValue? {
        let start = buffer.readerIndex
        guard let value = try Self.parse(&buffer, depth: 0) else {
            buffer.moveReaderIndex(to: start)
            return nil
        }
        return value
    }

    /// Same as ``decode(buffer:)``: a reply cut short at the end of the stream is simply dropped.
    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> RESPValue? {
        try decode(buffer: &buffer)
    }

    /// Reads the bytes up to the next CRLF and consumes the CRLF; `nil` when no CRLF was received yet.
    private static func readLine(_ buffer: inout ByteBuffer) -> ByteBuffer? {
        let view = buffer.readableBytesView
        guard let cr = view.firstIndex(of: UInt8(ascii: "\r")) else { return nil }
        guard cr + 1 < view.endIndex else { return nil }
        let length = cr - view.startIndex
        let line = buffer.readSlice(length: length)
        buffer.moveReaderIndex(forwardBy: 2)
        return line
    }

    private static func readInteger(_ buffer: inout ByteBuffer) throws(RedisError) -> Int64? {
        guard let line = readLine(&buffer) else { return nil }
        guard let value = Int64(String(buffer: line)) else {
            throw RedisError(.protocolError, "RESP: expected an integer, got \"\(String(buffer: line))\"")
        }
        return value
    }

    private static func readBlob(_ buffer: inout ByteBuffer) throws(RedisError) -> ByteBuffer?? {
        guard let length = try readInteger(&buffer) else { return nil }
        if length < 0 { return .some(nil) }
        guard length <= 512 * 1024 * 1024 else {
            throw RedisError(.protocolError, "RESP: a string of \(length) bytes is larger than Redis allows")
        }
        guard buffer.readableBytes >= Int(length) + 2 else { return nil }
        let blob = buffer.readSlice(length: Int(length))!
        buffer.moveReaderIndex(forwardBy: 2)
        return .some(blob)
    }

    private static func readElements(_ buffer: inout ByteBuffer, count: Int64, depth: Int) throws(RedisError)
        -> [RESPValue]?
    {
        var values: [RESPValue] = []
        values.reserveCapacity(Int(min(count, 1024)))
        for _ in 0..<count {
            guard let value = try parse(&buffer, depth: depth + 1) else { return nil }
            values.append(value)
        }
        return values
    }

    static func parse(_ buffer: inout ByteBuffer, depth: Int) throws(RedisError) -> RESPValue? {
        guard depth < maxDepth else { throw RedisError(.protocolError, "RESP: replies nested too deeply") }
        guard let type = buffer.readInteger(as: UInt8.self) else { return nil }
        switch type {
        case UInt8(ascii: "+"):
            return readLine(&buffer).map { .simpleString($0) }
        case UInt8(ascii: "-"):
            return readLine(&buffer).map { .error($0) }
        case UInt8(ascii: ":"):
            return try readInteger(&buffer).map { .integer($0) }
        case UInt8(ascii: "$"), UInt8(ascii: "="):
            guard let blob = try readBlob(&buffer) else { return nil }
            return blob.map { .bulkString($0) } ?? .null
        case UInt8(ascii: "!"):
            guard let blob = try readBlob(&buffer) else { return nil }
            return blob.map { .error($0) } ?? .null
        case UInt8(ascii: "("):
            return readLine(&buffer).map { .bulkString($0) }
        case UInt8(ascii: "_"):
            return readLine(&buffer).map { _ in .null }
        case UInt8(ascii: ","):
            guard let line = readLine(&buffer) else { return nil }
            let text = String(buffer: line)
            switch text {
            case "inf": return .double(.infinity)
            case "-inf": return .double(-.infinity)
            case "nan": return .double(.nan)
            default:
                guard let value = Double(text) else { throw RedisError(.protocolError, "RESP: bad double \(text)") }
                return .double(value)
            }
        case UInt8(ascii: "#"):
            guard let line = readLine(&buffer) else { return nil }
            return .boolean(line.readableBytesView.first == UInt8(ascii: "t"))
        case UInt8(ascii: "*"), UInt8(ascii: "~"), UInt8(ascii: ">"):
            guard let count = try readInteger(&buffer) else { return nil }
            if count < 0 { return .null }
            guard let values = try readElements(&buffer, count: count, depth: depth) else { return nil }
            return type == UInt8(ascii: ">") ? .push(values) : .array(values)
        case UInt8(ascii: "%"):
            guard let count = try readInteger(&buffer) else { return nil }
            if count < 0 { return .null }
            guard let values = try readElements(&buffer, count: count * 2, depth: depth) else { return nil }
            return .map(stride(from: 0, to: values.count, by: 2).map { (values[$0], values[$0 + 1]) })
        default:
            throw RedisError(.protocolError, "RESP: unknown reply type byte \(type)")
        }
    }
}

/// Writes commands as RESP arrays of bulk strings.
public enum RESPEncoder {
    /// Appends one command to `buffer`.
    /// - Parameters:
    ///   - arguments: the command name and its arguments.
    ///   - buffer: where to write.
    public static func encode(_ arguments: [RESPArgument], into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(ascii: "*"))
        writeDecimal(arguments.count, into: &buffer)
        for argument in arguments {
            buffer.writeInteger(UInt8(ascii: "$"))
            switch argument {
            case .string(let text):
                writeDecimal(text.utf8.count, into: &buffer)
                buffer.writeString(text)
            case .bytes(let bytes):
                writeDecimal(bytes.readableBytes, into: &buffer)
                buffer.writeImmutableBuffer(bytes)
            }
            buffer.writeStaticString("\r\n")
        }
    }

    private static func writeDecimal(_ value: Int, into buffer: inout ByteBuffer) {
        buffer.writeString(String(value))
        buffer.writeStaticString("\r\n")
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
