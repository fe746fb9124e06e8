/// The optional ability of a store to back a ``PeriodicScheduler``: a scheduler lease, and the
/// last run queued for each periodic job, advanced together with queueing the run.
///
/// The lease keeps a single scheduler acting at a time; ``queuePeriodicRun(job:slot:task:)`` is
/// what guarantees no run is queued twice, even when two schedulers act at once (a lease expired
/// during a long pause, clocks disagree): it compares and sets the last run and queues the task in
/// one transaction.
///
/// ```swift
/// guard let store = store as? any PeriodicScheduleStore else { ... }
/// if try await store.acquireSchedulerLease(holder: "box:42", until: now + 10, now: now) {
///     let queued = try await store.queuePeriodicRun(job: "tick", slot: slot, task: task)  // nil: already queued
/// }
/// ```
public protocol PeriodicScheduleStore: TaskStore {
    /// Takes or renews the scheduler lease.
    /// - Parameters:
    ///   - holder: who asks (e.g. `<node>:<pid>`).
    ///   - until: when the lease ends unless renewed.
    ///   - now: the current time; a lease that ended before it is free.
    /// - Returns: true when `holder` holds the lease until `until`; false when another holder does.
    func acquireSchedulerLease(holder: String, until: Double, now: Double) async throws -> Bool

    /// Gives the lease up (at shutdown), so another scheduler can take it at once.
    /// - Parameter holder: the holder; nothing happens when it does not hold the lease.
    func releaseSchedulerLease(holder: String) async throws

    /// The last run queued of each periodic job.
    /// - Returns: slot time (epoch seconds) by job name; jobs never queued are absent.
    func lastPeriodicRuns() async throws -> [String: Double]

    /// Queues `task` as the run of `job` at `slot`, if the last run stored for the job is earlier
    /// (or absent), and records `slot` as its last run; both or neither, in one transaction.
    /// - Parameters:
    ///   - job: the job name.
    ///   - slot: the scheduled time of the run.
    ///   - task: the task to queue.
    /// - Returns: the queued record, or nil when a run at or after `slot` was already queued.
    func queuePeriodicRun(job: String, slot: Double, task: NewTask) async throws -> TaskRecord?
}
