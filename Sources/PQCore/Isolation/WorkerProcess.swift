import CPQPlugin
import CPQSystem
import Foundation
import Glibc
import Synchronization

/// The worker side of process isolation: `pq` started by its host with a socket on descriptor 3
/// and the run table on descriptor 4 (DESIGN.md section 12).
///
/// It loads the plugins the host names, runs the calls the host sends on its own threads and
/// answers with outcomes, log lines and child tasks. It never opens the store. It exits when the
/// host says `drain` (after the calls it runs), and at once when the host is gone (the socket
/// closes, or the kernel's parent-death signal).
public enum WorkerProcess {
    /// The descriptor of the socket to the host.
    public static let socketFD: Int32 = 3
    /// The descriptor of the run table.
    public static let runTableFD: Int32 = 4

    /// Runs the worker until the host lets it go. Never returns.
    /// - Parameter hostPID: the host's pid (the worker exits if its parent is already another).
    public static func main(hostPID: Int32) -> Never {
        // Die with the host, even when it is killed by SIGKILL. The signal is tied to the thread
        // that started us: the host starts workers from a thread that lives as long as it does.
        pq_set_parent_death_signal(SIGKILL)
        if hostPID > 0 && getppid() != hostPID { _exit(0) }
        // Programs a job starts must not hold the host's socket open after this worker died.
        _ = fcntl(socketFD, F_SETFD, FD_CLOEXEC)
        _ = fcntl(runTableFD, F_SETFD, FD_CLOEXEC)
        // The host decides when a worker ends: a Ctrl-C in the terminal reaches the whole
        // process group, and the host drains its workers itself.
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        signal(SIGHUP, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        let worker = Worker(fd: socketFD)
        worker.run()
    }
}

/// One worker process's state.
private final class Worker: @unchecked Sendable {
    // @unchecked: `decoder` and `setup` are used by the reader (main) thread only; the rest is
    // behind locks.
    struct Run {
        var call: PluginCall?
        var cancelled = false
        var entry: Int?
    }

    struct State {
        var runs: [UInt32: Run] = [:]
        var draining = false
        var tasksRun: UInt32 = 0
    }

    let fd: Int32
    let outbox: Outbox
    let registry = JobRegistry()
    let state = Mutex(State())
    var decoder = FrameDecoder()
    var readBuffer = [UInt8](repeating: 0, count: 1 << 16)
    var threads: PluginThreadPool?
    var table: RunTable?
    var memoryLimitKB: UInt64 = 0
    private var hooks: CallHooks?

    init(fd: Int32) {
        self.fd = fd
        self.outbox = Outbox(fd: fd)
    }

    func run() -> Never {
        guard var early = readFrames(), case .setup(let setup) = early.removeFirst() else { _exit(0) }
        let loader = PluginLoader(options: .init(trustAll: !setup.checkTrust))
        if setup.probe { probe(setup, loader: loader) }
        var failures: [String] = []
        for plugin in setup.plugins {
            do {
                let loaded = try loader.load(path: plugin.path, image: plugin.image, generation: plugin.generation)
                registry.register(loaded)
            } catch {
                failures.append("\(error)")
            }
        }
        table = RunTable(inherited: WorkerProcess.runTableFD)
        memoryLimitKB = setup.memoryLimitKB
        threads = PluginThreadPool(size: max(1, setup.slots))
        hooks = makeHooks()
        outbox.send(.ready(pid: getpid(), failures: failures))
        // Calls the host sent right behind the setup came in its read.
        var next: [WorkerFrame]? = early
        while let frames = next {
            defer { next = readFrames() }
            var calls: [@Sendable () -> Void] = []
            for frame in frames { handle(frame, calls: &calls) }
            // One hand-off for every call that came in one read.
            if !calls.isEmpty { threads?.execute(all: calls) }
        }
        // The host is gone: nothing may run that no host supervises.
        _exit(0)
    }

    /// Probe mode: load each plugin in turn and report it before the next, so a plugin whose
    /// constructor kills the process is named by the `loading` frame before it.
    private func probe(_ setup: WorkerSetup, loader: PluginLoader) -> Never {
        for plugin in setup.plugins {
            var frames = FrameEncoder()
            frames.append(.loading(path: plugin.path))
            guard writeAll(fd, frames.bytes) else { _exit(0) }
            let result: Result<LoadedPlugin, PluginError>
            do {
                result = .success(
                    try loader.load(path: plugin.path, image: plugin.image, generation: plugin.generation))
            } catch let error as PluginError {
                result = .failure(error)
            } catch {
                result = .failure(PluginError(.unreadable, path: plugin.path, "\(error)"))
            }
            frames = FrameEncoder()
            frames.append(.probed(json: PluginReport.json(result, path: plugin.path)))
            guard writeAll(fd, frames.bytes) else { _exit(0) }
        }
        _exit(0)
    }

    /// Every frame that one read completes (at least one); nil when the host is gone.
    private func readFrames() -> [WorkerFrame]? {
        var frames: [WorkerFrame] = []
        while true {
            do {
                while let frame = try decoder.next() { frames.append(frame) }
            } catch {
                FileHandle.standardError.write(Data("pq worker: \(error); exiting\n".utf8))
                _exit(70)
            }
            if !frames.isEmpty { return frames }
            let n = readBuffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            readBuffer.withUnsafeBytes { decoder.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
    }

    private func handle(_ frame: WorkerFrame, calls: inout [@Sendable () -> Void]) {
        switch frame {
        case .call(let token, let taskID, let job, let kwargs, let attempt, let reportBegin):
            state.withLock { $0.runs[token] = Run() }
            calls.append { [self] in
                execute(
                    token: token, taskID: taskID, job: job, kwargs: kwargs, attempt: Int(attempt),
                    reportBegin: reportBegin)
            }
        case .cancel(let token):
            let call = state.withLock { s -> PluginCall? in
                s.runs[token]?.cancelled = true
                return s.runs[token]?.call
            }
            call?.cancel()
        case .ping(let seq):
            outbox.send(.pong(seq: seq, rssKB: residentKB(), tasksRun: state.withLock { $0.tasksRun }))
        case .drain:
            let idle = state.withLock { s -> Bool in
                s.draining = true
                return s.runs.isEmpty
            }
            if idle { exitDrained() }
        default:
            break
        }
    }

    private func execute(
        token: UInt32, taskID: String, job name: String, kwargs: String, attempt: Int, reportBegin: Bool
    ) {
        guard let job = registry.job(named: name), let hooks else {
            finish(token, .unknownJob)
            return
        }
        JobInvoker.run(
            job: job, taskID: taskID, kwargs: kwargs, attempt: attempt, hooks: hooks,
            admit: { call in
                let go = state.withLock { s -> Bool in
                    guard var run = s.runs[token], !run.cancelled, !s.draining else { return false }
                    run.call = call
                    run.entry = table?.enter(token)
                    s.runs[token] = run
                    return true
                }
                if go && reportBegin { outbox.send(.began(token: token)) }
                return go
            },
            done: { [self] end in
                switch end {
                case .completed(let outcome, let plugin):
                    finish(token, .completed(outcome, plugin: plugin?.name ?? "", version: plugin?.version ?? ""))
                case .refused(let message, let plugin):
                    finish(token, .refused(message, plugin: plugin?.name ?? "", version: plugin?.version ?? ""))
                case .unregistered:
                    finish(token, .unknownJob)
                case .stoppedRunLost:
                    finish(token, .stopped)  // only the host reports it
                case .notStarted:
                    let draining = state.withLock { s in s.draining && s.runs[token]?.cancelled == false }
                    finish(token, draining ? .returned : .stopped)
                }
            })
    }

    private func finish(_ token: UInt32, _ end: WorkerCallEnd) {
        let (entry, drained) = state.withLock { s -> (Int?, Bool) in
            let run = s.runs.removeValue(forKey: token)
            if case .completed = end { s.tasksRun &+= 1 }
            return (run?.entry, s.draining && s.runs.isEmpty)
        }
        if let entry { table?.leave(entry) }
        outbox.send(.done(token: token, end: end))
        if memoryLimitKB > 0, case .completed = end {
            let rss = residentKB()
            // Over the limit: tell the host at once (it recycles this worker), between calls.
            if rss > memoryLimitKB { outbox.send(.pong(seq: 0, rssKB: rss, tasksRun: state.withLock { $0.tasksRun })) }
        }
        if drained { exitDrained() }
    }

    private func exitDrained() -> Never {
        outbox.flushAndStop()
        _exit(0)
    }

    private func makeHooks() -> CallHooks {
        CallHooks(
            forCall: { [outbox] call, level, message in
                outbox.send(.log(taskID: call.taskID, level: UInt8(clamping: level), message: message))
            },
            submit: { [registry, outbox] call, name, args in
                // Checked here, so the job gets its answer at once; the host stores the child
                // before it records the parent's outcome (frames keep their order).
                let task = try WorkerPool.prepareChild(
                    job: name, argsJSON: args, parent: call.taskID, registry: registry)
                let id = task.id ?? TaskID.make()
                outbox.send(.submit(parent: call.taskID, childID: id, job: name, kwargs: task.kwargs))
                return id
            })
    }
}

/// Frames waiting to go to the host. Whoever sends while no one writes becomes the writer and
/// writes everything that piles up meanwhile, so outcomes of short calls leave in batches
/// without a thread of their own to wake.
private final class Outbox: @unchecked Sendable {
    // @unchecked: `frames` and `writing` are guarded by `lock`.
    private let fd: Int32
    private let lock = ConditionLock()
    private var frames = FrameEncoder()
    private var writing = false

    init(fd: Int32) {
        self.fd = fd
    }

    func send(_ frame: WorkerFrame) {
        lock.lock()
        frames.append(frame)
        guard !writing else {
            lock.unlock()
            return
        }
        writing = true
        while !frames.isEmpty {
            let bytes = frames.bytes
            frames = FrameEncoder()
            lock.unlock()
            // The host is gone: nothing may run that no host supervises.
            if !writeAll(fd, bytes) { _exit(0) }
            lock.lock()
        }
        writing = false
        lock.unlock()
    }

    /// Waits until what was sent is written (by whichever thread writes it).
    func flushAndStop() {
        while true {
            lock.lock()
            let done = !writing && frames.isEmpty
            lock.unlock()
            if done { return }
            usleep(1_000)
        }
    }
}
