public import Foundation

/// A five-field cron expression (minute, hour, day of month, month, day of week), as Vixie cron
/// reads it: `*`, values, ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b`, month names
/// `jan`–`dec`, weekday names `sun`–`sat` (0 and 7 are Sunday), and the macros `@hourly`,
/// `@daily`/`@midnight`, `@weekly`, `@monthly`, `@yearly`/`@annually`.
///
/// When both day fields are restricted (neither starts with `*`), a day matches if either does
/// (Vixie's OR rule); otherwise both must match.
///
/// ```swift
/// let cron = try CronExpression(parsing: "*/15 9-17 * * mon-fri")
/// let next = cron.next(after: TaskClock.now())  // epoch seconds, UTC
/// ```
public struct CronExpression: Sendable, Hashable, CustomStringConvertible {
    /// The text as given.
    public let text: String
    let minutes: UInt64  // bits 0...59
    let hours: UInt32  // bits 0...23
    let days: UInt32  // bits 1...31
    let months: UInt16  // bits 1...12
    let weekdays: UInt8  // bits 0...6, Sunday = 0
    let dayOfMonthStar: Bool
    let dayOfWeekStar: Bool

    /// The text as given.
    public var description: String { text }

    private static let macros: [String: String] = [
        "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
        "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
    ]
    private static let monthNames = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ]
    private static let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

    /// Parses an expression.
    /// - Parameter text: five space-separated fields or a macro.
    /// - Throws: ``CronError`` naming the field and what is wrong with it.
    public init(parsing text: String) throws(CronError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        var body = trimmed
        if trimmed.hasPrefix("@") {
            guard let expanded = Self.macros[trimmed.lowercased()] else {
                throw CronError(
                    .unknownMacro, text,
                    "unknown macro '\(trimmed)'; use @hourly, @daily, @midnight, @weekly, @monthly, @yearly or @annually"
                )
            }
            body = expanded
        }
        let fields = body.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard fields.count == 5 else {
            throw CronError(
                .fieldCount, text,
                "expected 5 fields (minute hour day-of-month month day-of-week), got \(fields.count)")
        }
        self.text = text
        minutes = try Self.field(fields[0], "minute", 0...59, names: [], expression: text)
        hours = UInt32(try Self.field(fields[1], "hour", 0...23, names: [], expression: text))
        days = UInt32(try Self.field(fields[2], "day-of-month", 1...31, names: [], expression: text))
        months = UInt16(try Self.field(fields[3], "month", 1...12, names: Self.monthNames, expression: text))
        var dow = try Self.field(fields[4], "day-of-week", 0...7, names: Self.dayNames, expression: text)
        if dow & (1 << 7) != 0 { dow = (dow & ~(1 << 7)) | 1 }  // 7 is Sunday too
        weekdays = UInt8(dow)
        dayOfMonthStar = fields[2].hasPrefix("*")
        dayOfWeekStar = fields[4].hasPrefix("*")
        // A day of month that no chosen month has (e.g. "0 0 30 2 *") would never run.
        if dayOfWeekStar || weekdays == 0 {
            var longest = 0
            for month in 1...12 where months & (1 << UInt16(month)) != 0 {
                longest = max(longest, Self.daysInMonth(month, year: 2000))
            }
            if (1...31).allSatisfy({ (day: Int) -> Bool in days & (1 << UInt32(day)) == 0 || day > longest }) {
                throw CronError(.neverRuns, text, "no chosen month has the chosen day of month, so it would never run")
            }
        }
    }

    private static func field(
        _ text: String, _ name: String, _ range: ClosedRange<Int>, names: [String], expression: String
    ) throws(CronError) -> UInt64 {
        var bits: UInt64 = 0
        func value(_ s: Substring) throws(CronError) -> Int {
            if let n = Int(s) {
                guard range.contains(n) else {
                    throw CronError(
                        .outOfRange, expression,
                        "\(name) value \(n) is out of range \(range.lowerBound)-\(range.upperBound)")
                }
                return n
            }
            if let i = names.firstIndex(of: s.lowercased()) { return i + (name == "month" ? 1 : 0) }
            let hint = names.isEmpty ? "a number" : "a number or a name (\(names.first!)–\(names.last!))"
            throw CronError(.invalidValue, expression, "\(name) field has '\(s)' where \(hint) was expected")
        }
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard !item.isEmpty else {
                throw CronError(.invalidValue, expression, "\(name) field '\(text)' has an empty list item")
            }
            let parts = item.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count <= 2 else {
                throw CronError(.invalidStep, expression, "\(name) field item '\(item)' has more than one '/'")
            }
            var step = 1
            if parts.count == 2 {
                guard let s = Int(parts[1]), s > 0 else {
                    throw CronError(
                        .invalidStep, expression, "\(name) step in '\(item)' must be a positive whole number")
                }
                step = s
            }
            let base = parts[0]
            var low: Int
            var high: Int
            if base == "*" {
                (low, high) = (range.lowerBound, range.upperBound)
                if name == "day-of-week" { high = 6 }  // `*` covers Sunday once
            } else if let dash = base.firstIndex(of: "-") {
                low = try value(base[..<dash])
                high = try value(base[base.index(after: dash)...])
                guard low <= high else {
                    throw CronError(
                        .invalidRange, expression, "\(name) range '\(base)' runs backwards; write it low-high")
                }
            } else {
                low = try value(base)
                // Vixie: "a/n" means "a-max/n".
                high = parts.count == 2 ? range.upperBound : low
            }
            var v = low
            while v <= high {
                bits |= 1 << UInt64(v)
                v += step
            }
        }
        return bits
    }

    // MARK: - Next run

    /// The first time after `t` that the expression matches, to the minute.
    /// - Parameters:
    ///   - t: epoch seconds; the result is strictly later.
    ///   - timeZone: whose wall clock the fields describe; `nil` for UTC.
    /// - Returns: epoch seconds, or `nil` when there is none within 28 years.
    public func next(after t: Double, timeZone: TimeZone? = nil) -> Double? {
        guard let timeZone, timeZone.secondsFromGMT() != 0 || timeZone.nextDaylightSavingTimeTransition != nil
        else { return nextUTC(after: t) }
        // Walk in wall-clock time, then map back to an instant. A wall time skipped by a clock
        // change runs at the shifted instant; a repeated one runs the first time it occurs.
        var wall = t + Double(timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: t)))
        for _ in 0..<8 {
            guard let local = nextUTC(after: wall) else { return nil }
            var offset = timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: local))
            offset = timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: local - Double(offset)))
            let instant = local - Double(offset)
            if instant > t { return instant }
            wall = local
        }
        return nil
    }

    private func dayMatches(day: Int, weekday: Int) -> Bool {
        let dom = days & (1 << UInt32(day)) != 0
        let dow = weekdays & (1 << UInt8(weekday)) != 0
        return dayOfMonthStar || dayOfWeekStar ? dom && dow : dom || dow
    }

    private func nextUTC(after t: Double) -> Double? {
        guard t.isFinite else { return nil }
        var minute = Int64((t / 60).rounded(.down)) + 1
        for _ in 0..<200_000 {
            let day = Self.floorDiv(minute, 1440)
            let minuteOfDay = Int(minute - day * 1440)
            let (year, month, dayOfMonth) = Self.civil(fromDays: day)
            if months & (1 << UInt16(month)) == 0 {
                let (y, m) = month == 12 ? (year + 1, 1) : (year, month + 1)
                minute = Self.days(year: y, month: m, day: 1) * 1440
                continue
            }
            let weekday = Int(((day % 7) + 11) % 7)  // 1970-01-01 was a Thursday (4)
            if !dayMatches(day: dayOfMonth, weekday: weekday) {
                minute = (day + 1) * 1440
                continue
            }
            let hour = minuteOfDay / 60
            if hours & (1 << UInt32(hour)) == 0 {
                minute = day * 1440 + Int64(hour + 1) * 60
                continue
            }
            let m = minuteOfDay % 60
            let later = minutes >> UInt64(m)
            if later == 0 {
                minute = day * 1440 + Int64(hour + 1) * 60
                continue
            }
            minute += Int64(later.trailingZeroBitCount)
            return Double(minute) * 60
        }
        return nil
    }

    // MARK: - Civil calendar (proleptic Gregorian, after Howard Hinnant's algorithms)

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : -((-a + b - 1) / b) }

    /// Days since 1970-01-01 of a date.
    static func days(year: Int, month: Int, day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = floorDiv(y, 400)
        let yoe = y - era * 400
        let mp = Int64((month + 9) % 12)
        let doy = (153 * mp + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// The date of a day number (days since 1970-01-01).
    static func civil(fromDays z0: Int64) -> (year: Int, month: Int, day: Int) {
        let z = z0 + 719_468
        let era = floorDiv(z, 146_097)
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = Int(doy - (153 * mp + 2) / 5 + 1)
        let m = Int(mp < 10 ? mp + 3 : mp - 9)
        return (Int(yoe + era * 400) + (m <= 2 ? 1 : 0), m, d)
    }

    static func daysInMonth(_ month: Int, year: Int) -> Int {
        switch month {
        case 2: return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }
}

/// A cron expression that does not parse: a code to match on and a message naming the field.
public struct CronError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong; new codes may be added.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        fileprivate enum Base: String, Sendable {
            case fieldCount, unknownMacro, invalidValue, outOfRange, invalidRange, invalidStep, neverRuns
        }
        fileprivate let base: Base

        /// Not five fields.
        public static let fieldCount = Code(base: .fieldCount)
        /// An `@` word that is not a known macro.
        public static let unknownMacro = Code(base: .unknownMacro)
        /// A value that is neither a number nor a known name.
        public static let invalidValue = Code(base: .invalidValue)
        /// A number outside the field's range.
        public static let outOfRange = Code(base: .outOfRange)
        /// A range whose start is after its end.
        public static let invalidRange = Code(base: .invalidRange)
        /// A step that is not a positive whole number.
        public static let invalidStep = Code(base: .invalidStep)
        /// A valid expression that can never match (e.g. February 30).
        public static let neverRuns = Code(base: .neverRuns)

        /// The code's name.
        public var description: String { base.rawValue }
    }

    /// What went wrong.
    public let code: Code
    /// The expression.
    public let expression: String
    /// What is wrong with it.
    public let message: String

    init(_ code: Code, _ expression: String, _ message: String) {
        self.code = code
        self.expression = expression
        self.message = message
    }

    /// `cron "<expression>": <message>`.
    public var description: String { "cron \"\(expression)\": \(message)" }
}
