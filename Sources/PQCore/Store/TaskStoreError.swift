/// An error of a task store or of a store URL: a code to match on, a message for the user, and context.
///
/// ```swift
/// do { _ = try StoreURL(parsing: "sqlte:x.db") }
/// catch let error as TaskStoreError where error.code == .invalidStoreURL { print(error) }
/// ```
public struct TaskStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, as a value to match on; new codes may be added.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        fileprivate enum Base: String, Sendable {
            case invalidStoreURL, unsupportedStore, cannotOpen, schemaTooNew, database, illegalTransition
            case invalidArgument, closed
        }
        fileprivate let base: Base

        /// A store URL that does not parse.
        public static let invalidStoreURL = Code(base: .invalidStoreURL)
        /// A store URL of a kind this build cannot open (e.g. `redis://` without the Redis target).
        public static let unsupportedStore = Code(base: .unsupportedStore)
        /// The store file or its folder cannot be opened or created.
        public static let cannotOpen = Code(base: .cannotOpen)
        /// The store file was written by a newer pq.
        public static let schemaTooNew = Code(base: .schemaTooNew)
        /// The database reported an error.
        public static let database = Code(base: .database)
        /// A task state change that the state machine refuses.
        public static let illegalTransition = Code(base: .illegalTransition)
        /// An argument that the store refuses (e.g. kwargs that are not a JSON object).
        public static let invalidArgument = Code(base: .invalidArgument)
        /// The store was closed.
        public static let closed = Code(base: .closed)

        /// The code's name, e.g. `invalidStoreURL`.
        public var description: String { base.rawValue }
    }

    /// What went wrong.
    public let code: Code
    /// One line saying what was wrong and what to do.
    public let message: String
    /// The file involved, if any.
    public let path: String?
    /// The task involved, if any.
    public let taskID: String?

    /// Creates an error.
    /// - Parameters:
    ///   - code: what went wrong.
    ///   - message: one line for the user.
    ///   - path: the file involved.
    ///   - taskID: the task involved.
    public init(_ code: Code, _ message: String, path: String? = nil, taskID: String? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.taskID = taskID
    }

    /// The message.
    public var description: String { message }
}
