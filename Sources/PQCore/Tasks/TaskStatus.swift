/// The state of a task, with pulsar-queue's numbers (DESIGN.md §5).
///
/// The raw value is the number stored and printed (`status` in the task JSON);
/// ``name`` is the `status_string`.
public enum TaskStatus: Int, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Queued, not yet run.
    case queued = 6
    /// Running.
    case started = 5
    /// Failed, will run again after the retry delay.
    case retry = 4
    /// Revoked, expired or timed out.
    case revoked = 3
    /// Finished with failure.
    case failure = 2
    /// Finished with success.
    case success = 1

    /// The upper-case name used in the task JSON (`status_string`): `"QUEUED"`, `"STARTED"`, ...
    public var name: String {
        switch self {
        case .queued: "QUEUED"
        case .started: "STARTED"
        case .retry: "RETRY"
        case .revoked: "REVOKED"
        case .failure: "FAILURE"
        case .success: "SUCCESS"
        }
    }

    /// Same as ``name``.
    public var description: String { name }

    /// States of a task that ran to its end: FAILURE and SUCCESS.
    public static let fullRunStates: Set<TaskStatus> = [.failure, .success]

    /// Final states: REVOKED, FAILURE and SUCCESS. A task in one of them never changes again.
    public static let readyStates: Set<TaskStatus> = [.revoked, .failure, .success]

    /// States of a task waiting to be claimed: QUEUED and RETRY.
    public static let waitingStates: Set<TaskStatus> = [.queued, .retry]

    /// States in which a task still counts as active for `can_overlap`: QUEUED, RETRY and STARTED.
    public static let activeStates: Set<TaskStatus> = [.queued, .retry, .started]

    /// Whether the state is final (see ``readyStates``).
    public var isReady: Bool { self.rawValue <= 3 }

    /// Whether the task waits to be claimed (see ``waitingStates``); no set lookup.
    public var isWaiting: Bool { self == .queued || self == .retry }

    /// Parses a status given by name (any case, e.g. `success`) or by number (e.g. `1`).
    ///
    /// - Parameter text: the text given by a user, e.g. to `pq tasks --status`.
    /// - Returns: the status, or `nil` when the text names none.
    public init?(parsing text: String) {
        let trimmed = text.trimmingWhitespace()
        if let number = Int(trimmed) {
            self.init(rawValue: number)
            return
        }
        let upper = trimmed.uppercased()
        guard let match = TaskStatus.allCases.first(where: { $0.name == upper }) else { return nil }
        self = match
    }

    /// Whether a task in this state may move to `next`.
    ///
    /// QUEUED→STARTED/REVOKED; STARTED→SUCCESS/FAILURE/RETRY/REVOKED/QUEUED (lease lost,
    /// or returned at shutdown); RETRY→STARTED/REVOKED; ready states are final.
    ///
    /// - Parameter next: the state asked for.
    /// - Returns: `true` when the move is legal.
    public func canMove(to next: TaskStatus) -> Bool {
        switch (self, next) {
        case (.queued, .started), (.queued, .revoked): true
        case (.started, .success), (.started, .failure), (.started, .retry), (.started, .revoked),
            (.started, .queued):
            true
        case (.retry, .started), (.retry, .revoked): true
        default: false
        }
    }

    /// The state after a move to `next`, or an error for an illegal move.
    ///
    /// - Parameters:
    ///   - next: the state asked for.
    ///   - taskID: the task, named in the error.
    /// - Returns: `next`.
    /// - Throws: ``TaskStoreError/illegalTransition`` when ``canMove(to:)`` is false.
    public func moving(to next: TaskStatus, taskID: String = "") throws(TaskStoreError) -> TaskStatus {
        guard canMove(to: next) else {
            throw TaskStoreError(
                .illegalTransition,
                "task \(taskID.isEmpty ? "?" : taskID) cannot move from \(name) to \(next.name)",
                taskID: taskID.isEmpty ? nil : taskID)
        }
        return next
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var slice = Substring(self)
        while let first = slice.first, first.isWhitespace { slice.removeFirst() }
        while let last = slice.last, last.isWhitespace { slice.removeLast() }
        return String(slice)
    }
}
