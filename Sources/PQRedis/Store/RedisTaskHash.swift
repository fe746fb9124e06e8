import NIOCore
import PQCore

/// ``PQCore/TaskRecord`` to and from its Redis hash (see ``RedisFunctions``).
///
/// The fields are short: Redis parses and stores every byte of every field name of every task.
/// Numbers are written as Swift prints them (the shortest text that reads back to the same
/// `Double`), so records round-trip exactly and the functions copy times without reformatting.
/// Absent optional values are absent fields.
enum RedisTaskHash {
    /// The members of the task JSON that never change (``PQCore/TaskRecord/fixedJSONMembers``).
    static let fixed = "j"

    /// The fields a new task is stored with besides `j`, `s`, `e`, `o`, `wk`, `ov` and `r` (which the
    /// enqueue function writes from its own arguments).
    static func extraFields(_ record: TaskRecord) -> [RESPArgument] {
        var out: [RESPArgument] = []
        if let expiry = record.expiry { out += ["ex", .string(text(expiry))] }
        if let max = record.maxConcurrency { out += ["mc", .string(String(max))] }
        if record.retryDelay != 0 { out += ["rd", .string(text(record.retryDelay))] }
        if record.retryBackoff { out += ["rb", "1"] }
        if record.retryJitter { out += ["rj", "1"] }
        if record.deadRuns != 0 { out += ["k", .string(String(record.deadRuns))] }
        return out
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
        var status: TaskStatus?
        var eta: Double?
        var retry = 0
        var result, exception, worker, node, plugin, version, cancel: String?
        var started, ended, lease, retryDelay: Double?
        var maxConcurrency: Int?
        var deadRuns = 0
        var backoff = false, jitter = false, overlaps = true
        var index = 0
        while index + 1 < items.count {
            defer { index += 2 }
            guard case .bulkString(let keyBuffer) = items[index], let value = try items[index + 1].string else { continue }
            let key = keyBuffer.readableBytesView
            switch key.count {
            case 1:
                switch key.first! {
                case UInt8(ascii: "j"): fixed = value
                case UInt8(ascii: "s"): status = Int(value).flatMap(TaskStatus.init(rawValue:))
                case UInt8(ascii: "e"): eta = Double(value)
                case UInt8(ascii: "r"): retry = Int(value) ?? 0
                case UInt8(ascii: "x"): result = value
                case UInt8(ascii: "f"): exception = value
                case UInt8(ascii: "w"): worker = value
                case UInt8(ascii: "n"): node = value
                case UInt8(ascii: "p"): plugin = value
                case UInt8(ascii: "v"): version = value
                case UInt8(ascii: "l"): lease = Double(value)
                case UInt8(ascii: "k"): deadRuns = Int(value) ?? 0
                case UInt8(ascii: "c"): cancel = value
                default: break
                }
            case 2:
                switch String(decoding: key, as: UTF8.self) {
                case "ts": started = Double(value)
                case "te": ended = Double(value)
                case "mc": maxConcurrency = Int(value)
                case "rd": retryDelay = Double(value)
                case "rb": backoff = value == "1"
                case "rj": jitter = value == "1"
                case "ov": overlaps = false
                default: break
                }
            default: break
            }
        }
        guard let fixed, let status else {
            throw RedisError(.unexpectedReply, "a task hash in Redis lacks its fields j or s (\(items.count / 2) fields)")
        }
        let members: TaskRecord.FixedMembers
        do {
            members = try TaskRecord.FixedMembers(parsing: fixed)
        } catch {
            throw RedisError(.unexpectedReply, "a task hash in Redis holds unreadable fixed members (\(error))")
        }
        let running = status == .started
        return TaskRecord(
            id: members.id, name: members.name, status: status, queue: members.queue, kwargs: members.kwargs,
            result: result, exception: exception, timeQueued: members.timeQueued, timeStarted: started,
            timeEnded: ended, delay: members.delay, timeout: members.timeout, expiry: members.expiry, retry: retry,
            maxRetries: members.maxRetries, fromTask: members.fromTask, node: node, worker: worker, plugin: plugin,
            pluginVersion: version, eta: eta, retryDelay: retryDelay ?? 0, retryBackoff: backoff, retryJitter: jitter,
            maxConcurrency: maxConcurrency, canOverlap: overlaps, leaseExpires: running ? lease : nil,
            deadRuns: deadRuns, cancelRequested: running && cancel == "1")
    }
}
