import Foundation
import PQCore

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
    return rows.map { $0.0 + ":" + String(repeating: " ", count: width - $0.0.count + 1) + $0.1 }.joined(separator: "\n")
}

/// Waits until every task is ready (or `timeout` passes), woken by the store's change signal.
/// - Returns: the final records by id, or nil when the timeout passed first.
func waitUntilReady(_ ids: [String], store: any TaskStore, timeout: Double?) async throws -> [String: TaskRecord]? {
    let deadline = timeout.map { TaskClock.now() + $0 }
    let wake = Wakeup()
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            for await _ in store.changes() { wake.signal() }
        }
        defer { group.cancelAll() }
        var done: [String: TaskRecord] = [:]
        while true {
            for id in ids where done[id] == nil {
                guard let task = try await store.task(id: id) else { throw CLIError("no task with id \(id)") }
                if TaskStatus.readyStates.contains(task.status) { done[id] = task }
            }
            if done.count == ids.count { return done }
            if let deadline, TaskClock.now() >= deadline { return nil }
            // A change wakes us at once; re-check at least every 250 ms regardless.
            await wake.wait(timeout: min(0.25, deadline.map { max(0.001, $0 - TaskClock.now()) } ?? 0.25))
        }
    }
}
