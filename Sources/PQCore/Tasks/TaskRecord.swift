/// One task as the store keeps it: every field of DESIGN.md §5 plus the fields the engine needs.
///
/// Times are epoch seconds. `kwargs` and `result` are JSON text kept as given; ``json()``
/// embeds them as JSON values.
///
/// ```swift
/// let record = try await store.task(id: id)
/// print(record?.json() ?? "not found")
/// ```
public struct TaskRecord: Sendable, Equatable {
    /// 32 lowercase hex digits (a UUID without dashes).
    public var id: String
    /// The job name.
    public var name: String
    /// The current state.
    public var status: TaskStatus
    /// The queue the task waits in.
    public var queue: String
    /// The arguments: the text of a JSON object, `"{}"` when there are none.
    public var kwargs: String
    /// The job's result as JSON text, once it succeeded.
    public var result: String?
    /// The error message of the last failed, revoked or cut-short run.
    public var exception: String?
    /// When the task was queued.
    public var timeQueued: Double
    /// When the last run started.
    public var timeStarted: Double?
    /// When the task reached a ready state.
    public var timeEnded: Double?
    /// Seconds between queueing and the first run, as asked at submit.
    public var delay: Double?
    /// Seconds a run may take before it is revoked.
    public var timeout: Double?
    /// Absolute epoch time after which a task that has not started is revoked instead.
    public var expiry: Double?
    /// Runs started so far: 0 while queued, 1 at the first claim.
    public var retry: Int
    /// Runs allowed after the first.
    public var maxRetries: Int
    /// The task that queued this one, if any.
    public var fromTask: String?
    /// Host name of the process that ran it last.
    public var node: String?
    /// `<node>:<pid>` of the process that ran it last.
    public var worker: String?
    /// Name of the plugin that defines the job.
    public var plugin: String?
    /// Version of that plugin.
    public var pluginVersion: String?

    // Engine fields, not part of the task JSON.

    /// Not claimed before this time (queue time plus delay, or the retry time).
    public var eta: Double
    /// Seconds to wait before a retry.
    public var retryDelay: Double
    /// Whether the retry delay doubles with each run.
    public var retryBackoff: Bool
    /// Whether a random part is added to the retry delay.
    public var retryJitter: Bool
    /// At most this many tasks of the job run at once across all hosts; `nil` for no limit.
    public var maxConcurrency: Int?
    /// Whether a second task of the job with the same kwargs may be queued while this one is active.
    public var canOverlap: Bool
    /// While STARTED: the lease ends here unless renewed.
    public var leaseExpires: Double?
    /// Runs cut short by a host that died.
    public var deadRuns: Int
    /// A revoke asked the running task to stop.
    public var cancelRequested: Bool
    /// Where the store that returned this record keeps it, so it finds the task again without
    /// looking up its id; not part of the task.
    var storeSlot = StoreSlot()

    /// Creates a record; fields not given take the values of a freshly queued task.
    public init(
        id: String, name: String, status: TaskStatus = .queued, queue: String = "default",
        kwargs: String = "{}", result: String? = nil, exception: String? = nil,
        timeQueued: Double, timeStarted: Double? = nil, timeEnded: Double? = nil,
        delay: Double? = nil, timeout: Double? = nil, expiry: Double? = nil,
        retry: Int = 0, maxRetries: Int = 0, fromTask: String? = nil,
        node: String? = nil, worker: String? = nil, plugin: String? = nil, pluginVersion: String? = nil,
        eta: Double? = nil, retryDelay: Double = 0, retryBackoff: Bool = false, retryJitter: Bool = false,
        maxConcurrency: Int? = nil, canOverlap: Bool = true, leaseExpires: Double? = nil,
        deadRuns: Int = 0, cancelRequested: Bool = false
    ) {
        self.id = id
        self.name = name
        self.status = status
        self.queue = queue
        self.kwargs = kwargs
        self.result = result
        self.exception = exception
        self.timeQueued = timeQueued
        self.timeStarted = timeStarted
        self.timeEnded = timeEnded
        self.delay = delay
        self.timeout = timeout
        self.expiry = expiry
        self.retry = retry
        self.maxRetries = maxRetries
        self.fromTask = fromTask
        self.node = node
        self.worker = worker
        self.plugin = plugin
        self.pluginVersion = pluginVersion
        self.eta = eta ?? (timeQueued + (delay ?? 0))
        self.retryDelay = retryDelay
        self.retryBackoff = retryBackoff
        self.retryJitter = retryJitter
        self.maxConcurrency = maxConcurrency
        self.canOverlap = canOverlap
        self.leaseExpires = leaseExpires
        self.deadRuns = deadRuns
        self.cancelRequested = cancelRequested
    }

    /// The task object of DESIGN.md §5, on one line, keys in a fixed order.
    ///
    /// `kwargs` and `result` are embedded as JSON values; missing values are `null`.
    /// - Returns: the JSON text.
    public func json() -> String {
        var out = JSONWriter(capacity: 512 + kwargs.utf8.count + (result?.utf8.count ?? 0))
        out.raw("{")
        writeMembers(&out)
        out.raw("}")
        return out.finish()
    }
}

/// A small JSON writer for the task object: appends UTF-8 bytes, no intermediate dictionaries.
struct JSONWriter {
    private var bytes: [UInt8]

    init(capacity: Int) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    mutating func bytes(_ more: [UInt8]) { bytes.append(contentsOf: more) }

    mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    /// Embeds JSON text as a value; trims surrounding whitespace, uses `empty` when nothing is left.
    mutating func rawJSON(_ text: String, empty: StaticString) {
        var text = text
        text.withUTF8 { utf8 in
            var start = 0
            var end = utf8.count
            while start < end, Self.isSpace(utf8[start]) { start += 1 }
            while end > start, Self.isSpace(utf8[end - 1]) { end -= 1 }
            if start == end {
                raw(empty)
            } else {
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<end]))
            }
        }
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    mutating func string(_ value: String?) {
        guard var value else { return raw("null") }
        bytes.append(0x22)
        value.withUTF8 { utf8 in
            // Most strings (ids, names, hosts) need no escape: copy them in one go.
            guard utf8.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C }) else {
                bytes.append(contentsOf: utf8)
                return
            }
            for byte in utf8 {
                switch byte {
                case 0x22:
                    bytes.append(0x5C)
                    bytes.append(0x22)
                case 0x5C:
                    bytes.append(0x5C)
                    bytes.append(0x5C)
                case 0x0A:
                    bytes.append(0x5C)
                    bytes.append(0x6E)
                case 0x0D:
                    bytes.append(0x5C)
                    bytes.append(0x72)
                case 0x09:
                    bytes.append(0x5C)
                    bytes.append(0x74)
                case 0..<0x20:
                    bytes.append(contentsOf: [0x5C, 0x75, 0x30, 0x30])
                    bytes.append(Self.hexDigits[Int(byte >> 4)])
                    bytes.append(Self.hexDigits[Int(byte & 0xF)])
                default: bytes.append(byte)
                }
            }
        }
        bytes.append(0x22)
    }

    mutating func int(_ value: Int) {
        var text = String(value)
        text.withUTF8 { bytes.append(contentsOf: $0) }
    }

    mutating func double(_ value: Double?) {
        guard let value, value.isFinite else { return raw("null") }
        var text = value.description
        text.withUTF8 { bytes.append(contentsOf: $0) }
    }

    mutating func finish() -> String {
        String(decoding: bytes, as: UTF8.self)
    }
}

/// A store's hint of where it keeps a task (the memory store's position), carried by the
/// records it returns and the outcomes made from them. It is not part of the task: any two
/// hints are equal, so records compare by their fields alone.
struct StoreSlot: Sendable, Equatable {
    /// The position, or -1 when the store gave none.
    var position = -1

    static func == (_: StoreSlot, _: StoreSlot) -> Bool { true }
}
