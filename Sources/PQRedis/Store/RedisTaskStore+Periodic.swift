public import PQCore

extension RedisTaskStore: PeriodicScheduleStore {
    /// See ``PeriodicScheduleStore/acquireSchedulerLease(holder:until:now:)``.
    public func acquireSchedulerLease(holder: String, until: Double, now: Double) async throws -> Bool {
        let ms = max(1, Int(((until - now) * 1000).rounded(.up)))
        return try await call(
            RedisFunctions.acquireScheduler,
            [
                .string(holder), .string(RedisTaskHash.text(until)), .string(RedisTaskHash.text(now)),
                .string(String(ms)),
            ]
        ).int == 1
    }

    /// See ``PeriodicScheduleStore/releaseSchedulerLease(holder:)``.
    public func releaseSchedulerLease(holder: String) async throws {
        _ = try await call(RedisFunctions.releaseScheduler, [.string(holder)])
    }

    /// See ``PeriodicScheduleStore/lastPeriodicRuns()``.
    public func lastPeriodicRuns() async throws -> [String: Double] {
        let items = try await command(["HGETALL", key("periodic")]).array ?? []
        var out: [String: Double] = [:]
        var index = 0
        while index + 1 < items.count {
            if let job = try items[index].string, let slot = try items[index + 1].string.flatMap(Double.init) {
                out[job] = slot
            }
            index += 2
        }
        return out
    }

    /// See ``PeriodicScheduleStore/queuePeriodicRun(job:slot:task:)``.
    ///
    /// The slot is claimed atomically first (a compare-and-set on the job's last run), then the
    /// task is queued; two schedulers can never both claim one slot. The run's task id is derived
    /// from (job, slot), so even a replayed claim cannot queue it twice. If queueing fails after the
    /// claim, that one run is skipped rather than risk a duplicate.
    public func queuePeriodicRun(job: String, slot: Double, task: NewTask) async throws -> TaskRecord? {
        try TaskEngine.validate(task)
        let claimed =
            try await call(
                RedisFunctions.claimPeriodicSlot, [.string(job), .string(RedisTaskHash.text(slot))]
            ).int == 1
        guard claimed else { return nil }
        do {
            return try await enqueue([task]).first
        } catch let error as TaskStoreError
            where error.code == .invalidArgument && error.message.contains("already used")
        {
            return nil
        }
    }
}
