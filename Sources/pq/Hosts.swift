import ArgumentParser
import PQCore

extension PQ {
    /// `pq hosts`: the latest status of the hosts on the store.
    struct Hosts: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the hosts on the store: running tasks, processed count, queues (from their periodic status).")
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
                    return [str("worker"), str("state"), str("running"), str("concurrent_tasks"), str("processed"), str("time")]
                }
                emit(renderTable(["WORKER", "STATE", "RUNNING", "SLOTS", "PROCESSED", "SEEN"], rows))
            }
        }
    }
}
