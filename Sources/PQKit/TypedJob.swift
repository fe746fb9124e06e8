#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A typed job: a plain C function that the host calls through libffi, taking its arguments from the
/// task's kwargs by name. No JSON and no Swift runtime cross the boundary.
///
/// ```swift
/// func multiply(_ a: Int64, _ b: Int64) -> Int64 { a &* b }
///
/// let mul = TypedJob(
///     name: "swift.mul", doc: "Multiplies two integers.",
///     function: unsafeBitCast(multiply as @convention(c) (Int64, Int64) -> Int64, to: UnsafeMutableRawPointer.self),
///     signature: "(a:i64,b:i64)->i64")
/// ```
///
/// The function must match `signature` exactly, must not throw or trap on any input, and returns a
/// `str` result as a string made by ``TypedJob/makeResultString(_:)`` (the host frees it).
public struct TypedJob: @unchecked Sendable {
    // @unchecked: `function` is the address of a C function, immutable code.

    /// The job's name, a slug.
    public let name: String
    /// One line describing the job.
    public let doc: String?
    /// The C function, as an untyped pointer.
    public let function: UnsafeMutableRawPointer
    /// `(name:type,...)->type` with types `bool i32 i64 u32 u64 f32 f64 str` (return also `void`).
    public let signature: String
    /// The job's options.
    public let options: JobOptions

    /// Describes a typed job.
    /// - Parameters:
    ///   - name: The job's name, a slug (`[a-z0-9][a-z0-9._-]*`).
    ///   - doc: One line describing the job.
    ///   - function: The `@convention(c)` function, e.g. `unsafeBitCast(f, to: UnsafeMutableRawPointer.self)`.
    ///   - signature: Its signature, e.g. `"(a:i64,b:i64)->i64"`.
    ///   - options: Its options (timeout, retries, ...).
    public init(
        name: String,
        doc: String? = nil,
        function: UnsafeMutableRawPointer,
        signature: String,
        options: JobOptions = JobOptions()
    ) {
        self.name = name
        self.doc = doc
        self.function = function
        self.signature = signature
        self.options = options
    }

    /// Makes the C string a typed job with a `str` result returns: the host copies it and then frees
    /// it with the plugin's `free_string`, which PQKit sets to `free`.
    /// - Parameter string: The result.
    /// - Returns: A `malloc`ed, NUL-terminated copy (NULL only when memory is exhausted).
    public static func makeResultString(_ string: String) -> UnsafeMutablePointer<CChar>? {
        strdup(string)
    }
}
