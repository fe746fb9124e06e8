import TOMLKit

/// Reads TOML text (`pq.toml`, `NAME.pq.toml`) with TOMLKit (toml++ underneath) into a
/// ``JSONValue`` tree, which the config and manifest readers then check key by key: their errors
/// name the file, the key and what it must be, which a `Decodable` error path does not say as
/// plainly. Dates and times have no use in either file and are refused, naming the key.
enum TOMLDocument {
    /// A syntax error, or a value pq does not take.
    struct ParseError: Error, CustomStringConvertible, Sendable {
        /// What is wrong, starting with "line N" when the parser says where.
        var description: String
    }

    /// Parses a document.
    /// - Parameter text: the TOML text.
    /// - Returns: the top-level table as an object (keys in TOML's sorted order).
    /// - Throws: ``ParseError``.
    static func parse(_ text: String) throws(ParseError) -> JSONValue {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            let at = error.source.begin
            throw ParseError(description: "line \(at.line), column \(at.column): \(error.description)")
        } catch {
            throw ParseError(description: "\(error)")
        }
        return try value(table, key: "")
    }

    private static func value(_ node: any TOMLValueConvertible, key: String) throws(ParseError) -> JSONValue {
        switch node.type {
        case .table:
            guard let table = node.table else { break }
            var pairs: [(String, JSONValue)] = []
            for (name, child) in table {
                pairs.append((name, try value(child, key: key.isEmpty ? name : key + "." + name)))
            }
            return .object(pairs)
        case .array:
            guard let array = node.array else { break }
            var items: [JSONValue] = []
            for (n, child) in array.enumerated() { items.append(try value(child, key: "\(key)[\(n)]")) }
            return .array(items)
        case .string:
            if let s = node.string { return .string(s) }
        case .int:
            if let n = node.int { return .int(Int64(n)) }
        case .double:
            if let d = node.double { return .double(d) }
        case .bool:
            if let b = node.bool { return .bool(b) }
        case .date, .time, .dateTime:
            throw ParseError(description: "'\(key)': dates and times are not taken here (quote the value)")
        }
        throw ParseError(description: "'\(key)': unreadable value")
    }
}
