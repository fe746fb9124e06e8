/// The task object split as the Redis store keeps it: the members that never change once a task
/// is queued (written once, by the host that queues it), and those a run changes.
///
/// ``TaskRecord/json()`` is the two joined, so a store that keeps the first part as stored text
/// (the Redis store's `j` field) renders the same object by adding the second, in a script or on
/// a host, without re-encoding `kwargs`.
extension TaskRecord {
    /// The members that never change once the task is queued, as JSON object members without the
    /// braces: `"id":…,"name":…,"queue":…,"time_queued":…,"delay":…,"timeout":…,"expiry":…,
    /// "max_retries":…,"from_task":…,"kwargs":…` (`kwargs` last, so ``Members/init(parsing:)``
    /// takes it as the rest).
    public var fixedJSONMembers: String {
        var out = JSONWriter(capacity: 256 + kwargs.utf8.count)
        writeFixedMembers(&out)
        return out.finish()
    }

    func writeFixedMembers(_ out: inout JSONWriter) {
        for (index, field) in TaskField.fixedJSON.enumerated() {
            out.bytes(TaskField.fixedJSONKeys[index])
            write(field, &out)
        }
    }

    func writeChangingMembers(_ out: inout JSONWriter) {
        for (index, field) in TaskField.changingJSON.enumerated() {
            out.bytes(TaskField.changingJSONKeys[index])
            write(field, &out)
            // The status's name follows its number.
            if index == 0 {
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

    /// What ``TaskRecord/fixedJSONMembers`` holds, read back.
    public struct FixedMembers: Sendable, Equatable {
        public var id: String
        public var name: String
        public var queue: String
        public var timeQueued: Double
        public var delay: Double?
        public var timeout: Double?
        public var expiry: Double?
        public var maxRetries: Int
        public var fromTask: String?
        public var kwargs: String

        /// Reads the text ``TaskRecord/fixedJSONMembers`` wrote.
        /// - Parameter text: the members.
        /// - Throws: ``JSONParseError`` when the text is not in that shape.
        public init(parsing text: String) throws(JSONParseError) {
            var text = text
            let parsed = text.withUTF8 { utf8 -> Result<FixedMembers, JSONParseError> in
                var reader = FixedMembersReader(parser: JSONParser(bytes: utf8))
                do throws(JSONParseError) {
                    return .success(try reader.read())
                } catch {
                    return .failure(error)
                }
            }
            self = try parsed.get()
        }

        init(
            id: String, name: String, queue: String, timeQueued: Double, delay: Double?, timeout: Double?,
            expiry: Double?, maxRetries: Int, fromTask: String?, kwargs: String
        ) {
            self.id = id
            self.name = name
            self.queue = queue
            self.timeQueued = timeQueued
            self.delay = delay
            self.timeout = timeout
            self.expiry = expiry
            self.maxRetries = maxRetries
            self.fromTask = fromTask
            self.kwargs = kwargs
        }
    }
}

/// Reads the fixed members in the order ``TaskRecord/fixedJSONMembers`` writes them.
private struct FixedMembersReader {
    var parser: JSONParser

    mutating func key(_ name: StaticString, first: Bool = false) throws(JSONParseError) {
        var expected: [UInt8] = first ? [] : [UInt8(ascii: ",")]
        expected.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { expected.append(contentsOf: $0) }
        expected += [UInt8(ascii: "\""), UInt8(ascii: ":")]
        let bytes = parser.bytes
        guard parser.index + expected.count <= bytes.count,
            bytes[parser.index..<parser.index + expected.count].elementsEqual(expected)
        else { throw parser.error("expected the task member \(name)") }
        parser.index += expected.count
    }

    mutating func string() throws(JSONParseError) -> String {
        guard parser.index < parser.bytes.count, parser.bytes[parser.index] == UInt8(ascii: "\"") else {
            throw parser.error("expected a string")
        }
        return try parser.parseString()
    }

    mutating func optionalString() throws(JSONParseError) -> String? {
        if try null() { return nil }
        return try string()
    }

    mutating func null() throws(JSONParseError) -> Bool {
        let bytes = parser.bytes
        guard parser.index + 4 <= bytes.count, bytes[parser.index] == UInt8(ascii: "n") else { return false }
        try parser.literal("null")
        return true
    }

    mutating func number() throws(JSONParseError) -> Double? {
        if try null() { return nil }
        let start = parser.index
        let bytes = parser.bytes
        while parser.index < bytes.count, bytes[parser.index] != UInt8(ascii: ",") { parser.index += 1 }
        guard let value = Double(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<parser.index]), as: UTF8.self))
        else { throw parser.error("expected a number") }
        return value
    }

    mutating func read() throws(JSONParseError) -> TaskRecord.FixedMembers {
        try key("id", first: true)
        let id = try string()
        try key("name")
        let name = try string()
        try key("queue")
        let queue = try string()
        try key("time_queued")
        guard let timeQueued = try number() else { throw parser.error("time_queued is null") }
        try key("delay")
        let delay = try number()
        try key("timeout")
        let timeout = try number()
        try key("expiry")
        let expiry = try number()
        try key("max_retries")
        guard let maxRetries = try number() else { throw parser.error("max_retries is null") }
        try key("from_task")
        let fromTask = try optionalString()
        try key("kwargs")
        let kwargs = String(decoding: UnsafeBufferPointer(rebasing: parser.bytes[parser.index...]), as: UTF8.self)
        return TaskRecord.FixedMembers(
            id: id, name: name, queue: queue, timeQueued: timeQueued, delay: delay, timeout: timeout, expiry: expiry,
            maxRetries: Int(maxRetries), fromTask: fromTask, kwargs: kwargs)
    }
}
