import CFFI
import CPQPlugin
import Glibc
import Synchronization

/// A typed job's C function with its libffi call interface (`ffi_cif`), prepared once when the
/// job is loaded (``JobDefinition/typedCall``) and reused for every call.
///
/// A call has two steps: ``bind(_:)`` converts the kwargs into C values (checking names, JSON
/// types and ranges, so nothing reaches the function that does not fit its signature), then
/// ``call(_:)`` calls the function through `ffi_call` on the calling thread and turns its return
/// value into JSON. Both run on the thread that runs the task (a ``PluginThreadPool`` thread of
/// the host or of a worker process), one right after the other, never on Swift's cooperative pool.
///
/// ```swift
/// let typed = try #require(job.typedCall)
/// let arguments = try typed.bind(JSONValue.parse(#"{"a":6,"b":7}"#))
/// let outcome = typed.call(arguments)   // .success("42")
/// ```
///
/// A C function cannot be interrupted: when a typed task times out or is revoked, the host stops
/// waiting (the task is REVOKED) and the thread runs the function to its end; its result is
/// dropped.
public final class TypedCall: @unchecked Sendable {
    // @unchecked: every stored property is written once in init; the cif and the type array are
    // only read by ffi_call after that.

    /// A C `free`-like function that a plugin offers for its `str` results.
    public typealias FreeString = @convention(c) (UnsafeMutablePointer<CChar>?) -> Void

    /// Arguments bound to C values, ready for ``TypedCall/call(_:)``. Owns copies of the `str`
    /// arguments until it is released.
    public struct Arguments: Sendable {
        /// One 8-byte slot per parameter (every supported type fits; libffi reads the leading
        /// bytes that the parameter's type occupies).
        var slots: [UInt64]
        /// The C strings the slots of `str` parameters point to.
        let strings: CStrings?
    }

    /// The signature.
    public let signature: TypedSignature
    /// The job name, for messages.
    public let jobName: String
    private let function: @convention(c) () -> Void
    private let freeString: FreeString?
    private let cif: UnsafeMutablePointer<ffi_cif>
    private let argumentTypes: UnsafeMutablePointer<UnsafeMutablePointer<ffi_type>?>

    /// Prepares the call interface.
    /// - Parameters:
    ///   - jobName: the job's name (for messages).
    ///   - signature: the parsed signature.
    ///   - function: the C function (`pq_job_def.fn`, or a symbol from a manifest's library).
    ///   - freeString: the plugin's `free_string`, used on `str` results; nil to leave them.
    /// - Throws: ``TypedCallError`` when libffi cannot prepare the interface.
    public init(jobName: String, signature: TypedSignature, function: UnsafeRawPointer, freeString: FreeString?)
        throws(TypedCallError)
    {
        self.jobName = jobName
        self.signature = signature
        self.function = unsafeBitCast(function, to: (@convention(c) () -> Void).self)
        self.freeString = freeString
        let count = signature.parameters.count
        argumentTypes = .allocate(capacity: max(1, count))
        for (i, p) in signature.parameters.enumerated() {
            argumentTypes[i] = Self.ffiType(p.type)
        }
        cif = .allocate(capacity: 1)
        let returnType = signature.returnType.map(Self.ffiType) ?? pq_ffi_type_void()
        let status = ffi_prep_cif(cif, FFI_DEFAULT_ABI, UInt32(count), returnType, argumentTypes)
        guard status == FFI_OK else {
            cif.deallocate()
            argumentTypes.deallocate()
            throw TypedCallError(
                message: "libffi cannot prepare a call for \(signature) (ffi_prep_cif status \(status.rawValue))")
        }
    }

    deinit {
        cif.deallocate()
        argumentTypes.deallocate()
    }

    private static func ffiType(_ type: TypedSignature.ValueType) -> UnsafeMutablePointer<ffi_type> {
        switch type {
        case .bool: return pq_ffi_type_uint8()  // C bool is one byte on x86_64 and aarch64 Linux
        case .i32: return pq_ffi_type_sint32()
        case .i64: return pq_ffi_type_sint64()
        case .u32: return pq_ffi_type_uint32()
        case .u64: return pq_ffi_type_uint64()
        case .f32: return pq_ffi_type_float()
        case .f64: return pq_ffi_type_double()
        case .str: return pq_ffi_type_pointer()
        }
    }

    // MARK: binding

    /// Converts kwargs into C values.
    /// - Parameter kwargs: the task's kwargs (a JSON object).
    /// - Returns: the bound arguments.
    /// - Throws: ``TypedArgumentError`` naming the argument and the expected type.
    public func bind(_ kwargs: JSONValue) throws(TypedArgumentError) -> Arguments {
        // Fast path, one pass straight into the slots: as many kwargs as parameters and each
        // parameter found means there is no extra one. Anything else takes the checking path,
        // which names what is wrong.
        let parameters = signature.parameters
        guard case .object(let pairs) = kwargs, pairs.count == parameters.count else {
            return bind(values: try signature.bind(kwargs))
        }
        var slots = [UInt64](repeating: 0, count: parameters.count)
        var strings: CStrings?
        for i in parameters.indices {
            let parameter = parameters[i]
            guard let json = pairs.last(where: { $0.0 == parameter.name })?.1 else {
                _ = try signature.bind(kwargs)
                preconditionFailure("signature.bind accepted kwargs without '\(parameter.name)'")
            }
            let value = try parameter.type.convert(json, argument: parameter.name)
            slots.withUnsafeMutableBytes { Self.store(value, at: i * 8, in: $0, strings: &strings) }
        }
        return Arguments(slots: slots, strings: strings)
    }

    /// Converts kwargs text into C values.
    /// - Parameter kwargsJSON: the task's kwargs as JSON text.
    /// - Returns: the bound arguments.
    /// - Throws: ``TypedArgumentError`` when the text is not a JSON object or does not fit.
    public func bind(json kwargsJSON: String) throws(TypedArgumentError) -> Arguments {
        let value: JSONValue
        do { value = try JSONValue.parse(kwargsJSON) } catch {
            throw TypedArgumentError(
                code: .notAnObject, argument: nil, message: "arguments are not valid JSON: \(error)")
        }
        return try bind(value)
    }

    /// Lays out checked values in C slots.
    /// - Parameter values: one value per parameter, in order (from ``TypedSignature/bind(_:)``).
    /// - Returns: the bound arguments.
    public func bind(values: [TypedValue]) -> Arguments {
        var slots = [UInt64](repeating: 0, count: values.count)
        var strings: CStrings?
        slots.withUnsafeMutableBytes { raw in
            for (i, value) in values.enumerated() {
                Self.store(value, at: i * 8, in: raw, strings: &strings)
            }
        }
        return Arguments(slots: slots, strings: strings)
    }

    private static func store(
        _ value: TypedValue, at offset: Int, in raw: UnsafeMutableRawBufferPointer, strings: inout CStrings?
    ) {
        switch value {
        case .bool(let b): raw.storeBytes(of: b ? 1 : 0, toByteOffset: offset, as: UInt8.self)
        case .i32(let v): raw.storeBytes(of: v, toByteOffset: offset, as: Int32.self)
        case .i64(let v): raw.storeBytes(of: v, toByteOffset: offset, as: Int64.self)
        case .u32(let v): raw.storeBytes(of: v, toByteOffset: offset, as: UInt32.self)
        case .u64(let v): raw.storeBytes(of: v, toByteOffset: offset, as: UInt64.self)
        case .f32(let v): raw.storeBytes(of: v, toByteOffset: offset, as: Float.self)
        case .f64(let v): raw.storeBytes(of: v, toByteOffset: offset, as: Double.self)
        case .str(let s):
            let owned = strings ?? CStrings()
            strings = owned
            raw.storeBytes(of: owned.add(s), toByteOffset: offset, as: UnsafeMutablePointer<CChar>.self)
        }
    }

    // MARK: calling

    /// Calls the function on the calling thread (which it blocks for as long as the function
    /// runs) and converts the return value.
    /// - Parameter arguments: from ``bind(_:)``.
    /// - Returns: `.success` with the JSON result, or `.failure` when the result cannot be JSON
    ///   (a non-finite float).
    public func call(_ arguments: Arguments) -> CallOutcome {
        let count = arguments.slots.count
        precondition(count == signature.parameters.count, "arguments bound for another signature")
        // 16 bytes: libffi widens integral results to ffi_arg and writes at least that much.
        var result: (UInt64, UInt64) = (0, 0)
        arguments.slots.withUnsafeBufferPointer { slots in
            withUnsafeTemporaryAllocation(of: UnsafeMutableRawPointer?.self, capacity: max(1, count)) { pointers in
                // libffi only reads the argument values; its API takes them as mutable pointers.
                for i in 0..<count { pointers[i] = UnsafeMutableRawPointer(mutating: slots.baseAddress! + i) }
                withUnsafeMutableBytes(of: &result) { r in
                    ffi_call(cif, function, r.baseAddress, pointers.baseAddress)
                }
            }
        }
        withExtendedLifetime(arguments) {}
        return withUnsafeBytes(of: result) { convertResult($0) }
    }

    private func convertResult(_ r: UnsafeRawBufferPointer) -> CallOutcome {
        guard let type = signature.returnType else { return .success("null") }
        switch type {
        case .bool: return .success(r.load(as: UInt8.self) != 0 ? "true" : "false")
        case .i32: return .success(String(Int32(truncatingIfNeeded: r.load(as: Int64.self))))
        case .i64: return .success(String(r.load(as: Int64.self)))
        case .u32: return .success(String(UInt32(truncatingIfNeeded: r.load(as: UInt64.self))))
        case .u64: return .success(String(r.load(as: UInt64.self)))
        case .f32:
            let f = r.load(as: Float.self)
            guard f.isFinite else { return nonFinite("\(f)") }
            return .success(f.description)  // shortest text that reads back as the same float
        case .f64:
            let d = r.load(as: Double.self)
            guard d.isFinite else { return nonFinite("\(d)") }
            return .success(d.description)
        case .str:
            guard let p = UnsafeMutablePointer<CChar>(bitPattern: UInt(r.load(as: UInt64.self))) else {
                return .success("null")
            }
            let s = String(cString: p)
            freeString?(p)
            return .success(JSONValue.quote(s))
        }
    }

    private func nonFinite(_ value: String) -> CallOutcome {
        .failure(
            "job '\(jobName)' returned \(value), which JSON cannot represent (the \(signature.returnType!.rawValue) result must be finite)"
        )
    }

    /// Calls the function with bound arguments on one of `pool`'s threads.
    /// - Parameters:
    ///   - arguments: from ``bind(_:)``.
    ///   - pool: the threads for blocking plugin code.
    ///   - invocation: receives the outcome.
    public func start(_ arguments: Arguments, on pool: PluginThreadPool, reportingTo invocation: TypedInvocation) {
        pool.execute { [self] in
            invocation.finish(call(arguments))
        }
    }
}

/// libffi could not prepare a call interface.
public struct TypedCallError: Error, CustomStringConvertible, Sendable {
    /// What went wrong.
    public var message: String
    /// The message.
    public var description: String { message }
}

/// Copies of `str` arguments as C strings, freed when the bound arguments are released.
final class CStrings: @unchecked Sendable {
    // @unchecked: filled while binding (one thread), then only read by the C function.
    private var pointers: [UnsafeMutablePointer<CChar>] = []

    func add(_ s: String) -> UnsafeMutablePointer<CChar> {
        let p = strdup(s)!
        pointers.append(p)
        return p
    }

    deinit {
        for p in pointers { free(p) }
    }
}

/// One typed call running on a plugin thread, awaited by the worker pool.
///
/// ``abandon()`` stops the waiting (timeout, revoke, shutdown); the C function itself cannot be
/// stopped and finishes on its thread, where its outcome is then dropped.
public final class TypedInvocation: Sendable {
    private struct State {
        var outcome: CallOutcome?
        var abandoned = false
        var waiters: [CheckedContinuation<CallOutcome?, Never>] = []
    }

    private let state = Mutex(State())

    /// Creates an invocation that is not finished.
    public init() {}

    /// Records the outcome and wakes the waiters (called on the plugin thread).
    /// - Parameter outcome: how the call ended.
    public func finish(_ outcome: CallOutcome) {
        let waiters = state.withLock { s -> [CheckedContinuation<CallOutcome?, Never>] in
            guard s.outcome == nil else { return [] }
            s.outcome = outcome
            defer { s.waiters = [] }
            return s.abandoned ? [] : s.waiters
        }
        for w in waiters { w.resume(returning: outcome) }
    }

    /// Stops waiting for the call: waiters get nil. The function goes on running.
    public func abandon() {
        let waiters = state.withLock { s -> [CheckedContinuation<CallOutcome?, Never>] in
            s.abandoned = true
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume(returning: nil) }
    }

    /// The outcome if the call finished, else nil.
    public var completedOutcome: CallOutcome? { state.withLock { $0.outcome } }

    /// Waits for the outcome.
    /// - Parameter timeout: seconds to wait at most; nil or 0 for no limit.
    /// - Returns: the outcome, or nil when the invocation was abandoned or the timeout passed first.
    public func outcome(timeout: Double? = nil) async -> CallOutcome? {
        var timer: Task<Void, Never>?
        if let timeout, timeout > 0 {
            timer = Task { [self] in
                try? await Task.sleep(for: .seconds(timeout))
                if !Task.isCancelled { abandon() }
            }
        }
        defer { timer?.cancel() }
        return await withCheckedContinuation { (continuation: CheckedContinuation<CallOutcome?, Never>) in
            let ready: CallOutcome?? = state.withLock { s in
                if s.abandoned { return .some(nil) }
                if let o = s.outcome { return .some(o) }
                s.waiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}
