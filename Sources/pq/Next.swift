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
                let now = TaskClock.now()
                let rows: [ScheduleListing.Row]
                if !settings.taskPaths.isEmpty {
                    let registry = JobRegistry()
                    _ = try settings.loadPlugins(into: registry)
                    rows = ScheduleListing.rows(
                        registry.jobs.compactMap { job in job.options.schedule.map { (job.name, $0) } }, now: now)
                } else {
                    let store = try await settings.openStore()
                    let published: [JobInfo]
                    do { published = try await store.publishedJobs() } catch {
                        await store.close()
                        throw CLIError("cannot read the published jobs of \(settings.store): \(error)")
                    }
                    await store.close()
                    rows = ScheduleListing.rows(published: published, now: now)
                }
                if json {
                    emit(ScheduleListing.json(rows, now: now).jsonText)
                    return
                }
                if rows.isEmpty {
                    emit("no periodic jobs")
                    return
                }
                emit(
                    renderTable(
                        ["NAME", "SCHEDULE", "NEXT RUN (UTC)", "IN"],
                        rows.map { row in
                            [
                                row.name, row.schedule.description, row.next.map(formatTime) ?? "never",
                                row.next.map { String(format: "%.1fs", $0 - now) } ?? "-",
                            ]
                        }))
            }
        }
    }
}
