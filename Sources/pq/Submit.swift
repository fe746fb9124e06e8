import ArgumentParser
import Foundation
import PQCore

extension PQ {
    /// `pq submit`: queues tasks.
    struct Submit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Queue a task (or one per line of --batch FILE); prints the task id.",
            discussion:
                "KEY=VALUE takes VALUE as JSON when it parses, else as a string. The job must be published by a running host or defined by --task-paths."
        )

        @OptionGroup var common: CommonOptions

        @Argument(help: "The job name.")
        var job: String

        @Argument(help: "Keyword arguments as KEY=VALUE.")
        var assignments: [String] = []

        @Option(
            help: "Keyword arguments as a JSON object, or - to read it from stdin (KEY=VALUE pairs override its keys).")
        var args: String?

        @Option(help: "Seconds before the task may run.")
        var delay: Double?

        @Option(help: "Seconds the run may take before it is revoked (default: the job's).")
        var timeout: Double?

        @Option(help: "Seconds from now after which the task is revoked if it has not started.")
        var expiry: Double?

        @Option(help: "The queue (default: the job's).")
        var queue: String?

        @Option(help: "Queue one task per line of FILE (- for stdin), each line a JSON object of kwargs.")
        var batch: String?

        @Flag(help: "Wait until the task is ready; exit 0 only on SUCCESS.")
        var wait = false

        @Flag(help: "Print the task object instead of the id.")
        var json = false

        func validate() throws {
            if let d = delay, !(d >= 0) { throw ValidationError("--delay must be a number of seconds >= 0") }
            if let t = timeout, !(t > 0) { throw ValidationError("--timeout must be a number of seconds > 0") }
            if let e = expiry, !(e > 0) { throw ValidationError("--expiry must be a number of seconds > 0") }
            if batch != nil && (!assignments.isEmpty || args != nil) {
                throw ValidationError("--batch takes the kwargs from the file; do not pass KEY=VALUE or --args with it")
            }
            if let q = queue, q.isEmpty { throw ValidationError("--queue must not be empty") }
        }

        func run() async throws {
            try await reportingErrors {
                let settings = try common.resolve()
                let store = try await settings.openStore()
                let template = try await resolveJob(settings: settings, store: store)
                let now = TaskClock.now()
                func task(_ kwargs: String) -> NewTask {
                    var t = NewTask(
                        options: template.options, name: job, kwargs: kwargs, queue: queue, delay: delay,
                        timeout: timeout,
                        expiry: expiry.map { now + $0 })
                    t.plugin = template.plugin
                    t.pluginVersion = template.pluginVersion
                    return t
                }
                if let batch {
                    let lines = try readBatch(batch)
                    for (n, line) in lines.enumerated() {
                        try checkSignature(line, template: template, context: "batch line \(n + 1): ")
                    }
                    var out = ""
                    var index = 0
                    while index < lines.count {
                        let chunk = lines[index..<min(lines.count, index + 10_000)].map(task)
                        let records = try await enqueue(chunk, store: store)
                        for r in records {
                            out += json ? r.json() : r.id
                            out += "\n"
                        }
                        index += chunk.count
                    }
                    FileHandle.standardOutput.write(Data(out.utf8))
                    await store.close()
                    return
                }
                let kwargs = try buildKwargs()
                try checkSignature(kwargs, template: template)
                let record = try await enqueue([task(kwargs)], store: store)[0]
                if !wait {
                    emit(json ? record.json() : record.id)
                    await store.close()
                    return
                }
                if !json { emit(record.id) }
                guard let done = try await waitUntilReady([record.id], store: store, timeout: nil)?[record.id] else {
                    throw CLIError("task \(record.id) vanished while waiting")
                }
                if json { emit(done.json()) }
                await store.close()
                if done.status != .success {
                    printError(
                        "pq: task \(done.id) ended \(done.status.name)" + (done.exception.map { ": \($0)" } ?? ""))
                    throw ExitCode(1)
                }
            }
        }

        struct Template {
            var options: JobOptions
            var plugin: String?
            var pluginVersion: String?
            /// `(name:type,...)->type` of a typed job.
            var signature: String?
        }

        /// Refuses kwargs that do not fit a typed job's signature, before anything is queued.
        func checkSignature(_ kwargs: String, template: Template, context: String = "") throws {
            guard let text = template.signature, let signature = try? TypedSignature.parse(text) else { return }
            do { try signature.check(kwargsJSON: kwargs) } catch {
                throw CLIError("\(context)job '\(job)': \(error); nothing was queued")
            }
        }

        /// Finds the job among the jobs published by hosts, else among --task-paths.
        func resolveJob(settings: Settings, store: any TaskStore) async throws -> Template {
            let published: [JobInfo]
            do { published = try await store.publishedJobs() } catch {
                throw CLIError("cannot read the store \(settings.store): \(error)")
            }
            if !settings.taskPaths.isEmpty {
                let registry = JobRegistry()
                _ = try? settings.loadPlugins(into: registry, quiet: true)
                if let def = registry.job(named: job) {
                    return Template(
                        options: def.options, plugin: def.plugin.name, pluginVersion: def.plugin.version,
                        signature: def.signature)
                }
            }
            if let info = published.first(where: { $0.name == job }) {
                return Template(
                    options: info.jobOptions, plugin: info.plugin, pluginVersion: info.pluginVersion,
                    signature: info.signature)
            }
            var message = "unknown job '\(job)': no running host has published it"
            message +=
                settings.taskPaths.isEmpty
                ? " (pass --task-paths to look in plugins)"
                : " and task_paths \(settings.taskPaths.joined(separator: ",")) do not define it"
            let known = Set(published.map(\.name)).sorted()
            if !known.isEmpty { message += "; known jobs: " + known.prefix(20).joined(separator: ", ") }
            throw CLIError(message + "; nothing was queued")
        }

        func enqueue(_ tasks: [NewTask], store: any TaskStore) async throws -> [TaskRecord] {
            do { return try await store.enqueue(tasks) } catch { throw CLIError("cannot queue: \(error)") }
        }

        func buildKwargs() throws -> String {
            var pairs: [(String, JSONValue)] = []
            if var args {
                if args == "-" {
                    args = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
                }
                do {
                    let checked = try TaskArguments.validate(args)
                    if case .object(let p) = try JSONValue.parse(checked) { pairs = p }
                } catch { throw CLIError("--args: \(error)") }
            }
            for assignment in assignments {
                guard let eq = assignment.firstIndex(of: "="), eq != assignment.startIndex else {
                    throw CLIError("argument '\(assignment)' is not KEY=VALUE")
                }
                let key = String(assignment[..<eq])
                let raw = String(assignment[assignment.index(after: eq)...])
                let value = (try? JSONValue.parse(raw)) ?? .string(raw)
                pairs.removeAll { $0.0 == key }
                pairs.append((key, value))
            }
            let text = JSONValue.object(pairs).jsonText
            do { return try TaskArguments.validate(text) } catch { throw CLIError("\(error)") }
        }

        func readBatch(_ path: String) throws -> [String] {
            let data: Data
            if path == "-" {
                data = FileHandle.standardInput.readDataToEndOfFile()
            } else {
                guard let d = FileManager.default.contents(atPath: path) else {
                    throw CLIError("cannot read batch file \(path)")
                }
                data = d
            }
            var out: [String] = []
            for (n, line) in String(decoding: data, as: UTF8.self).split(
                separator: "\n", omittingEmptySubsequences: false
            ).enumerated() {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if trimmed.isEmpty { continue }
                do { out.append(try TaskArguments.validate(trimmed)) } catch {
                    throw CLIError("batch line \(n + 1): \(error); nothing was queued")
                }
            }
            return out
        }
    }
}
