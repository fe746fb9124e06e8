import ArgumentParser
import PQCore

extension PQ {
    /// `pq __worker`: a worker process, started by its host (never by hand).
    struct Worker: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "__worker", abstract: "A worker process of a pq host (started by the host).",
            shouldDisplay: false)

        @Option(name: .customLong("host-pid")) var hostPID: Int32 = 0

        func run() throws {
            WorkerProcess.main(hostPID: hostPID)
        }
    }
}
