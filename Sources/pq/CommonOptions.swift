import ArgumentParser
import Foundation
import PQCore
import PQRedis

/// Options every command takes. Flags win over environment variables, which win over the
/// config file (`--config`, env `PQ_CONFIG`, else `./pq.toml` when it exists).
struct CommonOptions: ParsableArguments {
    @Option(
        name: .customLong("task-paths"),
        help: "Comma-separated task_paths entries, e.g. 'myjobs,pkg.*' (env PQ_TASK_PATHS).")
    var taskPaths: String?

    @Option(
        name: .customLong("plugins-dir"),
        help: "The plugins root that task_paths resolve under (env PQ_PLUGINS_DIR; default ./.pq/plugins).")
    var pluginsDir: String?

    @Option(
        name: .customLong("store"),
        help:
            "Store URL: sqlite:PATH, memory:, redis://host:port/db, rediss://… for TLS (env PQ_STORE; default sqlite:./.pq/pq.sqlite)."
    )
    var store: String?

    @Option(name: .customLong("config"), help: "A pq.toml file with the same settings (env PQ_CONFIG).")
    var config: String?

    @Flag(
        name: .customLong("trust-all-plugins"),
        help: "Load plugins even if others can write them or another user owns them (env PQ_TRUST_ALL_PLUGINS=1).")
    var trustAllPlugins = false

    /// The settings after merging flags, environment and file.
    func resolve() throws -> Settings {
        let env = ProcessInfo.processInfo.environment
        let configPath =
            config ?? env["PQ_CONFIG"] ?? (FileManager.default.fileExists(atPath: "pq.toml") ? "pq.toml" : nil)
        let file =
            try configPath.map { path throws -> ConfigFile in
                do { return try ConfigFile.load(path: path) } catch { throw CLIError("\(error)") }
            } ?? ConfigFile()
        var s = Settings()
        if let t = taskPaths ?? env["PQ_TASK_PATHS"] {
            s.taskPaths = TaskPaths.split(t)
        } else {
            s.taskPaths = file.taskPaths ?? []
        }
        s.pluginsDir = pluginsDir ?? env["PQ_PLUGINS_DIR"] ?? file.pluginsDir ?? ".pq/plugins"
        if let chosen = store ?? env["PQ_STORE"] ?? file.store {
            s.store = chosen
        } else {
            s.store = "sqlite:.pq/pq.sqlite"
            s.storeIsDefault = true
        }
        s.trustAllPlugins =
            trustAllPlugins || env["PQ_TRUST_ALL_PLUGINS"].map { $0 == "1" || $0 == "true" } ?? false
            || (file.trustAllPlugins ?? false)
        s.file = file
        return s
    }
}

/// Merged settings.
struct Settings {
    var taskPaths: [String] = []
    var pluginsDir = ".pq/plugins"
    var store = "sqlite:.pq/pq.sqlite"
    var trustAllPlugins = false
    var file = ConfigFile()

    var loader: PluginLoader { PluginLoader(options: .init(trustAll: trustAllPlugins)) }

    /// Loads plugins in a child process: commands that only need to know the jobs (`pq jobs`,
    /// `pq submit`, `pq next`) never run plugin code themselves, so a plugin whose constructor
    /// crashes is reported, not fatal.
    var childLoader: IsolatedPluginLoader { IsolatedPluginLoader(options: .init(trustAll: trustAllPlugins)) }

    /// Whether the store is the default one (its folder is created when missing).
    var storeIsDefault = false

    /// Opens the store named by the settings.
    /// - Parameter resultTTL: how long finished tasks are kept (`--result-ttl`; else pq.toml's
    ///   `result_ttl`, else a day): the Redis store gives a finished task's hash this TTL.
    func openStore(resultTTL: Double? = nil) async throws -> any PeriodicScheduleStore {
        let url: StoreURL
        do { url = try StoreURL(parsing: store) } catch { throw CLIError("\(error)") }
        if storeIsDefault, case .sqlite(let path) = url {
            // `.pq/` holds the store: made for the owner only.
            try? FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700])
        }
        if case .redis(let redis) = url {
            // PQCore does not know Redis; the CLI opens it, checking that it answers.
            let options = RedisTaskStore.Options(resultTTL: resultTTL ?? file.resultTTL ?? 86_400)
            do { return try await RedisTaskStore.connect(url: redis, options: options) } catch {
                throw CLIError("\(error)")
            }
        }
        do { return try makeStore(url: url) } catch { throw CLIError("\(error)") }
    }

    /// Loads the plugins of task_paths, printing load failures and warnings on stderr.
    func loadPlugins(into registry: JobRegistry, quiet: Bool = false) throws -> PluginSet.Report {
        let report: PluginSet.Report
        do {
            report = try PluginSet.load(taskPaths: taskPaths, root: pluginsDir, loader: childLoader, into: registry)
        } catch let error as PluginError {
            throw CLIError(error.description)
        }
        if !quiet {
            for failure in report.failures { printError("pq: plugin not loaded: \(failure)") }
            for warning in report.warnings { printError("pq: warning: \(warning)") }
        }
        return report
    }
}

/// A one-line error for the user; `pq` prints it on stderr and exits non-zero.
struct CLIError: Error, CustomStringConvertible {
    var message: String
    var exitCode: Int32
    init(_ message: String, exitCode: Int32 = 1) {
        self.message = message
        self.exitCode = exitCode
    }
    var description: String { message }
}

/// Writes a line to stderr.
func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

extension AsyncParsableCommand {
    /// Runs `body`, turning a ``CLIError`` into one line on stderr and its exit status.
    func reportingErrors(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let error as CLIError {
            printError("pq: error: \(error.message)")
            throw ExitCode(error.exitCode)
        }
    }
}
