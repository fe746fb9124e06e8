import CPQPlugin
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// What a host sees of one call: completions, log lines, child tasks. Reached from the C callbacks
/// through `pq_call.host_data`.
final class FakeHost: Sendable {
    struct Completion: Sendable, Equatable {
        var ok: Bool
        var text: String
    }

    struct Submission: Sendable, Equatable {
        var job: String
        var argumentsJSON: String
    }

    private struct State {
        var completions: [Completion] = []
        var logs: [String] = []
        var submissions: [Submission] = []
        var hostCancelled = false
        var submitStatus: Int32 = 0
    }

    private let state = Mutex(State())

    var completions: [Completion] { state.withLock { $0.completions } }
    var logs: [String] { state.withLock { $0.logs } }
    var submissions: [Submission] { state.withLock { $0.submissions } }

    /// Makes `submit` fail with this status (0: succeed).
    func setSubmitStatus(_ status: Int32) { state.withLock { $0.submitStatus = status } }
    /// Makes `is_cancelled` answer 1.
    func setHostCancelled() { state.withLock { $0.hostCancelled = true } }

    static func of(_ call: UnsafePointer<pq_call>?) -> FakeHost? {
        guard let data = call?.pointee.host_data else { return nil }
        return Unmanaged<FakeHost>.fromOpaque(data).takeUnretainedValue()
    }

    fileprivate func complete(ok: Int32, _ text: String) {
        state.withLock { $0.completions.append(Completion(ok: ok != 0, text: text)) }
    }

    fileprivate func log(level: Int32, _ message: String) {
        state.withLock { $0.logs.append("\(level):\(message)") }
    }

    fileprivate func isCancelled() -> Bool { state.withLock { $0.hostCancelled } }

    fileprivate func submit(job: String, arguments: String) -> (status: Int32, id: String) {
        state.withLock { state in
            guard state.submitStatus == 0 else { return (state.submitStatus, "") }
            state.submissions.append(Submission(job: job, argumentsJSON: arguments))
            return (0, String(repeating: "c", count: 31) + "\(state.submissions.count)")
        }
    }
}

/// A hand-built `pq_call`, as the host would make it. Its memory is freed only once the plugin has
/// completed it, so a test that times out leaks rather than letting a late job touch freed memory.
final class TestCall {
    let pointer: UnsafeMutablePointer<pq_call>
    let host = FakeHost()

    init(
        job: String, arguments: String? = "{}", attempt: UInt32 = 1, taskID: String = "0123456789abcdef0123456789abcdef"
    ) {
        pointer = .allocate(capacity: 1)
        pointer.initialize(
            to: pq_call(
                struct_size: UInt32(MemoryLayout<pq_call>.size),
                task_id: UnsafePointer(strdup(taskID)),
                job_name: UnsafePointer(strdup(job)),
                args_json: arguments.map { UnsafePointer(strdup($0)) },
                attempt: attempt,
                host_data: Unmanaged.passUnretained(host).toOpaque(),
                complete: { call, ok, text in
                    FakeHost.of(call)?.complete(ok: ok, text.map { String(cString: $0) } ?? "<NULL>")
                },
                log: { call, level, message in
                    FakeHost.of(call)?.log(level: level, message.map { String(cString: $0) } ?? "<NULL>")
                },
                is_cancelled: { call in FakeHost.of(call)?.isCancelled() == true ? 1 : 0 },
                submit: { call, job, arguments, idOut, capacity in
                    guard let host = FakeHost.of(call), let job, let arguments, let idOut else { return -1 }
                    let (status, id) = host.submit(job: String(cString: job), arguments: String(cString: arguments))
                    guard status == 0, id.utf8.count < capacity else { return status == 0 ? -2 : status }
                    _ = id.withCString { strcpy(idOut, $0) }
                    return 0
                }
            ))
    }

    deinit {
        guard !host.completions.isEmpty else { return }  // the plugin may still hold it: leak
        free(UnsafeMutablePointer(mutating: pointer.pointee.task_id))
        free(UnsafeMutablePointer(mutating: pointer.pointee.job_name))
        free(UnsafeMutablePointer(mutating: pointer.pointee.args_json))
        pointer.deinitialize(count: 1)
        pointer.deallocate()
    }

    /// Starts the call through a job definition's `run`.
    func run(_ definition: pq_job_def) {
        definition.run?(pointer)
    }

    /// Asks the plugin to stop the call.
    func cancel(_ definition: pq_job_def) {
        definition.cancel?(pointer)
    }

    /// Waits (at most `timeout`) until the plugin completed the call.
    /// - Returns: The first completion, or `nil` on timeout.
    func completion(within timeout: Duration = .seconds(5)) async -> FakeHost.Completion? {
        await waitUntil(timeout) { !host.completions.isEmpty } ? host.completions.first : nil
    }
}

/// Polls `condition` every few milliseconds until it holds or `timeout` passes.
/// - Returns: Whether it held.
func waitUntil(_ timeout: Duration = .seconds(5), _ condition: () -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while clock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return condition()
}
