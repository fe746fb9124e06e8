import ArgumentParser

/// The pq command line: a job host for Linux whose jobs are shared libraries.
@main
struct PQ: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pq",
        abstract: "A job host for Linux: jobs are plugins (.so) found through task_paths.",
        version: "0.1.0",
        subcommands: [Serve.self, Jobs.self, Next.self, Submit.self, Status.self, Tasks.self, Revoke.self, Wait.self, Watch.self, Queues.self]
    )
}
