/// One argument value of a typed job, converted from JSON with its C type's range checked.
public enum TypedValue: Sendable, Equatable {
    /// C `bool`.
    case bool(Bool)
    /// `int32_t`.
    case i32(Int32)
    /// `int64_t`.
    case i64(Int64)
    /// `uint32_t`.
    case u32(UInt32)
    /// `uint64_t`.
    case u64(UInt64)
    /// `float`.
    case f32(Float)
    /// `double`.
    case f64(Double)
    /// `const char *` (UTF-8, no NUL inside).
    case str(String)
}

/// Kwargs that do not fit a typed job's signature.
///
/// The message names the argument and the expected type, e.g.
/// `argument 'a' must be i64 (an integer from ... to ...), got 1.5 (a fraction)`.
public struct TypedArgumentError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The kind of mismatch.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Sendable {
            case notAnObject, missing, unexpected, wrongType, outOfRange, fraction
        }
        fileprivate let base: Base
        /// The kwargs are not a JSON object.
        public static let notAnObject = Code(base: .notAnObject)
        /// A parameter of the signature has no kwarg.
        public static let missing = Code(base: .missing)
        /// A kwarg that the signature does not name.
        public static let unexpected = Code(base: .unexpected)
        /// A value of the wrong JSON type (a string for an integer, a number for a bool, ...).
        public static let wrongType = Code(base: .wrongType)
        /// A number outside the C type's range.
        public static let outOfRange = Code(base: .outOfRange)
        /// A number with a fractional part for an integer type.
        public static let fraction = Code(base: .fraction)
        /// The code's name.
        public var description: String { base.rawValue }
    }

    /// The kind of mismatch.
    public let code: Code
    /// The argument concerned, when there is one.
    public let argument: String?
    /// What is wrong, naming the argument and the expected type.
    public let message: String

    /// The message.
    public var description: String { message }
}

extension TypedSignature.ValueType {
    /// What a JSON value for this type must be, for error messages.
    public var expectation: String {
        switch self {
        case .bool: return "bool (true or false)"
        case .i32: return "i32 (an integer from \(Int32.min) to \(Int32.max))"
        case .i64: return "i64 (an integer from \(Int64.min) to \(Int64.max))"
        case .u32: return "u32 (an integer from 0 to \(UInt32.max))"
        case .u64: return "u64 (an integer from 0 to \(UInt64.max))"
        case .f32: return "f32 (a number within ±\(Float.greatestFiniteMagnitude))"
        case .f64: return "f64 (a number)"
        case .str: return "str (a string)"
        }
    }
}

extension TypedSignature {
    /// Converts kwargs into the signature's argument values, in call order, checking every name,
    /// JSON type and range. Integers are exact to 64 bits; a number with a fractional part is
    /// refused for an integer type; `bool` takes only JSON `true`/`false`.
    /// - Parameter kwargs: the task's kwargs, a JSON object.
    /// - Returns: one value per parameter, in the signature's order.
    /// - Throws: ``TypedArgumentError`` naming the argument and the expected type.
    public func bind(_ kwargs: JSONValue) throws(TypedArgumentError) -> [TypedValue] {
        guard case .object(let pairs) = kwargs else {
            throw TypedArgumentError(
                code: .notAnObject, argument: nil,
                message: "arguments must be a JSON object matching \(description), got \(kwargs.typeName)")
        }
        for (key, _) in pairs where !parameters.contains(where: { $0.name == key }) {
            throw TypedArgumentError(
                code: .unexpected, argument: key,
                message: "unexpected argument '\(key)': the signature is \(description)")
        }
        var values: [TypedValue] = []
        values.reserveCapacity(parameters.count)
        for parameter in parameters {
            guard let value = pairs.last(where: { $0.0 == parameter.name })?.1 else {
                throw TypedArgumentError(
                    code: .missing, argument: parameter.name,
                    message:
                        "missing argument '\(parameter.name)', which must be \(parameter.type.expectation); the signature is \(description)"
                )
            }
            values.append(try parameter.type.convert(value, argument: parameter.name))
        }
        return values
    }

    /// Checks kwargs text against the signature (what `pq submit` does before queueing).
    /// - Parameter kwargsJSON: the kwargs as JSON text.
    /// - Throws: ``TypedArgumentError`` when they do not fit; the text must already be valid JSON.
    public func check(kwargsJSON: String) throws(TypedArgumentError) {
        let value: JSONValue
        do { value = try JSONValue.parse(kwargsJSON) } catch {
            throw TypedArgumentError(
                code: .notAnObject, argument: nil, message: "arguments are not valid JSON: \(error)")
        }
        _ = try bind(value)
    }
}

extension TypedSignature.ValueType {
    /// Converts one JSON value to this C type.
    func convert(_ value: JSONValue, argument: String) throws(TypedArgumentError) -> TypedValue {
        func fail(_ code: TypedArgumentError.Code, _ why: String) -> TypedArgumentError {
            var shown = value.jsonText
            if shown.count > 40 { shown = String(shown.prefix(40)) + "…" }
            return TypedArgumentError(
                code: code, argument: argument,
                message: "argument '\(argument)' must be \(expectation), got \(shown) (\(why))")
        }
        switch self {
        case .bool:
            guard case .bool(let b) = value else { throw fail(.wrongType, value.typeName) }
            return .bool(b)
        case .str:
            guard case .string(let s) = value else { throw fail(.wrongType, value.typeName) }
            guard !s.utf8.contains(0) else {
                throw fail(.wrongType, "it holds a NUL character, which a C string cannot")
            }
            return .str(s)
        case .f64, .f32:
            let d: Double
            switch value {
            case .int(let i): d = Double(i)
            case .uint(let u): d = Double(u)
            case .double(let x): d = x
            default: throw fail(.wrongType, value.typeName)
            }
            if self == .f64 { return .f64(d) }
            // Rounded to the nearest float; only values beyond the largest float become infinite.
            let f = Float(d)
            guard f.isFinite || !d.isFinite else { throw fail(.outOfRange, "out of range") }
            return .f32(f)
        case .i32, .i64, .u32, .u64:
            let exact: ExactInteger
            switch value {
            case .int(let i): exact = .signed(i)
            case .uint(let u): exact = .unsigned(u)
            case .double(let d):
                guard d == d.rounded(.towardZero) else { throw fail(.fraction, "a fraction") }
                // Only integral doubles that are exact: beyond 2^53 the digits were already rounded.
                guard abs(d) <= 9_007_199_254_740_992 else {
                    throw fail(.outOfRange, "not an exact integer; write it as plain digits")
                }
                exact = .signed(Int64(d))
            default: throw fail(.wrongType, value.typeName)
            }
            let converted: TypedValue?
            switch (self, exact) {
            case (.i64, .signed(let i)): converted = .i64(i)
            case (.i64, .unsigned(let u)): converted = Int64(exactly: u).map(TypedValue.i64)
            case (.i32, .signed(let i)): converted = Int32(exactly: i).map(TypedValue.i32)
            case (.i32, .unsigned(let u)): converted = Int32(exactly: u).map(TypedValue.i32)
            case (.u64, .signed(let i)): converted = UInt64(exactly: i).map(TypedValue.u64)
            case (.u64, .unsigned(let u)): converted = .u64(u)
            case (.u32, .signed(let i)): converted = UInt32(exactly: i).map(TypedValue.u32)
            case (.u32, .unsigned(let u)): converted = UInt32(exactly: u).map(TypedValue.u32)
            default: converted = nil
            }
            guard let converted else { throw fail(.outOfRange, "out of range") }
            return converted
        }
    }

    private enum ExactInteger {
        case signed(Int64)
        case unsigned(UInt64)
    }
}
