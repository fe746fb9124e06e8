public import Foundation

/// When a periodic job runs: every `run_every` seconds aligned to an anchor, or on a cron
/// expression. A value with pure functions of time, so it is tested with a fake clock.
///
/// Runs of `.every` fall at `anchor + k * seconds` for every whole `k`, the anchor taken on
/// 1970-01-01 UTC (no anchor: aligned to the epoch). So `run_every = 86400, anchor = "03:00:00"`
/// runs daily at 03:00 UTC and `run_every = 60` runs at the start of every minute.
///
/// ```swift
/// let schedule = PeriodicSchedule.every(seconds: 10, anchor: 0)
/// schedule.nextRun(after: 1_000_005)  // 1_000_010
/// ```
public enum PeriodicSchedule: Sendable, Hashable, CustomStringConvertible {
    /// Every `seconds`, at `anchor + k * seconds` (anchor in seconds after the epoch).
    case every(seconds: Double, anchor: Double)
    /// On a cron expression, read on the wall clock of `timeZone` (`nil`: UTC).
    case cron(CronExpression, timeZone: TimeZone?)

    /// The schedule of a job's options.
    /// - Parameter options: parsed options.
    /// - Returns: the schedule, or nil when the job is not periodic or its options are unusable.
    public init?(options: JobOptions) {
        if let text = options.cron {
            guard let cron = try? CronExpression(parsing: text) else { return nil }
            var zone: TimeZone?
            if let name = options.timezone {
                guard let z = TimeZone(identifier: name) else { return nil }
                zone = z
            }
            self = .cron(cron, timeZone: zone)
        } else if let every = options.runEvery, every > 0, every.isFinite {
            let anchor = options.anchor.flatMap(JobOptions.parseAnchor).map(Double.init) ?? 0
            self = .every(seconds: every, anchor: anchor)
        } else {
            return nil
        }
    }

    /// `every 10s`, `every 86400s from 03:00:00`, `cron */5 * * * *`, `cron 0 9 * * * (Europe/Paris)`.
    public var description: String {
        switch self {
        case .every(let seconds, let anchor):
            let s = seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds)
            guard anchor != 0 else { return "every \(s)s" }
            let a = Int(anchor)
            let hms = [a / 3600, a / 60 % 60, a % 60].map { $0 < 10 ? "0\($0)" : "\($0)" }.joined(separator: ":")
            return "every \(s)s from \(hms)"
        case .cron(let cron, let zone):
            return "cron \(cron.text)" + (zone.map { " (\($0.identifier))" } ?? "")
        }
    }

    /// The first run strictly after `t`.
    /// - Parameter t: epoch seconds.
    /// - Returns: epoch seconds, or nil when there is none (a cron expression with no match ahead).
    public func nextRun(after t: Double) -> Double? {
        switch self {
        case .every(let seconds, let anchor):
            // Slots are computed from a whole k, so every scheduler gets bit-identical times.
            var k = ((t - anchor) / seconds).rounded(.down)
            var slot = anchor + k * seconds
            while slot <= t {
                k += 1
                slot = anchor + k * seconds
            }
            return slot
        case .cron(let cron, let zone):
            return cron.next(after: t, timeZone: zone)
        }
    }

    /// The last run at or before `t`.
    /// - Parameter t: epoch seconds.
    /// - Returns: epoch seconds, or nil when there is none within 28 years.
    public func latestRun(atOrBefore t: Double) -> Double? {
        switch self {
        case .every(let seconds, let anchor):
            var k = ((t - anchor) / seconds).rounded(.down)
            var slot = anchor + k * seconds
            while slot > t {
                k -= 1
                slot = anchor + k * seconds
            }
            return slot
        case .cron:
            // Look back over growing windows; the first window holding a run holds few runs.
            var window = 60.0
            while window < 28 * 366 * 86_400 {
                if var slot = nextRun(after: t - window), slot <= t {
                    while let later = nextRun(after: slot), later <= t { slot = later }
                    return slot
                }
                window *= 2
            }
            return nil
        }
    }

    /// The run a scheduler should queue now, if any: the latest run at or before `now`, when it is
    /// later than the last one queued. After an outage this is one catch-up run, never a storm.
    /// - Parameters:
    ///   - lastRun: the last run queued (from the store), or, when none was ever queued, the time
    ///     the scheduler first saw the job (so a new job starts at its next run, not at once).
    ///   - now: the current time.
    /// - Returns: the run's slot time, or nil when nothing is due.
    public func dueRun(lastRun: Double, now: Double) -> Double? {
        guard let latest = latestRun(atOrBefore: now), latest > lastRun else { return nil }
        return latest
    }
}
