/// An error raised by PQKit itself: arguments that do not decode, a child task the host refused, a
/// result that cannot be encoded. Compare with the static members (`error.code == .submitFailed`);
/// `description` is the message the task fails with.
public struct PQKitError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, without the details.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case invalidArguments
            case submitFailed
            case invalidResult
            case unknownJob
        }

        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The task's kwargs do not decode into the job's `Arguments`.
        public static var invalidArguments: Code { Code(.invalidArguments) }
        /// The host did not queue a child task.
        public static var submitFailed: Code { Code(.submitFailed) }
        /// The job's result cannot be encoded as JSON.
        public static var invalidResult: Code { Code(.invalidResult) }
        /// The host asked for a job this plugin does not have.
        public static var unknownJob: Code { Code(.unknownJob) }

        /// The code's name.
        public var description: String { "\(value)" }
    }

    /// What went wrong.
    public let code: Code
    /// The job concerned.
    public let job: String
    /// The full message: what was wrong and, where it helps, what to do.
    public let message: String

    /// The message the task fails with.
    public var description: String { message }

    private init(_ code: Code, job: String, message: String) {
        self.code = code
        self.job = job
        self.message = message
    }

    static func invalidArguments(job: String, detail: String) -> PQKitError {
        PQKitError(.invalidArguments, job: job, message: "invalid arguments for job \"\(job)\": \(detail)")
    }

    static func submitFailed(job: String, child: String, detail: String) -> PQKitError {
        PQKitError(.submitFailed, job: job, message: "job \"\(job)\" could not submit a \"\(child)\" task: \(detail)")
    }

    static func invalidResult(job: String, detail: String) -> PQKitError {
        PQKitError(.invalidResult, job: job, message: "job \"\(job)\" returned a result that is not JSON: \(detail)")
    }

    static func unknownJob(job: String, plugin: String) -> PQKitError {
        PQKitError(.unknownJob, job: job, message: "plugin \"\(plugin)\" has no job \"\(job)\"")
    }
}

/// A plain failure with a message, for jobs that have no error type of their own.
///
/// ```swift
/// throw JobFailure("this job always fails")
/// ```
public struct JobFailure: Error, CustomStringConvertible, Sendable {
    /// The message the task fails with.
    public let message: String

    /// Makes a failure.
    /// - Parameter message: The message the task fails with.
    public init(_ message: String) { self.message = message }

    /// The message the task fails with.
    public var description: String { message }
}
