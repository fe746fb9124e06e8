import Foundation
import Testing

/// DESIGN.md section 13 as an author meets it: `pq new` for each language, `make` in the new
/// folder, `pq install` into a running host's task path, the job served and listed; the refusals
/// of `pq new` and `pq install`; the Rust mirror of pq_plugin.h against the C layout.
@Suite(.serialized) struct PluginAuthoringTests {
    let dir = Fixtures.temporaryDirectory("pqauthor")

    static var haveCargo: Bool { FileManager.default.isExecutableFile(atPath: "/usr/bin/cargo") || which("cargo") }

    static func which(_ program: String) -> Bool {
        (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").contains {
            FileManager.default.isExecutableFile(atPath: "\($0)/\(program)")
        }
    }

    func make(_ folder: String) async throws -> Fixtures.ProcessResult {
        try await Fixtures.run("/usr/bin/env", ["make", "-C", folder], timeout: 600)
    }

    @Test(arguments: ["c", "rust", "swift"])
    func newMakeInstallServe(language: String) async throws {
        if language == "rust" { try #require(Self.haveCargo, "cargo is needed (.ci/run installs it)") }
        let name = "hi-\(language)"
        let project = dir + "/" + name
        let made = try await PQCommand.run(["new", language, name, "--dir", project])
        try #require(made.status == 0, "pq new: \(made.stderr)")
        #expect(made.stdout.contains(project))
        #expect(FileManager.default.fileExists(atPath: project + "/Makefile"))
        #expect(FileManager.default.fileExists(atPath: project + "/README.md"))
        let built = try await make(project)
        try #require(built.status == 0, "make: \(built.stdout)\n\(built.stderr)")
        let library = project + "/\(name).so"
        try #require(FileManager.default.fileExists(atPath: library))

        // A host already runs on the (empty) task path; the install goes live in it.
        let root = dir + "/root-\(language)"
        try FileManager.default.createDirectory(
            atPath: root + "/authored", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let store = "sqlite:\(dir)/\(language).sqlite"
        let host = try HostProcess(store: store, directory: dir, taskPaths: "authored", pluginsDir: root)
        defer { _ = host.stop() }
        let client = PQClient(store: store, directory: dir, taskPaths: "authored", pluginsDir: root)
        let installed = try await client.run(["install", library, "authored"], taskPaths: false)
        #expect(installed.status == 0, "pq install: \(installed.stderr)")
        #expect(installed.stdout.contains(root + "/authored/\(name).so"))
        let installedAt = Date()
        var result: Any?
        let served = try await poll(timeout: 10) {
            let r = try await client.run(["submit", "\(name).hello", "name=world", "--wait", "--json"], timeout: 20)
            guard r.status == 0,
                let task = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            else { return false }
            result = task["result"]
            return true
        }
        #expect(served, "the host never served \(name).hello: \(host.log)")
        #expect(Date().timeIntervalSince(installedAt) < 2, "took \(Date().timeIntervalSince(installedAt)) s")
        #expect(result as? String == "hello, world")
        let jobs = try await client.run(["jobs"])
        #expect(jobs.status == 0 && jobs.stdout.contains("\(name).hello"), "\(jobs.stdout)\(jobs.stderr)")
        // Installed with owner-only write permissions, no temporary file left beside it.
        var st = stat()
        #expect(stat(root + "/authored/\(name).so", &st) == 0 && st.st_mode & 0o022 == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/authored") == ["\(name).so"])
    }

    @Test func newRefusesBadInputWritingNothing() async throws {
        let cases: [([String], [String])] = [
            (["new", "c", "Bad Name", "--dir", dir + "/a"], ["'Bad Name' is not a plugin name"]),
            (["new", "c", "-x", "--dir", dir + "/a"], []),
            (["new", "cobol", "ok", "--dir", dir + "/a"], ["unknown language 'cobol'", "swift, c or rust"]),
        ]
        for (arguments, fragments) in cases {
            let r = try await PQCommand.run(arguments)
            #expect(r.status != 0)
            for f in fragments { #expect(r.stderr.contains(f), "\(r.stderr)") }
            #expect(!FileManager.default.fileExists(atPath: dir + "/a"))
        }
        let full = dir + "/full"
        try FileManager.default.createDirectory(atPath: full, withIntermediateDirectories: true)
        try "mine".write(toFile: full + "/notes.txt", atomically: true, encoding: .utf8)
        let r = try await PQCommand.run(["new", "c", "ok", "--dir", full])
        expectOneLineError(r, ["\(full) is not empty"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: full) == ["notes.txt"])
        // An empty folder is fine.
        let empty = dir + "/empty"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        #expect(try await PQCommand.run(["new", "c", "ok", "--dir", empty]).status == 0)
    }

    @Test func installRefusesBadPluginsWritingNothing() async throws {
        let root = dir + "/root"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let garbage = dir + "/garbage.so"
        try Data("not an ELF file at all".utf8).write(to: URL(fileURLWithPath: garbage))
        let good = try await Fixtures.compileC(Fixtures.configurablePlugin, to: dir + "/libgood.so")
        let whole = try Data(contentsOf: URL(fileURLWithPath: good))
        let truncated = dir + "/truncated.so"
        try whole.prefix(whole.count / 2).write(to: URL(fileURLWithPath: truncated))
        let wrongABI = try await Fixtures.compileC(
            Fixtures.configurablePlugin, to: dir + "/libabi.so", defines: ["ABI=99"])
        let cases: [([String], [String])] = [
            ([garbage, "team"], ["garbage.so", "not installed"]),
            ([truncated, "team"], ["truncated.so", "not installed"]),
            ([wrongABI, "team"], ["libabi.so", "not installed", "ABI"]),
            ([dir + "/missing.so", "team"], ["missing.so: no such file"]),
            ([good, "Team/x"], ["'Team/x' is not a task path"]),
            ([good, "team..x"], ["'team..x' is not a task path"]),
            ([good, "team.*"], ["'team.*' is not a task path"]),
            ([good, "../up"], ["is not a task path"]),
            ([dir + "/notes.txt", "team"], ["not a plugin file"]),
        ]
        try "text".write(toFile: dir + "/notes.txt", atomically: true, encoding: .utf8)
        for (arguments, fragments) in cases {
            let r = try await PQCommand.run(["install"] + arguments + ["--plugins-dir", root])
            expectOneLineError(r, fragments)
            #expect(try FileManager.default.contentsOfDirectory(atPath: root).isEmpty, "\(arguments)")
        }
        // A folder others can write: the host would refuse the plugin there, so install does.
        try FileManager.default.createDirectory(atPath: root + "/open", withIntermediateDirectories: true)
        chmod(root + "/open", 0o777)
        let open = try await PQCommand.run(["install", good, "open", "--plugins-dir", root])
        expectOneLineError(open, ["would refuse it there", "--trust-all-plugins"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/open").isEmpty)
        try FileManager.default.removeItem(atPath: root + "/open")
        // The good one goes in, into nested folders made for it; a link installs the bytes it names.
        let link = dir + "/liblinked.so"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: good)
        let r = try await PQCommand.run(["install", link, "team.mail", "--plugins-dir", root])
        #expect(r.status == 0, "\(r.stderr)")
        var st = stat()
        #expect(lstat(root + "/team/mail/liblinked.so", &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG)
        #expect(FileManager.default.contentsEqual(atPath: root + "/team/mail/liblinked.so", andPath: good))
    }

    /// The Rust mirror of `pq new rust` (also the Rust example's) has the C header's layout:
    /// every struct's size and every field's offset, compiled on both sides.
    @Test func rustMirrorMatchesTheHeader() async throws {
        try #require(Self.haveCargo, "rustc is needed (.ci/run installs cargo)")
        let project = dir + "/mirror"
        #expect(try await PQCommand.run(["new", "rust", "mirror", "--dir", project]).status == 0)
        let mirror = try String(contentsOfFile: project + "/src/pq_plugin.rs", encoding: .utf8)
        let example = try String(
            contentsOfFile: Fixtures.packageRoot + "/Plugins/examples-rust/src/pq_plugin.rs", encoding: .utf8)
        #expect(mirror == example, "`pq new rust` writes the mirror kept beside the Rust example")
        let fields: [(String, String, [String])] = [
            (
                "pq_call", "PqCall",
                [
                    "struct_size", "task_id", "job_name", "args_json", "attempt", "host_data", "complete", "log",
                    "is_cancelled", "submit",
                ]
            ),
            ("pq_job_def", "PqJobDef", ["name", "doc", "options_json", "run", "cancel", "fn", "signature"]),
            (
                "pq_plugin", "PqPlugin",
                ["abi_version", "struct_size", "name", "version", "toolchain", "job_count", "jobs", "free_string"]
            ),
        ]
        var c = "#include <stdio.h>\n#include <stddef.h>\n#include \"pq_plugin.h\"\nint main(void) {\n"
        var rust = "#[path = \"\(project)/src/pq_plugin.rs\"]\nmod pq_plugin;\nuse pq_plugin::*;\nfn main() {\n"
        for (cName, rustName, names) in fields {
            c += "    printf(\"\(cName) size %zu\\n\", sizeof(\(cName)));\n"
            rust += "    println!(\"\(cName) size {}\", core::mem::size_of::<\(rustName)>());\n"
            for field in names {
                let rustField = field == "fn" ? "function" : field
                c += "    printf(\"\(cName).\(field) %zu\\n\", offsetof(\(cName), \(field)));\n"
                rust += "    println!(\"\(cName).\(field) {}\", core::mem::offset_of!(\(rustName), \(rustField)));\n"
            }
        }
        c += "    return 0;\n}\n"
        rust += "}\n"
        try c.write(toFile: dir + "/layout.c", atomically: true, encoding: .utf8)
        try rust.write(toFile: dir + "/layout.rs", atomically: true, encoding: .utf8)
        let cc = try await Fixtures.run(
            "/usr/bin/env", ["cc", "-I", Fixtures.headerDirectory, "-o", dir + "/layout-c", dir + "/layout.c"])
        try #require(cc.status == 0, "\(cc.stderr)")
        let rustc = try await Fixtures.run(
            "/usr/bin/env", ["rustc", "--edition", "2021", "-o", dir + "/layout-rs", dir + "/layout.rs"], timeout: 300)
        try #require(rustc.status == 0, "\(rustc.stderr)")
        let fromC = try await Fixtures.run(dir + "/layout-c", []).stdout
        let fromRust = try await Fixtures.run(dir + "/layout-rs", []).stdout
        #expect(fromC.split(separator: "\n").count == 28)
        #expect(fromC == fromRust)
    }

    /// The shipped examples in Swift, C and Rust, side by side in one host, on SQLite and Redis:
    /// JSON jobs and typed jobs of each, a failure with its message.
    @Test(arguments: ["sqlite", "redis"])
    func examplePluginsOfEveryLanguageRunInAHost(kind: String) async throws {
        try #require(
            FileManager.default.fileExists(
                atPath: Fixtures.installedPluginsRoot + "/examples/rust/libexamples_rust.so"),
            "the Rust example is built by make build when cargo is present")
        let store =
            kind == "redis"
            ? try TestRedis.urlText(namespace: TestRedis.uniqueNamespace()) : "sqlite:\(dir)/examples.sqlite"
        let host = try HostProcess(store: store, directory: dir)
        defer { _ = host.stop() }
        let client = PQClient(store: store, directory: dir)
        let jobs = try await client.run(["jobs", "--json"])
        for name in ["rust.echo", "rust.fail", "rust.add", "rust.hello", "c.echo", "addition", "swift.mul"] {
            #expect(jobs.stdout.contains("\"\(name)\""), "pq jobs lacks \(name)")
        }
        let submitted: [(String, [String])] = [
            ("rust.echo", ["x=1", "y=two"]), ("rust.add", ["a=40", "b=2"]), ("rust.hello", ["name=rust"]),
            ("rust.fail", []), ("c.echo", ["x=1"]), ("addition", ["a=1", "b=2"]), ("swift.mul", ["a=6", "b=7"]),
        ]
        var ids: [String] = []
        for (job, arguments) in submitted { ids.append(try await client.submit([job] + arguments)) }
        let done = try await client.wait(ids)
        let byID = Dictionary(uniqueKeysWithValues: done.map { ($0["id"] as? String ?? "", $0) })
        let echo = byID[ids[0]]?["result"] as? [String: Any]
        #expect(echo?["x"] as? Int == 1 && echo?["y"] as? String == "two", "\(String(describing: byID[ids[0]]))")
        #expect(byID[ids[1]]?["result"] as? Int == 42)
        #expect(byID[ids[2]]?["result"] as? String == "hello, rust")
        #expect(byID[ids[3]]?["status"] as? Int == 2)
        #expect((byID[ids[3]]?["exception"] as? String)?.contains("rust.fail failed on purpose (attempt 1)") == true)
        #expect((byID[ids[4]]?["result"] as? [String: Any])?["x"] as? Int == 1)
        #expect(byID[ids[5]]?["result"] as? Int == 3)
        #expect(byID[ids[6]]?["result"] as? Int == 42)
        #expect(host.stop() == 0)
    }

    /// `pq jobs` from the store names the files a running host could not load, and why.
    @Test func jobsNamesWhatARunningHostFailedToLoad() async throws {
        let root = dir + "/failroot"
        try FileManager.default.createDirectory(
            atPath: root + "/mixed", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: root + "/mixed/libbroken.so"))
        _ = try await Fixtures.compileC(Fixtures.configurablePlugin, to: root + "/mixed/libgood.so")
        let store = "sqlite:\(dir)/failures.sqlite"
        let host = try HostProcess(store: store, directory: dir, taskPaths: "mixed", pluginsDir: root)
        defer { _ = host.stop() }
        let client = PQClient(store: store, directory: dir, taskPaths: "mixed", pluginsDir: root)
        var listing = Fixtures.ProcessResult(status: -1, stdout: "", stderr: "")
        let named = try await poll(timeout: 20) {
            listing = try await client.run(["jobs"], taskPaths: false)
            return listing.stderr.contains("libbroken.so")
        }
        #expect(named, "pq jobs never named the broken plugin: \(listing.stderr)")
        #expect(listing.status == 0)
        #expect(listing.stderr.contains("pq: plugin not loaded on "))
        #expect(listing.stderr.contains(root + "/mixed/libbroken.so: ") && listing.stderr.contains("ELF"))
        #expect(!listing.stderr.contains("libgood.so"))
        #expect(listing.stdout.contains("NAME"))
        // Fixed in place: once the host reloads it, it is no longer named.
        try FileManager.default.removeItem(atPath: root + "/mixed/libbroken.so")
        let cleared = try await poll(timeout: 20) {
            listing = try await client.run(["jobs"], taskPaths: false)
            return !listing.stderr.contains("libbroken.so")
        }
        #expect(cleared, "\(listing.stderr)")
    }

    @Test func headerIsFound() async throws {
        let r = try await PQCommand.run(["header"])
        #expect(r.status == 0)
        #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == Fixtures.headerDirectory + "/pq_plugin.h")
        let d = try await PQCommand.run(["header", "--dir"])
        #expect(d.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == Fixtures.headerDirectory)
        let p = try await PQCommand.run(["header", "--print"])
        #expect(p.stdout.contains("#define PQ_ABI_VERSION 1"))
    }
}
