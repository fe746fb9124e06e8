/// Checks task arguments (kwargs) before anything is queued.
public enum TaskArguments {
    /// The default size limit of one task's kwargs: 1 MiB.
    public static let defaultLimit = 1 << 20

    /// Validates kwargs text: a JSON object within the size limit.
    /// - Parameters:
    ///   - json: the kwargs text; empty means `{}`.
    ///   - limit: the largest accepted size in bytes.
    /// - Returns: the kwargs text to store (`{}` for empty input).
    /// - Throws: ``ArgumentsError`` saying what is wrong.
    public static func validate(_ json: String, limit: Int = defaultLimit) throws(ArgumentsError) -> String {
        let size = json.utf8.count
        if size > limit {
            throw ArgumentsError(
                message:
                    "arguments are \(size) bytes, over the limit of \(limit) bytes; pass a reference (a path or a key) instead of the data"
            )
        }
        if json.allSatisfy({ $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }) { return "{}" }
        let value: JSONValue
        do { value = try JSONValue.parse(json) } catch {
            throw ArgumentsError(message: "arguments are not valid JSON (\(error)): \(json.prefix(80))")
        }
        guard case .object = value else {
            throw ArgumentsError(
                message:
                    "arguments must be a JSON object of keyword arguments, got \(value.typeName): \(json.prefix(80))")
        }
        return json
    }

    /// Invalid task arguments.
    public struct ArgumentsError: Error, CustomStringConvertible, Sendable {
        /// What is wrong.
        public var message: String
        /// The message.
        public var description: String { message }
    }
}

extension NewTask {
    /// A task of a registered job, with the job's options (queue, timeout, retries, overlap,
    /// concurrency) unless overridden.
    /// - Parameters:
    ///   - job: the job.
    ///   - kwargs: validated kwargs text.
    ///   - queue: overrides the job's queue.
    ///   - delay: seconds before it may run.
    ///   - timeout: overrides the job's timeout.
    ///   - expiry: absolute time after which it is revoked if not started.
    ///   - fromTask: the parent task.
    public init(
        job: JobDefinition, kwargs: String, queue: String? = nil, delay: Double? = nil, timeout: Double? = nil,
        expiry: Double? = nil, fromTask: String? = nil
    ) {
        self.init(
            options: job.options, name: job.name, kwargs: kwargs, queue: queue, delay: delay, timeout: timeout,
            expiry: expiry, fromTask: fromTask)
        self.plugin = job.plugin.name
        self.pluginVersion = job.plugin.version
    }

    /// A task of a job known by its options.
    public init(
        options o: JobOptions, name: String, kwargs: String, queue: String? = nil, delay: Double? = nil,
        timeout: Double? = nil, expiry: Double? = nil, fromTask: String? = nil
    ) {
        self.init(
            name: name, kwargs: kwargs, queue: queue ?? o.queue ?? "default", delay: delay,
            timeout: timeout ?? o.timeout,
            expiry: expiry, maxRetries: o.maxRetries ?? 0, retryDelay: o.retryDelay ?? 0, retryBackoff: o.retryBackoff,
            retryJitter: o.retryJitter, maxConcurrency: o.maxConcurrency, canOverlap: o.canOverlap, fromTask: fromTask)
    }
}

extension JobInfo {
    /// The published options, parsed; defaults when absent or unreadable.
    public var jobOptions: JobOptions {
        (try? JobOptions.parse(options)) ?? JobOptions()
    }
}
