import Foundation
import Testing

@testable import PQCore

/// `pq.toml` read through TOMLKit: every setting, and each way a file can be wrong named in one
/// message with the file and the key.
@Suite struct ConfigFileTests {
    private func write(_ text: String) throws -> String {
        let path = Fixtures.temporaryDirectory() + "/pq.toml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func everySettingIsRead() throws {
        let path = try write(
            """
            # a comment
            task_paths = ["examples.*", 'myjobs']
            plugins_dir = "plugins"
            store = "sqlite:data/pq.sqlite"
            concurrent_tasks = 8
            schedule_periodic = false
            queues = "default, mail"
            trust_all_plugins = true
            reload = false
            result_ttl = 3600
            isolation = "thread"
            workers = 3
            http = "127.0.0.1:5555"
            http_token = "s3cret"
            """)
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let config = try ConfigFile.load(path: path)
        #expect(config.taskPaths == ["examples.*", "myjobs"])
        #expect(config.pluginsDir == dir + "/plugins")
        #expect(config.store == "sqlite:" + dir + "/data/pq.sqlite")
        #expect(config.concurrentTasks == 8)
        #expect(config.schedulePeriodic == false)
        #expect(config.queues == ["default", "mail"])
        #expect(config.trustAllPlugins == true && config.reload == false)
        #expect(config.resultTTL == 3600 && config.isolation == "thread" && config.workers == 3)
        #expect(config.http == "127.0.0.1:5555" && config.httpToken == "s3cret")
    }

    @Test(arguments: [
        ("task_paths = [\"a\"]\ntask_path = [\"b\"]\n", ["unknown key 'task_path'", "known: "]),
        ("concurrent_tasks = \"8\"\n", ["'concurrent_tasks' must be a whole number", "got a string"]),
        ("concurrent_tasks = 0\n", ["'concurrent_tasks' must be a whole number from 1 to 10000"]),
        ("reload = 1\n", ["'reload' must be true or false", "got an integer"]),
        ("queues = [1, 2]\n", ["'queues' must be a list of strings"]),
        ("isolation = \"fork\"\n", ["'isolation' must be \"process\" or \"thread\""]),
        ("result_ttl = 1979-05-27\n", ["'result_ttl'", "dates and times"]),
        ("store = \"a\"\nstore = \"b\"\n", ["line 2"]),
        ("task_paths = [\"a\"\n", ["line "]),
    ])
    func badFilesAreOneMessageNamingFileAndKey(text: String, expected: [String]) throws {
        let path = try write(text)
        #expect(throws: ConfigError.self) { try ConfigFile.load(path: path) }
        do {
            _ = try ConfigFile.load(path: path)
        } catch {
            #expect(error.message.hasPrefix(path + ": "))
            #expect(!error.message.contains("\n"))
            for piece in expected { #expect(error.message.contains(piece), "\(error.message)") }
        }
    }

    @Test func aMissingFileIsNamed() {
        #expect(throws: ConfigError.self) { try ConfigFile.load(path: "/nonexistent/pq.toml") }
    }
}
