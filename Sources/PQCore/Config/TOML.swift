/// A small TOML reader for pq's own files (`pq.toml`, `NAME.pq.toml` manifests).
///
/// It reads the part of TOML 1.0 those files use: comments, `key = value` with bare, quoted and
/// dotted keys, `[table]`, `[[array of tables]]`, basic and literal strings (also multi-line),
/// integers (with `_`, hex, octal, binary), floats, booleans, arrays (over several lines) and
/// inline tables. Dates are not supported. The document becomes a ``JSONValue`` object.
public enum TOML {
    /// A syntax error with its line number.
    public struct ParseError: Error, CustomStringConvertible, Sendable {
        /// 1-based line.
        public var line: Int
        /// What was wrong.
        public var message: String
        /// "line N: message".
        public var description: String { "line \(line): \(message)" }
    }

    /// Parses a document.
    /// - Parameter text: the TOML text.
    /// - Returns: the document as a JSON object value.
    /// - Throws: ``ParseError``.
    public static func parse(_ text: String) throws(ParseError) -> JSONValue {
        var p = Parser(chars: Array(text.unicodeScalars))
        return try p.document()
    }

    struct Parser {
        let chars: [Unicode.Scalar]
        var i = 0
        var line = 1
        var root = Node.table([:], [])
        var currentPath: [PathItem] = []

        enum PathItem {
            case key(String)
            case index(String)
        }

        indirect enum Node {
            case table([String: Node], [String])  // values, key order
            case array([Node])
            case value(JSONValue)
        }

        init(chars: [Unicode.Scalar]) { self.chars = chars }

        func fail(_ message: String) -> ParseError { ParseError(line: line, message: message) }

        var atEnd: Bool { i >= chars.count }
        var current: Unicode.Scalar? { i < chars.count ? chars[i] : nil }

        mutating func skipSpaces() {
            while let c = current, c == " " || c == "\t" { i += 1 }
        }

        mutating func skipComment() {
            if current == "#" { while let c = current, c != "\n" { i += 1 } }
        }

        mutating func skipBlank() {
            while true {
                skipSpaces()
                skipComment()
                if current == "\n" {
                    i += 1
                    line += 1
                } else if current == "\r" {
                    i += 1
                } else {
                    return
                }
            }
        }

        mutating func endOfLine() throws(ParseError) {
            skipSpaces()
            skipComment()
            if current == "\r" { i += 1 }
            if let c = current {
                guard c == "\n" else { throw fail("expected the end of the line, found '\(c)'") }
                i += 1
                line += 1
            }
        }

        mutating func document() throws(ParseError) -> JSONValue {
            while true {
                skipBlank()
                guard let c = current else { break }
                if c == "[" {
                    i += 1
                    let isArray = current == "["
                    if isArray { i += 1 }
                    skipSpaces()
                    let keys = try key()
                    skipSpaces()
                    guard current == "]" else { throw fail("expected ']' after the table name") }
                    i += 1
                    if isArray {
                        guard current == "]" else { throw fail("expected ']]' after the array-of-tables name") }
                        i += 1
                    }
                    try endOfLine()
                    try openTable(keys, array: isArray)
                } else {
                    let keys = try key()
                    skipSpaces()
                    guard current == "=" else { throw fail("expected '=' after key '\(keys.joined(separator: "."))'") }
                    i += 1
                    skipSpaces()
                    let v = try value()
                    try endOfLine()
                    try assign(keys, v)
                }
            }
            return Self.toJSON(root)
        }

        static func toJSON(_ node: Node) -> JSONValue {
            switch node {
            case .value(let v): return v
            case .array(let items): return .array(items.map(toJSON))
            case .table(let values, let order): return .object(order.map { ($0, toJSON(values[$0]!)) })
            }
        }

        mutating func key() throws(ParseError) -> [String] {
            var parts: [String] = []
            while true {
                skipSpaces()
                if current == "\"" {
                    parts.append(try basicString())
                } else if current == "'" {
                    parts.append(try literalString())
                } else {
                    var s = ""
                    while let c = current, c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "_" || c == "-"
                    {
                        s.unicodeScalars.append(c)
                        i += 1
                    }
                    guard !s.isEmpty else { throw fail("expected a key") }
                    parts.append(s)
                }
                skipSpaces()
                if current == "." {
                    i += 1
                    continue
                }
                return parts
            }
        }

        mutating func value() throws(ParseError) -> Node {
            guard let c = current else { throw fail("expected a value") }
            switch c {
            case "\"":
                if i + 2 < chars.count, chars[i + 1] == "\"", chars[i + 2] == "\"" {
                    return .value(.string(try multilineString(quote: "\"")))
                }
                return .value(.string(try basicString()))
            case "'":
                if i + 2 < chars.count, chars[i + 1] == "'", chars[i + 2] == "'" {
                    return .value(.string(try multilineString(quote: "'")))
                }
                return .value(.string(try literalString()))
            case "[":
                i += 1
                var items: [Node] = []
                while true {
                    skipBlank()
                    if current == "]" {
                        i += 1
                        return .array(items)
                    }
                    items.append(try value())
                    skipBlank()
                    if current == "," {
                        i += 1
                        continue
                    }
                    guard current == "]" else { throw fail("expected ',' or ']' in an array") }
                }
            case "{":
                i += 1
                var table = Node.table([:], [])
                skipSpaces()
                if current == "}" {
                    i += 1
                    return table
                }
                while true {
                    let keys = try key()
                    skipSpaces()
                    guard current == "=" else { throw fail("expected '=' in an inline table") }
                    i += 1
                    skipSpaces()
                    let v = try value()
                    try Self.insert(into: &table, keys[...], v, fail: fail)
                    skipSpaces()
                    if current == "," {
                        i += 1
                        continue
                    }
                    guard current == "}" else { throw fail("expected ',' or '}' in an inline table") }
                    i += 1
                    return table
                }
            default:
                var s = ""
                while let c = current,
                    !(c == "," || c == "]" || c == "}" || c == "\n" || c == "\r" || c == "#" || c == " " || c == "\t")
                {
                    s.unicodeScalars.append(c)
                    i += 1
                }
                switch s {
                case "true": return .value(.bool(true))
                case "false": return .value(.bool(false))
                case "inf", "+inf": return .value(.double(.infinity))
                case "-inf": return .value(.double(-.infinity))
                case "nan", "+nan", "-nan": return .value(.double(.nan))
                default: break
                }
                let digits = s.replacingUnderscores()
                if digits.hasPrefix("0x"), let v = Int64(digits.dropFirst(2), radix: 16) { return .value(.int(v)) }
                if digits.hasPrefix("0o"), let v = Int64(digits.dropFirst(2), radix: 8) { return .value(.int(v)) }
                if digits.hasPrefix("0b"), let v = Int64(digits.dropFirst(2), radix: 2) { return .value(.int(v)) }
                if let v = Int64(digits) { return .value(.int(v)) }
                if digits.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }), let d = Double(digits) {
                    return .value(.double(d))
                }
                throw fail(s.isEmpty ? "expected a value" : "invalid value '\(s)' (strings need quotes)")
            }
        }

        mutating func basicString() throws(ParseError) -> String {
            i += 1
            var s = String.UnicodeScalarView()
            while let c = current {
                i += 1
                if c == "\"" { return String(s) }
                if c == "\n" { throw fail("newline in a string") }
                if c == "\\" { s.append(try escape()) } else { s.append(c) }
            }
            throw fail("unterminated string")
        }

        mutating func escape() throws(ParseError) -> Unicode.Scalar {
            guard let e = current else { throw fail("unterminated escape") }
            i += 1
            switch e {
            case "n": return "\n"
            case "t": return "\t"
            case "r": return "\r"
            case "\"": return "\""
            case "\\": return "\\"
            case "b": return "\u{08}"
            case "f": return "\u{0C}"
            case "u", "U":
                let n = e == "u" ? 4 : 8
                guard i + n <= chars.count else { throw fail("short unicode escape") }
                let hex = String(String.UnicodeScalarView(chars[i..<i + n]))
                i += n
                guard let v = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(v) else {
                    throw fail("invalid unicode escape")
                }
                return scalar
            default: throw fail("invalid escape '\\\(e)'")
            }
        }

        mutating func literalString() throws(ParseError) -> String {
            i += 1
            var s = String.UnicodeScalarView()
            while let c = current {
                i += 1
                if c == "'" { return String(s) }
                if c == "\n" { throw fail("newline in a string") }
                s.append(c)
            }
            throw fail("unterminated string")
        }

        mutating func multilineString(quote: Unicode.Scalar) throws(ParseError) -> String {
            i += 3
            if current == "\n" {
                i += 1
                line += 1
            }
            var s = String.UnicodeScalarView()
            while let c = current {
                if c == quote, i + 2 < chars.count, chars[i + 1] == quote, chars[i + 2] == quote {
                    i += 3
                    return String(s)
                }
                i += 1
                if c == "\n" { line += 1 }
                if c == "\\", quote == "\"" {
                    if current == "\n" {
                        while let w = current, w == "\n" || w == " " || w == "\t" || w == "\r" {
                            if w == "\n" { line += 1 }
                            i += 1
                        }
                        continue
                    }
                    s.append(try escape())
                } else {
                    s.append(c)
                }
            }
            throw fail("unterminated multi-line string")
        }

        mutating func openTable(_ keys: [String], array: Bool) throws(ParseError) {
            currentPath = []
            let failHere = fail
            func descend(_ node: inout Node, _ rest: ArraySlice<String>, path: inout [PathItem]) throws(ParseError) {
                guard let first = rest.first else { return }
                guard case .table(var values, var order) = node else { throw failHere("'\(first)' is not a table") }
                let last = rest.count == 1
                var child = values[first]
                if child == nil {
                    child = last && array ? .array([.table([:], [])]) : .table([:], [])
                    order.append(first)
                } else if last && array {
                    guard case .array(var items) = child! else {
                        throw failHere("'\(first)' is already defined and is not an array of tables")
                    }
                    items.append(.table([:], []))
                    child = .array(items)
                }
                if case .array(var items) = child! {
                    path.append(.index(first))
                    var lastItem = items.removeLast()
                    try descend(&lastItem, rest.dropFirst(), path: &path)
                    items.append(lastItem)
                    child = .array(items)
                } else {
                    path.append(.key(first))
                    var c = child!
                    try descend(&c, rest.dropFirst(), path: &path)
                    child = c
                }
                values[first] = child
                node = .table(values, order)
            }
            var path: [PathItem] = []
            try descend(&root, keys[...], path: &path)
            currentPath = path
        }

        mutating func assign(_ keys: [String], _ value: Node) throws(ParseError) {
            let failHere = fail
            func walk(_ node: inout Node, _ path: ArraySlice<PathItem>) throws(ParseError) {
                guard let first = path.first else {
                    try Self.insert(into: &node, keys[...], value, fail: failHere)
                    return
                }
                guard case .table(var values, let order) = node else { throw failHere("not a table") }
                switch first {
                case .key(let k):
                    var child = values[k]!
                    try walk(&child, path.dropFirst())
                    values[k] = child
                case .index(let k):
                    guard case .array(var items) = values[k]! else { throw failHere("not an array of tables") }
                    var lastItem = items.removeLast()
                    try walk(&lastItem, path.dropFirst())
                    items.append(lastItem)
                    values[k] = .array(items)
                }
                node = .table(values, order)
            }
            try walk(&root, currentPath[...])
        }

        static func insert(
            into node: inout Node, _ keys: ArraySlice<String>, _ value: Node, fail: (String) -> ParseError
        ) throws(ParseError) {
            guard case .table(var values, var order) = node, let first = keys.first else { throw fail("not a table") }
            if keys.count == 1 {
                guard values[first] == nil else { throw fail("key '\(first)' is defined twice") }
                values[first] = value
                order.append(first)
            } else {
                var child = values[first] ?? .table([:], [])
                if values[first] == nil { order.append(first) }
                try insert(into: &child, keys.dropFirst(), value, fail: fail)
                values[first] = child
            }
            node = .table(values, order)
        }
    }
}

extension String {
    fileprivate func replacingUnderscores() -> String { filter { $0 != "_" } }
}
