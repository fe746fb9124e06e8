internal import CPQPlugin
import PQToolchain
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials  // JSON coding without loading ICU into every plugin
#else
    import Foundation
#endif

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Turns a plugin's job types into the `pq_plugin` description the host loads.
///
/// A Swift plugin exports the one C symbol the host looks for, and lets PQKit answer:
///
/// ```swift
/// import PQKit
///
/// @_cdecl("pq_plugin_entry")
/// public func pqPluginEntry(_ hostABI: UInt32) -> UnsafeRawPointer? {
///     PQPlugin.entry(hostABI, name: "examples", version: "1.0.0", jobs: [Addition.self, Failing.self])
/// }
/// ```
///
/// The returned pointer is a `const pq_plugin *`. It is built once per plugin name and kept for the
/// life of the process, with every string it reaches: the host may read it at any time, and a Swift
/// plugin is never unloaded.
public enum PQPlugin {
    /// The ABI version PQKit implements (`PQ_ABI_VERSION` of `pq_plugin.h`).
    public static let abiVersion: UInt32 = UInt32(PQ_ABI_VERSION)

    /// Answers the host's call to `pq_plugin_entry`.
    /// - Parameters:
    ///   - hostABI: The ABI version the host speaks.
    ///   - name: The plugin's name.
    ///   - version: The plugin's version (free text, e.g. `"1.2.0"`).
    ///   - jobs: The JSON jobs, as types. When two have the same name, the first one is kept.
    ///   - typedJobs: The typed jobs (C functions called through libffi).
    /// - Returns: A `const pq_plugin *` for the host, or `nil` when PQKit cannot serve `hostABI`.
    ///   Later calls with the same `name` return the same description.
    public static func entry(
        _ hostABI: UInt32,
        name: String,
        version: String,
        jobs: [any Job.Type],
        typedJobs: [TypedJob] = []
    ) -> UnsafeRawPointer? {
        guard hostABI == abiVersion else { return nil }
        let address = descriptors.withLock { built -> UInt in
            if let address = built[name] { return address }
            let address = UInt(
                bitPattern: buildDescriptor(name: name, version: version, jobs: jobs, typedJobs: typedJobs))
            built[name] = address
            return address
        }
        return UnsafeRawPointer(bitPattern: address)
    }

    /// Lists what is wrong with a plugin's jobs before the host sees them: names that are not slugs,
    /// duplicate names, options that cannot be written as JSON, anchors not in `HH:MM:SS` form,
    /// malformed typed signatures. Call it from a plugin's tests.
    /// - Parameters:
    ///   - jobs: The JSON jobs.
    ///   - typedJobs: The typed jobs.
    /// - Returns: One message per problem; empty when all is well.
    public static func problems(jobs: [any Job.Type], typedJobs: [TypedJob] = []) -> [String] {
        var problems: [String] = []
        var seen: Set<String> = []
        let all =
            jobs.map { ($0.name, JobOptions(of: $0), nil as String?) }
            + typedJobs.map { ($0.name, $0.options, $0.signature as String?) }
        for (name, options, signature) in all {
            if !isValidJobName(name) {
                problems.append("job name \"\(name)\" is not a slug ([a-z0-9][a-z0-9._-]*); set a static name")
            }
            if !seen.insert(name).inserted {
                problems.append("job name \"\(name)\" is used twice; the first one is kept")
            }
            if !options.isEmpty, options.json == nil {
                problems.append("job \"\(name)\" has an option that is not a finite number")
            }
            if let anchor = options.anchor, !isAnchor(anchor) {
                problems.append("job \"\(name)\" has anchor \"\(anchor)\"; expected \"HH:MM:SS\"")
            }
            if let signature, !isSignature(signature) {
                problems.append(
                    "typed job \"\(name)\" has signature \"\(signature)\"; expected \"(name:type,...)->type\" "
                        + "with types bool i32 i64 u32 u64 f32 f64 str (return also void)")
            }
        }
        return problems
    }

    // MARK: - Description

    /// Plugin name → address of its `pq_plugin`, built once.
    private static let descriptors = Mutex<[String: UInt]>([:])

    /// Builds the `pq_plugin` and its `pq_job_def` array. Nothing here is ever freed: the host keeps
    /// pointers into it for as long as the library is loaded.
    private static func buildDescriptor(
        name: String,
        version: String,
        jobs: [any Job.Type],
        typedJobs: [TypedJob]
    ) -> UnsafeMutablePointer<pq_plugin> {
        var definitions: [pq_job_def] = []
        var seen: Set<String> = []
        for job in jobs {
            let runner = JobRunner(job, plugin: name)
            guard seen.insert(runner.name).inserted else { continue }
            runners.register(runner, plugin: name)
            definitions.append(
                pq_job_def(
                    name: strdup(runner.name),
                    doc: runner.doc.flatMap { strdup($0) },
                    options_json: runner.options.json.flatMap { strdup($0) },
                    run: { call in PQPlugin.run(call) },
                    cancel: { call in PQPlugin.cancel(call) },
                    fn: nil,
                    signature: nil
                ))
        }
        for job in typedJobs {
            guard seen.insert(job.name).inserted else { continue }
            definitions.append(
                pq_job_def(
                    name: strdup(job.name),
                    doc: job.doc.flatMap { strdup($0) },
                    options_json: job.options.json.flatMap { strdup($0) },
                    run: nil,
                    cancel: nil,
                    fn: job.function,
                    signature: strdup(job.signature)
                ))
        }
        let table = UnsafeMutablePointer<pq_job_def>.allocate(capacity: max(definitions.count, 1))
        table.initialize(from: definitions, count: definitions.count)
        let plugin = UnsafeMutablePointer<pq_plugin>.allocate(capacity: 1)
        plugin.initialize(
            to: pq_plugin(
                abi_version: abiVersion,
                struct_size: UInt32(MemoryLayout<pq_plugin>.size),
                name: strdup(name),
                version: strdup(version),
                toolchain: strdup(pqSwiftToolchain),
                job_count: UInt32(definitions.count),
                jobs: UnsafePointer(table),
                free_string: { string in free(string) }
            ))
        return plugin
    }

    // MARK: - Calls

    /// Job name → how to run it. One table per copy of PQKit, that is per plugin library.
    private static let runners = RunnerTable()
    /// The calls in flight, so that `cancel` finds their Swift task.
    private static let running = RunningCalls()

    /// `pq_job_def.run` of every JSON job: decodes the arguments, then runs the job in a Swift task
    /// and returns at once. The unstructured task is the bridge from a C callback into async code.
    private static func run(_ call: UnsafePointer<pq_call>?) {
        guard let call else { return }
        let state = CallState(call)
        let jobName = call.pointee.job_name.map { String(cString: $0) } ?? ""
        guard let runner = runners[jobName] else {
            state.complete(ok: false, PQKitError.unknownJob(job: jobName, plugin: runners.pluginName).description)
            return
        }
        let argumentsJSON = call.pointee.args_json.map { String(cString: $0) } ?? "{}"
        let work: @Sendable (JobContext) async -> Outcome
        switch runner.prepare(argumentsJSON) {
        case .success(let prepared): work = prepared
        case .failure(let error):
            state.complete(ok: false, error.description)
            return
        }
        let context = JobContext(
            call: state,
            taskID: call.pointee.task_id.map { String(cString: $0) } ?? "",
            jobName: jobName,
            attempt: Int(call.pointee.attempt)
        )
        guard let id = running.begin(state.address) else {
            // The host handed us a call that is still running: it must not be completed twice, and
            // the running one owns it.
            context.log(.error, "pq: call for job \"\(jobName)\" started twice; the second start is ignored")
            return
        }
        // The one unstructured task of the SDK: `run` is a C callback on a host thread, with no
        // task to be a child of, and must return at once. The task is kept in `running` and
        // cancelled through `cancel`/`is_cancelled`; it ends by calling `complete`.
        let task = Task {
            let outcome = await work(context)
            // Leave the registry before completing: once `complete` returns, the host may reuse the
            // call's address for another call.
            running.end(state.address, id: id)
            switch outcome {
            case .success(let json): state.complete(ok: true, json)
            case .failure(let message): state.complete(ok: false, message)
            }
        }
        running.attach(task, to: state.address, id: id)
    }

    /// `pq_job_def.cancel` of every JSON job: cancels the call's Swift task. The call pointer is only
    /// used as a key, never read, so a late or stray cancel is harmless.
    private static func cancel(_ call: UnsafePointer<pq_call>?) {
        guard let call else { return }
        running.cancel(UInt(bitPattern: call))
    }
}

/// How a run ended: a JSON result or an error message.
enum Outcome: Sendable {
    case success(String)
    case failure(String)
}

/// One job type, made callable with JSON.
struct JobRunner: Sendable {
    let name: String
    let doc: String?
    let options: JobOptions
    /// Decodes the kwargs; returns the run to do, or why it cannot be done.
    let prepare: @Sendable (String) -> Result<@Sendable (JobContext) async -> Outcome, PQKitError>

    init<J: Job>(_ job: J.Type, plugin: String) {
        let name = J.name
        self.name = name
        doc = J.doc.isEmpty ? nil : J.doc
        options = JobOptions(of: job)
        let periodicArguments = Self.periodicArguments(of: job)
        prepare = { json in
            let arguments: J.Arguments
            if let periodicArguments, isEmptyObject(json) {
                arguments = periodicArguments
            } else {
                do {
                    arguments = try JSONDecoder().decode(J.Arguments.self, from: Data(json.utf8))
                } catch {
                    return .failure(.invalidArguments(job: name, detail: describeDecodingError(error)))
                }
            }
            return .success { context in
                let output: J.Output
                do {
                    output = try await J().run(arguments, context: context)
                } catch is CancellationError {
                    return .failure("cancelled")
                } catch {
                    return .failure(String(describing: error))
                }
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                do {
                    return .success(String(decoding: try encoder.encode(output), as: UTF8.self))
                } catch {
                    return .failure(PQKitError.invalidResult(job: name, detail: "\(error)").description)
                }
            }
        }
    }

    private static func periodicArguments<J: Job>(of job: J.Type) -> J.Arguments? {
        guard let periodic = job as? any PeriodicJob.Type else { return nil }
        return fixedArguments(of: periodic) as? J.Arguments
    }

    private static func fixedArguments<P: PeriodicJob>(of job: P.Type) -> (any Sendable)? {
        P.periodicArguments
    }
}

/// The jobs of this plugin by name. The host calls `run` from many threads.
final class RunnerTable: Sendable {
    private let state = Mutex<(plugin: String, runners: [String: JobRunner])>(("", [:]))

    /// The name of the plugin that registered jobs (for messages).
    var pluginName: String { state.withLock { $0.plugin } }

    subscript(name: String) -> JobRunner? { state.withLock { $0.runners[name] } }

    /// Adds a job; an existing one with the same name stays.
    func register(_ runner: JobRunner, plugin: String) {
        state.withLock { state in
            if state.plugin.isEmpty { state.plugin = plugin }
            if state.runners[runner.name] == nil { state.runners[runner.name] = runner }
        }
    }
}

/// The calls whose Swift task is running, keyed by the `pq_call` address. An id per run keeps a late
/// step of one run from touching the entry of a later call that reuses the address.
final class RunningCalls: Sendable {
    private struct Entry {
        var id: UInt64
        var task: Task<Void, Never>?
        var cancelRequested = false
    }

    private let state = Mutex<(nextID: UInt64, entries: [UInt: Entry])>((1, [:]))

    /// Registers a call before its task exists, so that a cancel arriving meanwhile is kept.
    /// - Returns: The run's id, or `nil` when a call at this address is already running.
    func begin(_ address: UInt) -> UInt64? {
        state.withLock { state in
            guard state.entries[address] == nil else { return nil }
            let id = state.nextID
            state.nextID += 1
            state.entries[address] = Entry(id: id)
            return id
        }
    }

    /// Hands the run's task to the registry, and cancels it if a cancel came first. Does nothing when
    /// the run already ended.
    func attach(_ task: Task<Void, Never>, to address: UInt, id: UInt64) {
        let cancelNow = state.withLock { state -> Bool in
            guard state.entries[address]?.id == id else { return false }
            state.entries[address]?.task = task
            return state.entries[address]?.cancelRequested ?? false
        }
        if cancelNow { task.cancel() }
    }

    /// Forgets a run that ended.
    func end(_ address: UInt, id: UInt64) {
        state.withLock { state in
            if state.entries[address]?.id == id { state.entries[address] = nil }
        }
    }

    /// Cancels the run at this address, now or as soon as its task exists.
    func cancel(_ address: UInt) {
        let task = state.withLock { state -> Task<Void, Never>? in
            guard state.entries[address] != nil else { return nil }
            state.entries[address]?.cancelRequested = true
            return state.entries[address]?.task
        }
        // Outside the lock: cancellation handlers run synchronously on this thread.
        task?.cancel()
    }

    /// How many runs are in flight.
    var count: Int { state.withLock { $0.entries.count } }
}

/// Whether JSON text is an empty object, `{}` with any whitespace.
func isEmptyObject(_ json: String) -> Bool {
    json.utf8.filter { !($0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D) }.elementsEqual("{}".utf8)
}

/// Says what was wrong with the kwargs in words a user of `pq submit` understands.
func describeDecodingError(_ error: any Error) -> String {
    guard let error = error as? DecodingError else { return "\(error)" }
    func path(_ keys: [any CodingKey]) -> String {
        var text = ""
        for key in keys {
            if let index = key.intValue, key.stringValue.hasPrefix("Index") {
                text += "[\(index)]"
            } else {
                text += text.isEmpty ? key.stringValue : ".\(key.stringValue)"
            }
        }
        return text
    }
    switch error {
    case .keyNotFound(let key, let context):
        return "missing key \"\(path(context.codingPath + [key]))\""
    case .valueNotFound(let type, let context):
        if context.codingPath.isEmpty { return "they must be a JSON object, not null" }
        return "\"\(path(context.codingPath))\" is null, expected \(type)"
    case .typeMismatch(let type, let context):
        if context.codingPath.isEmpty {
            return "they must be a JSON object (\(context.debugDescription))"
        }
        return "wrong type for \"\(path(context.codingPath))\", expected \(type) (\(context.debugDescription))"
    case .dataCorrupted(let context):
        if context.codingPath.isEmpty {
            let detail = context.underlyingError.map { "\($0)" } ?? context.debugDescription
            return "they are not valid JSON (\(detail))"
        }
        return "invalid value for \"\(path(context.codingPath))\": \(context.debugDescription)"
    @unknown default:
        return "\(error)"
    }
}

/// Whether a string is an anchor, `"HH:MM:SS"` with hours 00-23 and minutes and seconds 00-59.
func isAnchor(_ text: String) -> Bool {
    let parts = text.split(separator: ":", omittingEmptySubsequences: false)
    guard parts.count == 3,
        parts.allSatisfy({ $0.utf8.count == 2 && $0.utf8.allSatisfy { (0x30...0x39).contains($0) } })
    else { return false }
    let numbers = parts.compactMap { Int($0) }
    return numbers.count == 3 && numbers[0] < 24 && numbers[1] < 60 && numbers[2] < 60
}

/// Whether a string is a typed job signature, `(name:type,...)->type` without spaces.
func isSignature(_ text: String) -> Bool {
    let argumentTypes: Set<Substring> = ["bool", "i32", "i64", "u32", "u64", "f32", "f64", "str"]
    guard text.hasPrefix("("), let close = text.firstRange(of: ")->") else { return false }
    let returnType = text[close.upperBound...]
    guard returnType == "void" || argumentTypes.contains(returnType) else { return false }
    let list = text[text.index(after: text.startIndex)..<close.lowerBound]
    if list.isEmpty { return true }
    var names: Set<Substring> = []
    for parameter in list.split(separator: ",", omittingEmptySubsequences: false) {
        let pair = parameter.split(separator: ":", omittingEmptySubsequences: false)
        guard pair.count == 2, argumentTypes.contains(pair[1]), let first = pair[0].first,
            first.isASCII, first.isLetter || first == "_",
            pair[0].allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }),
            names.insert(pair[0]).inserted
        else { return false }
    }
    return true
}
