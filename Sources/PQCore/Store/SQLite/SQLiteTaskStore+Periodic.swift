extension SQLiteTaskStore: PeriodicScheduleStore {
    /// See ``PeriodicScheduleStore/acquireSchedulerLease(holder:until:now:)``. One row in
    /// `scheduler_lease`, taken with an upsert that only overwrites the same holder or an ended lease.
    public func acquireSchedulerLease(holder: String, until: Double, now: Double) async throws -> Bool {
        try await writer.perform { db in
            let s = try db.statement(
                """
                INSERT INTO scheduler_lease (id, holder, lease_until) VALUES (1, ?1, ?2)
                ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, lease_until = excluded.lease_until
                WHERE scheduler_lease.holder = excluded.holder OR scheduler_lease.lease_until < ?3
                """)
            s.bind(1, holder)
            s.bind(2, until)
            s.bind(3, now)
            try s.run()
            return db.changes == 1
        }
    }

    /// See ``PeriodicScheduleStore/releaseSchedulerLease(holder:)``.
    public func releaseSchedulerLease(holder: String) async throws {
        try await writer.perform { db in
            let s = try db.statement("DELETE FROM scheduler_lease WHERE id = 1 AND holder = ?")
            s.bind(1, holder)
            try s.run()
        }
    }

    /// See ``PeriodicScheduleStore/lastPeriodicRuns()``.
    public func lastPeriodicRuns() async throws -> [String: Double] {
        try await reader.perform { db in
            let s = try db.statement("SELECT name, last_run FROM periodic_runs")
            defer { s.reset() }
            var out: [String: Double] = [:]
            while try s.step() { out[s.string(0) ?? ""] = s.double(1) }
            return out
        }
    }

    /// See ``PeriodicScheduleStore/queuePeriodicRun(job:slot:task:)``. The compare, the insert and
    /// the new last run share the writer's transaction (`BEGIN IMMEDIATE`), which serialises
    /// schedulers in every process on the file.
    public func queuePeriodicRun(job: String, slot: Double, task: NewTask) async throws -> TaskRecord? {
        try TaskEngine.validate(task)
        let trimmer = self.trimmer
        return try await writer.perform { db -> TaskRecord? in
            let check = try db.statement("SELECT last_run FROM periodic_runs WHERE name = ?")
            check.bind(1, job)
            let last = try check.step() ? check.double(0) : nil
            check.reset()
            if let last, last >= slot { return nil }
            let now = TaskClock.now()
            var record = TaskEngine.newRecord(task, now: now)
            if !record.canOverlap, let twin = try Self.overlapTwin(record, db) {
                record = twin
            } else {
                try Self.insert(record, db)
                try Self.recordEvent(.queued, record, db, trimmer)
            }
            let mark = try db.statement(
                """
                INSERT INTO periodic_runs (name, last_run, task_id, queued_at) VALUES (?, ?, ?, ?)
                ON CONFLICT (name) DO UPDATE SET last_run = excluded.last_run, task_id = excluded.task_id,
                queued_at = excluded.queued_at
                """)
            mark.bind(1, job)
            mark.bind(2, slot)
            mark.bind(3, record.id)
            mark.bind(4, now)
            try mark.run()
            return record
        }
    }
}
