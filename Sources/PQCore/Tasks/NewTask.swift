import Synchronization

/// What a caller asks to queue: the input of ``TaskQueueStore/enqueue(_:)``.
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
        let (high0, low0) = pool.withLock { $0.next() }
        let high = (high0 & ~0xF000) | 0x4000  // version 4
        let low = (low0 & ~(0xC000_0000_0000_0000)) | 0x8000_0000_0000_0000  // variant 10
        return String(unsafeUninitializedCapacity: 32) { buffer in
            let digits: StaticString = "0123456789abcdef"
            digits.withUTF8Buffer { hex in
                for i in 0..<16 {
                    buffer[i] = hex[Int((high >> UInt64(60 - 4 * i)) & 0xF)]
                    buffer[16 + i] = hex[Int((low >> UInt64(60 - 4 * i)) & 0xF)]
                }
            }
            return 32
        }
    }

    /// xoshiro256** reseeded from system randomness every 4096 ids: one `getrandom` per 4096 ids
    /// instead of two per id. Ids need to be unique, not secret.
    private struct RandomPool: ~Copyable {
        var state: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        var left = 0

        mutating func next() -> (UInt64, UInt64) {
            if left == 0 {
                var system = SystemRandomNumberGenerator()
                state = (system.next(), system.next(), system.next(), system.next() | 1)
                left = 4096
            }
            left -= 1
            return (step(), step())
        }

        private mutating func step() -> UInt64 {
            let result = rotl(state.1 &* 5, 7) &* 9
            let t = state.1 << 17
            state.2 ^= state.0
            state.3 ^= state.1
            state.1 ^= state.2
            state.0 ^= state.3
            state.2 ^= t
            state.3 = rotl(state.3, 45)
            return result
        }

        private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
    }

    private static let pool = Mutex(RandomPool())

    /// Whether `text` is a well-formed id (32 lowercase hex digits).
    /// - Parameter text: the text to check.
    /// - Returns: `true` when it is.
    public static func isValid(_ text: String) -> Bool {
        let utf8 = text.utf8
        return utf8.count == 32 && utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }
}
