import ArgumentParser
import PQCore

extension PQ {
    /// `pq hosts`: the latest status of the hosts on the store.
    struct Hosts: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Show the hosts on the store: running tasks, processed count, queues (from their periodic status).")
        @OptionGroup var common: CommonOptions
        @Option(help: "Only hosts heard from in the last N seconds (default 60).") var within: Double = 60
        @Flag(help: "Print a JSON array of status objects.") var json = false

        func run() async throws {
            try await reportingErrors {
                let store = try await common.resolve().openStore()
                let statuses = try await store.hostStatuses(since: TaskClock.now() - within)
                await store.close()
                if json {
                    emit("[" + statuses.joined(separator: ",") + "]")
                    return
                }
                if statuses.isEmpty {
                    emit("no host status in the last \(Int(within)) s")
                    return
                }
                let rows = statuses.compactMap { text -> [String]? in
                    guard let v = try? JSONValue.parse(text) else { return nil }
                    func str(_ k: String) -> String {
                        switch v[k] {
                        case .string(let s): return s
                        case .int(let i): return String(i)
                        case .double(let d): return formatTime(d)
                        default: return "-"
                        }
                    }
                    var workers = "-"
                    if case .array(let list)? = v["workers"] {
                        // pid:tasks:RSS of each worker process.
                        workers = list.map { w -> String in
                            let pid = w["pid"]?.doubleValue.map { String(Int($0)) } ?? "?"
                            let tasks = w["tasks"]?.doubleValue.map { String(Int($0)) } ?? "?"
                            let rss = w["rss_kb"]?.doubleValue.map { String(Int($0 / 1024)) + "M" } ?? "?"
                            var state = ""
                            if case .string(let s)? = w["state"], s != "ready" { state = " " + s }
                            return "\(pid):\(tasks):\(rss)\(state)"
                        }.joined(separator: " ")
                    }
                    return [
                        str("worker"), str("state"), str("running"), str("concurrent_tasks"), str("processed"),
                        str("time"),
                        str("isolation"), workers,
                    ]
                }
                emit(
                    renderTable(
                        [
                            "WORKER", "STATE", "RUNNING", "SLOTS", "PROCESSED", "SEEN", "ISOLATION",
                            "PROCESSES (PID:TASKS:RSS)",
                        ], rows))
            }
        }
    }
}
