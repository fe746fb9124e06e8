/// What loading one plugin file in another process gave, as it crosses back to the host:
/// the plugin with its job descriptions, or the error.
enum PluginReport {
    static func json(_ result: Result<LoadedPlugin, PluginError>, path: String) -> String {
        switch result {
        case .success(let plugin):
            let jobs = plugin.jobs.map { job -> JSONValue in
                let d = job.jobDescription
                return .object([
                    ("name", .string(d.name)), ("doc", .string(d.doc)),
                    ("options", d.optionsJSON.map(JSONValue.string) ?? .null),
                    ("signature", d.signature.map(JSONValue.string) ?? .null), ("index", .int(Int64(d.index))),
                ])
            }
            return JSONValue.object([
                ("path", .string(path)), ("name", .string(plugin.info.name)), ("version", .string(plugin.info.version)),
                ("toolchain", .string(plugin.info.toolchain)), ("generation", .int(Int64(plugin.info.generation))),
                ("jobs", .array(jobs)), ("rejected", .array(plugin.rejectedJobs.map(errorJSON))),
            ]).jsonText
        case .failure(let error):
            return JSONValue.object([("path", .string(path)), ("error", errorJSON(error))]).jsonText
        }
    }

    private static func errorJSON(_ e: PluginError) -> JSONValue {
        .object([
            ("code", .string(e.code.description)), ("path", e.path.map(JSONValue.string) ?? .null),
            ("message", .string(e.message)),
        ])
    }

    private static func error(_ v: JSONValue?, path: String) -> PluginError {
        guard let v, case .string(let message)? = v["message"] else {
            return PluginError(.unreadable, path: path, "the loading process sent an unreadable report")
        }
        var code = PluginError.Code.unreadable
        if case .string(let name)? = v["code"], let c = PluginError.Code(named: name) { code = c }
        var location = path
        if case .string(let p)? = v["path"] { location = p }
        return PluginError(code, path: location, message)
    }

    /// Rebuilds what another process loaded: jobs known by description, which this process can
    /// list, queue and schedule without the plugin's code.
    /// - Parameters:
    ///   - json: the report.
    ///   - path: the file it is about.
    ///   - image: the snapshot workers will load it from.
    static func decode(_ json: String, path: String, image: String?) -> Result<LoadedPlugin, PluginError> {
        guard let v = try? JSONValue.parse(json) else {
            return .failure(PluginError(.unreadable, path: path, "the loading process sent an unreadable report"))
        }
        if let e = v["error"] { return .failure(error(e, path: path)) }
        func str(_ k: String, in o: JSONValue = v) -> String? {
            if case .string(let s)? = o[k] { return s }
            return nil
        }
        guard let name = str("name"), let version = str("version"), let toolchain = str("toolchain"),
            let generation = v["generation"]?.doubleValue
        else { return .failure(PluginError(.unreadable, path: path, "the loading process sent an incomplete report")) }
        var info = PluginInfo(
            name: name, version: version, toolchain: toolchain, path: path, generation: Int(generation))
        info.image = image
        var jobs: [JobDefinition] = []
        var rejected: [PluginError] = []
        if case .array(let items)? = v["rejected"] { rejected = items.map { error($0, path: path) } }
        if case .array(let items)? = v["jobs"] {
            for item in items {
                guard let jobName = str("name", in: item) else { continue }
                let d = JobDescription(
                    name: jobName, doc: str("doc", in: item) ?? "", optionsJSON: str("options", in: item),
                    signature: str("signature", in: item), index: Int(item["index"]?.doubleValue ?? 0))
                do { jobs.append(try JobDefinition(description: d, plugin: info)) } catch let e as PluginError {
                    rejected.append(e)
                } catch {
                    rejected.append(PluginError(.invalidJob, path: path, "\(error)"))
                }
            }
        }
        return .success(LoadedPlugin(info: info, jobs: jobs, rejectedJobs: rejected))
    }
}
