import ArgumentParser
import Foundation

/// The pq command line: a job host for Linux whose jobs are shared libraries.
@main
struct PQ: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pq",
        abstract: "A job host for Linux: jobs are plugins (.so) found through task_paths.",
        version: "0.1.0",
        subcommands: [
            Serve.self, Jobs.self, Next.self, Submit.self, Status.self, Tasks.self, Revoke.self, Wait.self,
            Watch.self, Queues.self, Reload.self, Hosts.self, Worker.self,
        ]
    )

    /// Runs the command; a usage error is one line on stderr (scripts read the first line), help
    /// and version go to stdout as usual.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            let code = exitCode(for: error)
            if code == .success || code == .validationFailure && fullMessage(for: error).hasPrefix("USAGE") {
                exit(withError: error)
            }
            if error is ExitCode { exit(withError: error) }
            let message = self.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
            FileHandle.standardError.write(Data("pq: error: \(message.replacingOccurrences(of: "Error: ", with: ""))\n".utf8))
            Foundation.exit(code.rawValue)
        }
    }
}
