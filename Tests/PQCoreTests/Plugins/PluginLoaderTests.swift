import CPQPlugin
import Foundation
import PQCore
import Testing

@Suite struct PluginLoaderTests {
    let loader = PluginLoader()

    func fixture(_ defines: [String] = [], name: String = "libfixture.so") async throws -> String {
        let dir = Fixtures.temporaryDirectory()
        return try await Fixtures.compileC(Fixtures.configurablePlugin, to: dir + "/" + name, defines: defines)
    }

    func loadError(_ path: String, loader: PluginLoader? = nil) -> PluginError? {
        #expect(throws: PluginError.self) { try (loader ?? self.loader).load(path: path) }
    }

    @Test func validCPluginLoadsWithJobsAndOptions() async throws {
        let plugin = try loader.load(path: try await fixture())
        #expect(plugin.info.name == "fixture")
        #expect(plugin.info.version == "1.0.0")
        #expect(plugin.info.toolchain == "c")
        #expect(plugin.jobs.map(\.name) == ["fixture.echo", "fixture.fail"])
        #expect(plugin.jobs[1].options.maxRetries == 2)
        #expect(plugin.rejectedJobs.isEmpty)
    }

    @Test func garbageFileIsNotELF() throws {
        let dir = Fixtures.temporaryDirectory()
        let path = dir + "/libgarbage.so"
        try Data("this is not a shared library at all".utf8).write(to: URL(fileURLWithPath: path))
        let error = loadError(path)
        #expect(error?.code == .notELF)
        #expect(error?.description.contains(path) == true)
        #expect(error?.description.contains("not an ELF") == true)
    }

    @Test func emptyFileIsNotELF() throws {
        let dir = Fixtures.temporaryDirectory()
        let path = dir + "/libempty.so"
        _ = FileManager.default.createFile(atPath: path, contents: Data())
        #expect(loadError(path)?.code == .notELF)
    }

    @Test func truncatedSharedObjectIsAnErrorNotSIGBUS() async throws {
        let full = try await fixture()
        let data = try Data(contentsOf: URL(fileURLWithPath: full))
        let dir = Fixtures.temporaryDirectory()
        let path = dir + "/libtruncated.so"
        try data.prefix(3000).write(to: URL(fileURLWithPath: path))
        let error = loadError(path)
        #expect(error?.code == .truncated)
        #expect(error?.description.contains("incomplete") == true)
        // The Swift example too, cut at 3000 bytes and at half its size.
        let swiftPlugin = try Fixtures.requireBuilt(Fixtures.swiftExamplePlugin)
        let swiftData = try Data(contentsOf: URL(fileURLWithPath: swiftPlugin))
        for cut in [3000, swiftData.count / 2] {
            let p = dir + "/libswift\(cut).so"
            try swiftData.prefix(cut).write(to: URL(fileURLWithPath: p))
            #expect(loadError(p)?.code == .truncated)
        }
    }

    @Test func libraryWithoutEntrySymbol() async throws {
        let error = loadError(try await fixture(["NO_ENTRY"]))
        #expect(error?.code == .missingEntry)
        #expect(error?.description.contains("pq_plugin_entry") == true)
    }

    @Test func entryReturningNull() async throws {
        let error = loadError(try await fixture(["RETURN_NULL"]))
        #expect(error?.code == .entryReturnedNull)
        #expect(error?.description.contains("returned NULL") == true)
    }

    @Test func wrongABIVersion() async throws {
        let error = loadError(try await fixture(["ABI=2"]))
        #expect(error?.code == .abiMismatch)
        #expect(error?.description.contains("ABI version 2") == true)
    }

    @Test func tooSmallStructSize() async throws {
        let error = loadError(try await fixture(["STRUCT_SIZE=16"]))
        #expect(error?.code == .structTooSmall)
        #expect(error?.description.contains("struct_size 16") == true)
    }

    @Test func largerStructSizeFromALaterABIRevisionIsAccepted() async throws {
        let plugin = try loader.load(path: try await fixture(["STRUCT_SIZE=sizeof(pq_plugin)+16"]))
        #expect(plugin.jobs.count == 2)
    }

    @Test func swiftPluginFromAnotherToolchainIsRefusedNamingBoth() async throws {
        let error = loadError(try await fixture(["TOOLCHAIN=\"swift-5.9.2\""]))
        #expect(error?.code == .toolchainMismatch)
        #expect(error?.description.contains("swift-5.9.2") == true)
        #expect(error?.description.contains(hostSwiftToolchain) == true)
    }

    @Test func invalidJobsAreSkippedAndTheRestLoads() async throws {
        let plugin = try loader.load(path: try await fixture(["BAD_JOB"]))
        #expect(plugin.jobs.map(\.name) == ["fixture.echo", "fixture.fail"])
        #expect(plugin.rejectedJobs.count == 2)
        #expect(plugin.rejectedJobs.contains { $0.description.contains("'Bad Name!'") })
        #expect(
            plugin.rejectedJobs.contains {
                $0.description.contains("fixture.badopts") && $0.description.contains("timeout")
            })
    }

    @Test func worldWritableDirectoryIsRefusedUnlessTrusted() async throws {
        let path = try await fixture()
        let dir = (path as NSString).deletingLastPathComponent
        chmod(dir, 0o777)
        let error = loadError(path)
        #expect(error?.code == .untrusted)
        #expect(error?.description.contains(dir) == true)
        #expect(error?.description.contains("--trust-all-plugins") == true)
        let trusting = PluginLoader(options: .init(trustAll: true))
        #expect(try trusting.load(path: path).jobs.count == 2)
    }

    @Test func groupWritableFileIsRefused() async throws {
        let path = try await fixture()
        chmod(path, 0o775)
        let error = loadError(path)
        #expect(error?.code == .untrusted)
        #expect(error?.description.contains("mode 775") == true)
    }

    @Test func reloadingAFreshCopyGivesNewCode() async throws {
        let dir = Fixtures.temporaryDirectory()
        let path = dir + "/libversioned.so"
        try await Fixtures.compileC(Fixtures.configurablePlugin, to: path, defines: ["VERSION=\"1.0.0\""])
        let v1 = try loader.load(path: path)
        try await Fixtures.compileC(Fixtures.configurablePlugin, to: path + ".new", defines: ["VERSION=\"2.0.0\""])
        rename(path + ".new", path)
        let v2 = try loader.load(path: path)
        #expect(v1.info.version == "1.0.0")
        #expect(v2.info.version == "2.0.0")
        #expect(v2.info.generation > v1.info.generation)
    }

    @Test func pluginSetReportsBrokenFilesAndLoadsTheRest() async throws {
        let root = Fixtures.temporaryDirectory()
        let dir = root + "/jobs"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try await Fixtures.compileC(Fixtures.configurablePlugin, to: dir + "/liba.so")
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: dir + "/libb.so"))
        try await Fixtures.compileC(
            Fixtures.configurablePlugin, to: dir + "/libc.so", defines: ["PLUGIN_NAME=\"other\""])
        let registry = JobRegistry()
        let report = try PluginSet.load(taskPaths: ["jobs"], root: root, loader: loader, into: registry)
        #expect(report.loaded.count == 2)
        #expect(report.failures.count == 1)
        #expect(report.failures[0].description.contains("libb.so"))
        // Same job names in liba and libc: the later file (libc) wins with a warning naming both.
        #expect(registry.job(named: "fixture.echo")?.plugin.path == dir + "/libc.so")
        #expect(
            report.warnings.contains { $0.contains("liba.so") && $0.contains("libc.so") && $0.contains("fixture.echo") }
        )
        // Removing libc brings back liba's definition.
        registry.unregister(path: dir + "/libc.so")
        #expect(registry.job(named: "fixture.echo")?.plugin.path == dir + "/liba.so")
    }
}
