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
    private static func field(
        _ name: String, _ redis: String?, _ kind: Kind, required: Bool = false, _ part: Part,
        encoding: Encoding = .plain,
        get: @escaping @Sendable (TaskRecord) -> Value, set: @escaping @Sendable (inout TaskRecord, Value) -> Void
    ) -> TaskField {
        TaskField(
            name: name, redis: redis, kind: kind, required: required, part: part, encoding: encoding, get: get, set: set
        )
    }

    /// Every stored field, in the order of the SQLite columns and of the task JSON (DESIGN.md
    /// section 5). Plain closures, not key paths: a key path is projected through the runtime.
    package static let all: [TaskField] = [
        field("id", nil, .text, required: true, .fixed, get: { .text($0.id) }, set: { $0.id = $1.text ?? "" }),
        field("name", nil, .text, required: true, .fixed, get: { .text($0.name) }, set: { $0.name = $1.text ?? "" }),
        field(
            "status", "s", .integer, required: true, .changing, get: { .integer($0.status.rawValue) },
            set: { $0.status = $1.integer.flatMap(TaskStatus.init(rawValue:)) ?? .queued }),
        field(
            "queue", nil, .text, required: true, .fixed, get: { .text($0.queue) },
            set: { $0.queue = $1.text ?? "default" }),
        field(
            "kwargs", nil, .text, required: true, .fixed, encoding: .json(empty: "{}"), get: { .text($0.kwargs) },
            set: { $0.kwargs = $1.text ?? "{}" }),
        field(
            "result", "x", .text, .changing, encoding: .json(empty: "null"), get: { Value($0.result) },
            set: { $0.result = $1.text }),
        field("exception", "f", .text, .changing, get: { Value($0.exception) }, set: { $0.exception = $1.text }),
        field(
            "time_queued", nil, .real, required: true, .fixed, get: { .real($0.timeQueued) },
            set: { $0.timeQueued = $1.real ?? 0 }),
        field(
            "time_started", "ts", .real, .changing, get: { Value($0.timeStarted) }, set: { $0.timeStarted = $1.real }),
        field("time_ended", "te", .real, .changing, get: { Value($0.timeEnded) }, set: { $0.timeEnded = $1.real }),
        field("delay", nil, .real, .fixed, get: { Value($0.delay) }, set: { $0.delay = $1.real }),
        field("timeout", nil, .real, .fixed, get: { Value($0.timeout) }, set: { $0.timeout = $1.real }),
        // Also a Redis field of its own: the claim function reads it without parsing the JSON.
        field("expiry", "ex", .real, .fixed, get: { Value($0.expiry) }, set: { $0.expiry = $1.real }),
        field(
            "retry", "r", .integer, required: true, .changing, get: { .integer($0.retry) },
            set: { $0.retry = $1.integer ?? 0 }),
        field(
            "max_retries", nil, .integer, required: true, .fixed, get: { .integer($0.maxRetries) },
            set: { $0.maxRetries = $1.integer ?? 0 }),
        field("from_task", nil, .text, .fixed, get: { Value($0.fromTask) }, set: { $0.fromTask = $1.text }),
        field("node", "n", .text, .changing, get: { Value($0.node) }, set: { $0.node = $1.text }),
        field("worker", "w", .text, .changing, get: { Value($0.worker) }, set: { $0.worker = $1.text }),
        field("plugin", "p", .text, .changing, get: { Value($0.plugin) }, set: { $0.plugin = $1.text }),
        field(
            "plugin_version", "v", .text, .changing, get: { Value($0.pluginVersion) },
            set: { $0.pluginVersion = $1.text }),
        field(
            "eta", "e", .real, required: true, .changing, encoding: .none, get: { .real($0.eta) },
            set: { $0.eta = $1.real ?? $0.timeQueued }),
        field(
            "retry_delay", "rd", .real, required: true, .fixed, encoding: .none, get: { .real($0.retryDelay) },
            set: { $0.retryDelay = $1.real ?? 0 }),
        field(
            "retry_backoff", "rb", .flag, required: true, .fixed, encoding: .none, get: { Value($0.retryBackoff) },
            set: { $0.retryBackoff = $1.flag }),
        field(
            "retry_jitter", "rj", .flag, required: true, .fixed, encoding: .none, get: { Value($0.retryJitter) },
            set: { $0.retryJitter = $1.flag }),
        field(
            "max_concurrency", "mc", .integer, .fixed, encoding: .none, get: { Value($0.maxConcurrency) },
            set: { $0.maxConcurrency = $1.integer }),
        field(
            "can_overlap", nil, .flag, required: true, .fixed, encoding: .none, get: { Value($0.canOverlap) },
            set: { $0.canOverlap = $1.flag }),
        field(
            "lease_expires", "l", .real, .changing, encoding: .none, get: { Value($0.leaseExpires) },
            set: { $0.leaseExpires = $1.real }),
        field(
            "dead_runs", "k", .integer, required: true, .changing, encoding: .none, get: { .integer($0.deadRuns) },
            set: { $0.deadRuns = $1.integer ?? 0 }),
        field(
            "cancel_requested", "c", .flag, required: true, .changing, encoding: .none,
            get: { Value($0.cancelRequested) },
            set: { $0.cancelRequested = $1.flag }),
    ]

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
