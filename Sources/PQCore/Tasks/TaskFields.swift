/// The stored fields of a task, defined once: the SQLite columns, the Redis hash fields and the
/// task JSON of DESIGN.md section 5 are all made from ``TaskField/all``.
package struct TaskField: Sendable {
    /// How a value is stored.
    package enum Kind: Sendable {
        /// Text; in JSON a string, or embedded JSON text for ``Encoding/json(empty:)``.
        case text
        /// A whole number; a flag is a number 0 or 1.
        case integer
        /// A time or a duration in seconds.
        case real
        /// True or false, stored as 1 or 0.
        case flag
    }

    /// How a value is written into the task JSON.
    package enum Encoding: Sendable {
        /// Not in the task JSON (scheduling and lease bookkeeping).
        case none
        /// Its natural JSON form: a string, a number, or `null`.
        case plain
        /// JSON text embedded as it is; `empty` when there is none.
        case json(empty: StaticString)
    }

    /// Which part of the task JSON a field belongs to (``TaskRecord/fixedJSONMembers``).
    package enum Part: Sendable {
        /// Set when the task is queued and never changed.
        case fixed
        /// Changed by runs.
        case changing
    }

    /// A value read from or written to a store.
    package enum Value: Sendable, Equatable {
        case null
        case text(String)
        case integer(Int)
        case real(Double)
    }

    /// The SQLite column, which is also the JSON key.
    package let name: String
    /// The Redis hash field (short: Redis stores every field name of every task), or nil for a
    /// fixed field the Redis store keeps only inside its stored JSON members.
    package let redis: String?
    package let kind: Kind
    /// Whether every task has a value (`NOT NULL`).
    package let required: Bool
    package let part: Part
    package let encoding: Encoding
    /// Whether SQLite reads and writes it on a state change (the rest are written when queued).
    package var changes: Bool { part == .changing }
    package let get: @Sendable (TaskRecord) -> Value
    package let set: @Sendable (inout TaskRecord, Value) -> Void

    /// The SQLite type of the column.
    package var sqlType: String {
        switch kind {
        case .text: "TEXT"
        case .integer, .flag: "INTEGER"
        case .real: "REAL"
        }
    }
}

extension TaskField.Value {
    var text: String? { if case .text(let s) = self { s } else { nil } }
    var real: Double? {
        switch self {
        case .real(let d): d
        case .integer(let i): Double(i)
        default: nil
        }
    }
    var integer: Int? {
        switch self {
        case .integer(let i): i
        case .real(let d): Int(exactly: d)
        default: nil
        }
    }
    var flag: Bool { integer.map { $0 != 0 } ?? false }
    init(_ s: String?) { self = s.map { .text($0) } ?? .null }
    init(_ d: Double?) { self = d.map { .real($0) } ?? .null }
    init(_ i: Int?) { self = i.map { .integer($0) } ?? .null }
    init(_ b: Bool) { self = .integer(b ? 1 : 0) }
}

extension TaskField {
    private static func text(
        _ name: String, _ redis: String?, required: Bool = false, _ part: Part, encoding: Encoding = .plain,
        _ key: any WritableKeyPath<TaskRecord, String> & Sendable
    ) -> TaskField {
        TaskField(
            name: name, redis: redis, kind: .text, required: required, part: part, encoding: encoding,
            get: { .text($0[keyPath: key]) }, set: { r, v in if let s = v.text { r[keyPath: key] = s } })
    }

    private static func optionalText(
        _ name: String, _ redis: String?, _ part: Part, encoding: Encoding = .plain,
        _ key: any WritableKeyPath<TaskRecord, String?> & Sendable
    ) -> TaskField {
        TaskField(
            name: name, redis: redis, kind: .text, required: false, part: part, encoding: encoding,
            get: { Value($0[keyPath: key]) }, set: { r, v in r[keyPath: key] = v.text })
    }

    private static func real(
        _ name: String, _ redis: String?, _ part: Part, encoding: Encoding = .plain,
        _ key: any WritableKeyPath<TaskRecord, Double?> & Sendable
    ) -> TaskField {
        TaskField(
            name: name, redis: redis, kind: .real, required: false, part: part, encoding: encoding,
            get: { Value($0[keyPath: key]) }, set: { r, v in r[keyPath: key] = v.real })
    }

    private static func requiredReal(
        _ name: String, _ redis: String?, _ part: Part, encoding: Encoding = .plain,
        _ key: any WritableKeyPath<TaskRecord, Double> & Sendable
    ) -> TaskField {
        TaskField(
            name: name, redis: redis, kind: .real, required: true, part: part, encoding: encoding,
            get: { .real($0[keyPath: key]) }, set: { r, v in if let d = v.real { r[keyPath: key] = d } })
    }

    private static func integer(
        _ name: String, _ redis: String?, _ part: Part, encoding: Encoding = .plain,
        _ key: any WritableKeyPath<TaskRecord, Int> & Sendable
    ) -> TaskField {
        TaskField(
            name: name, redis: redis, kind: .integer, required: true, part: part, encoding: encoding,
            get: { .integer($0[keyPath: key]) }, set: { r, v in r[keyPath: key] = v.integer ?? 0 })
    }

    private static func flag(
        _ name: String, _ redis: String?, _ part: Part, _ key: any WritableKeyPath<TaskRecord, Bool> & Sendable
    ) -> TaskField {
        TaskField(
            name: name, redis: redis, kind: .flag, required: true, part: part, encoding: .none,
            get: { Value($0[keyPath: key]) }, set: { r, v in r[keyPath: key] = v.flag })
    }

    /// Every stored field, in the order of the SQLite columns.
    package static let all: [TaskField] = [
        text("id", nil, required: true, .fixed, \.id),
        text("name", nil, required: true, .fixed, \.name),
        TaskField(
            name: "status", redis: "s", kind: .integer, required: true, part: .changing, encoding: .plain,
            get: { .integer($0.status.rawValue) },
            set: { r, v in r.status = v.integer.flatMap(TaskStatus.init(rawValue:)) ?? .queued }),
        text("queue", nil, required: true, .fixed, \.queue),
        text("kwargs", nil, required: true, .fixed, encoding: .json(empty: "{}"), \.kwargs),
        optionalText("result", "x", .changing, encoding: .json(empty: "null"), \.result),
        optionalText("exception", "f", .changing, \.exception),
        requiredReal("time_queued", nil, .fixed, \.timeQueued),
        real("time_started", "ts", .changing, \.timeStarted),
        real("time_ended", "te", .changing, \.timeEnded),
        real("delay", nil, .fixed, \.delay),
        real("timeout", nil, .fixed, \.timeout),
        // Also a Redis field of its own: the claim function reads it without parsing the JSON.
        real("expiry", "ex", .fixed, \.expiry),
        integer("retry", "r", .changing, \.retry),
        integer("max_retries", nil, .fixed, \.maxRetries),
        optionalText("from_task", nil, .fixed, \.fromTask),
        optionalText("node", "n", .changing, \.node),
        optionalText("worker", "w", .changing, \.worker),
        optionalText("plugin", "p", .changing, \.plugin),
        optionalText("plugin_version", "v", .changing, \.pluginVersion),
        requiredReal("eta", "e", .changing, encoding: .none, \.eta),
        TaskField(
            name: "retry_delay", redis: "rd", kind: .real, required: true, part: .fixed, encoding: .none,
            get: { .real($0.retryDelay) }, set: { r, v in r.retryDelay = v.real ?? 0 }),
        flag("retry_backoff", "rb", .fixed, \.retryBackoff),
        flag("retry_jitter", "rj", .fixed, \.retryJitter),
        TaskField(
            name: "max_concurrency", redis: "mc", kind: .integer, required: false, part: .fixed, encoding: .none,
            get: { Value($0.maxConcurrency) }, set: { r, v in r.maxConcurrency = v.integer }),
        flag("can_overlap", nil, .fixed, \.canOverlap),
        real("lease_expires", "l", .changing, encoding: .none, \.leaseExpires),
        TaskField(
            name: "dead_runs", redis: "k", kind: .integer, required: true, part: .changing, encoding: .none,
            get: { .integer($0.deadRuns) }, set: { r, v in r.deadRuns = v.integer ?? 0 }),
        flag("cancel_requested", "c", .changing, \.cancelRequested),
    ]

    /// The field named `name`.
    package static func named(_ name: String) -> TaskField {
        guard let field = all.first(where: { $0.name == name }) else { preconditionFailure("no task field \(name)") }
        return field
    }

    /// The fields the Redis store keeps outside its stored JSON members, by their Redis names.
    package static let byRedisName: [String: TaskField] = Dictionary(
        uniqueKeysWithValues: all.compactMap { field in field.redis.map { ($0, field) } })

    /// A new record with every field read through `value` (absent: `.null`).
    package static func record(_ value: (TaskField, Int) -> Value) -> TaskRecord {
        var record = TaskRecord(id: "", name: "", timeQueued: 0)
        for (index, field) in all.enumerated() { field.set(&record, value(field, index)) }
        return record
    }
}

extension TaskStatus {
    /// `(4, 6)`: a set of states as a SQL list (or a Lua table's keys), numbers from this type.
    package static func list(_ states: Set<TaskStatus>) -> String {
        "(" + states.map(\.rawValue).sorted().map(String.init).joined(separator: ", ") + ")"
    }
}
