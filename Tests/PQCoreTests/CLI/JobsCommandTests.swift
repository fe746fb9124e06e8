import Foundation
import PQCore
import Testing

/// `pq jobs` run as a subprocess against the built example plugins.
@Suite struct JobsCommandTests {
    var root: String { Fixtures.installedPluginsRoot }

    @Test func tableListsJobsOfBothExamplePlugins() async throws {
        _ = try Fixtures.requireBuilt(Fixtures.swiftExamplePlugin)
        let r = try await PQCommand.run(["jobs", "--task-paths", "examples.*", "--plugins-dir", root])
        #expect(r.status == 0)
        #expect(r.stderr == "")
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.first?.hasPrefix("NAME") == true)
        #expect(lines.contains { $0.hasPrefix("addition ") && $0.contains("examples") })
        #expect(lines.contains { $0.hasPrefix("c.mul ") && $0.contains("(a:i64,b:i64)->i64") })
        #expect(lines.contains { $0.hasPrefix("c.tick ") && $0.contains("periodic") && $0.contains("every 2s") })
    }

    @Test func jsonHasTheContractFields() async throws {
        let r = try await PQCommand.run(["jobs", "--json", "--task-paths", "examples.*", "--plugins-dir", root])
        #expect(r.status == 0)
        let array = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
        let byName = Dictionary(uniqueKeysWithValues: array.map { ($0["name"] as! String, $0) })
        let mul = try #require(byName["c.mul"])
        #expect(mul["type"] as? String == "regular")
        #expect(mul["plugin"] as? String == "examples-c")
        #expect(mul["plugin_version"] as? String == "1.0.0")
        #expect(mul["path"] as? String == Fixtures.cExamplePlugin)
        #expect(mul["doc"] as? String == "Multiplies two integers (typed job).")
        #expect(mul["signature"] as? String == "(a:i64,b:i64)->i64")
        #expect(byName["c.echo"]?["signature"] == nil)
        #expect(byName["c.tick"]?["type"] as? String == "periodic")
        let addition = try #require(byName["addition"])
        #expect(addition["plugin"] as? String == "examples")
        #expect(addition["path"] as? String == Fixtures.swiftExamplePlugin)
    }

    /// With no task_paths, `pq jobs` lists what the hosts on the store registered (section 9).
    @Test func withoutTaskPathsItListsTheJobsHostsRegistered() async throws {
        let dir = Fixtures.temporaryDirectory("pqjobsstore")
        let store = "sqlite:\(dir)/pq.sqlite"
        let empty = try await PQCommand.run(["jobs", "--store", store])
        #expect(empty.status == 0)
        #expect(empty.stdout.contains("no task_paths given, and no host"))
        let host = try HostProcess(store: store, directory: dir)
        let r = try await PQCommand.run(["jobs", "--json", "--store", store])
        #expect(r.status == 0, "\(r.stderr)")
        let array = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
        let mul = try #require(array.first { $0["name"] as? String == "c.mul" })
        #expect(mul["plugin"] as? String == "examples-c")
        #expect(mul["path"] as? String == Fixtures.cExamplePlugin)
        #expect(mul["signature"] as? String == "(a:i64,b:i64)->i64")
        #expect(array.first { $0["name"] as? String == "c.tick" }?["type"] as? String == "periodic")
        let table = try await PQCommand.run(["jobs", "--store", store])
        #expect(
            table.stdout.split(separator: "\n").contains {
                $0.hasPrefix("addition ") && $0.contains(Fixtures.swiftExamplePlugin)
            })
        #expect(host.stop() == 0)
    }

    @Test func brokenPluginIsNamedOnStderrAndTheOthersAreListed() async throws {
        let pluginsRoot = Fixtures.temporaryDirectory()
        let dir = pluginsRoot + "/mixed"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Fixtures.cExamplePlugin, toPath: dir + "/libgood.so")
        let full = try Data(contentsOf: URL(fileURLWithPath: Fixtures.cExamplePlugin))
        try full.prefix(3000).write(to: URL(fileURLWithPath: dir + "/libhalf.so"))
        try Data("junk".utf8).write(to: URL(fileURLWithPath: dir + "/libjunk.so"))
        let r = try await PQCommand.run(["jobs", "--task-paths", "mixed", "--plugins-dir", pluginsRoot])
        #expect(r.status == 0)
        #expect(r.stdout.contains("c.echo"))
        #expect(r.stderr.contains(dir + "/libhalf.so") && r.stderr.contains("incomplete"))
        #expect(r.stderr.contains(dir + "/libjunk.so") && r.stderr.contains("not an ELF"))
    }

    @Test func missingDirectoryIsAnErrorNamingEntryAndPath() async throws {
        let r = try await PQCommand.run(["jobs", "--task-paths", "examples.*,nothere.sub", "--plugins-dir", root])
        #expect(r.status != 0)
        #expect(r.stdout == "")
        #expect(r.stderr.contains("'nothere.sub'"))
        #expect(r.stderr.contains(root + "/nothere/sub"))
        #expect(r.stderr.split(separator: "\n").count == 1)
    }

    @Test func environmentAndConfigFileAreHonouredWithFlagsWinning() async throws {
        let viaEnv = try await PQCommand.run(
            ["jobs", "--json"], environment: ["PQ_TASK_PATHS": "examples.c", "PQ_PLUGINS_DIR": root])
        #expect(viaEnv.status == 0)
        #expect(viaEnv.stdout.contains("c.echo") && !viaEnv.stdout.contains("\"addition\""))

        let dir = Fixtures.temporaryDirectory()
        let config = dir + "/pq.toml"
        try """
        # pq settings
        task_paths = ["examples.swift"]
        plugins_dir = "\(root)"
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let viaFile = try await PQCommand.run(["jobs", "--json", "--config", config])
        #expect(viaFile.status == 0)
        #expect(viaFile.stdout.contains("\"addition\"") && !viaFile.stdout.contains("c.echo"))

        let flagWins = try await PQCommand.run(
            ["jobs", "--json", "--config", config, "--task-paths", "examples.c"],
            environment: ["PQ_TASK_PATHS": "examples.swift"])
        #expect(flagWins.stdout.contains("c.echo") && !flagWins.stdout.contains("\"addition\""))

        // ./pq.toml in the working directory is read when no --config is given.
        let implicit = try await PQCommand.run(["jobs", "--json"], currentDirectory: dir)
        #expect(implicit.stdout.contains("\"addition\""))
    }

    @Test func untrustedPluginDirectoryIsRefusedWithTheOptOut() async throws {
        let pluginsRoot = Fixtures.temporaryDirectory()
        let dir = pluginsRoot + "/open"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Fixtures.cExamplePlugin, toPath: dir + "/libc.so")
        chmod(dir, 0o777)
        let r = try await PQCommand.run(["jobs", "--task-paths", "open", "--plugins-dir", pluginsRoot])
        #expect(r.status == 0)
        #expect(r.stderr.contains(dir) && r.stderr.contains("--trust-all-plugins"))
        #expect(!r.stdout.contains("c.echo"))
        let trusted = try await PQCommand.run([
            "jobs", "--task-paths", "open", "--plugins-dir", pluginsRoot, "--trust-all-plugins",
        ])
        #expect(trusted.stdout.contains("c.echo"))
    }

    @Test func badConfigFileIsOneClearLine() async throws {
        let dir = Fixtures.temporaryDirectory()
        try "task_paths = [examples\n".write(toFile: dir + "/bad.toml", atomically: true, encoding: .utf8)
        let r = try await PQCommand.run(["jobs", "--config", dir + "/bad.toml"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("bad.toml") && r.stderr.contains("line 1"))
    }
}
