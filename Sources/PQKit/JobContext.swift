internal import CPQPlugin
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials  // JSON coding without loading ICU into every plugin
#else
    import Foundation
#endif

/// What a running job knows about its task, and how it talks back to the host.
///
/// ```swift
/// func run(_ arguments: NoArguments, context: JobContext) async throws -> String {
///     context.log(.info, "attempt \(context.attempt)")
///     return try context.submit(job: "addition", arguments: ["a": 1, "b": 2])
/// }
/// ```
///
/// A context stays usable after its run ended, but then no longer reaches the host: `log` does
/// nothing and `submit` throws.
public struct JobContext: Sendable {
    /// The task id (32 hex digits).
    public let taskID: String
    /// The job's name.
    public let jobName: String
    /// 1 on the first run, 2 on the first retry, ...
    public let attempt: Int

    let call: CallState

    init(call: CallState, taskID: String, jobName: String, attempt: Int) {
        self.call = call
        self.taskID = taskID
        self.jobName = jobName
        self.attempt = attempt
    }

    /// How important a log line is.
    public enum LogLevel: Int32, Sendable, CaseIterable {
        /// Details for debugging.
        case debug = 0
        /// Normal progress.
        case info = 1
        /// Something unexpected that the job handled.
        case warning = 2
        /// Something failed.
        case error = 3
    }

    /// Writes a log line attributed to this task.
    /// - Parameters:
    ///   - level: How important the line is.
    ///   - message: The text.
    public func log(_ level: LogLevel, _ message: String) {
        call.withLiveCall { pointer in
            guard let log = pointer.pointee.log else { return }
            message.withCString { log(pointer, level.rawValue, $0) }
        }
    }

    /// Whether the task was asked to stop (revoked, timed out, host shutting down): the current Swift
    /// task is cancelled, or the host says so. Long loops should check it; `Task.sleep` and other
    /// cancellable waits already stop with `CancellationError`.
    public var isCancelled: Bool {
        if Task.isCancelled { return true }
        return call.withLiveCall { pointer in
            guard let isCancelled = pointer.pointee.is_cancelled else { return false }
            return isCancelled(pointer) != 0
        } ?? true
    }

    /// Queues a child task (its `from_task` is this task).
    /// - Parameters:
    ///   - job: The child's job name.
    ///   - arguments: The child's kwargs; must encode as a JSON object (a struct or a dictionary).
    /// - Returns: The child's task id.
    /// - Throws: ``PQKitError`` with code `.submitFailed` when the arguments are not a JSON object or
    ///   the host refused the task.
    public func submit(job: String, arguments: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let json: String
        do {
            json = String(decoding: try encoder.encode(arguments), as: UTF8.self)
        } catch {
            throw PQKitError.submitFailed(job: jobName, child: job, detail: "its arguments do not encode: \(error)")
        }
        guard json.first == "{" else {
            throw PQKitError.submitFailed(
                job: jobName, child: job, detail: "its arguments must encode as a JSON object, not \(json)")
        }
        return try submit(job: job, argumentsJSON: json)
    }

    /// Queues a child task without arguments (its kwargs are `{}`).
    /// - Parameter job: The child's job name.
    /// - Returns: The child's task id.
    /// - Throws: ``PQKitError`` with code `.submitFailed` when the host refused the task.
    public func submit(job: String) throws -> String {
        try submit(job: job, argumentsJSON: "{}")
    }

    private func submit(job: String, argumentsJSON: String) throws -> String {
        let capacity = 128
        let outcome: Result<String, PQKitError>? = call.withLiveCall { pointer in
            guard let submit = pointer.pointee.submit else {
                return .failure(.submitFailed(job: jobName, child: job, detail: "the host offers no submit"))
            }
            var buffer = [CChar](repeating: 0, count: capacity)
            let status = job.withCString { jobC in
                argumentsJSON.withCString { argsC in
                    buffer.withUnsafeMutableBufferPointer { submit(pointer, jobC, argsC, $0.baseAddress, capacity) }
                }
            }
            guard status == 0 else {
                return .failure(
                    .submitFailed(job: jobName, child: job, detail: "the host refused it (status \(status))"))
            }
            buffer[capacity - 1] = 0  // never trust the host to have terminated it
            return .success(buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        }
        guard let outcome else {
            throw PQKitError.submitFailed(job: jobName, child: job, detail: "the run has already ended")
        }
        return try outcome.get()
    }
}

/// One host call (`pq_call`) seen from PQKit: it guards that `complete` runs once, and that nothing
/// touches the call after that (the host may free it as soon as `complete` returns).
final class CallState: Sendable {
    /// The call's address, as a number: the pointer itself is not `Sendable`.
    let address: UInt
    /// `true` once `complete` was called. Host callbacks run while holding the lock, so `complete`
    /// cannot free the call under a `log` or `submit` in flight.
    private let completed = Mutex(false)

    init(_ call: UnsafePointer<pq_call>) {
        address = UInt(bitPattern: call)
    }

    private var pointer: UnsafePointer<pq_call> {
        UnsafePointer(bitPattern: address).unsafelyUnwrapped
    }

    /// Runs `body` with the call while it is still live.
    /// - Returns: What `body` returned, or `nil` when the call was already completed.
    func withLiveCall<R: Sendable>(_ body: (UnsafePointer<pq_call>) -> R) -> R? {
        let pointer = self.pointer
        return completed.withLock { done -> R? in
            done ? nil : body(pointer)
        }
    }

    /// Ends the call, unless it already ended.
    /// - Returns: Whether this was the one completion.
    @discardableResult
    func complete(ok: Bool, _ text: String) -> Bool {
        let pointer = self.pointer
        let first = completed.withLock { done in
            defer { done = true }
            return !done
        }
        guard first else { return false }
        // Outside the lock: the host may free the call inside `complete`, and a callback racing with
        // us now sees `done` and stays away.
        if let complete = pointer.pointee.complete {
            text.withCString { complete(pointer, ok ? 1 : 0, $0) }
        }
        return true
    }
}
