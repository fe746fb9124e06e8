/// The JSON objects the command line's `--json` listings print and the HTTP API answers with
/// (DESIGN.md sections 9 and 11): one rendering, so the two cannot drift apart.
extension JobInfo {
    /// The object `pq jobs --from-store --json` and `GET /api/jobs` give for a published job.
    public var listingJSON: JSONValue {
        var pairs: [(String, JSONValue)] = [
            ("name", .string(name)),
            ("type", .string(periodic ? "periodic" : "regular")),
            ("plugin", .string(plugin)),
            ("plugin_version", .string(pluginVersion)),
            ("path", .string(path ?? "")),
            ("doc", .string(doc ?? "")),
        ]
        if let signature { pairs.append(("signature", .string(signature))) }
        if let options, let value = try? JSONValue.parse(options) { pairs.append(("options", value)) }
        if periodic, let schedule = jobOptions.schedule { pairs.append(("schedule", .string(schedule.description))) }
        return .object(pairs)
    }
}

extension QueueSize {
    /// The object `pq queues --json` and `GET /api/queues` give for a queue.
    public var listingJSON: JSONValue {
        .object([
            ("queue", .string(queue)), ("queued", .int(Int64(queued))), ("delayed", .int(Int64(delayed))),
            ("retry", .int(Int64(retry))), ("started", .int(Int64(started))),
        ])
    }
}

/// When periodic jobs run next: `pq next --json` and `GET /api/schedule`.
public enum ScheduleListing {
    /// One periodic job and its next run.
    public struct Row: Sendable {
        /// The job name.
        public var name: String
        /// Its schedule.
        public var schedule: PeriodicSchedule
        /// The next run after `now`, epoch seconds; nil: never.
        public var next: Double?
    }

    /// The rows of the periodic jobs among `jobs`, their next runs after `now`.
    public static func rows(_ jobs: [(name: String, schedule: PeriodicSchedule)], now: Double) -> [Row] {
        jobs.map { Row(name: $0.name, schedule: $0.schedule, next: $0.schedule.nextRun(after: now)) }
    }

    /// The rows of the periodic jobs hosts published.
    public static func rows(published: [JobInfo], now: Double) -> [Row] {
        rows(
            published.filter(\.periodic).compactMap { job in job.jobOptions.schedule.map { (job.name, $0) } }, now: now)
    }

    /// `[{name, schedule, next_run (epoch seconds), in_seconds}]`.
    public static func json(_ rows: [Row], now: Double) -> JSONValue {
        .array(
            rows.map { row in
                .object([
                    ("name", .string(row.name)), ("schedule", .string(row.schedule.description)),
                    ("next_run", row.next.map(number) ?? .null),
                    ("in_seconds", row.next.map { .double((($0 - now) * 1000).rounded() / 1000) } ?? .null),
                ])
            })
    }

    private static func number(_ d: Double) -> JSONValue {
        d == d.rounded() && abs(d) < 1e15 ? .int(Int64(d)) : .double(d)
    }
}
