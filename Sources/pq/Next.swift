import ArgumentParser
import Foundation
import PQCore

extension PQ {
    /// `pq next`: when each periodic job runs next.
    struct Next: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show each periodic job with its next run time (UTC) and the seconds until then.",
            discussion: """
                Jobs come from --task-paths (or PQ_TASK_PATHS / pq.toml) when set, else from the jobs \
                that hosts published to the store.
                """)

        @OptionGroup var common: CommonOptions

        @Flag(help: "Print a JSON array of {name, schedule, next_run (epoch seconds), in_seconds}.")
        var json = false

        func run() async throws {
            try await reportingErrors {
                let settings = try common.resolve()
                var jobs: [(name: String, schedule: PeriodicSchedule)] = []
                if !settings.taskPaths.isEmpty {
                    let registry = JobRegistry()
                    _ = try settings.loadPlugins(into: registry)
                    jobs = registry.jobs.compactMap { job in job.options.schedule.map { (job.name, $0) } }
                } else {
                    let store = try await settings.openStore()
                    let published: [JobInfo]
                    do { published = try await store.publishedJobs() } catch {
                        await store.close()
                        throw CLIError("cannot read the published jobs of \(settings.store): \(error)")
                    }
                    await store.close()
                    jobs = published.filter(\.periodic).compactMap { job in job.jobOptions.schedule.map { (job.name, $0) } }
                }
                let now = TaskClock.now()
                let rows = jobs.map { job in (job.name, job.schedule, job.schedule.nextRun(after: now)) }
                if json {
                    let array = rows.map { name, schedule, next -> JSONValue in
                        .object([
                            ("name", .string(name)), ("schedule", .string(schedule.description)),
                            ("next_run", next.map(Self.number) ?? .null),
                            ("in_seconds", next.map { .double((($0 - now) * 1000).rounded() / 1000) } ?? .null),
                        ])
                    }
                    emit(JSONValue.array(array).jsonText)
                    return
                }
                if rows.isEmpty {
                    emit("no periodic jobs")
                    return
                }
                emit(
                    renderTable(
                        ["NAME", "SCHEDULE", "NEXT RUN (UTC)", "IN"],
                        rows.map { name, schedule, next in
                            [
                                name, schedule.description, next.map(formatTime) ?? "never",
                                next.map { String(format: "%.1fs", $0 - now) } ?? "-",
                            ]
                        }))
            }
        }

        private static func number(_ d: Double) -> JSONValue {
            d == d.rounded() && abs(d) < 1e15 ? .int(Int64(d)) : .double(d)
        }

    }
}
