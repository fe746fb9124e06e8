import Foundation

/// The options of a job, read from its `options_json` (DESIGN.md section 2).
public struct JobOptions: Sendable, Equatable {
    /// Seconds from the start of a run after which the task is revoked.
    public var timeout: Double?
    /// Runs after the first one on failure.
    public var maxRetries: Int?
    /// Seconds between runs.
    public var retryDelay: Double?
    /// Whether the retry delay doubles with each run (pq extension `retry_backoff`).
    public var retryBackoff: Bool
    /// Whether up to 25% random jitter is added to the retry delay (pq extension `retry_jitter`).
    public var retryJitter: Bool
    /// At most this many tasks of the job run at once across all hosts.
    public var maxConcurrency: Int?
    /// False: no second task with the same kwargs is queued while one is queued or running.
    public var canOverlap: Bool
    /// The queue the job's tasks go to.
    public var queue: String?
    /// Seconds between periodic runs.
    public var runEvery: Double?
    /// `HH:MM:SS` (UTC) that `runEvery` is aligned to.
    public var anchor: String?
    /// A five-field cron expression (see ``CronExpression``).
    public var cron: String?
    /// The time zone whose wall clock `cron` reads (an IANA name such as `Europe/Paris`); UTC when nil.
    public var timezone: String?
    /// Fixed kwargs (a JSON object) for periodic runs (pq extension `kwargs`).
    public var periodicKwargs: String?
    /// Where the job's tasks run (`"isolation"`): in worker processes or on the host's threads;
    /// nil for the host's default (`pq serve --isolation`).
    public var isolation: Isolation?

    /// Where tasks run (DESIGN.md section 12).
    public enum Isolation: String, Sendable, Equatable, CaseIterable {
        /// In worker processes the host starts and supervises: a crash costs one task.
        case process
        /// On the host's own threads, as pulsar's THREAD_IO did.
        case thread
    }

    /// Default options: no timeout, no retries, overlap allowed, default queue.
    public init() {
        retryBackoff = false
        retryJitter = false
        canOverlap = true
    }

    /// Whether the job is a PeriodicJob (`run_every` or `cron` set).
    public var isPeriodic: Bool { runEvery != nil || cron != nil }

    /// When the job runs, for periodic jobs; nil otherwise.
    public var schedule: PeriodicSchedule? { PeriodicSchedule(options: self) }

    /// Parses `options_json`.
    /// - Parameter json: the JSON object text, or nil for defaults.
    /// - Returns: the options.
    /// - Throws: a message (as `String`-described error) when the text is not an object or a key
    ///   has the wrong type or an impossible value.
    public static func parse(_ json: String?) throws(OptionsError) -> JobOptions {
        var options = JobOptions()
        guard let json, !json.allSatisfy({ $0 == " " || $0 == "\n" || $0 == "\t" }) else { return options }
        let parsed: JSONValue
        do { parsed = try JSONValue.parse(json) } catch {
            throw OptionsError(message: "options_json is not valid JSON (\(error)): \(json.prefix(200))")
        }
        guard case .object = parsed else {
            throw OptionsError(message: "options_json is not a JSON object: \(json.prefix(200))")
        }
        func number(_ key: String) throws(OptionsError) -> Double? {
            guard let value = parsed[key], value != .null else { return nil }
            guard let d = value.doubleValue else {
                throw OptionsError(message: "option '\(key)' must be a number of seconds, got \(value.typeName)")
            }
            guard d.isFinite, d >= 0 else { throw OptionsError(message: "option '\(key)' must be >= 0, got \(d)") }
            return d
        }
        func integer(_ key: String) throws(OptionsError) -> Int? {
            guard let d = try number(key) else { return nil }
            guard d == d.rounded(), d <= Double(Int32.max) else {
                throw OptionsError(message: "option '\(key)' must be a whole number, got \(d)")
            }
            return Int(d)
        }
        func bool(_ key: String) throws(OptionsError) -> Bool? {
            guard let value = parsed[key], value != .null else { return nil }
            guard case .bool(let b) = value else {
                throw OptionsError(message: "option '\(key)' must be true or false")
            }
            return b
        }
        func string(_ key: String) throws(OptionsError) -> String? {
            guard let value = parsed[key], value != .null else { return nil }
            guard case .string(let s) = value else { throw OptionsError(message: "option '\(key)' must be a string") }
            return s
        }
        options.timeout = try number("timeout")
        options.maxRetries = try integer("max_retries")
        options.retryDelay = try number("retry_delay")
        options.retryBackoff = try bool("retry_backoff") ?? false
        options.retryJitter = try bool("retry_jitter") ?? false
        options.maxConcurrency = try integer("max_concurrency")
        options.canOverlap = try bool("can_overlap") ?? true
        options.queue = try string("queue")
        options.runEvery = try number("run_every")
        options.anchor = try string("anchor")
        options.cron = try string("cron")
        options.timezone = try string("timezone")
        if let isolation = try string("isolation") {
            guard let mode = Isolation(rawValue: isolation) else {
                throw OptionsError(
                    message: "option 'isolation' must be \"process\" or \"thread\", got \"\(isolation)\"")
            }
            options.isolation = mode
        }
        if let kwargs = parsed["kwargs"], kwargs != .null {
            guard case .object = kwargs else { throw OptionsError(message: "option 'kwargs' must be a JSON object") }
            options.periodicKwargs = kwargs.jsonText
        }
        if let m = options.maxConcurrency, m < 1 {
            throw OptionsError(message: "option 'max_concurrency' must be at least 1, got \(m)")
        }
        if let q = options.queue, q.isEmpty { throw OptionsError(message: "option 'queue' must not be empty") }
        if let every = options.runEvery, every <= 0 {
            throw OptionsError(message: "option 'run_every' must be a positive number of seconds, got \(every)")
        }
        if let anchor = options.anchor, parseAnchor(anchor) == nil {
            throw OptionsError(message: "option 'anchor' must be \"HH:MM:SS\", got \"\(anchor)\"")
        }
        if let cron = options.cron {
            if options.runEvery != nil {
                throw OptionsError(
                    message: "options 'run_every' and 'cron' are both set; a periodic job has one schedule")
            }
            do { _ = try CronExpression(parsing: cron) } catch {
                throw OptionsError(message: "option 'cron' is invalid: \(error)")
            }
        }
        if let zone = options.timezone {
            guard options.cron != nil else {
                throw OptionsError(message: "option 'timezone' applies to 'cron' only; run_every and anchor are UTC")
            }
            guard TimeZone(identifier: zone) != nil else {
                throw OptionsError(
                    message:
                        "option 'timezone' \"\(zone)\" is not a known time zone; use an IANA name such as \"Europe/Paris\""
                )
            }
        }
        return options
    }

    /// Parses `HH:MM:SS` into seconds after midnight.
    /// - Parameter text: the anchor.
    /// - Returns: seconds, or nil when malformed.
    public static func parseAnchor(_ text: String) -> Int? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, let h = Int(parts[0]), let m = Int(parts[1]), let s = Int(parts[2]),
            (0..<24).contains(h), (0..<60).contains(m), (0..<60).contains(s)
        else { return nil }
        return h * 3600 + m * 60 + s
    }

    /// An invalid `options_json`.
    public struct OptionsError: Error, CustomStringConvertible, Sendable {
        /// What is wrong.
        public var message: String
        /// The message.
        public var description: String { message }
    }
}
