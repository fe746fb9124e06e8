import CPQPlugin
import Glibc
import Synchronization

/// How one call of a job ended.
public enum CallOutcome: Sendable, Equatable {
    /// The job succeeded; the result is valid JSON text.
    case success(String)
    /// The job failed with this message.
    case failure(String)
}

/// What a running call may ask of the host: log lines and child tasks.
///
/// The handlers receive the call they serve, so a host builds one set for all its tasks instead
/// of closures that capture each task.
public struct CallHooks: Sendable {
    /// Writes a log line for the call's task (level: PQ_LOG_*).
    public var log: @Sendable (_ call: PluginCall, _ level: Int32, _ message: String) -> Void
    /// Queues a child task of the call's task; returns its id or throws. Called on a plugin
    /// thread; may block.
    public var submit: @Sendable (_ call: PluginCall, _ job: String, _ argsJSON: String) throws -> String

    /// Creates hooks that do not need to know the call.
    /// - Parameters:
    ///   - log: receives log lines.
    ///   - submit: queues child tasks.
    public init(
        log: @escaping @Sendable (Int32, String) -> Void = { _, _ in },
        submit: @escaping @Sendable (String, String) throws -> String = { job, _ in
            throw CallHookError(message: "this host cannot queue child tasks (job '\(job)')")
        }
    ) {
        self.log = { _, level, message in log(level, message) }
        self.submit = { _, job, args in try submit(job, args) }
    }

    /// Creates hooks that receive the call they serve.
    /// - Parameters:
    ///   - log: receives the call and its log lines.
    ///   - submit: receives the call and queues its child tasks.
    public init(
        forCall log: @escaping @Sendable (PluginCall, Int32, String) -> Void,
        submit: @escaping @Sendable (PluginCall, String, String) throws -> String
    ) {
        self.log = log
        self.submit = submit
    }
}

/// An error from a call hook.
public struct CallHookError: Error, CustomStringConvertible, Sendable {
    /// What went wrong.
    public var message: String
    /// Creates the error.
    /// - Parameter message: what went wrong.
    public init(message: String) { self.message = message }
    /// The message.
    public var description: String { message }
}

/// One call of a JSON job across the C ABI.
///
/// Owns the `pq_call` and its strings until the plugin calls `complete`. The plugin may call
/// `complete` from any thread, before or after `run` returns; `cancel` may race with it.
///
/// ```swift
/// let call = PluginCall(job: job, taskID: id, argsJSON: "{\"a\":1}", attempt: 1, hooks: CallHooks())
/// call.start(on: pool)
/// let outcome = await call.outcome()
/// ```
public final class PluginCall: @unchecked Sendable {
    // @unchecked: `call` and the strings are written once in init and freed in deinit; all mutable
    // state is in the Mutex.
    private struct State {
        var completed: CallOutcome?
        var waiters: [(Int, CheckedContinuation<CallOutcome?, Never>)] = []
        var cancelled = false
        var started = false
        var onComplete: (@Sendable (CallOutcome) -> Void)?
    }

    /// The job being called.
    public let job: JobDefinition
    /// The task id.
    public let taskID: String
    let hooks: CallHooks
    private let state = Mutex(State())
    /// The `pq_call`, followed in the same allocation by its three C strings.
    private let call: UnsafeMutablePointer<pq_call>
    /// Guards against the plugin's retained reference being released twice.
    private let pluginReference = Atomic<Bool>(true)

    /// Prepares a call.
    /// - Parameters:
    ///   - job: a JSON job.
    ///   - taskID: the task id.
    ///   - argsJSON: the kwargs, a JSON object.
    ///   - attempt: 1 on the first run.
    ///   - hooks: log and submit handlers.
    public init(job: JobDefinition, taskID: String, argsJSON: String, attempt: Int, hooks: CallHooks) {
        self.job = job
        self.taskID = taskID
        self.hooks = hooks
        // One allocation for the struct and its strings: a call is made per task.
        let head = MemoryLayout<pq_call>.stride
        let sizes = [taskID.utf8.count + 1, job.name.utf8.count + 1, argsJSON.utf8.count + 1]
        let raw = UnsafeMutableRawPointer.allocate(
            byteCount: head + sizes.reduce(0, +), alignment: MemoryLayout<pq_call>.alignment)
        func place(_ text: String, at offset: Int) -> UnsafeMutablePointer<CChar> {
            var text = text
            let count = text.utf8.count
            let target = (raw + offset).bindMemory(to: CChar.self, capacity: count + 1)
            text.withUTF8 { bytes in
                if let base = bytes.baseAddress {
                    UnsafeMutableRawPointer(target).copyMemory(from: base, byteCount: count)
                }
            }
            target[count] = 0
            return target
        }
        let id = place(taskID, at: head)
        let name = place(job.name, at: head + sizes[0])
        let args = place(argsJSON, at: head + sizes[0] + sizes[1])
        call = raw.bindMemory(to: pq_call.self, capacity: 1)
        call.initialize(
            to: pq_call(
                struct_size: UInt32(MemoryLayout<pq_call>.size), task_id: id, job_name: name, args_json: args,
                attempt: UInt32(clamping: attempt), host_data: nil,
                complete: pqHostComplete, log: pqHostLog, is_cancelled: pqHostIsCancelled, submit: pqHostSubmit))
    }

    deinit {
        call.deinitialize(count: 1)
        UnsafeMutableRawPointer(call).deallocate()
    }

    /// Runs the job's `run` on a pool thread. The plugin holds a reference to this call until it
    /// calls `complete`.
    /// - Parameter pool: the threads for blocking plugin code.
    public func start(on pool: PluginThreadPool) {
        pool.execute { self.runHere() }
    }

    /// Runs the job's `run` on the calling thread, which must be one where blocking is allowed
    /// (a ``PluginThreadPool`` thread, never Swift's cooperative pool). The plugin holds a
    /// reference to this call until it calls `complete`.
    public func runHere() {
        let alreadyStarted = state.withLock { s in
            defer { s.started = true }
            return s.started
        }
        guard !alreadyStarted else { return }
        guard let run = job.definition?.pointee.run else {
            complete(ok: false, text: "job '\(job.name)' is not loaded in this process; it was not run")
            return
        }
        call.pointee.host_data = Unmanaged.passRetained(self).toOpaque()
        run(UnsafePointer(call))
    }

    /// Calls `handler` (on the completing thread) with the outcome once the plugin completes the
    /// call; at once when it already has.
    /// - Parameter handler: receives the outcome.
    public func onComplete(_ handler: @escaping @Sendable (CallOutcome) -> Void) {
        let done = state.withLock { s -> CallOutcome? in
            if let c = s.completed { return c }
            s.onComplete = handler
            return nil
        }
        if let done { handler(done) }
    }

    /// Waits until the plugin completes the call.
    /// - Returns: the outcome, or nil when the waiting task was cancelled first (the call goes on).
    public func outcome() async -> CallOutcome? {
        let token = AtomicCounter.nextToken()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<CallOutcome?, Never>) in
                let done: CallOutcome?? = state.withLock { s in
                    if let c = s.completed { return .some(c) }
                    if Task.isCancelled { return .some(nil) }
                    s.waiters.append((token, continuation))
                    return nil
                }
                if let done { continuation.resume(returning: done) }
            }
        } onCancel: {
            let waiter = state.withLock { s -> CheckedContinuation<CallOutcome?, Never>? in
                guard let i = s.waiters.firstIndex(where: { $0.0 == token }) else { return nil }
                return s.waiters.remove(at: i).1
            }
            waiter?.resume(returning: nil)
        }
    }

    /// The outcome if the call completed, else nil.
    public var completedOutcome: CallOutcome? { state.withLock { $0.completed } }

    /// Asks the plugin to stop the call (revoke, timeout, shutdown): sets the flag that
    /// `is_cancelled` reports and calls the job's `cancel` when it has one.
    public func cancel() {
        let shouldCall = state.withLock { s -> Bool in
            guard s.completed == nil, !s.cancelled, s.started else {
                s.cancelled = true
                return false
            }
            s.cancelled = true
            return true
        }
        guard shouldCall, let cancel = job.definition?.pointee.cancel else { return }
        // `self` is alive here (the caller holds it), so the pq_call memory is valid even if the
        // plugin completes concurrently.
        cancel(UnsafePointer(call))
    }

    /// Whether cancel was asked.
    public var isCancelled: Bool { state.withLock { $0.cancelled } }

    fileprivate func complete(ok: Bool, text: String?) {
        var outcome: CallOutcome
        if ok {
            let json = text ?? "null"
            if (try? JSONValue.parse(json)) != nil {
                outcome = .success(json)
            } else {
                outcome = .failure("job '\(job.name)' returned a result that is not valid JSON: \(json.prefix(200))")
            }
        } else {
            outcome = .failure(
                text.map { $0.isEmpty ? "job '\(job.name)' failed without a message" : $0 }
                    ?? "job '\(job.name)' failed without a message")
        }
        let notify = state.withLock {
            s -> ([(Int, CheckedContinuation<CallOutcome?, Never>)], (@Sendable (CallOutcome) -> Void)?)? in
            guard s.completed == nil else { return nil }
            s.completed = outcome
            defer {
                s.waiters = []
                s.onComplete = nil
            }
            return (s.waiters, s.onComplete)
        }
        guard let (waiters, handler) = notify else {
            hooks.log(self, Int32(PQ_LOG_WARNING), "job '\(job.name)' called complete more than once; ignored")
            return
        }
        for w in waiters { w.1.resume(returning: outcome) }
        handler?(outcome)
    }

    fileprivate func releasePluginReference() {
        if pluginReference.exchange(false, ordering: .acquiringAndReleasing) {
            Unmanaged.passUnretained(self).release()
        }
    }

    fileprivate static func from(_ call: UnsafePointer<pq_call>?) -> PluginCall? {
        guard let raw = call?.pointee.host_data else { return nil }
        return Unmanaged<PluginCall>.fromOpaque(raw).takeUnretainedValue()
    }
}

private func pqHostComplete(_ call: UnsafePointer<pq_call>?, _ ok: Int32, _ text: UnsafePointer<CChar>?) {
    guard let host = PluginCall.from(call) else { return }
    let message = text.map { String(cString: $0) }
    // Keep `host` alive across the release of the plugin's reference.
    withExtendedLifetime(host) {
        host.complete(ok: ok != 0, text: message)
        host.releasePluginReference()
    }
}

private func pqHostLog(_ call: UnsafePointer<pq_call>?, _ level: Int32, _ message: UnsafePointer<CChar>?) {
    guard let host = PluginCall.from(call), let message else { return }
    host.hooks.log(host, level, String(cString: message))
}

private func pqHostIsCancelled(_ call: UnsafePointer<pq_call>?) -> Int32 {
    guard let host = PluginCall.from(call) else { return 1 }
    return host.isCancelled ? 1 : 0
}

private func pqHostSubmit(
    _ call: UnsafePointer<pq_call>?, _ job: UnsafePointer<CChar>?, _ args: UnsafePointer<CChar>?,
    _ idOut: UnsafeMutablePointer<CChar>?, _ idCap: Int
) -> Int32 {
    guard let host = PluginCall.from(call), let job else { return -1 }
    let argsJSON = args.map { String(cString: $0) } ?? "{}"
    do {
        let id = try host.hooks.submit(host, String(cString: job), argsJSON.isEmpty ? "{}" : argsJSON)
        if let idOut, idCap > 0 {
            let bytes = Array(id.utf8)
            guard bytes.count < idCap else { return -2 }
            for (i, b) in bytes.enumerated() { idOut[i] = CChar(bitPattern: b) }
            idOut[bytes.count] = 0
        }
        return 0
    } catch {
        host.hooks.log(host, Int32(PQ_LOG_ERROR), "submit of child task '\(String(cString: job))' failed: \(error)")
        return -1
    }
}
