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
            Watch.self, Queues.self, Reload.self, Hosts.self, Web.self, New.self, Install.self, Header.self,
            Worker.self,
        ]
    )

    /// What ``gatherIDs(_:)`` joins ids with (the ASCII unit separator, never in an id).
    static let idSeparator: Character = "\u{1F}"

    /// `pq wait` with thousands of ids: ArgumentParser stores a repeated argument by copying the
    /// array of values gathered so far for each one (quadratic: 10,000 ids took 7 s), so runs of
    /// plain arguments (neither an option nor the value right after one) are joined into one
    /// argument here, and `Wait` splits them again.
    static func gatherIDs(_ arguments: [String]) -> [String] {
        guard arguments.first == "wait", arguments.count > 16 else { return arguments }
        var out: [String] = []
        var run: [String] = []
        var previous = ""
        func flush() {
            if !run.isEmpty { out.append(run.joined(separator: String(idSeparator))) }
            run.removeAll()
        }
        for (index, argument) in arguments.enumerated() {
            if argument == "--" {
                flush()
                out += arguments[index...]
                return out
            }
            let plain =
                index > 0 && !argument.hasPrefix("-") && !previous.hasPrefix("-") && !argument.contains(idSeparator)
            if plain {
                run.append(argument)
            } else {
                flush()
                out.append(argument)
            }
            previous = argument
        }
        flush()
        return out
    }

    /// Runs the command; a usage error is one line on stderr (scripts read the first line), help
    /// and version go to stdout as usual.
    static func main() async {
        do {
            var command = try parseAsRoot(gatherIDs(Array(CommandLine.arguments.dropFirst())))
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
            FileHandle.standardError.write(
                Data("pq: error: \(message.replacingOccurrences(of: "Error: ", with: ""))\n".utf8))
            Foundation.exit(code.rawValue)
        }
    }
}
