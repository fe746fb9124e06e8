/// An error met while resolving task_paths or loading a plugin.
///
/// The message says what was wrong and what to do; `path` names the file or directory
/// concerned. New cases may be added without breaking users: compare ``code`` with the static
/// members (`error.code == .notELF`).
public struct PluginError: Error, CustomStringConvertible, Sendable {
    /// The kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Sendable {
            case missingDirectory, emptyTaskPath, badTaskPath, unreadable, notELF, truncated, untrusted
            case dlopenFailed, missingEntry, entryReturnedNull, abiMismatch, structTooSmall
            case toolchainMismatch, invalidDescriptor, invalidJob, invalidManifest, crashedWhileLoading
        }
        fileprivate let base: Base
        /// A task_paths entry whose directory does not exist.
        public static let missingDirectory = Code(base: .missingDirectory)
        /// No task_paths were given.
        public static let emptyTaskPath = Code(base: .emptyTaskPath)
        /// A task_paths entry that is not a dotted name.
        public static let badTaskPath = Code(base: .badTaskPath)
        /// A file that cannot be read.
        public static let unreadable = Code(base: .unreadable)
        /// A file that is not an ELF shared object of this machine.
        public static let notELF = Code(base: .notELF)
        /// An ELF file shorter than its headers say (half written).
        public static let truncated = Code(base: .truncated)
        /// A file or directory others can write, or owned by another user.
        public static let untrusted = Code(base: .untrusted)
        /// `dlopen` refused the file.
        public static let dlopenFailed = Code(base: .dlopenFailed)
        /// The library has no `pq_plugin_entry` symbol.
        public static let missingEntry = Code(base: .missingEntry)
        /// `pq_plugin_entry` returned NULL.
        public static let entryReturnedNull = Code(base: .entryReturnedNull)
        /// The plugin was built for another ABI version.
        public static let abiMismatch = Code(base: .abiMismatch)
        /// The plugin's `struct_size` is smaller than version 1's.
        public static let structTooSmall = Code(base: .structTooSmall)
        /// A Swift plugin built by another compiler than the host's.
        public static let toolchainMismatch = Code(base: .toolchainMismatch)
        /// The plugin descriptor holds a NULL or invalid field.
        public static let invalidDescriptor = Code(base: .invalidDescriptor)
        /// One job definition is invalid (the rest of the plugin may load).
        public static let invalidJob = Code(base: .invalidJob)
        /// A `NAME.pq.toml` manifest that cannot be used: bad syntax, a missing library or
        /// symbol, an invalid job (the whole manifest is skipped).
        public static let invalidManifest = Code(base: .invalidManifest)
        /// Loading the plugin killed the process that loaded it (a library constructor or
        /// `pq_plugin_entry` crashed or exited); reported by the worker's supervisor.
        public static let crashedWhileLoading = Code(base: .crashedWhileLoading)
        fileprivate init(base: Base) { self.base = base }
        /// The code named `name` (its ``description``), for errors reported by another process.
        /// - Parameter name: a code's name, e.g. `notELF`.
        public init?(named name: String) {
            guard let base = Base(rawValue: name) else { return nil }
            self.base = base
        }
        /// The code's name, e.g. `notELF`.
        public var description: String { base.rawValue }
    }

    /// The kind of failure.
    public let code: Code
    /// The file or directory concerned, if any.
    public let path: String?
    /// What was wrong and what to do.
    public let message: String

    /// Creates an error.
    /// - Parameters:
    ///   - code: the kind of failure.
    ///   - path: the file or directory concerned.
    ///   - message: a one-line explanation that says what to do.
    public init(_ code: Code, path: String? = nil, _ message: String) {
        self.code = code
        self.path = path
        self.message = message
    }

    /// The message, prefixed with the path when there is one.
    public var description: String {
        if let path, !message.contains(path) { return "\(path): \(message)" }
        return message
    }
}
