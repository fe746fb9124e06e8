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
final class ProcessExecutor: TaskExecutor, @unchecked Sendable {
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

    typealias Delegate = ExecutorDelegate

    enum Phase: String { case starting, ready, draining }

    /// Why the host killed a worker.
    enum Kill {
        /// A call ignored its stop past the grace (token, task id); that call is already decided.
        case forced(UInt32, String)
        /// No message within the heartbeat timeout.
        case hung(Double)
    }

    /// One worker process. A class: its buffers and call table are changed in place under the
    /// executor's lock (a struct in the dictionary would be copied on every change).
    final class Worker {
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

        init(id: Int, child: SpawnedWorker, table: RunTable, epoch: Int, threads: Int, now: Double) {
            self.id = id
            self.pid = child.pid
            self.socket = child.socket
            self.stderr = child.stderr
            self.table = table
            self.epoch = epoch
            self.threads = threads
            self.lastHeard = now
            self.started = now
        }
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
        var placements: [ObjectIdentifier: Placement] = [:]
        var plugins: [WorkerSetup.Plugin] = []
        var epoch = 0
        var stopping = false
        var closed = false
        /// Workers that died before they were ready, in a row (spawns back off).
        var failedStarts = 0
        var nextSpawn = 0.0
        var delegate: Delegate?
        var readyTimes: [Double] = []
        /// Whether workers should run (false until the first call when lazy).
        var wanted = true
        var threadStarted = false
    }

    let options: Options
    let logger: Logger
    private let state = Mutex(State())
    private let wakeFD: Int32
    private let exited = Mutex(false)
    /// When the I/O thread last looked for workers that ended (it runs on that thread only).
    private nonisolated(unsafe) var lastReapCheck = 0.0

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

    /// Starts the I/O thread and the workers (for the plugins of the last ``reload(plugins:)``).
    func start(delegate: Delegate) {
        state.withLock {
            $0.delegate = delegate
            $0.wanted = !options.lazy
        }
        if !options.lazy { startThread() }
    }

    /// Starts the I/O thread (once).
    private func startThread() {
        guard
            state.withLock({ s -> Bool in
                defer { s.threadStarted = true }
                return !s.threadStarted
            })
        else { return }
        let thread = Thread { [self] in ioLoop() }
        thread.name = "pq-workers"
        thread.stackSize = 1 << 20
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
        var first = false
        let delegate = state.withLock { s -> Delegate? in
            if s.stopping {
                ends = executions.map { ($0, .notStarted) }
            } else {
                if !s.wanted {
                    s.wanted = true
                    first = true
                }
                s.pending.append(contentsOf: executions)
                assign(&s)
            }
            return s.delegate
        }
        if first { startThread() }
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
    func abandon(_ execution: WorkerPool.Execution) {
        let (delegate, notStarted) = state.withLock { s -> (Delegate?, Bool) in
            let key = ObjectIdentifier(execution)
            guard let p = s.placements.removeValue(forKey: key), let w = s.workers[p.worker] else {
                return (s.delegate, removeWaiting(&s, execution))
            }
            w.inflight[p.token] = nil
            // A worker already dead keeps the cause it died of.
            if !w.closed {
                if w.kill == nil { w.kill = .forced(p.token, execution.record.id) }
                Glibc.kill(w.pid, SIGKILL)
            }
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
            for w in s.workers.values where w.epoch < s.epoch && w.phase != .draining {
                w.phase = .draining
                w.out.append(.drain)
                flush(&s, w.id)
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
            return (s.delegate, waiting)
        }
        for e in waiting { delegate?.ended(e, .notStarted) }
    }

    /// A worker is killed: the run is over.
    var abandonEndsTheRun: Bool { true }

    /// Lets every worker go (drain, then exit) and waits for them, killing what is left after
    /// two seconds.
    func shutdown() async {
        let patience = 2.0
        beginShutdown()
        let running = state.withLock { s -> Bool in
            s.closed = true
            for w in s.workers.values where w.phase != .draining || !w.closed {
                w.phase = .draining
                w.out.append(.drain)
                flush(&s, w.id)
            }
            return s.threadStarted
        }
        guard running else { return }
        wake()
        let deadline = Date().addingTimeInterval(patience)
        // Bounded: workers that do not go are killed, and the I/O thread reaps them.
        while !exited.withLock({ $0 }) && Date() < deadline.addingTimeInterval(5) {
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
            s.workers[id]?.solo = token
            touched.insert(id)
        }
        // While suspects wait, the least busy worker takes no new calls until it is empty and
        // can run one alone: under steady load no worker would ever empty by itself.
        var reserved: Int?
        if !s.suspects.isEmpty {
            reserved =
                s.workers.values.filter { $0.phase == .ready && $0.epoch == s.epoch && $0.solo == nil }
                .min { ($0.inflight.count, $0.id) < ($1.inflight.count, $1.id) }?.id
        }
        if s.pendingHead < s.pending.count {
            var candidates = s.workers.values.filter {
                $0.phase == .ready && $0.epoch == s.epoch && $0.solo == nil && $0.id != reserved
            }.map(\.id)
            if !candidates.isEmpty {
                candidates.sort()
                while s.pendingHead < s.pending.count {
                    var best = candidates[0]
                    var bestLoad = Double.infinity
                    for id in candidates {
                        guard let w = s.workers[id] else { continue }
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
        guard let w = s.workers[id] else { return token }
        w.inflight[token] = e
        w.out.append(
            .call(
                token: token, taskID: r.id, job: r.name, kwargs: r.kwargs, attempt: UInt32(clamping: r.retry),
                reportBegin: timed))
        s.placements[ObjectIdentifier(e)] = Placement(worker: id, token: token)
        if !timed { e.began.store(TaskClock.now().bitPattern, ordering: .releasing) }
        return token
    }

    /// Writes what a worker's buffer holds, as far as its socket takes it now; the I/O thread
    /// writes the rest when the socket has room. Call with the lock held.
    private func flush(_ s: inout State, _ id: Int) {
        guard let w = s.workers[id], !w.out.isEmpty, !w.closed else { return }
        let n = w.out.bytes.withUnsafeBytes {
            Glibc.send(w.socket, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
        }
        if n > 0 { w.out.removeFirst(n) }
        if !w.out.isEmpty { wake() }
    }

    // MARK: the I/O thread

    /// What the I/O thread does once it let go of the lock: tell the pool, write log lines.
    typealias Later = [() -> Void]

    private func ioLoop() {
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            spawnMissing()
            let (fds, owners) = state.withLock { s -> ([pollfd], [(Int, Bool)]) in
                var fds = [pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
                var owners: [(Int, Bool)] = [(0, false)]
                for w in s.workers.values {
                    if !w.closed {
                        fds.append(
                            pollfd(
                                fd: w.socket, events: Int16(POLLIN) | (w.out.isEmpty ? 0 : Int16(POLLOUT)), revents: 0))
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
            var later: Later = []
            if polled[0].revents != 0 {
                var value: UInt64 = 0
                _ = read(wakeFD, &value, 8)
            }
            var dead: [Int] = []
            for i in 1..<polled.count where polled[i].revents != 0 {
                let (id, isErr) = owners[i]
                // A descriptor closed earlier in this pass may already be another's: look again.
                let current = state.withLock { s -> Bool in
                    guard let w = s.workers[id] else { return false }
                    return isErr ? w.stderr == polled[i].fd : (!w.closed && w.socket == polled[i].fd)
                }
                guard current else { continue }
                if isErr {
                    let n = buffer.withUnsafeMutableBytes { read(polled[i].fd, $0.baseAddress, $0.count) }
                    later += stderrInput(id, n > 0 ? buffer[0..<n] : nil)
                    continue
                }
                if polled[i].revents & Int16(POLLOUT) != 0 {
                    state.withLock { s in flush(&s, id) }
                }
                if polled[i].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                    let n = buffer.withUnsafeMutableBytes { read(polled[i].fd, $0.baseAddress, $0.count) }
                    if n > 0 {
                        later += buffer.withUnsafeBytes { input(id, UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                    } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                        dead.append(id)
                    }
                }
            }
            for id in dead { later += died(id, status: nil) }
            later += heartbeats()
            for call in later { call() }
            let done = state.withLock { s in s.closed && s.workers.isEmpty }
            if done {
                exited.withLock { $0 = true }
                return
            }
        }
    }

    /// Frames from a worker. Returns what to do outside the lock.
    private func input(_ id: Int, _ bytes: UnsafeRawBufferPointer) -> Later {
        var later: Later = []
        state.withLock { s in
            guard let w = s.workers[id], let delegate = s.delegate else { return }
            w.decoder.append(bytes)
            w.lastHeard = TaskClock.now()
            var returned: [WorkerPool.Execution] = []
            var freed = false
            var broken = false
            while true {
                let frame: WorkerFrame?
                do { frame = try w.decoder.next() } catch {
                    let pid = w.pid
                    later.append { [logger] in logger.error("worker \(pid) sent a bad frame (\(error)); killing it") }
                    broken = true
                    break
                }
                guard let frame else { break }
                switch frame {
                case .ready(let pid, let failures):
                    if w.phase == .starting { w.phase = .ready }
                    s.failedStarts = 0
                    if s.readyTimes.count < 1_000 { s.readyTimes.append(TaskClock.now() - w.started) }
                    if !failures.isEmpty {
                        later.append { [logger] in
                            for f in failures {
                                logger.error("worker \(pid) could not load a plugin the host checked: \(f)")
                            }
                        }
                    }
                    freed = true
                case .began(let token):
                    if let e = w.inflight[token] { later.append { delegate.began(e) } }
                case .done(let token, let end):
                    guard let e = w.inflight.removeValue(forKey: token) else { continue }
                    s.placements[ObjectIdentifier(e)] = nil
                    freed = true
                    if w.solo == token { w.solo = nil }
                    switch end {
                    case .completed(let outcome, let plugin, let version):
                        w.completed += 1
                        let info = PluginInfo(name: plugin, version: version, toolchain: "", path: "", generation: 0)
                        later.append { delegate.ended(e, .completed(outcome, ranOn: info)) }
                    case .refused(let message, let plugin, let version):
                        let info = PluginInfo(name: plugin, version: version, toolchain: "", path: "", generation: 0)
                        later.append { delegate.ended(e, .refused(message, ranOn: info)) }
                    case .unknownJob:
                        later.append { delegate.ended(e, .unregistered) }
                    case .stopped:
                        later.append { delegate.ended(e, .notStarted) }
                    case .returned:
                        returned.append(e)
                    }
                case .log(let taskID, let level, let message):
                    later.append { delegate.log(taskID, Int32(level), message) }
                case .submit(let parent, let childID, let job, let kwargs):
                    later.append { delegate.submit(parent, childID, job, kwargs) }
                case .pong(_, let rss, _):
                    w.rssKB = rss
                default:
                    break
                }
            }
            if broken {
                Glibc.kill(w.pid, SIGKILL)
                return
            }
            if w.phase == .ready, recycleDue(w) {
                w.phase = .draining
                w.out.append(.drain)
                let (pid, completed, mib) = (w.pid, w.completed, w.rssKB / 1024)
                later.append { [logger] in
                    logger.info(
                        "worker \(pid) is recycled after \(completed) tasks, \(mib) MiB resident; a new one starts")
                }
                wake()
            }
            if !returned.isEmpty {
                if s.stopping {
                    for e in returned { later.append { delegate.ended(e, .notStarted) } }
                } else {
                    requeue(&s, returned)
                }
            }
            if freed || !returned.isEmpty { assign(&s) }
            flush(&s, id)
        }
        return later
    }

    /// Puts calls back at the front of the queue, to run again from the start.
    private func requeue(_ s: inout State, _ executions: [WorkerPool.Execution]) {
        // Their timeout counts from the run that will start, not from the one that was cut short.
        for e in executions { e.began.store(0, ordering: .releasing) }
        s.pending.insert(contentsOf: executions, at: s.pendingHead)
    }

    private func recycleDue(_ w: Worker) -> Bool {
        if options.maxTasksPerWorker > 0 && w.completed >= options.maxTasksPerWorker { return true }
        if options.maxWorkerMemoryKB > 0 && w.rssKB > options.maxWorkerMemoryKB { return true }
        return false
    }

    /// Output of a worker (nil: its pipe closed); its lines go to the host's stderr.
    private func stderrInput(_ id: Int, _ bytes: ArraySlice<UInt8>?) -> Later {
        let (pid, lines) = state.withLock { s -> (pid_t, [String]) in
            guard let w = s.workers[id] else { return (0, []) }
            guard let bytes else {
                if w.stderr >= 0 { close(w.stderr) }
                w.stderr = -1
                return (w.pid, [])
            }
            return (w.pid, w.output.append(bytes))
        }
        guard !lines.isEmpty else { return [] }
        return [{ FileHandle.standardError.write(Data(lines.map { "worker \(pid): \($0)\n" }.joined().utf8)) }]
    }

    /// A worker's socket closed or its process ended (`status` when already reaped): settle its
    /// calls and let a replacement start.
    private func died(_ id: Int, status known: Int32?) -> Later {
        guard
            let (pid, stderrFD) = state.withLock({ s -> (pid_t, Int32)? in
                guard let w = s.workers[id], !w.closed else { return nil }
                w.closed = true
                return (w.pid, w.stderr)
            })
        else { return [] }
        let status = known ?? WorkerSpawner.reap(pid, patience: 0.5)
        var later: Later = []
        // The last words of the worker, for the log.
        if stderrFD >= 0 {
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                var fd = pollfd(fd: stderrFD, events: Int16(POLLIN), revents: 0)
                guard poll(&fd, 1, 0) > 0 else { break }
                let n = buffer.withUnsafeMutableBytes { read(stderrFD, $0.baseAddress, $0.count) }
                later += stderrInput(id, n > 0 ? buffer[0..<n] : nil)
                if n <= 0 { break }
            }
        }
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
            case .hung(let seconds)?:
                cause = "worker stopped answering (no heartbeat for \(formatSeconds(seconds)) s); killed"
            case nil: break
            }
            let planned = w.phase == .draining && described.exitStatus == 0 && w.kill == nil
            if w.phase == .starting && !planned {
                s.failedStarts += 1
                s.nextSpawn = TaskClock.now() + min(5, 0.1 * Double(1 << min(s.failedStarts, 6)))
                // Workers that die before they are ready, again and again, serve nobody: the
                // tasks waiting for them go back to the queue (uncharged) for other hosts.
                if s.failedStarts >= 3, !s.workers.values.contains(where: { $0.phase == .ready && $0.epoch == s.epoch })
                {
                    let waiting = Array(s.pending[s.pendingHead...]) + s.suspects
                    s.pending = []
                    s.pendingHead = 0
                    s.suspects = []
                    for e in waiting { later.append { delegate.ended(e, .unregistered) } }
                    let (n, tries) = (waiting.count, s.failedStarts)
                    later.append { [logger] in
                        logger.error(
                            "\(tries) worker processes in a row died before they were ready (\(cause)); \(n) waiting tasks go back to the queue; retrying with back-off"
                        )
                    }
                }
            }
            let running = w.table.running().intersection(w.inflight.keys)
            // The culprit is known when one call ran alone (or it ran as a suspect).
            let culprit: UInt32? = forcedToken != nil ? nil : (w.solo ?? (running.count == 1 ? running.first : nil))
            var again: [WorkerPool.Execution] = []
            var lostIDs: [String] = forcedToken != nil ? [forcedTask] : []
            for (token, e) in w.inflight.sorted(by: { $0.key < $1.key }) {
                s.placements[ObjectIdentifier(e)] = nil
                lostIDs.append(e.record.id)
                let stopped = e.state.withLock { $0.stopReason != nil }
                if token == culprit {
                    later.append { delegate.ended(e, .completed(.failure(cause), ranOn: nil)) }
                } else if stopped {
                    // Asked to stop (timeout, revoke, shutdown): it is not run again.
                    later.append { delegate.ended(e, running.contains(token) ? .stoppedRunLost : .notStarted) }
                } else if s.stopping {
                    later.append { delegate.ended(e, .notStarted) }
                } else if forcedToken == nil && running.contains(token) {
                    e.began.store(0, ordering: .releasing)
                    s.suspects.append(e)
                } else {
                    again.append(e)
                }
            }
            requeue(&s, again)
            if !planned {
                let tail = w.output.lines.suffix(5)
                var line = "\(cause) (pid \(w.pid))"
                if let culprit, let e = w.inflight[culprit] {
                    line += " while running task \(e.record.id) (\(e.record.name))"
                }
                if running.count > 1 && culprit == nil && forcedToken == nil {
                    line += "; \(running.count) tasks ran in it: each runs again alone to find the one that crashed"
                }
                if !tail.isEmpty { line += "; its last output: " + tail.joined(separator: " | ") }
                let forced = forcedToken != nil
                later.append { [logger] in
                    if forced { logger.warning("\(line)") } else { logger.error("\(line)") }
                }
                var pairs: [(String, JSONValue)] = [("pid", .int(Int64(w.pid))), ("cause", .string(cause))]
                if let sig = described.signal { pairs.append(("signal", .int(Int64(sig)))) }
                if let code = described.exitStatus { pairs.append(("status", .int(Int64(code)))) }
                pairs.append(("tasks", .array(lostIDs.filter { !$0.isEmpty }.map(JSONValue.string))))
                pairs.append(("node", .string(HostIdentity.node)))
                let json = JSONValue.object(pairs).jsonText
                later.append { delegate.workerLost(json) }
            }
            assign(&s)
        }
        wake()
        return later
    }

    /// Pings ready workers, kills the ones that stopped answering, and notices the ones that
    /// ended without closing their socket (a child of theirs may hold it open).
    private func heartbeats() -> Later {
        let now = TaskClock.now()
        let every = max(0.05, min(1, options.heartbeatTimeout / 4))
        let reap = now - lastReapCheck >= 0.05
        if reap { lastReapCheck = now }
        let exited = state.withLock { s -> [(Int, Int32)] in
            var exited: [(Int, Int32)] = []
            for w in s.workers.values where !w.closed {
                var status: Int32 = 0
                if reap && waitpid(w.pid, &status, WNOHANG) == w.pid {
                    exited.append((w.id, status))
                    continue
                }
                guard w.kill == nil else { continue }
                let limit = w.phase == .starting ? max(options.heartbeatTimeout, 30) : options.heartbeatTimeout
                if now - w.lastHeard > limit {
                    w.kill = .hung(options.heartbeatTimeout)
                    Glibc.kill(w.pid, SIGKILL)
                } else if w.phase != .starting && now - w.lastPing >= every {
                    w.lastPing = now
                    w.pingSeq &+= 1
                    w.out.append(.ping(seq: w.pingSeq))
                    flush(&s, w.id)
                }
            }
            return exited
        }
        var later: Later = []
        for (id, status) in exited { later += died(id, status: status) }
        return later
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
                    plugins: s.plugins, slots: 0, memoryLimitKB: options.maxWorkerMemoryKB,
                    checkTrust: options.checkTrust,
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
            _ = fcntl(child.socket, F_SETFL, fcntl(child.socket, F_GETFL) | O_NONBLOCK)
            state.withLock { s in
                // Worker ids map onto thread shares: id - 1 ≡ index (mod workers).
                var id = s.nextWorkerID
                while (id - 1) % options.workers != plan.index { id += 1 }
                s.nextWorkerID = id + 1
                let w = Worker(
                    id: id, child: child, table: table, epoch: plan.epoch, threads: threads, now: TaskClock.now())
                w.out.append(.setup(setup))
                if plan.epoch != s.epoch || s.closed || s.stopping {
                    // A reload or shutdown came while it started: it goes at once.
                    w.phase = .draining
                    w.out.append(.drain)
                }
                s.workers[id] = w
                flush(&s, id)
            }
        }
    }
}
