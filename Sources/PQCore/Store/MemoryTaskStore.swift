import Synchronization

/// A task store held in this process: for tests, embedding, and the in-process engine.
///
/// All state sits behind one `Mutex`; every operation is a short critical section, so the
/// async methods never suspend for long. Tasks sit in an array in queue order (a purged task
/// leaves a hole until the next compaction) with a dictionary from id to position; the waiting
/// queues and the started set hold positions, so a claim looks up no id.
///
/// ```swift
/// let store = MemoryTaskStore()
/// let records = try await store.enqueue([NewTask(name: "add", kwargs: #"{"a":1}"#)])
/// ```
public final class MemoryTaskStore: TaskStore {
    /// Settings of a memory store.
    public struct Options: Sendable {
        /// Events kept for ``events(after:limit:)``; older ones are dropped.
        public var maxEvents: Int
        /// Creates options.
        /// - Parameter maxEvents: events kept, 10,000 by default.
        public init(maxEvents: Int = 10_000) {
            self.maxEvents = maxEvents
        }
    }

    struct WaitEntry: Comparable, Sendable {
        var eta: Double
        var timeQueued: Double
        /// The task's position in ``State/slots``.
        var order: Int

        static func < (a: WaitEntry, b: WaitEntry) -> Bool {
            if a.eta != b.eta { return a.eta < b.eta }
            if a.timeQueued != b.timeQueued { return a.timeQueued < b.timeQueued }
            return a.order < b.order
        }
    }

    struct StoredEvent {
        var kind: TaskEventKind
        var record: TaskRecord?
        /// The JSON of an event that is not about a task.
        var payload: String? = nil
    }

    struct State: Sendable {
        /// Every task kept, in queue order; nil where one was purged (compacted lazily).
        var slots: [TaskRecord?] = []
        /// Task id → position in `slots`; the purged holes are the slots it does not count.
        var index: [String: Int] = [:]
        var waiting: [String: MinHeap<WaitEntry>] = [:]
        /// Positions of STARTED tasks.
        var started: Set<Int> = []
        var startedByJob: [String: Int] = [:]
        var overlap: [String: String] = [:]  // name \0 kwargs → id, for active tasks with canOverlap == false
        var events: [StoredEvent] = []
        var eventHead = 0  // index of the oldest kept event in `events` (ring)
        var firstSeq: Int64 = 1  // seq of the oldest kept event
        var nextSeq: Int64 = 1
        var published: [String: (time: Double, jobs: [JobInfo])] = [:]
        var hostStatus: [String: (time: Double, json: String)] = [:]
        var periodic = PeriodicState()
        var closed = false
    }

    let state = Mutex(State())
    private let broadcaster = ChangeBroadcaster()
    private let options: Options

    /// Creates an empty store.
    /// - Parameter options: settings.
    public init(options: Options = Options()) {
        self.options = options
    }

    /// Runs `body` under the lock, then signals the change (see
    /// ``ChangeBroadcaster/signal(claimOnly:)`` for `claimOnly`).
    func write<T>(claimOnly: Bool = false, _ body: (inout State) throws -> T) throws -> T {
        let result = try state.withLock { (state) throws -> T in
            guard !state.closed else { throw TaskStoreError(.closed, "the memory store was closed") }
            return try body(&state)
        }
        broadcaster.signal(claimOnly: claimOnly)
        return result
    }

    /// Runs `body` under the lock without signalling a change: for writes that make no task
    /// claimable and that no follower waits for (a lease renewed, stale heap heads dropped, a
    /// host's job list).
    func writeQuietly<T>(_ body: (inout State) throws -> T) throws -> T {
        try state.withLock { (state) throws -> T in
            guard !state.closed else { throw TaskStoreError(.closed, "the memory store was closed") }
            return try body(&state)
        }
    }

    /// Runs `body` under the lock with the state as it is (a read changes nothing).
    func read<T>(_ body: (State) throws -> T) throws -> T {
        try state.withLock { (state) throws -> T in
            guard !state.closed else { throw TaskStoreError(.closed, "the memory store was closed") }
            return try body(state)
        }
    }

    // MARK: - State helpers (called under the lock)

    private func record(_ kind: TaskEventKind, _ record: TaskRecord, in state: inout State) {
        append(StoredEvent(kind: kind, record: record), in: &state)
    }

    private func append(_ event: StoredEvent, in state: inout State) {
        if state.events.count < options.maxEvents {
            state.events.append(event)
        } else {
            state.events[state.eventHead] = event
            state.eventHead = (state.eventHead + 1) % state.events.count
            state.firstSeq += 1
        }
        state.nextSeq += 1
    }

    private func overlapKey(_ record: TaskRecord) -> String { record.name + "\u{0}" + record.kwargs }

    private func pushWaiting(_ record: TaskRecord, order: Int, in state: inout State) {
        let entry = WaitEntry(eta: record.eta, timeQueued: record.timeQueued, order: order)
        state.waiting[record.queue, default: MinHeap()].push(entry)
    }

    /// What a task was before a change: what ``reindex(from:_:at:in:)`` needs of it.
    private struct Prior {
        var status: TaskStatus
        var eta: Double
    }

    /// Changes the record at `position` in place when `body` returns true, and returns what it
    /// was before; nil when no task is there or `body` returned false. `body` must leave the
    /// record as it was when it returns false or throws (TaskEngine's transitions throw before
    /// they change anything), so nothing is copied to undo it.
    private func change(
        at position: Int, in state: inout State, _ body: (inout TaskRecord) throws(TaskStoreError) -> Bool
    ) throws(TaskStoreError) -> Prior? {
        var prior: Prior?
        try Self.modify(&state.slots[position]) { (record) throws(TaskStoreError) in
            let before = Prior(status: record.status, eta: record.eta)
            if try body(&record) { prior = before }
        }
        return prior
    }

    /// Runs `body` on the record in `slot`, in place, unless the slot is empty.
    private static func modify(
        _ slot: inout TaskRecord?, _ body: (inout TaskRecord) throws(TaskStoreError) -> Void
    ) throws(TaskStoreError) {
        guard case .some = slot else { return }
        try body(&slot!)
    }

    /// Stores `new` at `position` in place of `old`, keeping the indexes right, and records the
    /// event.
    private func update(at position: Int, from old: TaskRecord, to new: TaskRecord, in state: inout State) {
        state.slots[position] = new
        reindex(from: Prior(status: old.status, eta: old.eta), new, at: position, in: &state)
    }

    /// Keeps the indexes right after the task at `position` changed from `prior` to `new`, and
    /// records the event.
    private func reindex(from prior: Prior, _ new: TaskRecord, at position: Int, in state: inout State) {
        if prior.status == .started, new.status != .started {
            state.started.remove(position)
            state.startedByJob[new.name, default: 1] -= 1
        } else if prior.status != .started, new.status == .started {
            state.started.insert(position)
            state.startedByJob[new.name, default: 0] += 1
        }
        if new.status.isWaiting, !prior.status.isWaiting || prior.eta != new.eta {
            pushWaiting(new, order: position, in: &state)
        }
        if !new.canOverlap, new.status.isReady {
            let key = overlapKey(new)
            if state.overlap[key] == new.id { state.overlap.removeValue(forKey: key) }
        }
        if prior.status != new.status || new.status == .retry {
            record(TaskEventKind(for: new.status), new, in: &state)
        }
    }

    // MARK: - TaskStore

    /// See ``TaskQueueStore/enqueue(_:)``.
    public func enqueue(_ tasks: [NewTask]) async throws -> [TaskRecord] {
        for task in tasks { try TaskEngine.validate(task) }
        let now = TaskClock.now()
        return try write { state in try insert(tasks, now: now, in: &state) }
    }

    /// Queues validated tasks under the lock (shared with the periodic scheduler ability).
    func insert(_ tasks: [NewTask], now: Double, in state: inout State) throws -> [TaskRecord] {
        var out: [TaskRecord] = []
        out.reserveCapacity(tasks.count)
        for task in tasks {
            var record = TaskEngine.newRecord(task, now: now)
            if !record.canOverlap {
                let key = overlapKey(record)
                if let twinID = state.overlap[key], let twin = state.index[twinID].flatMap({ state.slots[$0] }),
                    TaskStatus.activeStates.contains(twin.status)
                {
                    out.append(twin)
                    continue
                }
                state.overlap[key] = record.id
            }
            if state.index[record.id] != nil {
                throw TaskStoreError(.invalidArgument, "task id \(record.id) is already used", taskID: record.id)
            }
            record.status = .queued
            let order = state.slots.count
            record.storeSlot.position = order
            state.slots.append(record)
            state.index[record.id] = order
            pushWaiting(record, order: order, in: &state)
            self.record(.queued, record, in: &state)
            out.append(record)
        }
        return out
    }

    /// See ``TaskQueueStore/claim(_:)``.
    public func claim(_ request: ClaimRequest) async throws -> [TaskRecord] {
        guard request.limit > 0 else { return [] }
        return try write(claimOnly: true) { state in try claim(request, in: &state) }
    }

    /// See ``TaskQueueStore/finish(_:thenClaim:)``: both under one lock.
    public func finish(_ outcomes: [TaskOutcome], thenClaim request: ClaimRequest?) async throws -> [TaskRecord] {
        try write { state in
            _ = try finish(outcomes, in: &state, collect: false)
            guard let request, request.limit > 0 else { return [] }
            return try claim(request, in: &state)
        }
    }

    private func claim(_ request: ClaimRequest, in state: inout State) throws -> [TaskRecord] {
        var claimed: [TaskRecord] = []
        claimed.reserveCapacity(min(request.limit, 256))
        var setAside: [(String, WaitEntry)] = []
        let queues = request.queues.map { Array($0) } ?? Array(state.waiting.keys)
        while claimed.count < request.limit {
            // The earliest due entry across the queues asked for.
            var best: (queue: String, entry: WaitEntry)?
            for queue in queues {
                guard let top = state.waiting[queue]?.peek, top.eta <= request.now else { continue }
                if best == nil || top < best!.entry { best = (queue, top) }
            }
            guard let (queue, entry) = best else { break }
            _ = state.waiting[queue]!.pop()
            // The slot is looked at and changed in place, found by position.
            var setAsideEntry = false
            let startedByJob = state.startedByJob
            let prior = try change(at: entry.order, in: &state) { (record) throws(TaskStoreError) -> Bool in
                guard record.status.isWaiting, record.eta == entry.eta else { return false }  // stale entry
                if TaskEngine.isExpired(record, now: request.now) {
                    try TaskEngine.expire(&record, now: request.now)
                    return true
                }
                if let jobs = request.jobs, !jobs.contains(record.name) {
                    setAsideEntry = true
                    return false
                }
                if let limit = record.maxConcurrency, startedByJob[record.name, default: 0] >= limit {
                    setAsideEntry = true
                    return false
                }
                try TaskEngine.claim(&record, request)
                return true
            }
            if setAsideEntry { setAside.append((queue, entry)) }
            guard let prior else { continue }
            let new = state.slots[entry.order]!
            reindex(from: prior, new, at: entry.order, in: &state)
            if new.status == .started { claimed.append(new) }
        }
        for (queue, entry) in setAside { state.waiting[queue]!.push(entry) }
        return claimed
    }

    /// See ``TaskQueueStore/renew(ids:worker:leaseUntil:)``.
    public func renew(ids: [String], worker: String, leaseUntil: Double) async throws -> Set<String> {
        try writeQuietly { state in
            var cancel: Set<String> = []
            for id in ids {
                guard let position = state.index[id], let record = state.slots[position],
                    TaskEngine.owns(record, worker: worker)
                else {
                    cancel.insert(id)
                    continue
                }
                state.slots[position]!.leaseExpires = leaseUntil
                if record.cancelRequested { cancel.insert(id) }
            }
            return cancel
        }
    }

    /// See ``TaskQueueStore/finish(_:)``.
    public func finish(_ outcomes: [TaskOutcome]) async throws -> [TaskRecord] {
        try write { state in try finish(outcomes, in: &state) }
    }

    private func finish(_ outcomes: [TaskOutcome], in state: inout State, collect: Bool = true) throws -> [TaskRecord] {
        var out: [TaskRecord] = []
        if collect { out.reserveCapacity(outcomes.count) }
        for outcome in outcomes {
            guard let position = position(of: outcome, in: state) else { continue }
            let prior = try change(at: position, in: &state) { (record) throws(TaskStoreError) -> Bool in
                guard TaskEngine.owns(record, worker: outcome.worker) else { return false }
                try TaskEngine.apply(outcome, to: &record)
                return true
            }
            guard let prior else { continue }
            let new = state.slots[position]!
            reindex(from: prior, new, at: position, in: &state)
            if collect { out.append(new) }
        }
        return out
    }

    /// Where the outcome's task is: at the position its record carried when it still holds that
    /// task (no id lookup), else wherever the index says.
    private func position(of outcome: TaskOutcome, in state: State) -> Int? {
        let hint = outcome.storeSlot.position
        if hint >= 0, hint < state.slots.count, state.slots[hint]?.id == outcome.id { return hint }
        return state.index[outcome.id]
    }

    /// See ``TaskQueueStore/recoverExpiredLeases(now:maxDeadRuns:)``.
    public func recoverExpiredLeases(now: Double, maxDeadRuns: Int) async throws -> [TaskRecord] {
        try recover(now: now, maxDeadRuns: maxDeadRuns) { ($0.leaseExpires ?? 0) < now }
    }

    /// See ``TaskQueueStore/recoverWorker(_:now:maxDeadRuns:)``.
    public func recoverWorker(_ worker: String, now: Double, maxDeadRuns: Int) async throws -> [TaskRecord] {
        try recover(now: now, maxDeadRuns: maxDeadRuns) { $0.worker == worker }
    }

    private func recover(now: Double, maxDeadRuns: Int, _ match: (TaskRecord) -> Bool) throws -> [TaskRecord] {
        let hasWork = try read { state in state.started.contains { state.slots[$0].map(match) ?? false } }
        guard hasWork else { return [] }
        return try write { state in
            let victims = state.started.compactMap { position in state.slots[position].map { (position, $0) } }
                .filter { match($0.1) }.sorted { $0.1.eta < $1.1.eta }
            var out: [TaskRecord] = []
            for (position, old) in victims {
                var new = old
                try TaskEngine.recover(&new, now: now, maxDeadRuns: maxDeadRuns)
                update(at: position, from: old, to: new, in: &state)
                out.append(new)
            }
            return out
        }
    }

    /// See ``TaskQueueStore/task(id:)``.
    public func task(id: String) async throws -> TaskRecord? {
        try read { state in state.index[id].flatMap { state.slots[$0] } }
    }

    /// See ``TaskQueueStore/tasks(status:job:queue:limit:)``.
    public func tasks(status: TaskStatus?, job: String?, queue: String?, limit: Int) async throws -> [TaskRecord] {
        try read { state in
            var out: [TaskRecord] = []
            if status == .started {
                // The index of started tasks, not a walk over every task ever queued.
                let found = state.started.sorted(by: >).compactMap { position -> TaskRecord? in
                    guard let record = state.slots[position], job == nil || record.name == job else { return nil }
                    if let queue, record.queue != queue { return nil }
                    return record
                }
                return Array(found.prefix(limit))
            }
            for slot in state.slots.reversed() {
                guard out.count < limit else { break }
                guard let record = slot else { continue }
                if let status, record.status != status { continue }
                if let job, record.name != job { continue }
                if let queue, record.queue != queue { continue }
                out.append(record)
            }
            return out
        }
    }

    /// See ``TaskQueueStore/revoke(id:now:)``.
    public func revoke(id: String, now: Double) async throws -> RevokeOutcome {
        try write { state in
            guard let position = state.index[id], let old = state.slots[position] else { return .notFound }
            switch old.status {
            case .queued, .retry:
                var new = old
                try TaskEngine.revoke(&new, now: now)
                update(at: position, from: old, to: new, in: &state)
                return .revoked(new)
            case .started:
                state.slots[position]!.cancelRequested = true
                return .cancelRequested
            case .revoked, .failure, .success:
                return .alreadyFinished(old.status)
            }
        }
    }

    /// See ``TaskQueueStore/queueSizes(now:)``.
    public func queueSizes(now: Double) async throws -> [QueueSize] {
        try read { state in
            var sizes: [String: QueueSize] = [:]
            for case let record? in state.slots {
                guard !record.status.isReady else { continue }
                var size = sizes[record.queue] ?? QueueSize(queue: record.queue)
                switch record.status {
                case .queued where record.eta > now: size.delayed += 1
                case .queued: size.queued += 1
                case .retry: size.retry += 1
                case .started: size.started += 1
                default: break
                }
                sizes[record.queue] = size
            }
            return sizes.values.sorted { $0.queue < $1.queue }
        }
    }

    /// See ``TaskQueueStore/nextDue(queues:jobs:)``.
    public func nextDue(queues: Set<String>?, jobs: Set<String>?) async throws -> Double? {
        try writeQuietly { state in
            var best: Double?
            for (queue, heap) in state.waiting where queues?.contains(queue) ?? true {
                if jobs == nil {
                    // Drop stale heads so the answer is exact.
                    while let top = state.waiting[queue]!.peek {
                        if let record = state.slots[top.order],
                            record.status.isWaiting, record.eta == top.eta
                        {
                            break
                        }
                        _ = state.waiting[queue]!.pop()
                    }
                    if let eta = state.waiting[queue]!.peek?.eta { best = min(best ?? eta, eta) }
                } else {
                    for entry in heap.elements {
                        guard let record = state.slots[entry.order],
                            record.status.isWaiting, record.eta == entry.eta,
                            jobs?.contains(record.name) ?? true
                        else { continue }
                        best = min(best ?? entry.eta, entry.eta)
                    }
                }
            }
            return best
        }
    }

    /// See ``TaskQueueStore/purge(finishedBefore:)``.
    public func purge(finishedBefore: Double) async throws -> Int {
        try write { state in
            var count = 0
            for position in state.slots.indices {
                guard let record = state.slots[position], record.status.isReady,
                    (record.timeEnded ?? .infinity) < finishedBefore
                else { continue }
                state.slots[position] = nil
                state.index.removeValue(forKey: record.id)
                count += 1
            }
            if state.slots.count - state.index.count > state.slots.count / 2 { compact(&state) }
            return count
        }
    }

    /// Closes the holes purged tasks left: positions change, so the index, the waiting queues and
    /// the started set are rebuilt (their order is kept, so is the queue order).
    private func compact(_ state: inout State) {
        state.slots.removeAll { $0 == nil }
        state.index.removeAll(keepingCapacity: true)
        state.started.removeAll(keepingCapacity: true)
        state.waiting.removeAll()
        for position in state.slots.indices {
            state.slots[position]!.storeSlot.position = position
            let record = state.slots[position]!
            state.index[record.id] = position
            if record.status == .started { state.started.insert(position) }
            if record.status.isWaiting { pushWaiting(record, order: position, in: &state) }
        }
    }

    /// See ``HostDirectory/publishJobs(host:jobs:)``.
    public func publishJobs(host: String, jobs: [JobInfo]) async throws {
        let now = TaskClock.now()
        try writeQuietly { $0.published[host] = (now, jobs) }
    }

    /// See ``HostDirectory/publishedJobs()``.
    public func publishedJobs() async throws -> [JobInfo] {
        try read { state in
            var byName: [String: (Double, JobInfo)] = [:]
            for (_, entry) in state.published {
                for job in entry.jobs where (byName[job.name]?.0 ?? -.infinity) <= entry.time {
                    byName[job.name] = (entry.time, job)
                }
            }
            return byName.values.map(\.1).sorted { $0.name < $1.name }
        }
    }

    /// See ``TaskEventLog/events(after:limit:)``.
    public func events(after cursor: Int64, limit: Int) async throws -> [TaskEvent] {
        try read { state in
            let start = max(cursor + 1, state.firstSeq)
            guard start < state.nextSeq, limit > 0 else { return [] }
            let end = min(state.nextSeq, start + Int64(limit))
            var out: [TaskEvent] = []
            for seq in start..<end {
                let index = (state.eventHead + Int(seq - state.firstSeq)) % state.events.count
                let stored = state.events[index]
                out.append(
                    TaskEvent(
                        seq: seq, kind: stored.kind, taskID: stored.record?.id ?? "",
                        status: stored.record?.status ?? .queued,
                        taskJSON: stored.record?.json() ?? stored.payload ?? "{}"))
            }
            return out
        }
    }

    /// See ``HostDirectory/publishHostStatus(worker:json:)``.
    public func publishHostStatus(worker: String, json: String) async throws {
        try write { $0.hostStatus[worker] = (TaskClock.now(), json) }
    }

    /// See ``HostDirectory/hostStatuses(since:)``.
    public func hostStatuses(since: Double) async throws -> [String] {
        try read { state in
            state.hostStatus.values.filter { $0.time >= since }.sorted { $0.time > $1.time }.map(\.json)
        }
    }

    /// See ``TaskEventLog/recordEvent(_:json:)``.
    public func recordEvent(_ kind: TaskEventKind, json: String) async throws {
        try write { state in append(StoredEvent(kind: kind, record: nil, payload: json), in: &state) }
    }

    /// See ``TaskEventLog/lastEventCursor()``.
    public func lastEventCursor() async throws -> Int64 {
        try read { $0.nextSeq - 1 }
    }

    /// See ``TaskQueueStore/observeChanges(_:)``.
    public func observeChanges(_ handler: @escaping @Sendable () -> Void) -> ChangeObservation {
        broadcaster.observe(handler)
    }

    /// See ``TaskQueueStore/changes()``.
    public func changes() -> AsyncStream<Void> {
        broadcaster.stream()
    }

    /// See ``TaskQueueStore/close()``.
    public func close() async {
        state.withLock { $0.closed = true }
        broadcaster.finish()
    }
}

/// A min-priority queue ordered by the element's `<`: a binary heap, plus a sorted run for
/// elements pushed in order.
///
/// Tasks queued without a delay arrive in order (eta, then queue time, then order), so they are
/// appended to the run and popped from its front in O(1); only out-of-order pushes (delays,
/// retries, entries set aside) pay the heap's O(log n) with its cache misses.
struct MinHeap<Element: Comparable & Sendable>: Sendable {
    private var items: [Element] = []
    /// Sorted ascending from `runHead`; elements before `runHead` were popped.
    private var run: [Element] = []
    private var runHead = 0

    private func less(_ a: Element, _ b: Element) -> Bool { a < b }

    /// Whether the smallest element is the run's first.
    private var runFirst: Bool {
        guard runHead < run.count else { return false }
        guard let top = items.first else { return true }
        return !less(top, run[runHead])
    }

    var peek: Element? { runFirst ? run[runHead] : items.first }
    /// All elements, in no particular order.
    var elements: [Element] { items + run[runHead...] }
    var count: Int { items.count + run.count - runHead }

    mutating func push(_ item: Element) {
        if runHead == run.count {
            run.removeAll(keepingCapacity: true)
            runHead = 0
        }
        if run.isEmpty || !less(item, run[run.count - 1]) {
            run.append(item)
            return
        }
        items.append(item)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard less(items[child], items[parent]) else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> Element? {
        if runFirst {
            let top = run[runHead]
            runHead += 1
            if runHead > 1024 && runHead * 2 > run.count {
                run.removeFirst(runHead)
                runHead = 0
            }
            return top
        }
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            guard left < items.count else { break }
            var smallest = left
            if left + 1 < items.count, less(items[left + 1], items[left]) { smallest = left + 1 }
            guard less(items[smallest], items[parent]) else { break }
            items.swapAt(smallest, parent)
            parent = smallest
        }
        return top
    }
}
