import Foundation

/// The jobs this process can run, keyed by job name, and the plugins they came from, keyed by path.
///
/// When two plugins define the same job name, the one registered later wins and a warning names
/// both (DESIGN.md section 3).
public final class JobRegistry: Sendable {
    private struct State {
        var jobs: [String: JobDefinition] = [:]
        var plugins: [String: LoadedPlugin] = [:]
        var order: [String] = []  // plugin paths in registration order
        var names: Set<String> = []  // cached keys of `jobs`, read on every claim
        var isolation: [String: JobOptions.Isolation] = [:]  // jobs with an "isolation" option
        var failures: [String: String] = [:]  // plugin file → why it did not load
    }

    private let state = ReadWriteLock(State())

    /// Creates an empty registry.
    public init() {}

    /// Registers every job of a plugin (replacing an earlier generation from the same path).
    /// - Parameter plugin: the loaded plugin.
    /// - Returns: warnings, one per job name that another plugin also defines.
    @discardableResult
    public func register(_ plugin: LoadedPlugin) -> [String] {
        state.write { state in
            var warnings: [String] = []
            if let previous = state.plugins[plugin.info.path] {
                for job in previous.jobs where state.jobs[job.name]?.plugin.path == plugin.info.path {
                    state.jobs[job.name] = nil
                }
            } else {
                state.order.append(plugin.info.path)
            }
            state.plugins[plugin.info.path] = plugin
            for job in plugin.jobs {
                if let existing = state.jobs[job.name], existing.plugin.path != plugin.info.path {
                    warnings.append(
                        "job '\(job.name)' is defined by both \(existing.plugin.path) (plugin '\(existing.plugin.name)') "
                            + "and \(plugin.info.path) (plugin '\(plugin.info.name)'); using the latter")
                }
                state.jobs[job.name] = job
            }
            state.names = Set(state.jobs.keys)
            state.isolation = state.jobs.compactMapValues(\.options.isolation)
            return warnings
        }
    }

    /// Removes a plugin's jobs (its file was removed). Jobs of the same name that an earlier
    /// plugin defines come back.
    /// - Parameter path: the plugin's original path.
    /// - Returns: the plugin that was removed, if any.
    @discardableResult
    public func unregister(path: String) -> LoadedPlugin? {
        state.write { state in
            guard let removed = state.plugins.removeValue(forKey: path) else { return nil }
            state.order.removeAll { $0 == path }
            for job in removed.jobs where state.jobs[job.name]?.plugin.path == path {
                state.jobs[job.name] = nil
            }
            // Re-expose shadowed definitions, in registration order (later wins).
            for p in state.order {
                guard let plugin = state.plugins[p] else { continue }
                for job in plugin.jobs
                where state.jobs[job.name] == nil || removed.jobs.contains(where: { $0.name == job.name }) {
                    if state.jobs[job.name] == nil || state.jobs[job.name]!.plugin.path != p {
                        state.jobs[job.name] = job
                    }
                }
            }
            state.names = Set(state.jobs.keys)
            state.isolation = state.jobs.compactMapValues(\.options.isolation)
            return removed
        }
    }

    /// The job registered under `name`.
    /// - Parameter name: the job name.
    /// - Returns: its definition, or nil.
    public func job(named name: String) -> JobDefinition? {
        state.read { $0.jobs[name] }
    }

    /// Every registered job, sorted by name.
    public var jobs: [JobDefinition] {
        state.read { $0.jobs.values.sorted { $0.name < $1.name } }
    }

    /// Files of the plugin directories that did not load, with why, sorted by path: what a host
    /// publishes in its status so that `pq jobs` can name them (DESIGN.md section 13).
    public var loadFailures: [(path: String, message: String)] {
        // A file that never loaded is not "removed" by a rescan: it leaves the list once it is gone.
        state.read { $0.failures }.filter { $0.key == "?" || FileManager.default.fileExists(atPath: $0.key) }
            .sorted { $0.key < $1.key }.map { (path: $0.key, message: $0.value) }
    }

    /// Keeps ``loadFailures`` current after a load or rescan: a failed file is listed until it
    /// loads or goes away.
    /// - Parameter changes: what the load or rescan did.
    public func noteLoadResults(_ changes: PluginCatalog.Changes) {
        state.write { state in
            for plugin in changes.loaded { state.failures[plugin.info.path] = nil }
            for path in changes.removed { state.failures[path] = nil }
            for failure in changes.failures { state.failures[failure.path ?? "?"] = failure.message }
        }
    }

    /// The names of every registered job.
    public var jobNames: Set<String> {
        state.read { $0.names }
    }

    /// The jobs whose options ask for an isolation mode, with that mode (usually none).
    public var isolationOptions: [String: JobOptions.Isolation] {
        state.read { $0.isolation }
    }

    /// Every registered plugin, in registration order.
    public var plugins: [LoadedPlugin] {
        state.read { state in state.order.compactMap { state.plugins[$0] } }
    }
}
