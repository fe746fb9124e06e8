import CPQPlugin
import Foundation
import Glibc

/// A `NAME.pq.toml` file in a plugin directory: exposes functions of a library that does not
/// know pq as typed jobs.
///
/// ```toml
/// name = "libm"                 # plugin name (default: the file name without .pq.toml)
/// version = "1.0.0"
/// library = "libm.so.6"         # a soname for dlopen, or a path (relative to this file)
/// # free_string = "free"        # optional: a symbol that frees `str` results
///
/// [[jobs]]
/// name = "m.pow"
/// symbol = "pow"
/// signature = "(x:f64,y:f64)->f64"
/// doc = "x raised to the power y."
/// options = { timeout = 5 }
/// ```
///
/// A library given by path goes through the same checks as a plugin `.so` (trust, ELF, private
/// copy); a soname is opened by `dlopen` from the system's library path. A missing library, a
/// missing symbol, an invalid name, signature or option makes the whole manifest fail to load.
public struct PluginManifest: Sendable, Equatable {
    /// One function exposed as a job.
    public struct Job: Sendable, Equatable {
        /// The job name (a slug).
        public var name: String
        /// The C symbol in the library.
        public var symbol: String
        /// `(name:type,...)->type`.
        public var signature: TypedSignature
        /// One-line description.
        public var doc: String
        /// The options as a JSON object, or nil.
        public var optionsJSON: String?
    }

    /// The suffix that marks a manifest in a plugin directory.
    public static let fileSuffix = ".pq.toml"

    /// The plugin name.
    public var name: String
    /// The plugin version.
    public var version: String
    /// The library as written: a soname or a path.
    public var library: String
    /// The symbol of a function that frees `str` results, or nil.
    public var freeString: String?
    /// The jobs, in file order.
    public var jobs: [Job]

    /// Parses and validates a manifest.
    /// - Parameters:
    ///   - text: the TOML text.
    ///   - path: the manifest's path (for the default name and messages).
    /// - Returns: the manifest.
    /// - Throws: ``PluginError`` with code `invalidManifest`, naming the file and what is wrong.
    public static func parse(_ text: String, path: String) throws -> PluginManifest {
        func fail(_ message: String) -> PluginError {
            PluginError(.invalidManifest, path: path, "manifest: \(message)")
        }
        let document: JSONValue
        do { document = try TOMLDocument.parse(text) } catch { throw fail("\(error)") }
        guard case .object(let top) = document else { throw fail("not a TOML table") }
        let topKeys: Set = ["name", "version", "library", "free_string", "jobs"]
        for (key, _) in top where !topKeys.contains(key) {
            throw fail("unknown key '\(key)' (known: \(topKeys.sorted().joined(separator: ", ")))")
        }
        func string(_ value: JSONValue?, _ what: String) throws -> String? {
            guard let value else { return nil }
            guard case .string(let s) = value else { throw fail("\(what) must be a string, got \(value.typeName)") }
            return s
        }
        let fileName = path.split(separator: "/").last.map(String.init) ?? path
        let stem = String(fileName.dropLast(fileSuffix.count))
        let name = try string(document["name"], "name") ?? stem
        guard !name.isEmpty else { throw fail("name must not be empty") }
        let version = try string(document["version"], "version") ?? "0.0.0"
        guard let library = try string(document["library"], "library"), !library.isEmpty else {
            throw fail("no library: set library = \"libfoo.so.1\" (a soname) or a path relative to the manifest")
        }
        let freeString = try string(document["free_string"], "free_string")
        guard case .array(let items)? = document["jobs"], !items.isEmpty else {
            throw fail("no jobs: add [[jobs]] tables with name, symbol and signature")
        }
        let jobKeys: Set = ["name", "symbol", "signature", "doc", "options"]
        var jobs: [Job] = []
        for (n, item) in items.enumerated() {
            guard case .object(let pairs) = item else { throw fail("jobs[\(n)] must be a table") }
            let label = (try? string(item["name"], "name")).flatMap { $0 }.map { "job '\($0)'" } ?? "jobs[\(n)]"
            for (key, _) in pairs where !jobKeys.contains(key) {
                throw fail("\(label): unknown key '\(key)' (known: \(jobKeys.sorted().joined(separator: ", ")))")
            }
            guard let jobName = try string(item["name"], "\(label): name") else { throw fail("\(label) has no name") }
            guard JobDefinition.isValidName(jobName) else {
                throw fail("job name '\(jobName)' is not a slug ([a-z0-9][a-z0-9._-]*)")
            }
            guard !jobs.contains(where: { $0.name == jobName }) else { throw fail("job '\(jobName)' is listed twice") }
            guard let symbol = try string(item["symbol"], "\(label): symbol"), !symbol.isEmpty else {
                throw fail("\(label) has no symbol (the C function's name in \(library))")
            }
            guard let signatureText = try string(item["signature"], "\(label): signature") else {
                throw fail("\(label) has no signature, e.g. signature = \"(x:f64)->f64\"")
            }
            let signature: TypedSignature
            do { signature = try TypedSignature.parse(signatureText) } catch { throw fail("\(label): \(error)") }
            var optionsJSON: String?
            if let options = item["options"] {
                guard case .object = options else {
                    throw fail("\(label): options must be a table, got \(options.typeName)")
                }
                optionsJSON = options.jsonText
                do { _ = try JobOptions.parse(optionsJSON) } catch { throw fail("\(label): \(error)") }
            }
            jobs.append(
                Job(
                    name: jobName, symbol: symbol, signature: signature,
                    doc: try string(item["doc"], "\(label): doc") ?? "",
                    optionsJSON: optionsJSON))
        }
        return PluginManifest(name: name, version: version, library: library, freeString: freeString, jobs: jobs)
    }
}

extension PluginLoader {
    /// Loads a `NAME.pq.toml` manifest: opens its library, resolves every symbol and registers the
    /// functions as typed jobs of a plugin with toolchain `"c"`.
    /// - Parameter path: the manifest file.
    /// - Returns: the loaded plugin.
    /// - Throws: ``PluginError`` naming the manifest and the reason; nothing of it is loaded then.
    public func loadManifest(path: String) throws -> LoadedPlugin {
        if !options.trustAll { try PluginTrust.check(path: path) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw PluginError(.unreadable, path: path, "cannot read the manifest")
        }
        let manifest = try PluginManifest.parse(String(decoding: data, as: UTF8.self), path: path)
        let handle: UnsafeMutableRawPointer
        if manifest.library.contains("/") {
            let directory = (path as NSString).deletingLastPathComponent
            let file =
                manifest.library.hasPrefix("/")
                ? manifest.library
                : ((directory as NSString).appendingPathComponent(manifest.library) as NSString).standardizingPath
            guard FileManager.default.fileExists(atPath: file) else {
                throw PluginError(.invalidManifest, path: path, "manifest: library \(file) does not exist")
            }
            do { handle = try openPrivateCopy(of: file) } catch let error as PluginError {
                throw PluginError(error.code, path: path, "manifest: library \(error.description)")
            }
        } else {
            guard let h = dlopen(manifest.library, RTLD_NOW | RTLD_LOCAL) else {
                let reason = dlerror().map { String(cString: $0) } ?? "unknown error"
                throw PluginError(
                    .invalidManifest, path: path,
                    "manifest: cannot open library '\(manifest.library)': \(reason) (give a soname on the system's library path or a path to the file)"
                )
            }
            handle = h
        }
        var functions: [UnsafeMutableRawPointer] = []
        for job in manifest.jobs {
            _ = dlerror()
            guard let symbol = dlsym(handle, job.symbol) else {
                throw PluginError(
                    .invalidManifest, path: path,
                    "manifest: job '\(job.name)': no symbol '\(job.symbol)' in library \(manifest.library)")
            }
            functions.append(symbol)
        }
        var freeString: TypedCall.FreeString?
        if let name = manifest.freeString {
            guard let symbol = dlsym(handle, name) else {
                throw PluginError(
                    .invalidManifest, path: path,
                    "manifest: free_string: no symbol '\(name)' in library \(manifest.library)")
            }
            freeString = unsafeBitCast(symbol, to: TypedCall.FreeString.self)
        }
        let descriptor = ManifestDescriptor.make(manifest, functions: functions, freeString: freeString)
        let plugin = try validate(descriptor, path: path)
        if let rejected = plugin.rejectedJobs.first {
            throw PluginError(.invalidManifest, path: path, "manifest: \(rejected.message)")
        }
        return plugin
    }
}

/// Builds the C descriptor (`pq_plugin` and its `pq_job_def`s) of a manifest, so that its jobs
/// load, validate and run exactly like a plugin's. Like a plugin library, the memory lives as
/// long as the process (jobs hold pointers into it).
enum ManifestDescriptor {
    static func make(
        _ manifest: PluginManifest, functions: [UnsafeMutableRawPointer], freeString: TypedCall.FreeString?
    ) -> UnsafePointer<pq_plugin> {
        let jobs = UnsafeMutablePointer<pq_job_def>.allocate(capacity: max(1, manifest.jobs.count))
        for (i, job) in manifest.jobs.enumerated() {
            (jobs + i).initialize(
                to: pq_job_def(
                    name: strdup(job.name), doc: strdup(job.doc),
                    options_json: job.optionsJSON.map { UnsafePointer(strdup($0)!) },
                    run: nil, cancel: nil, fn: functions[i], signature: strdup(job.signature.description)))
        }
        let plugin = UnsafeMutablePointer<pq_plugin>.allocate(capacity: 1)
        plugin.initialize(
            to: pq_plugin(
                abi_version: UInt32(PQ_ABI_VERSION), struct_size: UInt32(MemoryLayout<pq_plugin>.size),
                name: strdup(manifest.name), version: strdup(manifest.version), toolchain: strdup("c"),
                job_count: UInt32(manifest.jobs.count), jobs: jobs, free_string: freeString))
        return UnsafePointer(plugin)
    }
}
