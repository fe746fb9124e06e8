import Foundation
import Logging
import PQCore
import ServiceLifecycle
import Testing

/// Runs `service` in a ServiceGroup beside `body`, then shuts it down gracefully and waits for it:
/// the pool lives exactly as long as the test's body, inside the test's task.
func withService<S: Service, T: Sendable>(
    _ service: S, _ body: @Sendable () async throws -> T
) async throws -> T {
    var logger = Logger(label: "test")
    logger.logLevel = .warning
    let group = ServiceGroup(configuration: .init(services: [.init(service: service)], logger: logger))
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        do {
            let result = try await body()
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return result
        } catch {
            await group.triggerGracefulShutdown()
            try? await tasks.waitForAll()
            throw error
        }
    }
}

/// The worker pool in this process (thread mode) on the memory store, with the C example plugin:
/// what `pq serve` wraps, without a subprocess.
@Suite struct WorkerPoolTests {
    let store = MemoryTaskStore()

    func pool(concurrentTasks: Int = 4, drainTimeout: Double = 2, idlePoll: Double = 0.05) throws -> WorkerPool {
        let registry = JobRegistry()
        registry.register(try PluginLoader().load(path: try Fixtures.requireBuilt(Fixtures.cExamplePlugin)))
        var logger = Logger(label: "pool")
        logger.logLevel = .warning
        return WorkerPool(
            store: store, registry: registry,
            options: .init(concurrentTasks: concurrentTasks, drainTimeout: drainTimeout, idlePoll: idlePoll),
            logger: logger)
    }

    /// Waits (bounded) until the task's status is one of `statuses`.
    func status(_ id: String, becomes statuses: Set<TaskStatus>, within seconds: Double = 10) async throws -> TaskRecord
    {
        var last: TaskRecord?
        let reached = try await poll(timeout: seconds) {
            last = try await store.task(id: id)
            return last.map { statuses.contains($0.status) } ?? false
        }
        try #require(reached, "task \(id) stayed \(String(describing: last?.status))")
        return try #require(last)
    }

    @Test func runsTasksToTheirResults() async throws {
        let pool = try pool()
        let queued = try await store.enqueue([
            NewTask(name: "c.echo", kwargs: #"{"x":1}"#), NewTask(name: "c.fail"), NewTask(name: "c.noop"),
        ])
        try await withService(pool) {
            let echo = try await status(queued[0].id, becomes: [.success])
            #expect(echo.result == #"{"x":1}"#)
            let fail = try await status(queued[1].id, becomes: [.failure])
            #expect(fail.exception?.contains("c.fail failed on purpose") == true)
            _ = try await status(queued[2].id, becomes: [.success])
            // Counted once the outcome is stored, which may be just after the store shows it.
            #expect(await poll(timeout: 5) { pool.processedCount == 3 })
        }
    }

    @Test func aTimeoutRevokesTheRunAndCancelsTheCall() async throws {
        let pool = try pool()
        let task = try await store.enqueue([NewTask(name: "c.sleep", kwargs: #"{"seconds":20}"#, timeout: 0.3)])[0]
        let started = Date()
        try await withService(pool) {
            let ended = try await status(task.id, becomes: [.revoked, .failure, .success])
            #expect(ended.status == .revoked)
            #expect(Date().timeIntervalSince(started) < 10)
        }
    }

    @Test func tasksQueuedWhileItRunsAreTakenWithoutPolling() async throws {
        let pool = try pool(idlePoll: 60)
        try await withService(pool) {
            // Queued after the pool went idle: the store's change signal wakes it (idlePoll is a fallback).
            try await Task.sleep(for: .milliseconds(200))
            let tasks = try await store.enqueue((0..<50).map { _ in NewTask(name: "c.noop") })
            for task in tasks { _ = try await status(task.id, becomes: [.success], within: 5) }
        }
    }

    @Test func gracefulShutdownGivesRunningTasksBack() async throws {
        let pool = try pool(drainTimeout: 0.3)
        let task = try await store.enqueue([NewTask(name: "c.sleep", kwargs: #"{"seconds":30}"#)])[0]
        try await withService(pool) {
            _ = try await status(task.id, becomes: [.started])
        }
        // The pool stopped with the task unfinished: it waits to run again, not lost, not failed.
        let after = try #require(try await store.task(id: task.id))
        #expect(after.status == .queued, "\(after.status)")
    }
}
