public import PQCore

extension RedisScripts {
    /// ARGV: holder, until, now, lease milliseconds. Takes or renews the scheduler lease; returns
    /// 1 when `holder` has it. The stored value is `until|holder`, compared with the caller's clock
    /// (hosts share wall time); the key also expires by itself after the lease, as a safety net.
    static let acquireSchedulerLease = RedisScript(
        library + #"""
        local holder, untilT, now, ms = ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7]
        local current = redis.call('GET', P .. 'scheduler')
        if current ~= false then
          local bar = string.find(current, '|', 1, true)
          local curUntil, curHolder = tonumber(string.sub(current, 1, bar - 1)), string.sub(current, bar + 1)
          if curHolder ~= holder and curUntil > now then return 0 end
        end
        redis.call('SET', P .. 'scheduler', untilT .. '|' .. holder, 'PX', ms)
        return 1
        """#)

    /// ARGV: holder. Gives the lease up if `holder` has it.
    static let releaseSchedulerLease = RedisScript(
        library + #"""
        local current = redis.call('GET', P .. 'scheduler')
        if current ~= false then
          local bar = string.find(current, '|', 1, true)
          if string.sub(current, bar + 1) == ARGV[4] then redis.call('DEL', P .. 'scheduler') end
        end
        return 1
        """#)

    /// ARGV: job, slot. Records `slot` as the job's last run unless a run at or after it is
    /// recorded; returns 1 when it was recorded (the caller then queues the run).
    static let claimPeriodicSlot = RedisScript(
        library + #"""
        local job, slot = ARGV[4], tonumber(ARGV[5])
        local last = redis.call('HGET', P .. 'periodic', job)
        if last ~= false and tonumber(last) >= slot then return 0 end
        redis.call('HSET', P .. 'periodic', job, ARGV[5])
        return 1
        """#)
}

extension RedisTaskStore: PeriodicScheduleStore {
    /// See ``PeriodicScheduleStore/acquireSchedulerLease(holder:until:now:)``.
    public func acquireSchedulerLease(holder: String, until: Double, now: Double) async throws -> Bool {
        let ms = max(1, Int(((until - now) * 1000).rounded(.up)))
        return try await run(
            RedisScripts.acquireSchedulerLease,
            [
                .string(holder), .string(RedisRecordCoding.text(until)), .string(RedisRecordCoding.text(now)),
                .string(String(ms)),
            ]
        ).int == 1
    }

    /// See ``PeriodicScheduleStore/releaseSchedulerLease(holder:)``.
    public func releaseSchedulerLease(holder: String) async throws {
        _ = try await run(RedisScripts.releaseSchedulerLease, [.string(holder)])
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
        let claimed = try await run(
            RedisScripts.claimPeriodicSlot, [.string(job), .string(RedisRecordCoding.text(slot))]).int == 1
        guard claimed else { return nil }
        do {
            return try await enqueue([task]).first
        } catch let error as TaskStoreError where error.code == .invalidArgument && error.message.contains("already used") {
            return nil
        }
    }
}
