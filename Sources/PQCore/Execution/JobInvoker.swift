/// How one run of a job ended, before the worker pool applies its retry rules.
enum RunEnd: Sendable {
    /// The job completed (a result or an error) on this plugin generation.
    case completed(CallOutcome, ranOn: PluginInfo?)
    /// Refused before the job was called (kwargs that do not fit a typed signature): it fails
    /// without retries, since another run would get the same kwargs.
    case refused(String, ranOn: PluginInfo?)
    /// The job is not registered (any more): the task goes back for a host that has it.
    case unregistered
    /// Not started: the call was stopped before it began.
    case notStarted
    /// It ran, was asked to stop (timeout, revoke, shutdown), and its worker process is gone
    /// before it answered: it ends as stopped.
    case stoppedRunLost
}

/// Calls one job for one task on the calling thread, which must be one where blocking is
/// allowed (a ``PluginThreadPool`` thread). Used by the host in thread mode and by worker
/// processes, so both run jobs the same way.
enum JobInvoker {
    /// Runs `job`.
    /// - Parameters:
    ///   - job: the job, loaded in this process.
    ///   - taskID: the task id.
    ///   - kwargs: the kwargs, a JSON object.
    ///   - attempt: 1 on the first run.
    ///   - hooks: log and submit handlers of the call.
    ///   - admit: told the call just before it starts (nil for a typed job, which cannot be
    ///     cancelled); returns false when the run was stopped meanwhile, and it does not start.
    ///   - done: how it ended; called once, on any thread (a JSON job completes when it likes).
    static func run(
        job: JobDefinition, taskID: String, kwargs: String, attempt: Int, hooks: CallHooks,
        admit: (PluginCall?) -> Bool, done: @escaping @Sendable (RunEnd) -> Void
    ) {
        switch job.kind {
        case .typed:
            guard let typed = job.typedCall else {
                done(.refused("typed job '\(job.name)' has no prepared call interface", ranOn: job.plugin))
                return
            }
            let arguments: TypedCall.Arguments
            do { arguments = try typed.bind(json: kwargs) } catch {
                done(.refused("job '\(job.name)': \(error); the function was not called", ranOn: job.plugin))
                return
            }
            guard admit(nil) else {
                done(.notStarted)
                return
            }
            done(.completed(typed.call(arguments), ranOn: job.plugin))
        case .json:
            let call = PluginCall(job: job, taskID: taskID, argsJSON: kwargs, attempt: attempt, hooks: hooks)
            guard admit(call) else {
                done(.notStarted)
                return
            }
            call.onComplete { outcome in done(.completed(outcome, ranOn: job.plugin)) }
            call.runHere()
        }
    }
}
