import NIOCore
import PQCore

/// ``TaskRecord`` to and from the fields of its Redis hash.
///
/// Numbers are written as Swift prints them (the shortest text that reads back to the same
/// `Double`), so records round-trip exactly and the Lua scripts copy times without reformatting.
/// Absent optional values are absent fields.
enum RedisRecordCoding {
    static func fields(_ record: TaskRecord) -> [RESPArgument] {
        var out: [RESPArgument] = []
        out.reserveCapacity(60)
        func put(_ key: String, _ value: String?) {
            guard let value else { return }
            out.append(.string(key))
            out.append(.string(value))
        }
        put("id", record.id)
        put("name", record.name)
        put("status", String(record.status.rawValue))
        put("queue", record.queue)
        put("kwargs", record.kwargs)
        put("result", record.result)
        put("exception", record.exception)
        put("time_queued", text(record.timeQueued))
        put("time_started", record.timeStarted.map(text))
        put("time_ended", record.timeEnded.map(text))
        put("delay", record.delay.map(text))
        put("timeout", record.timeout.map(text))
        put("expiry", record.expiry.map(text))
        put("retry", String(record.retry))
        put("max_retries", String(record.maxRetries))
        put("from_task", record.fromTask)
        put("node", record.node)
        put("worker", record.worker)
        put("plugin", record.plugin)
        put("plugin_version", record.pluginVersion)
        put("eta", text(record.eta))
        put("retry_delay", text(record.retryDelay))
        put("retry_backoff", record.retryBackoff ? "1" : "0")
        put("retry_jitter", record.retryJitter ? "1" : "0")
        put("max_concurrency", record.maxConcurrency.map(String.init))
        put("can_overlap", record.canOverlap ? "1" : "0")
        put("lease_expires", record.leaseExpires.map(text))
        put("dead_runs", String(record.deadRuns))
        put("cancel_requested", record.cancelRequested ? "1" : "0")
        return out
    }

    /// The text of a time or duration, as Swift prints it.
    static func text(_ value: Double) -> String { value.description }

    /// Reads a record from a flat `field, value, ...` reply.
    static func record(_ reply: RESPValue) throws -> TaskRecord {
        guard let items = try reply.array else { throw RedisError(.unexpectedReply, "expected a task, got nil") }
        var values = [String?](repeating: nil, count: Field.names.count)
        var index = 0
        while index + 1 < items.count {
            if let key = try items[index].string, let field = Field.names.firstIndex(of: key),
                let value = try items[index + 1].string
            {
                values[field] = value
            }
            index += 2
        }
        return try record { values[$0.rawValue] }
    }

    /// Reads a record from a row: the values of ``Field/names`` in that order, nil for absent
    /// fields (how the claim script returns tasks: no keys to send or look up).
    static func record(row reply: RESPValue) throws -> TaskRecord {
        guard let items = try reply.array, items.count == Field.names.count else {
            throw RedisError(.unexpectedReply, "expected a task row of \(Field.names.count) values, got \(reply)")
        }
        let values = try items.map { try $0.string }
        return try record { values[$0.rawValue] }
    }

    /// The fields of a task hash; `rawValue` is the position in ``names`` and in a row.
    enum Field: Int, CaseIterable {
        case id, name, status, queue, kwargs, result, exception, timeQueued, timeStarted, timeEnded
        case delay, timeout, expiry, retry, maxRetries, fromTask, node, worker, plugin, pluginVersion
        case eta, retryDelay, retryBackoff, retryJitter, maxConcurrency, canOverlap, leaseExpires
        case deadRuns, cancelRequested

        /// The hash field names, in case order.
        static let names = [
            "id", "name", "status", "queue", "kwargs", "result", "exception", "time_queued", "time_started",
            "time_ended", "delay", "timeout", "expiry", "retry", "max_retries", "from_task", "node", "worker",
            "plugin", "plugin_version", "eta", "retry_delay", "retry_backoff", "retry_jitter", "max_concurrency",
            "can_overlap", "lease_expires", "dead_runs", "cancel_requested",
        ]

        var name: String { Self.names[rawValue] }
    }

    private static func record(_ value: (Field) -> String?) throws -> TaskRecord {
        func double(_ key: Field) -> Double? { value(key).flatMap(Double.init) }
        func int(_ key: Field) -> Int? { value(key).flatMap { Int($0) } }
        guard let id = value(.id), let name = value(.name), let status = int(.status).flatMap(TaskStatus.init(rawValue:)),
            let timeQueued = double(.timeQueued)
        else {
            let known = Field.allCases.compactMap { f in value(f).map { "\(f.name): \($0)" } }
            throw RedisError(
                .unexpectedReply,
                "a task hash in Redis lacks id, name, status or time_queued: [\(known.joined(separator: ", "))]")
        }
        return TaskRecord(
            id: id, name: name, status: status, queue: value(.queue) ?? "default", kwargs: value(.kwargs) ?? "{}",
            result: value(.result), exception: value(.exception), timeQueued: timeQueued,
            timeStarted: double(.timeStarted), timeEnded: double(.timeEnded), delay: double(.delay),
            timeout: double(.timeout), expiry: double(.expiry), retry: int(.retry) ?? 0,
            maxRetries: int(.maxRetries) ?? 0, fromTask: value(.fromTask), node: value(.node), worker: value(.worker),
            plugin: value(.plugin), pluginVersion: value(.pluginVersion), eta: double(.eta),
            retryDelay: double(.retryDelay) ?? 0, retryBackoff: value(.retryBackoff) == "1",
            retryJitter: value(.retryJitter) == "1", maxConcurrency: int(.maxConcurrency),
            canOverlap: value(.canOverlap) != "0", leaseExpires: double(.leaseExpires),
            deadRuns: int(.deadRuns) ?? 0, cancelRequested: value(.cancelRequested) == "1")
    }
}
