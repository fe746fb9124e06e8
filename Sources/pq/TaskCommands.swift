import ArgumentParser
import Foundation
import PQCore

extension PQ {
    /// `pq status ID`.
    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show one task: the task object (JSON, status as its number).")
        @OptionGroup var common: CommonOptions
        @Argument(help: "The task id.") var id: String
        @Flag(help: "The task object as JSON (the default and only format; kept for scripts that pass it).") var json =
            false
        @Flag(help: "A readable listing instead of JSON.") var human = false

        func run() async throws {
            try await reportingErrors {
                let store = try await common.resolve().openStore()
                guard let task = try await store.task(id: id) else { throw CLIError("no task with id \(id)") }
                emit(human && !json ? describe(task) : task.json())
                await store.close()
            }
        }
    }

    /// `pq tasks`.
    struct Tasks: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List recent tasks, newest first.")
        @OptionGroup var common: CommonOptions
        @Option(help: "Only tasks in this state (name or number, e.g. SUCCESS or 1).") var status: String?
        @Option(help: "Only tasks of this job.") var job: String?
        @Option(help: "At most this many (default 50).") var limit: Int = 50
        @Flag(help: "Print a JSON array of task objects.") var json = false

        func validate() throws {
            if limit < 1 { throw ValidationError("--limit must be at least 1") }
            if let status, TaskStatus(parsing: status) == nil {
                throw ValidationError("--status must be one of QUEUED STARTED RETRY REVOKED FAILURE SUCCESS or 1-6")
            }
        }

        func run() async throws {
            try await reportingErrors {
                let store = try await common.resolve().openStore()
                let tasks = try await store.tasks(
                    status: status.flatMap { TaskStatus(parsing: $0) }, job: job, limit: limit)
                if json {
                    emit("[" + tasks.map { $0.json() }.joined(separator: ",") + "]")
                } else if tasks.isEmpty {
                    emit("no tasks")
                } else {
                    emit(
                        renderTable(
                            ["ID", "STATUS", "NAME", "QUEUE", "QUEUED", "RETRY"],
                            tasks.map {
                                [$0.id, $0.status.name, $0.name, $0.queue, formatTime($0.timeQueued), "\($0.retry)"]
                            }))
                }
                await store.close()
            }
        }
    }

    /// `pq revoke ID`.
    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a queued task, or cancel a running one.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "The task id.") var id: String

        func run() async throws {
            try await reportingErrors {
                let store = try await common.resolve().openStore()
                let outcome = try await store.revoke(id: id)
                await store.close()
                switch outcome {
                case .revoked: emit("revoked \(id)")
                case .cancelRequested: emit("cancelling \(id): it is running; its host stops it within a few seconds")
                case .alreadyFinished(let status):
                    throw CLIError("task \(id) is already finished (\(status.name)); nothing to revoke")
                case .notFound: throw CLIError("no task with id \(id)")
                }
            }
        }
    }

    /// `pq wait ID ...`.
    struct Wait: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Wait until tasks are ready; exit 0 only if all succeeded.",
            discussion:
                "Give the ids as arguments, or '-' to read them from standard input, one a line (the output of `pq submit --batch`)."
        )
        @OptionGroup var common: CommonOptions
        @Argument(help: "Task ids, or - to read them from standard input.") var ids: [String]
        @Option(help: "Give up after this many seconds (exit 2).") var timeout: Double?
        @Flag(help: "Print the task objects as a JSON array.") var json = false

        func validate() throws {
            if ids.isEmpty { throw ValidationError("give at least one task id, or - to read them from standard input") }
            if let t = timeout, !(t >= 0) { throw ValidationError("--timeout must be >= 0") }
        }

        /// The ids: the arguments (``PQ/gatherIDs(_:)`` may have joined runs of them into one
        /// argument), with `-` standing for the lines of standard input.
        func allIDs() throws -> [String] {
            var out: [String] = []
            for argument in ids {
                if argument == "-" {
                    let text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
                    for line in text.split(whereSeparator: \.isNewline) {
                        let id = line.trimmingCharacters(in: .whitespaces)
                        if !id.isEmpty { out.append(id) }
                    }
                } else {
                    out += argument.split(separator: PQ.idSeparator, omittingEmptySubsequences: true).map(String.init)
                }
            }
            if out.isEmpty { throw CLIError("no task ids on standard input") }
            return out
        }

        func run() async throws {
            try await reportingErrors {
                let ids = try allIDs()
                let store = try await common.resolve().openStore()
                guard let done = try await waitUntilReady(ids, store: store, timeout: timeout) else {
                    throw CLIError("timed out after \(timeout ?? 0) s waiting for \(ids.count) task(s)", exitCode: 2)
                }
                let tasks = ids.compactMap { done[$0] }
                if json {
                    emit("[" + tasks.map { $0.json() }.joined(separator: ",") + "]")
                } else {
                    var text = ""
                    text.reserveCapacity(tasks.count * 42)
                    for t in tasks { text += "\(t.id) \(t.status.name)\n" }
                    FileHandle.standardOutput.write(Data(text.utf8))
                }
                await store.close()
                if !tasks.allSatisfy({ $0.status == .success }) { throw ExitCode(1) }
            }
        }
    }

    /// `pq watch`.
    struct Watch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Follow task events, one JSON object a line.")
        @OptionGroup var common: CommonOptions
        @Flag(help: "JSON lines (the default and only format).") var json = false
        @Option(
            help:
                "Only these kinds (comma-separated: queued,started,retry,done,plugin_loaded,plugin_failed,plugin_removed)."
        ) var events: String?
        @Option(help: "Stop after this many events.") var count: Int?

        func run() async throws {
            try await reportingErrors {
                let store = try await common.resolve().openStore()
                let kinds = events.map { Set(TaskPaths.split($0)) }
                if let kinds, let bad = kinds.first(where: { TaskEventKind(rawValue: $0) == nil }) {
                    throw CLIError(
                        "unknown event kind '\(bad)' (use queued, started, retry, done, plugin_loaded, plugin_failed, plugin_removed)"
                    )
                }
                var seen = 0
                try await store.followEvents { event in
                    if let kinds, !kinds.contains(event.kind.rawValue) { return true }
                    emit(event.json())
                    seen += 1
                    return count.map { seen < $0 } ?? true
                }
                await store.close()
            }
        }
    }

    /// `pq queues`.
    struct Queues: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show queue sizes.")
        @OptionGroup var common: CommonOptions
        @Flag(help: "Print a JSON array.") var json = false

        func run() async throws {
            try await reportingErrors {
                let store = try await common.resolve().openStore()
                let sizes = try await store.queueSizes()
                if json {
                    emit(JSONValue.array(sizes.map(\.listingJSON)).jsonText)
                } else if sizes.isEmpty {
                    emit("no queued or running tasks")
                } else {
                    emit(
                        renderTable(
                            ["QUEUE", "QUEUED", "DELAYED", "RETRY", "STARTED"],
                            sizes.map { [$0.queue, "\($0.queued)", "\($0.delayed)", "\($0.retry)", "\($0.started)"] }))
                }
                await store.close()
            }
        }
    }
}
