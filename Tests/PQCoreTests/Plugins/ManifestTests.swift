import Foundation
import PQCore
import Testing

/// `NAME.pq.toml` manifests: functions of libraries that do not know pq, as typed jobs.
@Suite struct ManifestTests {
    let dir = Fixtures.temporaryDirectory("pqmanifest")

    /// A plain C library (no pq_plugin_entry) with exported functions.
    static let librarySource = #"""
        #include <stdint.h>
        #include <stdlib.h>
        #include <string.h>
        int64_t lib_add(int64_t a, int64_t b) { return a + b; }
        char *lib_shout(const char *s) {
            size_t n = strlen(s);
            char *out = malloc(n + 2);
            memcpy(out, s, n);
            out[n] = '!';
            out[n + 1] = 0;
            return out;
        }
        void lib_release(char *s) { free(s); }
        """#

    func write(_ name: String, _ text: String) throws -> String {
        let path = dir + "/" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func loadError(_ path: String) throws -> PluginError {
        do {
            _ = try PluginLoader().load(path: path)
        } catch let error as PluginError {
            return error
        }
        throw PluginError(.invalidManifest, path: path, "loaded but should not have")
    }

    @Test func libmManifestCallsTheSystemLibrary() throws {
        let plugin = try PluginLoader().load(path: Fixtures.packageRoot + "/Plugins/manifests/libm.pq.toml")
        #expect(plugin.info.name == "libm" && plugin.info.version == "1.0.0" && plugin.info.toolchain == "c")
        #expect(plugin.jobs.map(\.name) == ["m.cos", "m.pow", "m.hypot"])
        func call(_ name: String, _ kwargs: String) throws -> CallOutcome {
            let typed = try #require(plugin.jobs.first { $0.name == name }?.typedCall)
            return typed.call(try typed.bind(json: kwargs))
        }
        #expect(try call("m.pow", #"{"x":2,"y":10}"#) == .success("1024.0"))
        #expect(try call("m.hypot", #"{"x":3,"y":4}"#) == .success("5.0"))
        #expect(try call("m.cos", #"{"x":0}"#) == .success("1.0"))
        #expect(plugin.jobs.first { $0.name == "m.hypot" }?.options.timeout == 5)
    }

    @Test func libraryByRelativePathWithFreeString() async throws {
        try FileManager.default.createDirectory(atPath: dir + "/lib", withIntermediateDirectories: true)
        try await Fixtures.compileC(Self.librarySource, to: dir + "/lib/libplain.so")
        let path = try write(
            "plain.pq.toml",
            """
            library = "lib/libplain.so"
            free_string = "lib_release"
            [[jobs]]
            name = "plain.add"
            symbol = "lib_add"
            signature = "(a: i64, b: i64) -> i64"
            doc = "Adds."
            options = { max_retries = 2, queue = "math" }
            [[jobs]]
            name = "plain.shout"
            symbol = "lib_shout"
            signature = "(s:str)->str"
            """)
        let plugin = try PluginLoader().load(path: path)
        #expect(plugin.info.name == "plain")  // the file stem when the manifest has no name
        #expect(plugin.info.path == path)
        let add = try #require(plugin.jobs.first { $0.name == "plain.add" })
        #expect(add.signature == "(a:i64,b:i64)->i64" && add.doc == "Adds.")
        #expect(add.options.maxRetries == 2 && add.options.queue == "math")
        let typed = try #require(add.typedCall)
        #expect(typed.call(try typed.bind(json: #"{"a":40,"b":2}"#)) == .success("42"))
        let shout = try #require(plugin.jobs.first { $0.name == "plain.shout" }?.typedCall)
        #expect(shout.call(try shout.bind(json: #"{"s":"hé \"x\""}"#)) == .success(#""hé \"x\"!""#))
    }

    @Test func missingLibraryNamesTheManifest() throws {
        let soname = try loadError(
            try write(
                "gone.pq.toml",
                "library = \"libpq-no-such-lib.so.7\"\n[[jobs]]\nname = \"g.f\"\nsymbol = \"f\"\nsignature = \"()->void\"\n"
            ))
        #expect(soname.code == .invalidManifest)
        #expect(
            soname.description.contains(dir + "/gone.pq.toml") && soname.description.contains("libpq-no-such-lib.so.7"))
        let file = try loadError(
            try write(
                "gone2.pq.toml",
                "library = \"./nothere.so\"\n[[jobs]]\nname = \"g.f\"\nsymbol = \"f\"\nsignature = \"()->void\"\n"))
        #expect(
            file.description.contains(dir + "/gone2.pq.toml") && file.description.contains(dir + "/nothere.so")
                && file.description.contains("does not exist"))
    }

    @Test func missingSymbolNamesJobAndSymbol() throws {
        let error = try loadError(
            try write(
                "nosym.pq.toml",
                "library = \"libm.so.6\"\n[[jobs]]\nname = \"m.nope\"\nsymbol = \"no_such_function\"\nsignature = \"(x:f64)->f64\"\n"
            ))
        #expect(error.code == .invalidManifest)
        for f in [dir + "/nosym.pq.toml", "'m.nope'", "'no_such_function'", "libm.so.6"] {
            #expect(error.description.contains(f), "\(error) lacks \(f)")
        }
    }

    @Test func invalidManifestsSayWhatIsWrong() throws {
        let job = "[[jobs]]\nname = \"m.cos\"\nsymbol = \"cos\"\n"
        let cases: [(String, [String])] = [
            ("library = \"libm.so.6\"\n\(job)signature = \"(x:f65)->f64\"\n", ["job 'm.cos'", "unknown type 'f65'"]),
            ("library = \"libm.so.6\"\n\(job)", ["job 'm.cos' has no signature"]),
            ("library = \"libm.so.6\"\n", ["no jobs"]),
            ("[[jobs]]\nname = \"m.cos\"\n", ["no library"]),
            ("library = \"libm.so.6\"\nlibary = 1\n", ["unknown key 'libary'"]),
            (
                "library = \"libm.so.6\"\n\(job)signature = \"(x:f64)->f64\"\nsymbl = \"x\"\n",
                ["job 'm.cos'", "unknown key 'symbl'"]
            ),
            (
                "library = \"libm.so.6\"\n[[jobs]]\nname = \"Bad Name\"\nsymbol = \"cos\"\nsignature = \"(x:f64)->f64\"\n",
                ["'Bad Name'", "slug"]
            ),
            (
                "library = \"libm.so.6\"\n\(job)signature = \"(x:f64)->f64\"\noptions = { timeout = \"soon\" }\n",
                ["job 'm.cos'", "timeout"]
            ),
            ("library = = \n", ["line 1"]),
        ]
        for (i, (text, fragments)) in cases.enumerated() {
            let path = try write("bad\(i).pq.toml", text)
            let error = try loadError(path)
            #expect(error.description.contains(path), "\(error)")
            for f in fragments { #expect(error.description.contains(f), "case \(i): \(error) lacks \(f)") }
        }
    }

    @Test func aBrokenManifestFailsAloneInAPluginSet() throws {
        let root = Fixtures.temporaryDirectory("pqmroot")
        let sub = root + "/mixed"
        try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            atPath: try Fixtures.requireBuilt(Fixtures.cExamplePlugin), toPath: sub + "/libgood.so")
        try FileManager.default.copyItem(
            atPath: Fixtures.packageRoot + "/Plugins/manifests/libm.pq.toml", toPath: sub + "/libm.pq.toml")
        try "library = \"libm.so.6\"\n[[jobs]]\nname = \"x.y\"\nsymbol = \"nope_nope\"\nsignature = \"()->void\"\n"
            .write(toFile: sub + "/broken.pq.toml", atomically: true, encoding: .utf8)
        #expect(
            TaskPaths.isLibraryName("libm.pq.toml") && !TaskPaths.isLibraryName(".pq.toml")
                && !TaskPaths.isLibraryName("x.toml"))
        let registry = JobRegistry()
        let report = try PluginSet.load(taskPaths: ["mixed"], root: root, loader: PluginLoader(), into: registry)
        #expect(report.failures.count == 1)
        #expect(report.failures.first?.path == sub + "/broken.pq.toml")
        #expect(report.failures.first?.description.contains("nope_nope") == true)
        #expect(registry.job(named: "c.echo") != nil && registry.job(named: "m.pow") != nil)
    }
}
