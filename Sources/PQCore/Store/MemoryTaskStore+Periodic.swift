/// The periodic scheduler's state in a ``MemoryTaskStore``.
struct PeriodicState: Sendable {
    var leaseHolder: String?
    var leaseUntil = 0.0
    var lastRuns: [String: Double] = [:]
}

extension MemoryTaskStore: PeriodicScheduleStore {
    /// See ``PeriodicScheduleStore/acquireSchedulerLease(holder:until:now:)``.
    public func acquireSchedulerLease(holder: String, until: Double, now: Double) async throws -> Bool {
        try writeQuietly { state in
            let lease = state.periodic
            guard lease.leaseHolder == nil || lease.leaseHolder == holder || lease.leaseUntil < now else {
                return false
            }
            state.periodic.leaseHolder = holder
            state.periodic.leaseUntil = until
            return true
        }
    }

    /// See ``PeriodicScheduleStore/releaseSchedulerLease(holder:)``.
    public func releaseSchedulerLease(holder: String) async throws {
        try writeQuietly { state in
            guard state.periodic.leaseHolder == holder else { return }
            state.periodic.leaseHolder = nil
            state.periodic.leaseUntil = 0
        }
    }

    /// See ``PeriodicScheduleStore/lastPeriodicRuns()``.
    public func lastPeriodicRuns() async throws -> [String: Double] {
        try read { $0.periodic.lastRuns }
    }

    /// See ``PeriodicScheduleStore/queuePeriodicRun(job:slot:task:)``.
    public func queuePeriodicRun(job: String, slot: Double, task: NewTask) async throws -> TaskRecord? {
        try TaskEngine.validate(task)
        let now = TaskClock.now()
        return try write { state -> TaskRecord? in
            if let last = state.periodic.lastRuns[job], last >= slot { return nil }
            let record = try insert([task], now: now, in: &state).first
            state.periodic.lastRuns[job] = slot
            return record
        }
    }
}
