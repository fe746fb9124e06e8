import Foundation

/// The settings a `pq.toml` file may hold; every one is optional. Command-line flags win over
/// environment variables, which win over the file.
///
/// ```toml
/// task_paths = ["examples.*", "myjobs"]
/// plugins_dir = "/srv/pq/plugins"
/// store = "sqlite:/srv/pq/pq.sqlite"
/// concurrent_tasks = 8
/// schedule_periodic = true
/// queues = ["default", "mail"]
/// ```
public struct ConfigFile: Sendable, Equatable {
    /// task_paths entries (a list, or one comma-separated string).
    public var taskPaths: [String]?
    /// The plugins root.
    public var pluginsDir: String?
    /// The store URL.
    public var store: String?
    /// Worker pool size.
    public var concurrentTasks: Int?
    /// Whether `pq serve` schedules periodic jobs.
    public var schedulePeriodic: Bool?
    /// Queues `pq serve` takes tasks from.
    public var queues: [String]?
    /// Skip the plugin trust check.
    public var trustAllPlugins: Bool?
    /// Whether `pq serve` watches plugin directories.
    public var reload: Bool?
    /// Seconds finished tasks are kept.
    public var resultTTL: Double?
    /// `process` or `thread` (DESIGN.md section 12).
    public var isolation: String?
    /// Worker processes in process isolation.
    public var workers: Int?
    /// `HOST:PORT` the HTTP API listens on (DESIGN.md section 11).
    public var http: String?
    /// The bearer token the HTTP API asks for.
    public var httpToken: String?

    /// An empty configuration.
    public init() {}

    /// The keys a pq.toml may hold.
    public static let knownKeys: Set<String> = [
        "task_paths", "plugins_dir", "store", "concurrent_tasks", "schedule_periodic", "queues",
        "trust_all_plugins", "reload", "result_ttl", "isolation", "workers", "http", "http_token",
    ]

    /// Reads a file.
    /// - Parameter path: the pq.toml path.
    /// - Returns: its settings; relative `plugins_dir` and `sqlite:` paths are made relative to the
    ///   file's directory.
    /// - Throws: ``ConfigError`` naming the file, the line and what is wrong.
    public static func load(path: String) throws(ConfigError) -> ConfigFile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(message: "\(path): cannot read the config file (does it exist?)")
        }
        let doc: JSONValue
        do { doc = try TOMLDocument.parse(String(decoding: data, as: UTF8.self)) } catch {
            throw ConfigError(message: "\(path): \(error)")
        }
        guard case .object(let pairs) = doc else { return ConfigFile() }
        let baseDir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        func absolute(_ p: String) -> String { p.hasPrefix("/") ? p : baseDir + "/" + p }
        var config = ConfigFile()
        for (key, value) in pairs {
            func bad(_ expected: String) -> ConfigError {
                ConfigError(message: "\(path): '\(key)' must be \(expected), got \(value.typeName)")
            }
            switch key {
            case "task_paths", "queues":
                let list: [String]
                switch value {
                case .string(let s): list = TaskPaths.split(s)
                case .array(let items):
                    var out: [String] = []
                    for item in items {
                        guard case .string(let s) = item else { throw bad("a list of strings") }
                        out.append(s)
                    }
                    list = out
                default: throw bad("a list of strings")
                }
                if key == "task_paths" { config.taskPaths = list } else { config.queues = list }
            case "plugins_dir":
                guard case .string(let s) = value else { throw bad("a string") }
                config.pluginsDir = absolute(s)
            case "store":
                guard case .string(let s) = value else { throw bad("a string") }
                if s.hasPrefix("sqlite:"), !s.dropFirst(7).hasPrefix("/") {
                    config.store = "sqlite:" + absolute(String(s.dropFirst(7)))
                } else {
                    config.store = s
                }
            case "concurrent_tasks":
                guard case .int(let n) = value, n > 0, n <= 10_000 else { throw bad("a whole number from 1 to 10000") }
                config.concurrentTasks = Int(n)
            case "schedule_periodic", "trust_all_plugins", "reload":
                guard case .bool(let b) = value else { throw bad("true or false") }
                if key == "schedule_periodic" {
                    config.schedulePeriodic = b
                } else if key == "reload" {
                    config.reload = b
                } else {
                    config.trustAllPlugins = b
                }
            case "isolation":
                guard case .string(let s) = value, s == "process" || s == "thread" else {
                    throw bad("\"process\" or \"thread\"")
                }
                config.isolation = s
            case "workers":
                guard case .int(let n) = value, n > 0, n <= 1_000 else { throw bad("a whole number from 1 to 1000") }
                config.workers = Int(n)
            case "http", "http_token":
                guard case .string(let s) = value, !s.isEmpty else { throw bad("a non-empty string") }
                if key == "http" { config.http = s } else { config.httpToken = s }
            case "result_ttl":
                guard let d = value.doubleValue, d >= 0 else { throw bad("a number of seconds") }
                config.resultTTL = d
            default:
                throw ConfigError(
                    message: "\(path): unknown key '\(key)' (known: \(knownKeys.sorted().joined(separator: ", ")))")
            }
        }
        return config
    }
}

/// An unreadable or invalid configuration.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    /// What is wrong, naming the file.
    public var message: String
    /// Creates the error.
    /// - Parameter message: what is wrong.
    public init(message: String) { self.message = message }
    /// The message.
    public var description: String { message }
}
