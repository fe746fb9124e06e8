/// A job a plugin offers: typed arguments in, a typed result out.
///
/// The host hands every task its kwargs as a JSON object; PQKit decodes them into `Arguments` (plain
/// `Decodable`, keys as written: use `CodingKeys` for snake_case kwargs), calls ``run(_:context:)``
/// and encodes the returned `Output` as the task's JSON result. A thrown error fails the run with the
/// error's description; Swift cancellation (revoke, timeout, shutdown) fails it with `"cancelled"`.
///
/// ```swift
/// struct Addition: Job {
///     struct Arguments: Decodable, Sendable { var a: Int; var b: Int }
///     static let doc = "Adds two numbers."
///     func run(_ arguments: Arguments, context: JobContext) async throws -> Int {
///         arguments.a + arguments.b
///     }
/// }
/// ```
///
/// A fresh value is made with `init()` for every run. Every option has a default (unset: the host's
/// default applies); override the ones the job needs with a `static let`.
public protocol Job: Sendable {
    /// The task's kwargs, decoded from its JSON object. ``NoArguments`` when the job takes none.
    associatedtype Arguments: Decodable & Sendable = NoArguments
    /// The result, encoded as JSON (a `String` becomes a JSON string, an `Int` a number, ...).
    associatedtype Output: Encodable & Sendable

    /// Makes the value that runs one task.
    init()

    /// Runs one task.
    /// - Parameters:
    ///   - arguments: The task's kwargs.
    ///   - context: The task's identity, its log, cancellation and child tasks.
    /// - Returns: The task's result.
    func run(_ arguments: Arguments, context: JobContext) async throws -> Output

    /// The job's name, a slug (`[a-z0-9][a-z0-9._-]*`). Default: derived from the type name with
    /// ``jobName(fromTypeName:)`` (`SlowTask` → `slowtask`, `Test_Local` → `test.local`).
    static var name: String { get }
    /// One line describing the job (shown by `pq jobs`); empty: none.
    ///
    /// A `String`, not a `String?`: `static let doc = "…"` declares a `String`, and with an
    /// optional requirement that declaration would not be the witness (the default would win and
    /// the doc would be lost without a word).
    static var doc: String { get }
    /// Seconds a run may take, counted from its start, before the task is revoked.
    static var timeout: Double? { get }
    /// Runs after the first one when a run fails.
    static var maxRetries: Int? { get }
    /// Seconds between a failed run and the next one.
    static var retryDelay: Double? { get }
    /// At most this many tasks of the job run at once, across all hosts.
    static var maxConcurrency: Int? { get }
    /// `false`: no second task with the same kwargs is queued while one is queued or running.
    static var canOverlap: Bool? { get }
    /// The queue the job's tasks go to.
    static var queue: String? { get }
}

extension Job {
    /// The type name turned into a slug by ``jobName(fromTypeName:)``.
    public static var name: String { jobName(fromTypeName: String(describing: Self.self)) }
    /// No description.
    public static var doc: String { "" }
    /// Unset: the host's default.
    public static var timeout: Double? { nil }
    /// Unset: the host's default.
    public static var maxRetries: Int? { nil }
    /// Unset: the host's default.
    public static var retryDelay: Double? { nil }
    /// Unset: the host's default.
    public static var maxConcurrency: Int? { nil }
    /// Unset: the host's default.
    public static var canOverlap: Bool? { nil }
    /// Unset: the host's default.
    public static var queue: String? { nil }
}

/// A job the host also queues on a schedule: every ``runEvery`` seconds aligned to ``anchor``, or by
/// ``cron``. Set one of `runEvery` and `cron`.
///
/// ```swift
/// struct Cleanup: PeriodicJob {
///     static let runEvery: Double? = 3600
///     static let anchor: String? = "00:30:00"
///     func run(_ arguments: NoArguments, context: JobContext) async throws -> String { "done" }
/// }
/// ```
public protocol PeriodicJob: Job {
    /// Seconds between scheduled runs.
    static var runEvery: Double? { get }
    /// `"HH:MM:SS"` (UTC) that `runEvery` is aligned to.
    static var anchor: String? { get }
    /// A five-field cron expression.
    static var cron: String? { get }
    /// Fixed arguments for scheduled runs. The scheduler queues them with empty kwargs (`{}`); when
    /// this is set, a run whose kwargs are empty gets these arguments instead.
    static var periodicArguments: Arguments? { get }
}

extension PeriodicJob {
    /// Unset.
    public static var runEvery: Double? { nil }
    /// Unset.
    public static var anchor: String? { nil }
    /// Unset.
    public static var cron: String? { nil }
    /// Unset: scheduled runs decode their (empty) kwargs like any other run.
    public static var periodicArguments: Arguments? { nil }
}

/// The arguments of a job that takes none: decodes from any kwargs and ignores them.
public struct NoArguments: Decodable, Sendable, Equatable {
    /// Makes the empty arguments.
    public init() {}

    /// Decodes from anything, reading nothing.
    /// - Parameter decoder: Ignored.
    public init(from decoder: any Decoder) throws {}
}

/// Derives a job name from a type name as pulsar did: lower-cased, and every character outside
/// `[a-z0-9]` becomes `.`.
///
/// `Addition` → `addition`, `SlowTask` → `slowtask`, `Test_Local` → `test.local`.
/// - Parameter typeName: A type name, e.g. `String(describing: T.self)`.
/// - Returns: The derived name.
public func jobName(fromTypeName typeName: String) -> String {
    // Per Character, so a letter with combining marks becomes one `.`, as one Python character would.
    String(
        typeName.lowercased().map { character -> Character in
            if let ascii = character.asciiValue, isSlugStart(ascii) { character } else { "." }
        }
    )
}

/// Tells whether a string is a valid job name: `[a-z0-9][a-z0-9._-]*`.
/// - Parameter name: The candidate name.
/// - Returns: `true` when the host accepts it as a job name.
public func isValidJobName(_ name: String) -> Bool {
    guard let first = name.utf8.first, isSlugStart(first) else { return false }
    return name.utf8.allSatisfy { byte in
        isSlugStart(byte) || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
    }
}

private func isSlugStart(_ byte: UInt8) -> Bool {
    (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
}
