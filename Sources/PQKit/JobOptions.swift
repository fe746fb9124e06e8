#if canImport(FoundationEssentials)
    import FoundationEssentials  // JSON coding without loading ICU into every plugin
#else
    import Foundation
#endif

/// A job's options as the host reads them from `pq_job_def.options_json`. Unset (`nil`) options are
/// left out, so the host's defaults apply.
///
/// ``Job`` and ``PeriodicJob`` types declare their options as static properties; a ``TypedJob`` takes
/// a value of this type.
public struct JobOptions: Sendable, Equatable {
    /// Seconds a run may take, counted from its start.
    public var timeout: Double?
    /// Runs after the first one when a run fails.
    public var maxRetries: Int?
    /// Seconds between a failed run and the next one.
    public var retryDelay: Double?
    /// At most this many tasks of the job run at once, across all hosts.
    public var maxConcurrency: Int?
    /// `false`: no second task with the same kwargs is queued while one is queued or running.
    public var canOverlap: Bool?
    /// The queue the job's tasks go to.
    public var queue: String?
    /// Seconds between scheduled runs (makes the job periodic).
    public var runEvery: Double?
    /// `"HH:MM:SS"` (UTC) that `runEvery` is aligned to.
    public var anchor: String?
    /// A five-field cron expression (makes the job periodic).
    public var cron: String?

    /// Makes options; every one left `nil` is omitted.
    /// - Parameters:
    ///   - timeout: Seconds a run may take.
    ///   - maxRetries: Runs after the first one on failure.
    ///   - retryDelay: Seconds between runs.
    ///   - maxConcurrency: At most this many running at once.
    ///   - canOverlap: `false` to refuse a second task with the same kwargs.
    ///   - queue: The queue for the job's tasks.
    ///   - runEvery: Seconds between scheduled runs.
    ///   - anchor: `"HH:MM:SS"` that `runEvery` is aligned to.
    ///   - cron: A five-field cron expression.
    public init(
        timeout: Double? = nil,
        maxRetries: Int? = nil,
        retryDelay: Double? = nil,
        maxConcurrency: Int? = nil,
        canOverlap: Bool? = nil,
        queue: String? = nil,
        runEvery: Double? = nil,
        anchor: String? = nil,
        cron: String? = nil
    ) {
        self.timeout = timeout
        self.maxRetries = maxRetries
        self.retryDelay = retryDelay
        self.maxConcurrency = maxConcurrency
        self.canOverlap = canOverlap
        self.queue = queue
        self.runEvery = runEvery
        self.anchor = anchor
        self.cron = cron
    }

    /// The options of a job type, including the periodic ones of a ``PeriodicJob``.
    /// - Parameter job: The job type.
    public init<J: Job>(of job: J.Type) {
        self.init(
            timeout: J.timeout,
            maxRetries: J.maxRetries,
            retryDelay: J.retryDelay,
            maxConcurrency: J.maxConcurrency,
            canOverlap: J.canOverlap,
            queue: J.queue
        )
        if let periodic = job as? any PeriodicJob.Type {
            runEvery = periodic.runEvery
            anchor = periodic.anchor
            cron = periodic.cron
        }
    }

    /// Whether no option is set.
    public var isEmpty: Bool { self == JobOptions() }

    /// The options as the JSON object of `options_json` (keys sorted, unset ones left out), or `nil`
    /// when none is set or a number cannot be written as JSON (NaN, infinity).
    public var json: String? {
        guard !isEmpty else { return nil }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(Wire(self)) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    /// The header's key names; synthesized `Encodable` leaves `nil` values out.
    // swift-format-ignore: AlwaysUseLowerCamelCase
    private struct Wire: Encodable {
        var timeout: Double?
        var max_retries: Int?
        var retry_delay: Double?
        var max_concurrency: Int?
        var can_overlap: Bool?
        var queue: String?
        var run_every: Double?
        var anchor: String?
        var cron: String?

        init(_ options: JobOptions) {
            timeout = options.timeout
            max_retries = options.maxRetries
            retry_delay = options.retryDelay
            max_concurrency = options.maxConcurrency
            can_overlap = options.canOverlap
            queue = options.queue
            run_every = options.runEvery
            anchor = options.anchor
            cron = options.cron
        }
    }
}
