public import NIOCore

/// One reply from a Redis server, RESP2 or RESP3.
///
/// Strings are `ByteBuffer` slices of the bytes read from the socket: decoding does not copy them.
///
/// ```swift
/// let reply = try await client.send(["GET", "key"])
/// let text = try reply.string  // nil for a null reply
/// ```
public enum RESPValue: Sendable, Equatable {
    /// `+OK`
    case simpleString(ByteBuffer)
    /// `-ERR ...` (RESP3 `!` blob errors too).
    case error(ByteBuffer)
    /// `:42`
    case integer(Int64)
    /// `$5\r\nhello` (RESP3 `=` verbatim strings and `(` big numbers too).
    case bulkString(ByteBuffer)
    /// `$-1`, `*-1` or RESP3 `_`.
    case null
    /// `*2 ...`; RESP3 `~` sets too.
    case array([RESPValue])
    /// RESP3 `%` maps, as key/value pairs in order.
    case map([(RESPValue, RESPValue)])
    /// RESP3 `,3.14`
    case double(Double)
    /// RESP3 `#t`
    case boolean(Bool)
    /// RESP3 `>` pushes (pub/sub messages).
    case push([RESPValue])

    public static func == (a: RESPValue, b: RESPValue) -> Bool {
        switch (a, b) {
        case (.simpleString(let x), .simpleString(let y)), (.error(let x), .error(let y)),
            (.bulkString(let x), .bulkString(let y)):
            return x == y
        case (.integer(let x), .integer(let y)): return x == y
        case (.null, .null): return true
        case (.array(let x), .array(let y)), (.push(let x), .push(let y)): return x == y
        case (.map(let x), .map(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case (.double(let x), .double(let y)): return x == y
        case (.boolean(let x), .boolean(let y)): return x == y
        default: return false
        }
    }

    /// The text of a string or the digits of a number; `nil` for null.
    /// - Throws: ``RedisError`` with code `server` for an error reply, `unexpectedReply` for an array.
    public var string: String? {
        get throws(RedisError) {
            switch self {
            case .simpleString(let buffer), .bulkString(let buffer): return String(buffer: buffer)
            case .integer(let value): return String(value)
            case .double(let value): return String(value)
            case .boolean(let value): return value ? "1" : "0"
            case .null: return nil
            case .error(let buffer): throw RedisError.server(String(buffer: buffer))
            case .array, .map, .push: throw RedisError(.unexpectedReply, "expected a string, got \(self)")
            }
        }
    }

    /// The integer of an integer reply or of a string holding digits; `nil` for null.
    /// - Throws: ``RedisError`` for an error reply or a value that is not an integer.
    public var int: Int? {
        get throws(RedisError) {
            if case .integer(let value) = self { return Int(value) }
            guard let text = try string else { return nil }
            guard let value = Int(text) else { throw RedisError(.unexpectedReply, "expected an integer, got \(text)") }
            return value
        }
    }

    /// The elements of an array, set or push reply; `nil` for null.
    /// - Throws: ``RedisError`` for an error reply or a reply that is not an array.
    public var array: [RESPValue]? {
        get throws(RedisError) {
            switch self {
            case .array(let values), .push(let values): return values
            case .map(let pairs): return pairs.flatMap { [$0.0, $0.1] }
            case .null: return nil
            case .error(let buffer): throw RedisError.server(String(buffer: buffer))
            default: throw RedisError(.unexpectedReply, "expected an array, got \(self)")
            }
        }
    }

    /// Throws when the reply is an error reply.
    /// - Throws: ``RedisError`` with code `server`.
    public func check() throws(RedisError) {
        if case .error(let buffer) = self { throw RedisError.server(String(buffer: buffer)) }
    }
}

extension RESPValue: CustomStringConvertible {
    /// A short, human-readable rendering for logs and error messages.
    public var description: String {
        switch self {
        case .simpleString(let buffer): return "+" + String(buffer: buffer)
        case .error(let buffer): return "-" + String(buffer: buffer)
        case .integer(let value): return ":\(value)"
        case .bulkString(let buffer): return "\"" + String(buffer: buffer).prefix(200) + "\""
        case .null: return "(nil)"
        case .array(let values): return "[" + values.map(\.description).joined(separator: ", ") + "]"
        case .push(let values): return ">[" + values.map(\.description).joined(separator: ", ") + "]"
        case .map(let pairs): return "{" + pairs.map { "\($0.0): \($0.1)" }.joined(separator: ", ") + "}"
        case .double(let value): return ",\(value)"
        case .boolean(let value): return value ? "#t" : "#f"
        }
    }
}
