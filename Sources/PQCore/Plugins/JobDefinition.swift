public import CPQPlugin

/// One job of a loaded plugin, validated.
public final class JobDefinition: Sendable {
    /// How the host calls the job.
    public enum Kind: Sendable {
        /// A JSON job: `run` with JSON kwargs, `complete` with a JSON result.
        case json
        /// A typed job: a C function called through libffi.
        case typed(TypedSignature)
    }

    /// The job's name (a slug).
    public let name: String
    /// One-line description, possibly empty.
    public let doc: String
    /// The options from `options_json`.
    public let options: JobOptions
    /// The `options_json` text as the plugin gave it.
    public let optionsJSON: String?
    /// JSON or typed.
    public let kind: Kind
    /// For typed jobs: the function with its libffi call interface, prepared once at load.
    public let typedCall: TypedCall?
    /// The plugin generation it belongs to.
    public let plugin: PluginInfo
    /// The plugin's descriptor; nil for a job known only by its description (the plugin was
    /// loaded by a worker process, not in this one).
    public let handle: PluginHandle?
    /// The index in the plugin's `jobs` array.
    public let index: Int

    /// The `pq_job_def` in the plugin's memory; nil when the plugin is not loaded in this process.
    public var definition: UnsafePointer<pq_job_def>? { handle.map { $0.descriptor.pointee.jobs! + index } }

    /// `"periodic"` or `"regular"`.
    public var typeName: String { options.isPeriodic ? "periodic" : "regular" }

    /// The signature text for typed jobs, else nil.
    public var signature: String? {
        if case .typed(let s) = kind { return s.description }
        return nil
    }

    /// Whether `name` is a valid job name: `[a-z0-9][a-z0-9._-]*`.
    /// - Parameter name: a candidate name.
    /// - Returns: true when it is a slug.
    public static func isValidName(_ name: String) -> Bool {
        guard let first = name.utf8.first, isSlugStart(first), name.utf8.count <= 200 else { return false }
        return name.utf8.allSatisfy {
            isSlugStart($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-")
        }
    }

    private static func isSlugStart(_ c: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(c) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c)
    }

    /// A job known by its description only: its plugin was loaded in another process (a worker
    /// or a probe), which reported it. It can be listed, queued and scheduled, not called here.
    /// - Parameter description: what the loading process reported.
    /// - Throws: ``PluginError`` when the description does not validate (as the job would not).
    public init(description d: JobDescription, plugin: PluginInfo) throws {
        let options: JobOptions
        do { options = try JobOptions.parse(d.optionsJSON) } catch {
            throw PluginError(
                .invalidJob, path: plugin.path, "job '\(d.name)' of plugin '\(plugin.name)': \(error); job skipped")
        }
        if let text = d.signature {
            do { kind = .typed(try TypedSignature.parse(text)) } catch {
                throw PluginError(
                    .invalidJob, path: plugin.path, "job '\(d.name)' of plugin '\(plugin.name)': \(error); job skipped")
            }
        } else {
            kind = .json
        }
        self.name = d.name
        self.doc = d.doc
        self.options = options
        self.optionsJSON = d.optionsJSON
        self.typedCall = nil
        self.plugin = plugin
        self.handle = nil
        self.index = d.index
    }

    /// What another process needs to know of this job to list, queue and schedule it.
    public var jobDescription: JobDescription {
        JobDescription(name: name, doc: doc, optionsJSON: optionsJSON, signature: signature, index: index)
    }

    init(plugin: PluginInfo, handle: PluginHandle, index: Int) throws {
        let def = (handle.descriptor.pointee.jobs! + index).pointee
        let path = plugin.path
        guard let namePtr = def.name else {
            throw PluginError(.invalidJob, path: path, "job #\(index) of plugin '\(plugin.name)' has no name (NULL)")
        }
        let name = String(cString: namePtr)
        guard Self.isValidName(name) else {
            throw PluginError(
                .invalidJob, path: path,
                "job name '\(name)' of plugin '\(plugin.name)' is not a slug ([a-z0-9][a-z0-9._-]*); job skipped")
        }
        let options: JobOptions
        let optionsJSON = def.options_json.map { String(cString: $0) }
        do {
            options = try JobOptions.parse(optionsJSON)
        } catch {
            throw PluginError(
                .invalidJob, path: path, "job '\(name)' of plugin '\(plugin.name)': \(error); job skipped")
        }
        let kind: Kind
        var typedCall: TypedCall?
        switch (def.run != nil, def.fn != nil, def.signature != nil) {
        case (true, false, _):
            kind = .json
        case (false, true, true):
            do {
                let signature = try TypedSignature.parse(String(cString: def.signature!))
                kind = .typed(signature)
                typedCall = try TypedCall(
                    jobName: name, signature: signature, function: UnsafeRawPointer(def.fn!),
                    freeString: handle.descriptor.pointee.free_string)
            } catch {
                throw PluginError(
                    .invalidJob, path: path, "job '\(name)' of plugin '\(plugin.name)': \(error); job skipped")
            }
        case (true, true, _):
            throw PluginError(
                .invalidJob, path: path,
                "job '\(name)' of plugin '\(plugin.name)' sets both run and fn; a job is either a JSON job (run) or a typed job (fn + signature)"
            )
        case (false, true, false):
            throw PluginError(
                .invalidJob, path: path, "typed job '\(name)' of plugin '\(plugin.name)' has fn but no signature")
        case (false, false, _):
            throw PluginError(
                .invalidJob, path: path, "job '\(name)' of plugin '\(plugin.name)' has neither run nor fn")
        }
        self.name = name
        self.doc = def.doc.map { String(cString: $0) } ?? ""
        self.options = options
        self.optionsJSON = optionsJSON
        self.kind = kind
        self.typedCall = typedCall
        self.plugin = plugin
        self.handle = handle
        self.index = index
    }
}

/// A job as a worker or probe process reports it to the host.
public struct JobDescription: Sendable, Equatable {
    /// The job's name.
    public var name: String
    /// Its one-line description.
    public var doc: String
    /// Its `options_json`, as the plugin gave it.
    public var optionsJSON: String?
    /// `(name:type,...)->type` for typed jobs; nil for JSON jobs.
    public var signature: String?
    /// The index in the plugin's `jobs` array.
    public var index: Int
}
