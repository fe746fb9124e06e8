/// The signature of a typed job: `(name:type,...)->type` (DESIGN.md section 2).
public struct TypedSignature: Sendable, Equatable, CustomStringConvertible {
    /// A C type a typed job can take or return.
    public enum ValueType: String, Sendable, CaseIterable {
        case bool, i32, i64, u32, u64, f32, f64, str
    }

    /// One named argument.
    public struct Parameter: Sendable, Equatable {
        /// The kwarg name.
        public var name: String
        /// Its C type.
        public var type: ValueType
    }

    /// The arguments, in call order.
    public var parameters: [Parameter]
    /// The return type; nil for `void`.
    public var returnType: ValueType?

    /// The canonical text, e.g. `(a:i64,b:i64)->i64`.
    public var description: String {
        "(" + parameters.map { "\($0.name):\($0.type.rawValue)" }.joined(separator: ",") + ")->"
            + (returnType?.rawValue ?? "void")
    }

    /// Parses a signature.
    /// - Parameter text: e.g. `(a:i64, b:i64) -> i64`; spaces are allowed around tokens.
    /// - Returns: the signature.
    /// - Throws: ``SignatureError`` saying what is wrong and where.
    public static func parse(_ text: String) throws(SignatureError) -> TypedSignature {
        let compact = text.filter { !$0.isWhitespace }
        guard compact.hasPrefix("("), let close = compact.firstIndex(of: ")") else {
            throw SignatureError(message: "signature '\(text)' must look like (name:type,...)->type")
        }
        let inner = compact[compact.index(after: compact.startIndex)..<close]
        let rest = compact[compact.index(after: close)...]
        guard rest.hasPrefix("->") else {
            throw SignatureError(message: "signature '\(text)' lacks '->type' after the argument list")
        }
        let ret = String(rest.dropFirst(2))
        let returnType: ValueType?
        if ret == "void" {
            returnType = nil
        } else if let t = ValueType(rawValue: ret) {
            returnType = t
        } else {
            throw SignatureError(message: "signature '\(text)': unknown return type '\(ret)' (use \(typeList) or void)")
        }
        var parameters: [Parameter] = []
        if !inner.isEmpty {
            for part in inner.split(separator: ",", omittingEmptySubsequences: false) {
                let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
                guard pieces.count == 2, !pieces[0].isEmpty else {
                    throw SignatureError(message: "signature '\(text)': argument '\(part)' must be name:type")
                }
                let name = String(pieces[0])
                guard name.first.map({ $0.isLetter || $0 == "_" }) == true,
                    name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" })
                else { throw SignatureError(message: "signature '\(text)': '\(name)' is not a valid argument name") }
                guard let type = ValueType(rawValue: String(pieces[1])) else {
                    throw SignatureError(
                        message: "signature '\(text)': unknown type '\(pieces[1])' for '\(name)' (use \(typeList))")
                }
                guard !parameters.contains(where: { $0.name == name }) else {
                    throw SignatureError(message: "signature '\(text)': argument '\(name)' appears twice")
                }
                parameters.append(Parameter(name: name, type: type))
            }
        }
        return TypedSignature(parameters: parameters, returnType: returnType)
    }

    static let typeList = ValueType.allCases.map(\.rawValue).joined(separator: " ")

    /// An invalid signature.
    public struct SignatureError: Error, CustomStringConvertible, Sendable {
        /// What is wrong.
        public var message: String
        /// The message.
        public var description: String { message }
    }
}
