public import CPQPlugin
import Glibc
import PQToolchain

/// What identifies one loaded generation of a plugin.
public struct PluginInfo: Sendable, Equatable {
    /// The plugin's name.
    public var name: String
    /// The plugin's version.
    public var version: String
    /// `"c"` or `"swift-X.Y.Z"`.
    public var toolchain: String
    /// The `.so` it was loaded from (the original path, not the private copy).
    public var path: String
    /// The generation number (increases each time any plugin is loaded in this process).
    public var generation: Int
    /// In process isolation: the host's snapshot of the file that worker processes load this
    /// generation from (nil when the plugin was loaded in this process).
    public var image: String? = nil
}

/// A plugin library that was opened and validated. It is never unloaded: Swift code cannot be
/// `dlclose`d safely (DESIGN.md section 2), so the descriptor it returned stays valid for the
/// life of the process.
public struct LoadedPlugin: Sendable {
    /// Name, version, toolchain, path and generation.
    public let info: PluginInfo
    /// The jobs that validated, in the plugin's order.
    public let jobs: [JobDefinition]
    /// Jobs that did not validate, with the reason; the rest of the plugin still loads.
    public let rejectedJobs: [PluginError]
}

/// Loads plugin libraries: checks, private copy, `dlopen`, entry call and validation.
///
/// ```swift
/// let loader = PluginLoader(options: .init())
/// let plugin = try loader.load(path: "/srv/plugins/examples/libexamples.so")
/// ```
public struct PluginLoader: Sendable {
    /// Settings of the loader.
    public struct Options: Sendable {
        /// Skip the ownership and permission check (`--trust-all-plugins`).
        public var trustAll: Bool
        /// Where private copies are made; defaults to `$TMPDIR` or `/tmp`.
        public var privateDirectory: String
        /// The toolchain Swift plugins must have been built with.
        public var hostToolchain: String

        /// Creates options with defaults: trust check on, `$TMPDIR`, this host's toolchain.
        /// - Parameters:
        ///   - trustAll: skip the trust check.
        ///   - privateDirectory: where private copies go.
        ///   - hostToolchain: the toolchain to require of Swift plugins.
        public init(trustAll: Bool = false, privateDirectory: String? = nil, hostToolchain: String = hostSwiftToolchain)
        {
            self.trustAll = trustAll
            self.privateDirectory = privateDirectory ?? (getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp")
            self.hostToolchain = hostToolchain
        }
    }

    /// The loader's settings.
    public var options: Options

    /// Creates a loader.
    /// - Parameter options: its settings.
    public init(options: Options = Options()) {
        self.options = options
    }

    /// The size of `pq_plugin` in ABI version 1: the least a plugin may report.
    public static let minimumPluginStructSize = MemoryLayout<pq_plugin>.size

    /// Loads one plugin.
    /// - Parameter path: the `.so` file.
    /// - Returns: the loaded plugin with its validated jobs.
    /// - Throws: ``PluginError`` naming the file and the reason.
    public func load(path: String) throws -> LoadedPlugin {
        try load(path: path, image: path, generation: nil)
    }

    /// Loads one plugin from a copy of its file.
    /// - Parameters:
    ///   - path: the plugin's file as task_paths found it: named in errors and in ``PluginInfo``.
    ///   - image: the bytes to open (a snapshot of `path` taken earlier, or `path` itself).
    ///   - generation: the generation number to give it; nil for the next of this process.
    /// - Returns: the loaded plugin with its validated jobs.
    /// - Throws: ``PluginError`` naming `path` and the reason.
    public func load(path: String, image: String, generation: Int?) throws -> LoadedPlugin {
        if path.hasSuffix(PluginManifest.fileSuffix) { return try loadManifest(path: path) }
        let handle = try openPrivateCopy(of: image, reportedPath: path)
        guard let symbol = dlsym(handle, PQ_PLUGIN_ENTRY_SYMBOL) else {
            throw PluginError(
                .missingEntry, path: path,
                "no symbol pq_plugin_entry: not a pq plugin (export `const pq_plugin *pq_plugin_entry(uint32_t)`)")
        }
        let entry = unsafeBitCast(symbol, to: pq_plugin_entry_fn.self)
        guard let descriptor = entry(UInt32(PQ_ABI_VERSION)) else {
            throw PluginError(
                .entryReturnedNull, path: path,
                "pq_plugin_entry(\(PQ_ABI_VERSION)) returned NULL: the plugin cannot serve ABI version \(PQ_ABI_VERSION)"
            )
        }
        return try validate(descriptor, path: path, generation: generation)
    }

    /// Checks a library file (trust, ELF), copies it to a private path and opens the copy.
    /// - Parameter path: the library file.
    /// - Returns: the `dlopen` handle (the library is never closed).
    /// - Throws: ``PluginError`` naming the file and the reason.
    func openPrivateCopy(of image: String, reportedPath path: String? = nil) throws -> UnsafeMutableRawPointer {
        let path = path ?? image
        if !options.trustAll { try PluginTrust.check(path: image) }
        let copy = try privateCopy(of: image)
        defer {
            unlink(copy.file)
            rmdir(copy.directory)
        }
        // Check the copy, not the original: the original may change under us, the copy cannot.
        try ELFCheck.validate(path: copy.file, reportedPath: path)
        guard let handle = dlopen(copy.file, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown error"
            throw PluginError(
                .dlopenFailed, path: path,
                "dlopen failed: \(reason.replacingPrivatePath(copy.file, with: path).replacingPrivatePath(image, with: path))"
            )
        }
        return handle
    }

    func validate(_ descriptor: UnsafePointer<pq_plugin>, path: String, generation: Int? = nil) throws -> LoadedPlugin {
        let d = descriptor.pointee
        guard d.abi_version == UInt32(PQ_ABI_VERSION) else {
            throw PluginError(
                .abiMismatch, path: path,
                "plugin was built for ABI version \(d.abi_version) but this host speaks version \(PQ_ABI_VERSION); rebuild it against this pq_plugin.h"
            )
        }
        guard Int(d.struct_size) >= Self.minimumPluginStructSize else {
            throw PluginError(
                .structTooSmall, path: path,
                "struct_size \(d.struct_size) is smaller than pq_plugin of ABI version 1 (\(Self.minimumPluginStructSize) bytes); set it to sizeof(pq_plugin)"
            )
        }
        guard let namePtr = d.name, case let name = String(cString: namePtr), !name.isEmpty else {
            throw PluginError(.invalidDescriptor, path: path, "plugin has no name (pq_plugin.name is NULL or empty)")
        }
        guard let versionPtr = d.version else {
            throw PluginError(
                .invalidDescriptor, path: path, "plugin '\(name)' has no version (pq_plugin.version is NULL)")
        }
        guard let toolchainPtr = d.toolchain else {
            throw PluginError(
                .invalidDescriptor, path: path,
                "plugin '\(name)' has no toolchain (pq_plugin.toolchain is NULL; use \"c\" for plugins without Swift code)"
            )
        }
        let toolchain = String(cString: toolchainPtr)
        if toolchain.hasPrefix("swift"), toolchain != options.hostToolchain {
            throw PluginError(
                .toolchainMismatch, path: path,
                "plugin '\(name)' was built by \(toolchain) but this host was built by \(options.hostToolchain); "
                    + "Swift has no stable ABI on Linux: rebuild the plugin with \(options.hostToolchain)")
        }
        guard d.job_count <= 100_000 else {
            throw PluginError(.invalidDescriptor, path: path, "plugin '\(name)' claims \(d.job_count) jobs")
        }
        if d.job_count > 0, d.jobs == nil {
            throw PluginError(
                .invalidDescriptor, path: path, "plugin '\(name)' has job_count \(d.job_count) but jobs is NULL")
        }
        let info = PluginInfo(
            name: name, version: String(cString: versionPtr), toolchain: toolchain, path: path,
            generation: generation ?? PluginGenerations.next())
        let handle = PluginHandle(descriptor: descriptor)
        var jobs: [JobDefinition] = []
        var rejected: [PluginError] = []
        var seen = Set<String>()
        for index in 0..<Int(d.job_count) {
            do {
                let job = try JobDefinition(plugin: info, handle: handle, index: index)
                if !seen.insert(job.name).inserted {
                    throw PluginError(.invalidJob, path: path, "job '\(job.name)' is defined twice in plugin '\(name)'")
                }
                jobs.append(job)
            } catch let error as PluginError {
                rejected.append(error)
            } catch {
                rejected.append(PluginError(.invalidJob, path: path, "\(error)"))
            }
        }
        return LoadedPlugin(info: info, jobs: jobs, rejectedJobs: rejected)
    }

    private func privateCopy(of path: String) throws -> (directory: String, file: String) {
        var template = Array((options.privateDirectory + "/pq-plugin-XXXXXX").utf8CString)
        guard let dirPtr = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw PluginError(
                .unreadable, path: options.privateDirectory,
                "cannot create a private directory for plugin copies: \(String(cString: strerror(errno)))")
        }
        let dir = String(cString: dirPtr)
        let base = path.split(separator: "/").last.map(String.init) ?? "plugin.so"
        let file = dir + "/" + base
        do {
            try Self.copyFile(from: path, to: file)
        } catch {
            unlink(file)
            rmdir(dir)
            throw error
        }
        return (dir, file)
    }

    /// Copies `source` to a new file `target` (mode 0700, created exclusively).
    static func copyFile(from source: String, to target: String) throws {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else {
            throw PluginError(.unreadable, path: source, "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(input) }
        let output = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o700)
        guard output >= 0 else {
            throw PluginError(
                .unreadable, path: target, "cannot create private copy: \(String(cString: strerror(errno)))")
        }
        defer { close(output) }
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                throw PluginError(.unreadable, path: source, "read failed: \(String(cString: strerror(errno)))")
            }
            var written = 0
            while written < n {
                let w = buffer.withUnsafeBytes { write(output, $0.baseAddress! + written, n - written) }
                if w < 0 {
                    if errno == EINTR { continue }
                    throw PluginError(.unreadable, path: target, "write failed: \(String(cString: strerror(errno)))")
                }
                written += w
            }
        }
    }
}

/// The descriptor a plugin returned. Its memory belongs to a library opened with RTLD_NODELETE,
/// so it stays valid and unchanged for the life of the process.
public struct PluginHandle: @unchecked Sendable {
    // @unchecked: an immutable pointer into a library that is never unmapped.
    /// The descriptor.
    public let descriptor: UnsafePointer<pq_plugin>
}

/// Hands out generation numbers for loaded plugins.
enum PluginGenerations {
    private static let counter = AtomicCounter()
    static func next() -> Int { counter.increment() }
}

extension String {
    func replacingPrivatePath(_ copy: String, with original: String) -> String {
        split(separator: copy, omittingEmptySubsequences: false).joined(separator: original)
    }
}

/// The toolchain string of the compiler that built this host (`"swift-X.Y.Z"`); Swift plugins
/// must report the same one.
public let hostSwiftToolchain: String = pqSwiftToolchain
