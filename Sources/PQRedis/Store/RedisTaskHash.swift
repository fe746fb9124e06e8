import NIOCore
import PQCore

/// ``PQCore/TaskRecord`` to and from its Redis hash (see ``RedisFunctions``).
///
/// The fields are short: Redis parses and stores every byte of every field name of every task.
/// Numbers are written as Swift prints them (the shortest text that reads back to the same
/// `Double`), so records round-trip exactly and the functions copy times without reformatting.
/// Absent optional values are absent fields.
enum RedisTaskHash {
    /// The fields a new task is stored with besides `j`, `s`, `e`, `o`, `wk`, `ov` and `r` (which the
    /// enqueue function writes from its own arguments): the fields of ``PQCore/TaskField/all``
    /// with a Redis name that have a value other than none, zero or false.
    static func extraFields(_ record: TaskRecord) -> [RESPArgument] {
        var out: [RESPArgument] = []
        for field in extra {
            let text: String
            switch field.get(record) {
            case .null, .integer(0): continue
            case .real(let value):
                if value == 0 { continue }
                text = self.text(value)
            case .integer(let value): text = String(value)
            case .text(let value): text = value
            }
            out.append(.string(field.redis!))
            out.append(.string(text))
        }
        return out
    }

    private static let extra = TaskField.all.filter {
        $0.redis != nil && !["status", "eta", "retry"].contains($0.name)
    }

    /// The fields by their Redis names, as two bytes (the names are one or two bytes long).
    private static let byName: [UInt16: TaskField] = Dictionary(
        uniqueKeysWithValues: TaskField.all.compactMap { field in field.redis.map { (code(Array($0.utf8)[...]), field) }
        })

    private static func code(_ name: ArraySlice<UInt8>) -> UInt16 {
        name.count == 1 ? UInt16(name.first!) : name.count == 2 ? UInt16(name.first!) | UInt16(name.last!) << 8 : 0
    }

    private static let fixedCode = code(Array("j".utf8)[...])
    private static let overlapCode = code(Array("ov".utf8)[...])

    /// The length of an order: 16 digits of microseconds and 6 of position in its batch.
    static let orderLength = 22

    /// A task's order: the time it was queued in microseconds, then its position in its batch,
    /// fixed-width, so that text order is queue order (ties between hosts queueing in the same
    /// microsecond fall to the ids).
    static func order(time: Double, index: Int) -> String {
        let micros = String(Int64((time * 1_000_000).rounded()))
        let position = String(index % 1_000_000)
        return String(repeating: "0", count: max(0, 16 - micros.utf8.count)) + micros
            + String(repeating: "0", count: 6 - position.utf8.count) + position
    }

    /// `queue\0job`: the name of a task's wait set.
    static func waitName(_ record: TaskRecord) -> String { record.queue + "\u{0}" + record.name }

    /// `job\0kwargs` for a `can_overlap = false` task, else ''.
    static func overlapName(_ record: TaskRecord) -> String {
        record.canOverlap ? "" : record.name + "\u{0}" + record.kwargs
    }

    /// The text of a time or duration, as Swift prints it.
    static func text(_ value: Double) -> String { value.description }

    /// Reads a record from a flat `field, value, ...` reply (HGETALL, or a function's reply).
    static func record(_ reply: RESPValue) throws -> TaskRecord {
        guard let items = try reply.array else { throw RedisError(.unexpectedReply, "expected a task, got nil") }
        var fixed: String?
        var others: [(TaskField, String)] = []
        others.reserveCapacity(items.count / 2)
        var overlaps = true
        var hasStatus = false
        var index = 0
        while index + 1 < items.count {
            defer { index += 2 }
            guard case .bulkString(let keyBuffer) = items[index], let value = try items[index + 1].string else {
                continue
            }
            let key = keyBuffer.readableBytesView
            guard key.count == 1 || key.count == 2 else { continue }
            let first = key[key.startIndex]
            let second = key.count == 2 ? key[key.index(after: key.startIndex)] : 0
            let code = UInt16(first) | UInt16(second) << 8
            if code == Self.fixedCode {
                fixed = value
            } else if code == Self.overlapCode {
                overlaps = false
            } else if let field = byName[code] {
                if field.name == "status" { hasStatus = true }
                others.append((field, value))
            }
        }
        guard let fixed, hasStatus else {
            throw RedisError(
                .unexpectedReply, "a task hash in Redis lacks its fields j or s (\(items.count / 2) fields)")
        }
        var record: TaskRecord
        do {
            record = try TaskRecord(fixedJSONMembers: fixed)
        } catch {
            throw RedisError(.unexpectedReply, "a task hash in Redis holds unreadable fixed members (\(error))")
        }
        record.canOverlap = overlaps
        for (field, text) in others {
            let value: TaskField.Value =
                switch field.kind {
                case .text: .text(text)
                case .integer, .flag: Int(text).map { .integer($0) } ?? .null
                case .real: Double(text).map { .real($0) } ?? .null
                }
            field.set(&record, value)
        }
        // A lease and a cancel request belong to a run: stale once it ended.
        if record.status != .started {
            record.leaseExpires = nil
            record.cancelRequested = false
        }
        return record
    }
}
