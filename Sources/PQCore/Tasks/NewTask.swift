/// What a caller asks to queue: the input of ``TaskStore/enqueue(_:)``.
///
/// ```swift
/// let task = NewTask(name: "add", kwargs: #"{"a":1,"b":2}"#, delay: 5)
/// let records = try await store.enqueue([task])
/// ```
public struct NewTask: Sendable, Equatable {
    /// The job name.
    public var name: String
    /// The arguments as the text of a JSON object; `"{}"` when there are none.
    public var kwargs: String
    /// The queue to wait in.
    public var queue: String
    /// Seconds to wait before the first run.
    public var delay: Double?
    /// Seconds a run may take.
    public var timeout: Double?
    /// Absolute epoch time after which the task is revoked if it has not started.
    public var expiry: Double?
    /// Runs allowed after the first.
    public var maxRetries: Int
    /// Seconds before a retry.
    public var retryDelay: Double
    /// Whether the retry delay doubles with each run.
    public var retryBackoff: Bool
    /// Whether a random part is added to the retry delay.
    public var retryJitter: Bool
    /// At most this many tasks of the job run at once across all hosts; `nil` for no limit.
    public var maxConcurrency: Int?
    /// When `false`, nothing is queued while a task of the same name and identical kwargs text,
    /// itself queued with `canOverlap == false`, is QUEUED, RETRY or STARTED; that task is
    /// returned instead.
    public var canOverlap: Bool
    /// The task that queues this one.
    public var fromTask: String?
    /// The plugin that defines the job.
    public var plugin: String?
    /// That plugin's version.
    public var pluginVersion: String?
    /// An id to use instead of a fresh one (32 lowercase hex digits); for tests and imports.
    public var id: String?

    /// Creates a request to queue one task.
    public init(
        name: String, kwargs: String = "{}", queue: String = "default", delay: Double? = nil,
        timeout: Double? = nil, expiry: Double? = nil, maxRetries: Int = 0, retryDelay: Double = 0,
        retryBackoff: Bool = false, retryJitter: Bool = false, maxConcurrency: Int? = nil,
        canOverlap: Bool = true, fromTask: String? = nil, plugin: String? = nil,
        pluginVersion: String? = nil, id: String? = nil
    ) {
        self.name = name
        self.kwargs = kwargs
        self.queue = queue
        self.delay = delay
        self.timeout = timeout
        self.expiry = expiry
        self.maxRetries = maxRetries
        self.retryDelay = retryDelay
        self.retryBackoff = retryBackoff
        self.retryJitter = retryJitter
        self.maxConcurrency = maxConcurrency
        self.canOverlap = canOverlap
        self.fromTask = fromTask
        self.plugin = plugin
        self.pluginVersion = pluginVersion
        self.id = id
    }
}

/// Fresh task ids: 32 lowercase hex digits of a random (version 4) UUID.
public enum TaskID {
    /// A new random id.
    /// - Returns: 32 lowercase hex digits.
    public static func make() -> String {
        var generator = SystemRandomNumberGenerator()
        var high = generator.next() as UInt64
        var low = generator.next() as UInt64
        high = (high & ~0xF000) | 0x4000  // version 4
        low = (low & ~(0xC000_0000_0000_0000)) | 0x8000_0000_0000_0000  // variant 10
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8](repeating: 0, count: 32)
        for i in 0..<16 {
            out[i] = digits[Int((high >> UInt64(60 - 4 * i)) & 0xF)]
            out[16 + i] = digits[Int((low >> UInt64(60 - 4 * i)) & 0xF)]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether `text` is a well-formed id (32 lowercase hex digits).
    /// - Parameter text: the text to check.
    /// - Returns: `true` when it is.
    public static func isValid(_ text: String) -> Bool {
        let utf8 = text.utf8
        return utf8.count == 32 && utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }
}
