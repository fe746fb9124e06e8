/// The task object split as the Redis store keeps it: the members that never change once a task
/// is queued (written once, by the host that queues it) and those a run changes.
///
/// The task JSON has its keys in the order of ``TaskField/all`` (DESIGN.md section 5), so the
/// fixed members come in runs between changing ones: ``TaskRecord/fixedJSONMembers`` is those
/// runs, separated by a NUL byte (never in JSON text, where control characters are escaped).
/// ``TaskField/luaRenderer`` renders the whole object from them and the changing fields, exactly
/// as ``TaskRecord/json()`` does.
extension TaskRecord {
    /// The runs of fixed members of the task JSON, separated by NUL: `"id":…,"name":…` NUL
    /// `,"queue":…,"kwargs":…` NUL `,"time_queued":…` NUL `,"delay":…,"timeout":…,"expiry":…` NUL
    /// `,"max_retries":…,"from_task":…`.
    public var fixedJSONMembers: String {
        var out = JSONWriter(capacity: 256 + kwargs.utf8.count)
        var started = false
        for (index, field) in TaskField.json.enumerated() where field.part == .fixed {
            if TaskField.startsRun[index] && started { out.bytes([0]) }
            out.bytes(TaskField.jsonKeys[index])
            write(field, &out)
            started = true
        }
        return out.finish()
    }

    /// Writes the members of the task JSON in order (without the braces).
    func writeMembers(_ out: inout JSONWriter) {
        for (index, field) in TaskField.json.enumerated() {
            out.bytes(TaskField.jsonKeys[index])
            write(field, &out)
            // The status's name follows its number.
            if index == TaskField.statusIndex {
                out.raw(",\"status_string\":")
                out.string(status.name)
            }
        }
    }

    private func write(_ field: TaskField, _ out: inout JSONWriter) {
        switch field.get(self) {
        case .null: out.raw("null")
        case .text(let text):
            if case .json(let empty) = field.encoding { out.rawJSON(text, empty: empty) } else { out.string(text) }
        case .integer(let number): out.int(number)
        case .real(let number): out.double(number)
        }
    }

    /// A record with the fixed fields read from ``TaskRecord/fixedJSONMembers``, the others at
    /// their defaults.
    /// - Parameter text: the fixed members.
    /// - Throws: ``JSONParseError`` when the text is not in that shape.
    public init(fixedJSONMembers text: String) throws(JSONParseError) {
        var text = text
        let parsed = text.withUTF8 { utf8 -> Result<TaskRecord, JSONParseError> in
            var reader = FixedMembersReader(parser: JSONParser(bytes: utf8))
            do throws(JSONParseError) {
                return .success(try reader.read())
            } catch {
                return .failure(error)
            }
        }
        self = try parsed.get()
    }
}

extension TaskField {
    /// The fields of the task JSON, in its order.
    package static let json: [TaskField] = all.filter { if case .none = $0.encoding { false } else { true } }

    /// `"name":` of each of ``json`` (with its comma, but for the first).
    static let jsonKeys: [[UInt8]] = json.enumerated().map { i, f in
        Array(((i == 0 ? "" : ",") + "\"\(f.name)\":").utf8)
    }

    /// Whether each of ``json`` is a fixed field that starts a run of fixed fields.
    static let startsRun: [Bool] = json.indices.map { i in
        json[i].part == .fixed && (i == 0 || json[i - 1].part != .fixed)
    }

    static let statusIndex = json.firstIndex { $0.name == "status" }!

    /// A Lua function `render(t)` that writes the task JSON from a task hash read into a table
    /// by field name (the Redis store's fields): the runs of ``TaskRecord/fixedJSONMembers`` from
    /// `t.j`, the changing fields from their own fields, in the order of ``json``.
    package static var luaRenderer: String {
        var parts = ["'{'"]
        var run = 0
        for (index, field) in json.enumerated() {
            if field.part == .fixed {
                if startsRun[index] {
                    run += 1
                    parts.append("g[\(run)]")
                }
                continue
            }
            let key = "'\(index == 0 ? "" : ",")\"\(field.name)\":'"
            let name = field.redis!
            let value: String
            switch (field.kind, field.encoding, field.required) {
            case (.text, .json(let empty), _): value = "jraw(t.\(name), '\(empty)')"
            case (.text, _, _): value = "jstr(t.\(name))"
            case (_, _, true): value = "t.\(name)"
            default: value = "jnum(t.\(name))"
            }
            parts.append(key)
            parts.append(value)
            if index == statusIndex { parts.append("',\"status_string\":\"' .. NAMES[t.s] .. '\"'") }
        }
        parts.append("'}'")
        return """
            local function render(t)
              local g = segments(t.j)
              return \(parts.joined(separator: " .. "))
            end

            """
    }
}

/// Reads ``TaskRecord/fixedJSONMembers``: the fixed fields in the order of ``TaskField/json``,
/// each run of them ending at a NUL or at the end; embedded JSON (`kwargs`) is the rest of its run.
private struct FixedMembersReader {
    var parser: JSONParser

    mutating func key(_ bytes: [UInt8]) throws(JSONParseError) {
        let text = parser.bytes
        guard parser.index + bytes.count <= text.count,
            text[parser.index..<parser.index + bytes.count].elementsEqual(bytes)
        else { throw parser.error("expected the task member \(String(decoding: bytes, as: UTF8.self))") }
        parser.index += bytes.count
    }

    /// The end of the current run: the next NUL, or the end of the text.
    func runEnd() -> Int {
        var end = parser.index
        while end < parser.bytes.count, parser.bytes[end] != 0 { end += 1 }
        return end
    }

    mutating func null() throws(JSONParseError) -> Bool {
        guard parser.index < parser.bytes.count, parser.bytes[parser.index] == UInt8(ascii: "n") else { return false }
        try parser.literal("null")
        return true
    }

    mutating func value(_ field: TaskField) throws(JSONParseError) -> TaskField.Value {
        if case .json = field.encoding {
            let end = runEnd()
            defer { parser.index = end }
            return .text(
                String(decoding: UnsafeBufferPointer(rebasing: parser.bytes[parser.index..<end]), as: UTF8.self))
        }
        if try null() { return .null }
        switch field.kind {
        case .text:
            guard parser.index < parser.bytes.count, parser.bytes[parser.index] == UInt8(ascii: "\"") else {
                throw parser.error("expected a string")
            }
            return .text(try parser.parseString())
        case .integer, .flag, .real:
            let start = parser.index
            while parser.index < parser.bytes.count, parser.bytes[parser.index] != UInt8(ascii: ","),
                parser.bytes[parser.index] != 0
            {
                parser.index += 1
            }
            let text = String(
                decoding: UnsafeBufferPointer(rebasing: parser.bytes[start..<parser.index]), as: UTF8.self)
            guard let number = Double(text) else { throw parser.error("expected a number") }
            return field.kind == .real ? .real(number) : .integer(Int(number))
        }
    }

    mutating func read() throws(JSONParseError) -> TaskRecord {
        var record = TaskRecord(id: "", name: "", timeQueued: 0)
        var started = false
        for (index, field) in TaskField.json.enumerated() where field.part == .fixed {
            if TaskField.startsRun[index] && started {
                guard parser.index < parser.bytes.count, parser.bytes[parser.index] == 0 else {
                    throw parser.error("expected the end of a run of task members")
                }
                parser.index += 1
            }
            started = true
            try key(TaskField.jsonKeys[index])
            field.set(&record, try value(field))
        }
        guard parser.index == parser.bytes.count else { throw parser.error("unexpected text after the task members") }
        record.eta = record.timeQueued + (record.delay ?? 0)
        return record
    }
}
