import ArgumentParser
import PQCore

extension PQ {
    /// `pq jobs`: resolves task_paths, loads the plugins and lists their jobs.
    struct Jobs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "List the jobs the task_paths resolve to (loads the plugins itself; no server needed); with no task_paths, the jobs the hosts on the store registered."
        )

        @OptionGroup var common: CommonOptions

        @Flag(help: "Print a JSON array of job objects.")
        var json = false

        @Flag(
            name: .customLong("from-store"),
            help: "List the jobs running hosts published to the store instead of loading plugins.")
        var fromStore = false

        func run() async throws {
            try await reportingErrors {
                let settings = try common.resolve()
                if fromStore || settings.taskPaths.isEmpty {
                    let store = try await settings.openStore()
                    let jobs = try await store.publishedJobs()
                    // Hosts that published a status in the last minute name the files they could not load.
                    let statuses = (try? await store.hostStatuses(since: TaskClock.now() - 60)) ?? []
                    await store.close()
                    for failure in Self.loadFailures(statuses) { printError("pq: plugin not loaded on \(failure)") }
                    if json {
                        print(JSONValue.array(jobs.map(\.listingJSON)).jsonText)
                    } else if jobs.isEmpty {
                        print(
                            "no task_paths given, and no host on \(settings.store) has registered jobs (start one with pq serve, or pass --task-paths)"
                        )
                    } else {
                        print(
                            renderTable(
                                ["NAME", "TYPE", "PLUGIN", "VERSION", "FILE", "SIGNATURE/SCHEDULE", "DOC"],
                                jobs.map {
                                    [
                                        $0.name, $0.periodic ? "periodic" : "regular", $0.plugin, $0.pluginVersion,
                                        $0.path ?? "",
                                        $0.signature ?? $0.jobOptions.schedule?.description ?? "", $0.doc ?? "",
                                    ]
                                }))
                    }
                    return
                }
                let registry = JobRegistry()
                _ = try settings.loadPlugins(into: registry)
                let jobs = registry.jobs
                if json {
                    print(JobListing.json(jobs))
                } else {
                    print(JobListing.table(jobs), terminator: "")
                }
            }
        }

        /// `HOST: PATH: REASON` for every plugin_failures entry of the statuses, newest host first.
        static func loadFailures(_ statuses: [String]) -> [String] {
            var lines: [String] = []
            for text in statuses {
                // Only running hosts: a host that stopped says so in its last status.
                guard let status = try? JSONValue.parse(text), case .array(let failures)? = status["plugin_failures"],
                    case .string(let worker)? = status["worker"], status["state"] == .string("running")
                else { continue }
                for failure in failures {
                    guard case .string(let path)? = failure["path"], case .string(let error)? = failure["error"] else {
                        continue
                    }
                    lines.append("\(worker): \(path): \(error)")
                }
            }
            return lines
        }
    }
}

/// Renders job lists.
enum JobListing {
    static func object(_ job: JobDefinition) -> JSONValue {
        var pairs: [(String, JSONValue)] = [
            ("name", .string(job.name)),
            ("type", .string(job.typeName)),
            ("kind", .string(job.signature == nil ? "json" : "typed")),
            ("plugin", .string(job.plugin.name)),
            ("plugin_version", .string(job.plugin.version)),
            ("path", .string(job.plugin.path)),
            ("doc", .string(job.doc)),
        ]
        if let signature = job.signature { pairs.append(("signature", .string(signature))) }
        let o = job.options
        var options: [(String, JSONValue)] = []
        if let v = o.timeout { options.append(("timeout", .double(v))) }
        if let v = o.maxRetries { options.append(("max_retries", .int(Int64(v)))) }
        if let v = o.retryDelay { options.append(("retry_delay", .double(v))) }
        if let v = o.maxConcurrency { options.append(("max_concurrency", .int(Int64(v)))) }
        if !o.canOverlap { options.append(("can_overlap", .bool(false))) }
        pairs.append(("queue", .string(o.queue ?? "default")))
        if let v = o.runEvery { pairs.append(("run_every", .double(v))) }
        if let v = o.anchor { pairs.append(("anchor", .string(v))) }
        if let v = o.cron { pairs.append(("cron", .string(v))) }
        if let v = o.timezone { pairs.append(("timezone", .string(v))) }
        pairs.append(("options", .object(options)))
        return .object(pairs)
    }

    static func json(_ jobs: [JobDefinition]) -> String {
        JSONValue.array(jobs.map(object)).jsonText
    }

    static func schedule(_ job: JobDefinition) -> String {
        if let cron = job.options.cron { return "cron \(cron)" + (job.options.timezone.map { " (\($0))" } ?? "") }
        if let every = job.options.runEvery {
            let e = every == every.rounded() ? String(Int(every)) : String(every)
            return "every \(e)s" + (job.options.anchor.map { " from \($0)" } ?? "")
        }
        return ""
    }

    static func table(_ jobs: [JobDefinition]) -> String {
        if jobs.isEmpty { return "no jobs registered\n" }
        let header = ["NAME", "TYPE", "PLUGIN", "VERSION", "FILE", "SIGNATURE/SCHEDULE", "DOC"]
        let rows = jobs.map { job in
            [
                job.name, job.typeName, job.plugin.name, job.plugin.version, job.plugin.path,
                job.signature ?? schedule(job), job.doc,
            ]
        }
        var widths = header.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < row.count - 1 { widths[i] = max(widths[i], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                i == cells.count - 1 ? c : c + String(repeating: " ", count: widths[i] - c.count)
            }.joined(separator: "  ").trimmingTrailingSpaces() + "\n"
        }
        return line(header) + rows.map(line).joined()
    }
}

extension String {
    fileprivate func trimmingTrailingSpaces() -> String {
        var s = self
        while s.last == " " { s.removeLast() }
        return s
    }

}
