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
        var map: [String: String] = [:]
        map.reserveCapacity(items.count / 2)
        var index = 0
        while index + 1 < items.count {
            if let key = try items[index].string, let value = try items[index + 1].string { map[key] = value }
            index += 2
        }
        return try record(map)
    }

    static func record(_ map: [String: String]) throws -> TaskRecord {
        func double(_ key: String) -> Double? { map[key].flatMap(Double.init) }
        func int(_ key: String) -> Int? { map[key].flatMap { Int($0) } }
        guard let id = map["id"], let name = map["name"], let status = int("status").flatMap(TaskStatus.init(rawValue:)),
            let timeQueued = double("time_queued")
        else {
            throw RedisError(.unexpectedReply, "a task hash in Redis lacks id, name, status or time_queued: \(map)")
        }
        return TaskRecord(
            id: id, name: name, status: status, queue: map["queue"] ?? "default", kwargs: map["kwargs"] ?? "{}",
            result: map["result"], exception: map["exception"], timeQueued: timeQueued,
            timeStarted: double("time_started"), timeEnded: double("time_ended"), delay: double("delay"),
            timeout: double("timeout"), expiry: double("expiry"), retry: int("retry") ?? 0,
            maxRetries: int("max_retries") ?? 0, fromTask: map["from_task"], node: map["node"], worker: map["worker"],
            plugin: map["plugin"], pluginVersion: map["plugin_version"], eta: double("eta"),
            retryDelay: double("retry_delay") ?? 0, retryBackoff: map["retry_backoff"] == "1",
            retryJitter: map["retry_jitter"] == "1", maxConcurrency: int("max_concurrency"),
            canOverlap: map["can_overlap"] != "0", leaseExpires: double("lease_expires"),
            deadRuns: int("dead_runs") ?? 0, cancelRequested: map["cancel_requested"] == "1")
    }
}
