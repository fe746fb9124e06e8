import CPQSystem
import Foundation
import Glibc
import Logging
import Synchronization

/// Runs tasks in worker processes that it starts and supervises (DESIGN.md section 12).
///
/// Calls go to the worker with the fewest calls per thread, as frames on its socket; outcomes,
/// log lines and child tasks come back the same way. One I/O thread polls every worker's socket
/// and stderr, writes what did not fit in a socket at once, sends heartbeats and starts workers
/// (from a thread that lives as long as the host, so the workers' parent-death signal holds).
///
/// A worker that dies costs only the call it ran alone: the run table it shares with the host
/// tells which calls were running. Calls queued in it run again elsewhere, uncharged; calls
/// that ran beside others are suspects, re-run one at a time in a worker of their own, so the
/// culprit is found and charged. A replacement worker starts at once.
final class ProcessExecutor: @unchecked Sendable {
    // @unchecked: mutable state is in `state`; `thread` is set once before any use.
    struct Options: Sendable {
        /// Worker processes to keep (`--workers`).
        var workers: Int
        /// Threads across all workers (`--concurrent-tasks`), split between them.
        var threads: Int
        /// Seconds between the last message of a worker and its kill as hung.
        var heartbeatTimeout: Double = 5
        /// Calls after which a worker is replaced (0: never).
        var maxTasksPerWorker: Int = 0
        /// Resident KiB past which a worker is replaced (0: never).
        var maxWorkerMemoryKB: UInt64 = 0
        /// The pq binary.
        var executable: String
        /// Whether workers run the trust check on what they load.
        var checkTrust: Bool = true
        /// Entries of each worker's run table: calls that may run at once in one worker.
        var tableSize: Int = 1024
        /// Start workers only when the first call comes (most tasks run on threads).
        var lazy = false
    }

    /// What the executor tells the worker pool.
    struct Delegate: Sendable {
        var ended: @Sendable (WorkerPool.Execution, RunEnd) -> Void
        var began: @Sendable (WorkerPool.Execution) -> Void
        var log: @Sendable (String, Int32, String) -> Void
        var submit: @Sendable (_ parent: String, _ childID: String, _ job: String, _ kwargs: String) -> Void
        var workerLost: @Sendable (_ eventJSON: String) -> Void
    }

    enum Phase: String { case starting, ready, draining }

    /// Why the host killed a worker.
    enum Kill {
        /// A call ignored its stop past the grace (token, task id); that call is already decided.
        case forced(UInt32, String)
        /// No message within the heartbeat timeout.
        case hung(Double)
    }

    struct Worker {
        let id: Int
        let pid: pid_t
        let socket: Int32
        var stderr: Int32
        let table: RunTable
        let epoch: Int
        let threads: Int
        var phase: Phase = .starting
        var inflight: [UInt32: WorkerPool.Execution] = [:]
        /// A suspect running alone here: nothing else is sent while it runs.
        var solo: UInt32?
        var out = FrameEncoder()
        var decoder = FrameDecoder()
        var completed = 0
        var rssKB: UInt64 = 0
        var lastHeard: Double
        var lastPing: Double = 0
        var pingSeq: UInt32 = 0
        var output = LineTail(limit: 20)
        var kill: Kill?
        let started: Double
        var closed = false
    }

    struct Placement {
        var worker: Int
        var token: UInt32
    }

    struct State {
        var workers: [Int: Worker] = [:]
        var nextWorkerID = 1
        var nextToken: UInt32 = 1
        var pending: [WorkerPool.Execution] = []
        var pendingHead = 0
        var suspects: [WorkerPool.Execution] = []
        /// Task ids of suspects (not yet cleared by a run alone).
        var suspectIDs: Set<String> = []
        var placements: [ObjectIdentifier: Placement] = [:]
        var plugins: [WorkerSetup.Plugin] = []
        var epoch = 0
        var stopping = false
        var closed = false
        /// Workers that died before they were ready, in a row (spawns back off).
        var failedStarts = 0
        var nextSpawn = 0.0
        var delegate: Delegate?
        var lost: [String] = []
        var started = 0
        var readyTimes: [Double] = []
        /// Whether workers should run (false until the first call when lazy).
        var wanted = true
    }

    let options: Options
    let logger: Logger
    private let state = Mutex(State())
    private let wakeFD: Int32
    private var thread: Thread?
    private let exited = Mutex(false)

    init(options: Options, logger: Logger) {
        var o = options
        o.workers = max(1, min(options.workers, options.threads))
        self.options = o
        self.logger = logger
        wakeFD = pq_eventfd()
    }

    deinit {
        close(wakeFD)
    }

    /// Starts the I/O thread and the workers for `plugins`.
    func start(plugins: [WorkerSetup.Plugin], delegate: Delegate) {
        state.withLock {
            $0.plugins = plugins
            $0.delegate = delegate
            $0.wanted = !options.lazy
        }
        let thread = Thread { [self] in ioLoop() }
        thread.name = "pq-workers"
        thread.stackSize = 1 << 20
        self.thread = thread
        thread.start()
    }

    private func wake() {
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    /// Threads of the `index`th worker: the host-wide count split as evenly as it goes.
    private func threads(of index: Int) -> Int {
        let n = options.workers
        return options.threads / n + (index < options.threads % n ? 1 : 0)
    }

    // MARK: the pool's side

    /// Sends each execution to a worker (or keeps it until one is ready).
    func run(_ executions: [WorkerPool.Execution]) {
        guard !executions.isEmpty else { return }
        var ends: [(WorkerPool.Execution, RunEnd)] = []
        let delegate = state.withLock { s -> Delegate? in
            if s.stopping {
                ends = executions.map { ($0, .notStarted) }
            } else {
                if !s.wanted {
                    s.wanted = true
                    wake()
                }
                s.pending.append(contentsOf: executions)
                assign(&s)
            }
            return s.delegate
        }
        for (e, end) in ends { delegate?.ended(e, end) }
    }

    /// Asks a running call to stop (its `cancel`); one not sent yet ends at once, not started.
    func cancel(_ execution: WorkerPool.Execution) {
        let (delegate, notStarted) = state.withLock { s -> (Delegate?, Bool) in
            let key = ObjectIdentifier(execution)
            if let p = s.placements[key] {
                if s.workers[p.worker] != nil {
                    s.workers[p.worker]!.out.append(.cancel(token: p.token))
                    flush(&s, p.worker)
                }
                return (s.delegate, false)
            }
            return (s.delegate, removeWaiting(&s, execution))
        }
        if notStarted { delegate?.ended(execution, .notStarted) }
    }

    /// A call ignored its stop for the grace period: kill its worker. The pool records the
    /// call's outcome itself; the other calls of that worker run again elsewhere, uncharged.
    func forceStop(_ execution: WorkerPool.Execution) {
        let (delegate, notStarted) = state.withLock { s -> (Delegate?, Bool) in
            let key = ObjectIdentifier(execution)
            guard let p = s.placements.removeValue(forKey: key), var w = s.workers[p.worker] else {
                return (s.delegate, removeWaiting(&s, execution))
            }
            w.inflight[p.token] = nil
            if w.kill == nil { w.kill = .forced(p.token, execution.record.id) }
            s.workers[p.worker] = w
            Glibc.kill(w.pid, SIGKILL)
            return (s.delegate, false)
        }
        if notStarted { delegate?.ended(execution, .notStarted) }
    }

    private func removeWaiting(_ s: inout State, _ execution: WorkerPool.Execution) -> Bool {
        if let i = s.pending[s.pendingHead...].firstIndex(where: { $0 === execution }) {
            s.pending.remove(at: i)
            return true
        }
        if let i = s.suspects.firstIndex(where: { $0 === execution }) {
            s.suspects.remove(at: i)
            s.suspectIDs.remove(execution.record.id)
            return true
        }
        return false
    }

    /// New plugin generations: new workers load them; the old ones finish their calls (calls
    /// they have not started come back) and exit, which gives their memory back.
    func reload(plugins: [WorkerSetup.Plugin]) {
        let obsolete = state.withLock { s -> [String]? in
            // A rescan that changed nothing here (a file that failed to load) keeps the workers.
            guard s.plugins != plugins else { return nil }
            let old = Set(s.plugins.map(\.image))
            s.plugins = plugins
            s.epoch += 1
            for id in Array(s.workers.keys) where s.workers[id]!.epoch < s.epoch && s.workers[id]!.phase != .draining {
                s.workers[id]!.phase = .draining
                s.workers[id]!.out.append(.drain)
                flush(&s, id)
            }
            return Array(old.subtracting(plugins.map(\.image)))
        }
        guard let obsolete else { return }
        // Old workers mapped their own copies already; snapshots of superseded generations go.
        for image in obsolete where image.contains("/pq-host-") { unlink(image) }
        wake()
    }

    /// Stops taking calls: what comes back from now on ends as not started.
    func beginShutdown() {
        let (delegate, waiting) = state.withLock { s -> (Delegate?, [WorkerPool.Execution]) in
            s.stopping = true
            let waiting = Array(s.pending[s.pendingHead...]) + s.suspects
            s.pending = []
            s.pendingHead = 0
            s.suspects = []
            s.suspectIDs = []
            return (s.delegate, waiting)
        }
        for e in waiting { delegate?.ended(e, .notStarted) }
    }

    /// Lets every worker go (drain, then exit) and waits for them, killing what is left after
    /// `patience` seconds.
    func shutdown(patience: Double = 2) async {
        beginShutdown()
        state.withLock { s in
            s.closed = true
            for id in Array(s.workers.keys) {
                s.workers[id]!.phase = .draining
                s.workers[id]!.out.append(.drain)
                flush(&s, id)
            }
        }
        wake()
        let deadline = Date().addingTimeInterval(patience)
        while !exited.withLock({ $0 }) {
            if Date() >= deadline {
                let pids = state.withLock { s in s.workers.values.map(\.pid) }
                for pid in pids { kill(pid, SIGKILL) }
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// The workers, for the host status: pid, calls run, resident memory, phase.
    var workerStatus: JSONValue {
        let workers = state.withLock { s in s.workers.values.sorted { $0.id < $1.id } }
        return .array(
            workers.map { w in
                .object([
                    ("pid", .int(Int64(w.pid))), ("tasks", .int(Int64(w.completed))), ("rss_kb", .int(Int64(w.rssKB))),
                    ("state", .string(w.phase.rawValue)), ("running", .int(Int64(w.inflight.count))),
                ])
            })
    }

    /// Seconds from spawn to ready of the workers started so far (for the bench).
    var readyTimes: [Double] { state.withLock { $0.readyTimes } }

    // MARK: placing calls

    /// Sends waiting calls to ready workers: suspects alone to an idle worker, the rest to the
    /// worker with the fewest calls per thread. Call with the lock held.
    private func assign(_ s: inout State) {
        guard !s.stopping else { return }
        var touched = Set<Int>()
        while let suspect = s.suspects.first {
            guard
                let id = s.workers.values.filter({ $0.phase == .ready && $0.epoch == s.epoch && $0.inflight.isEmpty })
                    .min(by: { $0.id < $1.id })?.id
            else { break }
            s.suspects.removeFirst()
            let token = send(&s, suspect, to: id)
            s.workers[id]!.solo = token
            touched.insert(id)
        }
        if s.pendingHead < s.pending.count {
            var candidates = s.workers.values.filter { $0.phase == .ready && $0.epoch == s.epoch && $0.solo == nil }.map(\.id)
            if !candidates.isEmpty {
                candidates.sort()
                while s.pendingHead < s.pending.count {
                    var best = candidates[0]
                    var bestLoad = Double.infinity
                    for id in candidates {
                        let w = s.workers[id]!
                        let load = Double(w.inflight.count) / Double(w.threads)
                        if load < bestLoad {
                            bestLoad = load
                            best = id
                        }
                    }
                    let e = s.pending[s.pendingHead]
                    s.pendingHead += 1
                    _ = send(&s, e, to: best)
                    touched.insert(best)
                }
                s.pending.removeAll(keepingCapacity: true)
                s.pendingHead = 0
            }
        }
        for id in touched { flush(&s, id) }
    }

    private func send(_ s: inout State, _ e: WorkerPool.Execution, to id: Int) -> UInt32 {
        let token = s.nextToken
        s.nextToken = s.nextToken == UInt32.max ? 1 : s.nextToken + 1
        let r = e.record
        let timed = r.timeout != nil
        s.workers[id]!.inflight[token] = e
        s.workers[id]!.out.append(
            .call(token: token, taskID: r.id, job: r.name, kwargs: r.kwargs, attempt: UInt32(clamping: r.retry), reportBegin: timed))
        s.placements[ObjectIdentifier(e)] = Placement(worker: id, token: token)
        if !timed { e.began.store(TaskClock.now().bitPattern, ordering: .releasing) }
        return token
    }

    /// Writes what a worker's buffer holds, as far as its socket takes it now; the I/O thread
    /// writes the rest when the socket has room. Call with the lock held.
    private func flush(_ s: inout State, _ id: Int) {
        guard var w = s.workers[id], !w.out.isEmpty, !w.closed else { return }
        let n = w.out.bytes.withUnsafeBytes { Glibc.send(w.socket, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
        if n > 0 { w.out.removeFirst(n) }
        let left = !w.out.isEmpty
        s.workers[id] = w
        if left { wake() }
    }

    // MARK: the I/O thread

    private func ioLoop() {
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            spawnMissing()
            let (fds, owners) = state.withLock { s -> ([pollfd], [(Int, Bool)]) in
                var fds = [pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
                var owners: [(Int, Bool)] = [(0, false)]
                for w in s.workers.values {
                    if !w.closed {
                        fds.append(pollfd(fd: w.socket, events: Int16(POLLIN) | (w.out.isEmpty ? 0 : Int16(POLLOUT)), revents: 0))
                        owners.append((w.id, false))
                    }
                    if w.stderr >= 0 {
                        fds.append(pollfd(fd: w.stderr, events: Int16(POLLIN), revents: 0))
                        owners.append((w.id, true))
                    }
                }
                return (fds, owners)
            }
            var polled = fds
            let r = poll(&polled, nfds_t(polled.count), 100)
            if r < 0 && errno != EINTR { usleep(10_000) }
            var calls: [() -> Void] = []
            if polled[0].revents != 0 {
                var value: UInt64 = 0
                _ = read(wakeFD, &value, 8)
            }
            for i in 1..<polled.count where polled[i].revents != 0 {
                let (id, isErr) = owners[i]
                if isErr {
                    let n = buffer.withUnsafeMutableBytes { read(polled[i].fd, $0.baseAddress, $0.count) }
                    stderrInput(id, n > 0 ? buffer[0..<n] : nil)
                    continue
                }
                if polled[i].revents & Int16(POLLOUT) != 0 {
                    state.withLock { s in flush(&s, id) }
                }
                if polled[i].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                    let n = buffer.withUnsafeMutableBytes { read(polled[i].fd, $0.baseAddress, $0.count) }
                    if n > 0 {
                        calls += buffer.withUnsafeBytes { input(id, UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                    } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                        calls += died(id)
                    }
                }
            }
            calls += heartbeats()
            for call in calls { call() }
            let done = state.withLock { s in s.closed && s.workers.isEmpty }
            if done {
                exited.withLock { $0 = true }
                return
            }
        }
    }

    /// Frames from a worker. Returns what to tell the pool, outside the lock.
    private func input(_ id: Int, _ bytes: UnsafeRawBufferPointer) -> [() -> Void] {
        var calls: [() -> Void] = []
        var broken = false
        state.withLock { s in
            guard var w = s.workers[id], let delegate = s.delegate else { return }
            w.decoder.append(bytes)
            w.lastHeard = TaskClock.now()
            var returned: [WorkerPool.Execution] = []
            var freed = false
            frames: while true {
                let frame: WorkerFrame?
                do { frame = try w.decoder.next() } catch {
                    logger.error("worker \(w.pid) sent a bad frame (\(error)); killing it")
                    broken = true
                    break frames
                }
                guard let frame else { break }
                switch frame {
                case .ready(let pid, let failures):
                    if w.phase == .starting { w.phase = .ready }
                    s.failedStarts = 0
                    s.readyTimes.append(TaskClock.now() - w.started)
                    for f in failures { logger.error("worker \(pid) could not load a plugin the host checked: \(f)") }
                    freed = true
                case .began(let token):
                    if let e = w.inflight[token] { calls.append { delegate.began(e) } }
                case .done(let token, let end):
                    guard let e = w.inflight.removeValue(forKey: token) else { continue }
                    s.placements[ObjectIdentifier(e)] = nil
                    freed = true
                    if w.solo == token {
                        w.solo = nil
                        s.suspectIDs.remove(e.record.id)
                    }
                    switch end {
                    case .completed(let outcome, let plugin, let version):
                        w.completed += 1
                        let info = PluginInfo(name: plugin, version: version, toolchain: "", path: "", generation: 0)
                        calls.append { delegate.ended(e, .completed(outcome, ranOn: info)) }
                    case .refused(let message, let plugin, let version):
                        let info = PluginInfo(name: plugin, version: version, toolchain: "", path: "", generation: 0)
                        calls.append { delegate.ended(e, .refused(message, ranOn: info)) }
                    case .unknownJob:
                        calls.append { delegate.ended(e, .unregistered) }
                    case .stopped:
                        calls.append { delegate.ended(e, .notStarted) }
                    case .returned:
                        returned.append(e)
                    }
                case .log(let taskID, let level, let message):
                    calls.append { delegate.log(taskID, Int32(level), message) }
                case .submit(let parent, let childID, let job, let kwargs):
                    calls.append { delegate.submit(parent, childID, job, kwargs) }
                case .pong(_, let rss, _):
                    w.rssKB = rss
                default:
                    break
                }
            }
            if !broken, w.phase == .ready, recycleDue(w) {
                w.phase = .draining
                w.out.append(.drain)
                logger.info("worker \(w.pid) is recycled after \(w.completed) tasks, \(w.rssKB / 1024) MiB resident; a new one starts")
            }
            s.workers[id] = w
            if !returned.isEmpty {
                if s.stopping {
                    for e in returned { calls.append { delegate.ended(e, .notStarted) } }
                } else {
                    s.pending.insert(contentsOf: returned, at: s.pendingHead)
                }
            }
            if freed || !returned.isEmpty { assign(&s) }
            flush(&s, id)
            if w.phase == .draining { wake() }
        }
        if broken {
            state.withLock { s in if let w = s.workers[id] { Glibc.kill(w.pid, SIGKILL) } }
        }
        return calls
    }

    private func recycleDue(_ w: Worker) -> Bool {
        if options.maxTasksPerWorker > 0 && w.completed >= options.maxTasksPerWorker { return true }
        if options.maxWorkerMemoryKB > 0 && w.rssKB > options.maxWorkerMemoryKB { return true }
        return false
    }

    private func stderrInput(_ id: Int, _ bytes: ArraySlice<UInt8>?) {
        state.withLock { s in
            guard var w = s.workers[id] else { return }
            guard let bytes else {
                close(w.stderr)
                w.stderr = -1
                s.workers[id] = w
                return
            }
            let lines = w.output.append(bytes)
            s.workers[id] = w
            for line in lines { FileHandle.standardError.write(Data("worker \(w.pid): \(line)\n".utf8)) }
        }
    }

    /// A worker's socket closed: reap it, settle its calls, start a replacement.
    private func died(_ id: Int) -> [() -> Void] {
        guard let (pid, stderrFD) = state.withLock({ s -> (pid_t, Int32)? in
            guard var w = s.workers[id] else { return nil }
            w.closed = true
            s.workers[id] = w
            return (w.pid, w.stderr)
        }) else { return [] }
        let status = WorkerSpawner.reap(pid, patience: 0.5)
        // The last words of the worker, for the log.
        if stderrFD >= 0 {
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                var fd = pollfd(fd: stderrFD, events: Int16(POLLIN), revents: 0)
                guard poll(&fd, 1, 0) > 0 else { break }
                let n = buffer.withUnsafeMutableBytes { read(stderrFD, $0.baseAddress, $0.count) }
                stderrInput(id, n > 0 ? buffer[0..<n] : nil)
                if n <= 0 { break }
            }
        }
        var calls: [() -> Void] = []
        state.withLock { s in
            guard let w = s.workers.removeValue(forKey: id), let delegate = s.delegate else { return }
            close(w.socket)
            if w.stderr >= 0 { close(w.stderr) }
            let described = WorkerSpawner.describe(status: status)
            var cause = described.cause
            var forcedToken: UInt32?
            var forcedTask = ""
            switch w.kill {
            case .forced(let token, let task)?:
                forcedToken = token
                forcedTask = task
                cause = "worker killed by the host: task \(task) ignored its cancel for the kill grace"
            case .hung(let seconds)?: cause = "worker stopped answering (no heartbeat for \(formatSeconds(seconds)) s); killed"
            case nil: break
            }
            let planned = w.phase == .draining && described.exitStatus == 0 && w.kill == nil
            if w.phase == .starting && !planned {
                s.failedStarts += 1
                s.nextSpawn = TaskClock.now() + min(5, 0.1 * Double(1 << min(s.failedStarts, 6)))
            }
            let running = w.table.running().intersection(w.inflight.keys)
            // The culprit is known when one call ran alone (or it ran as a suspect).
            let culprit: UInt32? = forcedToken != nil ? nil : (w.solo ?? (running.count == 1 ? running.first : nil))
            var requeue: [WorkerPool.Execution] = []
            var lostIDs: [String] = []
            for (token, e) in w.inflight.sorted(by: { $0.key < $1.key }) {
                s.placements[ObjectIdentifier(e)] = nil
                lostIDs.append(e.record.id)
                if token == culprit {
                    s.suspectIDs.remove(e.record.id)
                    calls.append { delegate.ended(e, .completed(.failure(cause), ranOn: nil)) }
                } else if s.stopping {
                    calls.append { delegate.ended(e, .notStarted) }
                } else if forcedToken == nil && running.contains(token) {
                    s.suspects.append(e)
                    s.suspectIDs.insert(e.record.id)
                } else {
                    requeue.append(e)
                }
            }
            if forcedToken != nil { lostIDs.insert(forcedTask, at: 0) }
            s.pending.insert(contentsOf: requeue, at: s.pendingHead)
            if !planned {
                let tail = w.output.lines.suffix(5)
                var line = "\(cause) (pid \(w.pid))"
                if let culprit, let e = w.inflight[culprit] { line += " while running task \(e.record.id) (\(e.record.name))" }
                if running.count > 1 && culprit == nil {
                    line += "; \(running.count) tasks ran in it: each runs again alone to find the one that crashed"
                }
                if !tail.isEmpty { line += "; its last output: " + tail.joined(separator: " | ") }
                if forcedToken != nil {
                    logger.warning("\(line)")
                } else {
                    logger.error("\(line)")
                }
                var pairs: [(String, JSONValue)] = [("pid", .int(Int64(w.pid))), ("cause", .string(cause))]
                if let sig = described.signal { pairs.append(("signal", .int(Int64(sig)))) }
                if let code = described.exitStatus { pairs.append(("status", .int(Int64(code)))) }
                pairs.append(("tasks", .array(lostIDs.filter { !$0.isEmpty }.map(JSONValue.string))))
                pairs.append(("node", .string(HostIdentity.node)))
                let json = JSONValue.object(pairs).jsonText
                calls.append { delegate.workerLost(json) }
            }
            assign(&s)
        }
        return calls
    }

    /// Pings ready workers, kills the ones that stopped answering.
    private func heartbeats() -> [() -> Void] {
        let now = TaskClock.now()
        let every = max(0.05, min(1, options.heartbeatTimeout / 4))
        state.withLock { s in
            for id in Array(s.workers.keys) {
                guard var w = s.workers[id], !w.closed, w.kill == nil else { continue }
                let limit = w.phase == .starting ? max(options.heartbeatTimeout, 30) : options.heartbeatTimeout
                if now - w.lastHeard > limit {
                    w.kill = .hung(options.heartbeatTimeout)
                    Glibc.kill(w.pid, SIGKILL)
                } else if w.phase != .starting && now - w.lastPing >= every {
                    w.lastPing = now
                    w.pingSeq &+= 1
                    w.out.append(.ping(seq: w.pingSeq))
                }
                s.workers[id] = w
                flush(&s, id)
            }
        }
        return []
    }

    /// Starts workers until the newest generation has its count (on the I/O thread).
    private func spawnMissing() {
        while true {
            let plan = state.withLock { s -> (index: Int, setup: WorkerSetup, epoch: Int)? in
                guard s.wanted, !s.stopping, !s.closed, TaskClock.now() >= s.nextSpawn else { return nil }
                let current = s.workers.values.filter { $0.epoch == s.epoch && $0.phase != .draining }
                guard current.count < options.workers else { return nil }
                let used = Set(current.map { ($0.id - 1) % options.workers })
                let index = (0..<options.workers).first { !used.contains($0) } ?? 0
                let setup = WorkerSetup(
                    plugins: s.plugins, slots: 0, memoryLimitKB: options.maxWorkerMemoryKB, checkTrust: options.checkTrust,
                    probe: false)
                return (index, setup, s.epoch)
            }
            guard let plan else { return }
            let threads = threads(of: plan.index)
            guard let table = RunTable(count: options.tableSize) else {
                logger.error("cannot create a worker's run table: \(String(cString: strerror(errno)))")
                state.withLock { $0.nextSpawn = TaskClock.now() + 1 }
                return
            }
            let child: SpawnedWorker
            do { child = try WorkerSpawner.spawn(executable: options.executable, table: table.fd) } catch {
                logger.error("\(error)")
                state.withLock { $0.nextSpawn = TaskClock.now() + 1 }
                return
            }
            var setup = plan.setup
            setup.slots = threads
            var out = FrameEncoder()
            out.append(.setup(setup))
            _ = fcntl(child.socket, F_SETFL, fcntl(child.socket, F_GETFL) | O_NONBLOCK)
            state.withLock { s in
                // Worker ids map onto thread shares: id - 1 ≡ index (mod workers).
                var id = s.nextWorkerID
                while (id - 1) % options.workers != plan.index { id += 1 }
                s.nextWorkerID = id + 1
                let now = TaskClock.now()
                var w = Worker(
                    id: id, pid: child.pid, socket: child.socket, stderr: child.stderr, table: table, epoch: plan.epoch,
                    threads: threads, lastHeard: now, started: now)
                w.out = out
                s.workers[id] = w
                s.started += 1
                flush(&s, id)
            }
        }
    }
}
