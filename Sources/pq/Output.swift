import Foundation
import PQCore
import Synchronization

/// Writes a line to stdout and flushes it, so followers of a pipe see it at once.
func emit(_ line: String) {
    var text = line
    text += "\n"
    FileHandle.standardOutput.write(Data(text.utf8))
}

/// Formats epoch seconds as a UTC ISO date for tables.
func formatTime(_ t: Double?) -> String {
    guard let t else { return "-" }
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return formatter.string(from: Date(timeIntervalSince1970: t))
}

/// Lays out rows in aligned columns.
func renderTable(_ header: [String], _ rows: [[String]]) -> String {
    var widths = header.map(\.count)
    for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
    func line(_ cells: [String]) -> String {
        var out = ""
        for (i, c) in cells.enumerated() {
            out += i == cells.count - 1 ? c : c + String(repeating: " ", count: widths[i] - c.count) + "  "
        }
        while out.last == " " { out.removeLast() }
        return out
    }
    return ([line(header)] + rows.map(line)).joined(separator: "\n")
}

/// A readable, multi-line view of a task.
func describe(_ task: TaskRecord) -> String {
    var rows: [(String, String)] = [
        ("id", task.id), ("name", task.name), ("status", "\(task.status.name) (\(task.status.rawValue))"),
        ("queue", task.queue), ("kwargs", task.kwargs),
    ]
    if let r = task.result { rows.append(("result", r)) }
    if let e = task.exception { rows.append(("exception", e)) }
    rows += [
        ("time_queued", formatTime(task.timeQueued)), ("time_started", formatTime(task.timeStarted)),
        ("time_ended", formatTime(task.timeEnded)), ("retry", "\(task.retry) (max_retries \(task.maxRetries))"),
    ]
    if let t = task.timeout { rows.append(("timeout", "\(t) s")) }
    if let d = task.delay { rows.append(("delay", "\(d) s")) }
    if let e = task.expiry { rows.append(("expiry", formatTime(e))) }
    if let f = task.fromTask { rows.append(("from_task", f)) }
    if let w = task.worker { rows.append(("worker", w)) }
    if let p = task.plugin { rows.append(("plugin", "\(p) \(task.pluginVersion ?? "")")) }
    let width = rows.map(\.0.count).max() ?? 0
    return rows.map { $0.0 + ":" + String(repeating: " ", count: width - $0.0.count + 1) + $0.1 }.joined(
        separator: "\n")
}

/// Waits until every task is ready (or `timeout` passes).
///
/// Linear in the ids: they are read once, in batches (``TaskQueueStore/tasks(ids:)``); after that only
/// the tasks that `done` events name are read again. The events are followed from a cursor taken
/// before the first read, so none is missed between the read and the follow; a full re-read of
/// the tasks still open, every few seconds, covers events a store did not keep (a trimmed log, a
/// pub/sub message lost while the subscription reconnected).
/// - Returns: the final records by id, or nil when the timeout passed first.
func waitUntilReady(_ ids: [String], store: any TaskStore, timeout: Double?) async throws -> [String: TaskRecord]? {
    let deadline = timeout.map { TaskClock.now() + $0 }
    let cursor = try await store.lastEventCursor()
    var open = Set(ids)
    var done: [String: TaskRecord] = [:]
    func read(_ batch: [String], missing: Bool) async throws {
        var start = 0
        while start < batch.count {
            let chunk = Array(batch[start..<min(batch.count, start + 2_000)])
            start += chunk.count
            let found = try await store.tasks(ids: chunk)
            for id in chunk {
                guard let task = found[id] else {
                    if missing { throw CLIError("no task with id \(id)") }
                    continue
                }
                if TaskStatus.readyStates.contains(task.status) {
                    done[id] = task
                    open.remove(id)
                }
            }
        }
    }
    try await read(Array(open), missing: true)
    if open.isEmpty { return done }
    let ended = EndedIDs()
    let wake = Wakeup()
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            try await store.followEvents(after: cursor) { event in
                if event.kind == .done {
                    ended.names.withLock { _ = $0.insert(event.taskID) }
                    wake.signal()
                }
                return true
            }
        }
        defer { group.cancelAll() }
        var sweep = 0.25
        var nextSweep = TaskClock.now() + sweep
        while true {
            let now = TaskClock.now()
            if let deadline, now >= deadline { return nil }
            if now >= nextSweep {
                try await read(Array(open), missing: false)
                sweep = min(sweep * 2, 4)
                nextSweep = TaskClock.now() + sweep
            } else {
                let named = ended.names.withLock { names -> [String] in
                    defer { names.removeAll(keepingCapacity: true) }
                    return names.filter { open.contains($0) }
                }
                if !named.isEmpty { try await read(named, missing: false) }
            }
            if open.isEmpty { return done }
            let until = min(nextSweep, deadline ?? nextSweep)
            await wake.wait(timeout: max(0.001, until - TaskClock.now()))
        }
    }
}

/// The ids `done` events named since the waiter last looked.
private final class EndedIDs: Sendable {
    let names = Mutex<Set<String>>([])
}
