import Foundation
import PQCore
import Testing

/// Epoch seconds of an ISO UTC time such as `2024-02-28T23:59:00Z`.
func utc(_ text: String) -> Double {
    let formatter = ISO8601DateFormatter()
    formatter.timeZone = TimeZone(identifier: "UTC")
    return formatter.date(from: text)!.timeIntervalSince1970
}

/// The runs of a cron expression after `start`, as ISO UTC strings.
func runs(_ expression: String, after start: String, count: Int = 3, timeZone: TimeZone? = nil) throws -> [String] {
    let cron = try CronExpression(parsing: expression)
    let formatter = ISO8601DateFormatter()
    formatter.timeZone = TimeZone(identifier: "UTC")
    var t = utc(start)
    var out: [String] = []
    for _ in 0..<count {
        guard let next = cron.next(after: t, timeZone: timeZone) else { break }
        out.append(formatter.string(from: Date(timeIntervalSince1970: next)))
        t = next
    }
    return out
}

@Suite("Cron expressions")
struct CronExpressionTests {
    @Test func everyMinuteIsStrictlyAfter() throws {
        #expect(
            try runs("* * * * *", after: "2024-01-01T00:00:00Z") == [
                "2024-01-01T00:01:00Z", "2024-01-01T00:02:00Z", "2024-01-01T00:03:00Z",
            ])
        // Seconds into a minute: the next whole minute.
        let cron = try CronExpression(parsing: "* * * * *")
        #expect(cron.next(after: utc("2024-01-01T00:00:30Z")) == utc("2024-01-01T00:01:00Z"))
    }

    @Test func stepsListsRangesAndNames() throws {
        #expect(
            try runs("*/15 * * * *", after: "2024-01-01T00:50:00Z") == [
                "2024-01-01T01:00:00Z", "2024-01-01T01:15:00Z", "2024-01-01T01:30:00Z",
            ])
        #expect(
            try runs("5,10 8-9 * * *", after: "2024-01-01T08:07:00Z", count: 4) == [
                "2024-01-01T08:10:00Z", "2024-01-01T09:05:00Z", "2024-01-01T09:10:00Z", "2024-01-02T08:05:00Z",
            ])
        #expect(
            try runs("0 12-18/3 * * *", after: "2024-01-01T00:00:00Z") == [
                "2024-01-01T12:00:00Z", "2024-01-01T15:00:00Z", "2024-01-01T18:00:00Z",
            ])
        // "a/n" is "a-max/n".
        #expect(
            try runs("50/5 * * * *", after: "2024-01-01T00:00:00Z") == [
                "2024-01-01T00:50:00Z", "2024-01-01T00:55:00Z", "2024-01-01T01:50:00Z",
            ])
        // 2024-01-01 is a Monday.
        #expect(
            try runs("0 9 * * mon-fri", after: "2024-01-05T10:00:00Z", count: 2) == [
                "2024-01-08T09:00:00Z", "2024-01-09T09:00:00Z",
            ])
        #expect(
            try runs("0 0 1 JAN,jul *", after: "2024-01-01T00:00:00Z", count: 2) == [
                "2024-07-01T00:00:00Z", "2025-01-01T00:00:00Z",
            ])
        // 7 and 0 are both Sunday; 2024-01-07 is a Sunday.
        #expect(try CronExpression(parsing: "0 0 * * 7") == CronExpression(parsing: "0 0 * * 7"))
        #expect(try runs("0 0 * * 7", after: "2024-01-01T00:00:00Z", count: 1) == ["2024-01-07T00:00:00Z"])
        #expect(try runs("0 0 * * sun", after: "2024-01-01T00:00:00Z", count: 1) == ["2024-01-07T00:00:00Z"])
        #expect(
            try runs("0 0 * * 5-7", after: "2024-01-01T00:00:00Z", count: 3) == [
                "2024-01-05T00:00:00Z", "2024-01-06T00:00:00Z", "2024-01-07T00:00:00Z",
            ])
    }

    @Test func dayOfMonthOrDayOfWeek() throws {
        // Both restricted: either matches (Vixie). 2024-01-05 is a Friday.
        #expect(
            try runs("0 0 13 * fri", after: "2024-01-01T00:00:00Z", count: 4) == [
                "2024-01-05T00:00:00Z", "2024-01-12T00:00:00Z", "2024-01-13T00:00:00Z", "2024-01-19T00:00:00Z",
            ])
        // One starts with '*': both must match (here only the day of week restricts).
        #expect(
            try runs("0 0 */1 * fri", after: "2024-01-01T00:00:00Z", count: 2) == [
                "2024-01-05T00:00:00Z", "2024-01-12T00:00:00Z",
            ])
    }

    @Test func monthEndsAndLeapYears() throws {
        #expect(
            try runs("0 0 31 * *", after: "2024-01-31T00:00:00Z", count: 3) == [
                "2024-03-31T00:00:00Z", "2024-05-31T00:00:00Z", "2024-07-31T00:00:00Z",
            ])
        #expect(
            try runs("0 0 29 2 *", after: "2023-01-01T00:00:00Z", count: 3) == [
                "2024-02-29T00:00:00Z", "2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z",
            ])
        // 2100 is not a leap year.
        #expect(try runs("0 0 29 2 *", after: "2096-03-01T00:00:00Z", count: 1) == ["2104-02-29T00:00:00Z"])
        #expect(
            try runs("59 23 28-29 2 *", after: "2024-02-28T23:59:00Z", count: 2) == [
                "2024-02-29T23:59:00Z", "2025-02-28T23:59:00Z",
            ])
    }

    @Test func macros() throws {
        #expect(
            try runs("@monthly", after: "2024-01-31T12:00:00Z", count: 3) == [
                "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z", "2024-04-01T00:00:00Z",
            ])
        #expect(try runs("@hourly", after: "2024-12-31T23:30:00Z", count: 1) == ["2025-01-01T00:00:00Z"])
        #expect(
            try runs("@daily", after: "2024-02-28T00:00:00Z", count: 2) == [
                "2024-02-29T00:00:00Z", "2024-03-01T00:00:00Z",
            ])
        #expect(try runs("@midnight", after: "2024-02-28T00:00:00Z", count: 1) == ["2024-02-29T00:00:00Z"])
        #expect(try runs("@weekly", after: "2024-01-01T00:00:00Z", count: 1) == ["2024-01-07T00:00:00Z"])
        #expect(try runs("@yearly", after: "2024-06-01T00:00:00Z", count: 1) == ["2025-01-01T00:00:00Z"])
        #expect(try runs("@annually", after: "2024-06-01T00:00:00Z", count: 1) == ["2025-01-01T00:00:00Z"])
    }

    @Test func timeZones() throws {
        // Tokyo is UTC+9 without daylight saving: 09:00 there is 00:00 UTC.
        let tokyo = try #require(TimeZone(identifier: "Asia/Tokyo"))
        #expect(
            try runs("0 9 * * *", after: "2024-01-01T00:00:00Z", count: 2, timeZone: tokyo) == [
                "2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z",
            ])
        // New York: 09:00 is 14:00 UTC in winter, 13:00 UTC in summer (DST began 2024-03-10).
        let newYork = try #require(TimeZone(identifier: "America/New_York"))
        #expect(
            try runs("0 9 * * *", after: "2024-03-08T15:00:00Z", count: 3, timeZone: newYork) == [
                "2024-03-09T14:00:00Z", "2024-03-10T13:00:00Z", "2024-03-11T13:00:00Z",
            ])
    }

    @Test(arguments: [
        ("* * * *", CronError.Code.fieldCount, "expected 5 fields"),
        ("@reboot", .unknownMacro, "unknown macro"),
        ("60 * * * *", .outOfRange, "minute value 60 is out of range 0-59"),
        ("* 24 * * *", .outOfRange, "hour value 24"),
        ("* * 0 * *", .outOfRange, "day-of-month value 0"),
        ("* * * 13 *", .outOfRange, "month value 13"),
        ("* * * * 8", .outOfRange, "day-of-week value 8"),
        ("* * * foo *", .invalidValue, "month field has 'foo'"),
        ("*/0 * * * *", .invalidStep, "step"),
        ("10-5 * * * *", .invalidRange, "runs backwards"),
        ("1,,2 * * * *", .invalidValue, "empty list item"),
        ("0 0 30 2 *", .neverRuns, "never run"),
    ])
    func errorsSayWhatIsWrong(expression: String, code: CronError.Code, message: String) {
        #expect {
            try CronExpression(parsing: expression)
        } throws: { error in
            guard let error = error as? CronError else { return false }
            return error.code == code && error.description.contains(message)
                && error.description.contains(expression)
        }
    }

    @Test func optionsRejectBadSchedules() throws {
        #expect(throws: (any Error).self) { try JobOptions.parse(#"{"cron": "61 * * * *"}"#) }
        #expect(throws: (any Error).self) { try JobOptions.parse(#"{"run_every": 0}"#) }
        #expect(throws: (any Error).self) { try JobOptions.parse(#"{"run_every": -5}"#) }
        #expect(throws: (any Error).self) { try JobOptions.parse(#"{"run_every": 5, "cron": "* * * * *"}"#) }
        #expect(throws: (any Error).self) { try JobOptions.parse(#"{"cron": "* * * * *", "timezone": "Mars/Base"}"#) }
        #expect(throws: (any Error).self) { try JobOptions.parse(#"{"run_every": 5, "timezone": "UTC"}"#) }
        do {
            _ = try JobOptions.parse(#"{"cron": "* * * 13 *"}"#)
            Issue.record("a bad cron was accepted")
        } catch {
            #expect("\(error)".contains("option 'cron' is invalid"))
            #expect("\(error)".contains("month value 13"))
        }
        let ok = try JobOptions.parse(#"{"cron": "@daily", "timezone": "Europe/Paris", "kwargs": {"a": 1}}"#)
        #expect(ok.schedule?.description == "cron @daily (Europe/Paris)")
        #expect(ok.periodicKwargs == #"{"a":1}"#)
    }
}

@Suite("Periodic schedules")
struct PeriodicScheduleTests {
    @Test func everyIsAlignedToTheEpochWithoutAnchor() throws {
        let schedule = try #require(PeriodicSchedule(options: try JobOptions.parse(#"{"run_every": 7}"#)))
        #expect(schedule == .every(seconds: 7, anchor: 0))
        #expect(schedule.nextRun(after: 0) == 7)
        #expect(schedule.nextRun(after: 13.9) == 14)
        #expect(schedule.nextRun(after: 14) == 21)
        #expect(schedule.latestRun(atOrBefore: 14) == 14)
        #expect(schedule.latestRun(atOrBefore: 20.99) == 14)
        #expect(schedule.description == "every 7s")
    }

    @Test func everyIsAlignedToItsAnchor() throws {
        let schedule = try #require(
            PeriodicSchedule(options: try JobOptions.parse(#"{"run_every": 3600, "anchor": "00:30:15"}"#)))
        #expect(schedule.description == "every 3600s from 00:30:15")
        #expect(schedule.nextRun(after: utc("2024-05-05T10:31:00Z")) == utc("2024-05-05T11:30:15Z"))
        #expect(schedule.nextRun(after: utc("2024-05-05T10:30:14Z")) == utc("2024-05-05T10:30:15Z"))
        let daily = try #require(
            PeriodicSchedule(options: try JobOptions.parse(#"{"run_every": 86400, "anchor": "03:00:00"}"#)))
        #expect(daily.nextRun(after: utc("2024-02-28T04:00:00Z")) == utc("2024-02-29T03:00:00Z"))
        #expect(daily.latestRun(atOrBefore: utc("2024-03-01T02:59:59Z")) == utc("2024-02-29T03:00:00Z"))
    }

    @Test func dueRunCatchesUpOnceAfterAnOutage() throws {
        let every = PeriodicSchedule.every(seconds: 10, anchor: 0)
        // On time: the slot just passed.
        #expect(every.dueRun(lastRun: 90, now: 100.2) == 100)
        // Already queued: nothing.
        #expect(every.dueRun(lastRun: 100, now: 109.9) == nil)
        // After a long outage: one run, the latest missed one, then the schedule resumes.
        #expect(every.dueRun(lastRun: 100, now: 1_000_005) == 1_000_000)
        #expect(every.dueRun(lastRun: 1_000_000, now: 1_000_005) == nil)
        #expect(every.nextRun(after: 1_000_005) == 1_000_010)

        let monthly = PeriodicSchedule.cron(try CronExpression(parsing: "@monthly"), timeZone: nil)
        #expect(monthly.latestRun(atOrBefore: utc("2024-03-15T00:00:00Z")) == utc("2024-03-01T00:00:00Z"))
        #expect(
            monthly.dueRun(lastRun: utc("2023-01-01T00:00:00Z"), now: utc("2024-03-15T00:00:00Z"))
                == utc("2024-03-01T00:00:00Z"))
        #expect(monthly.dueRun(lastRun: utc("2024-03-01T00:00:00Z"), now: utc("2024-03-31T23:59:00Z")) == nil)
        let minutely = PeriodicSchedule.cron(try CronExpression(parsing: "*/5 * * * *"), timeZone: nil)
        #expect(minutely.latestRun(atOrBefore: utc("2024-03-15T10:07:30Z")) == utc("2024-03-15T10:05:00Z"))
        #expect(minutely.latestRun(atOrBefore: utc("2024-03-15T10:05:00Z")) == utc("2024-03-15T10:05:00Z"))
    }

    @Test func taskIDsArePerRunAndValid() {
        let a = PeriodicScheduler.taskID(job: "tick", slot: 100)
        #expect(TaskID.isValid(a))
        #expect(a == PeriodicScheduler.taskID(job: "tick", slot: 100))
        #expect(a != PeriodicScheduler.taskID(job: "tick", slot: 101))
        #expect(a != PeriodicScheduler.taskID(job: "tock", slot: 100))
    }
}
