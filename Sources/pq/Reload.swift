import ArgumentParser
import Foundation

extension PQ {
    /// `pq reload`: asks the hosts running on this machine to rescan their plugin directories.
    struct Reload: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Ask the pq hosts running on this machine (as this user) to rescan their plugins now.",
            discussion:
                "Sends SIGHUP to every `pq serve` process of this user. Useful where inotify is not available; hosts started with --no-reload rescan too."
        )

        func run() async throws {
            try await reportingErrors {
                let pids = Self.runningHosts()
                guard !pids.isEmpty else { throw CLIError("no running `pq serve` found on this machine for this user") }
                var asked: [Int32] = []
                for pid in pids where kill(pid, SIGHUP) == 0 { asked.append(pid) }
                emit("asked \(asked.count) host(s) to rescan: " + asked.map(String.init).joined(separator: " "))
            }
        }

        /// Pids of `pq serve` processes of this user, found through /proc.
        static func runningHosts() -> [Int32] {
            let me = getuid()
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
            return entries.compactMap(Int32.init).filter { pid in
                guard pid != getpid() else { return false }
                var st = stat()
                guard stat("/proc/\(pid)", &st) == 0, st.st_uid == me,
                    let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline")
                else { return false }
                let argv = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
                guard let first = argv.first, argv.count >= 2 else { return false }
                return (first as NSString).lastPathComponent == "pq" && argv[1] == "serve"
            }.sorted()
        }
    }
}
