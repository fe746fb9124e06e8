import Foundation
import Testing

/// Hot reload under a running `bin/pq serve`: drop in, replace, remove, and every bad file.
@Suite(.serialized) struct HotReloadTests {
    let dir = Fixtures.temporaryDirectory("pqreload")
    var store: String { "sqlite:\(dir)/pq.sqlite" }
    var root: String { dir + "/plugins" }
    var client: PQClient { PQClient(store: store, directory: dir, taskPaths: "pkg.*", pluginsDir: root) }

    /// A C plugin whose jobs report the version they were built as.
    static let versioned = """
        #include "pq_plugin.h"
        #include <pthread.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <unistd.h>
        #ifndef VERSION
        #define VERSION "1.0.0"
        #endif
        #ifndef PREFIX
        #define PREFIX "rl"
        #endif
        static void version_run(const pq_call *call) { call->complete(call, 1, "\\"" VERSION "\\""); }
        static void *slow_thread(void *arg) {
            const pq_call *call = arg;
            for (int i = 0; i < 150 && !call->is_cancelled(call); i++) usleep(10000);
            call->complete(call, 1, "\\"" VERSION "\\"");
            return NULL;
        }
        static void slow_run(const pq_call *call) {
            pthread_t t;
            pthread_create(&t, NULL, slow_thread, (void *)call);
            pthread_detach(t);
        }
        static const pq_job_def jobs[] = {
            { PREFIX ".version", "Returns the plugin version.", NULL, version_run, NULL, NULL, NULL },
            { PREFIX ".slow", "Waits 1.5 s, returns the version.", NULL, slow_run, NULL, NULL, NULL },
        };
        static const pq_plugin plugin = { PQ_ABI_VERSION, sizeof(pq_plugin), PREFIX, VERSION, "c", 2, jobs, NULL };
        const pq_plugin *pq_plugin_entry(uint32_t v) { return v == PQ_ABI_VERSION ? &plugin : NULL; }
        """

    func build(version: String, prefix: String = "rl") async throws -> String {
        let out = Fixtures.temporaryDirectory("pqbuild") + "/lib\(prefix).so"
        return try await Fixtures.compileC(
            Self.versioned, to: out, defines: ["VERSION=\"\(version)\"", "PREFIX=\"\(prefix)\""])
    }

    /// Copies beside the target, then renames into place (what a careful deploy does).
    func install(_ built: String, as target: String) throws {
        let tmp = target + ".tmp-\(UUID().uuidString.prefix(6))"
        try FileManager.default.copyItem(atPath: built, toPath: tmp)
        #expect(rename(tmp, target) == 0)
    }

    func waitFor(_ what: String, timeout: Double = 10, _ condition: () async throws -> Bool) async throws {
        if try await !poll(timeout: timeout, condition) { Issue.record("timed out waiting for \(what)") }
    }

    func result(_ id: String) async throws -> String? {
        try await client.wait([id], timeout: 15).first?["result"] as? String
    }

    func prepareRoot() throws -> String {
        let pkg = root + "/pkg"
        try FileManager.default.createDirectory(atPath: pkg + "/a", withIntermediateDirectories: true)
        return pkg
    }

    @Test func atomicReplaceServesTheNewVersionWhileARunningTaskFinishesOnTheOld() async throws {
        let pkg = try prepareRoot()
        try install(try await build(version: "1.0.0"), as: pkg + "/a/librl.so")
        let host = try HostProcess(store: store, directory: dir, taskPaths: "pkg.*", pluginsDir: root)
        await #expect(try result(try await client.submit(["rl.version"])) == "1.0.0")
        let slow = try await client.submit(["rl.slow"])
        try await waitFor("rl.slow to start") { try await client.status(slow)["status"] as? Int == 5 }
        let replacedAt = Date()
        try install(try await build(version: "2.0.0"), as: pkg + "/a/librl.so")
        // Within a second, new tasks run on version 2.
        var served = ""
        try await waitFor("version 2 to serve", timeout: 5) {
            served = try await result(try await client.submit(["rl.version"])) ?? ""
            return served == "2.0.0"
        }
        #expect(Date().timeIntervalSince(replacedAt) < 2)
        // The task that started on version 1 finished on version 1, and says so.
        let old = try await client.wait([slow])[0]
        #expect(old["result"] as? String == "1.0.0")
        #expect(old["plugin_version"] as? String == "1.0.0")
        let newest = try await client.wait([try await client.submit(["rl.version"])])[0]
        #expect(newest["plugin_version"] as? String == "2.0.0")
        #expect(host.log.contains("plugin loaded"))
        #expect(host.stop() == 0)
    }

    @Test func newSubdirectoryUnderAWildcardRegistersAndRemovalUnregisters() async throws {
        let pkg = try prepareRoot()
        try await install(try build(version: "1.0.0"), as: pkg + "/a/librl.so")
        let host = try HostProcess(store: store, directory: dir, taskPaths: "pkg.*", pluginsDir: root)
        // A new subdirectory with a new plugin.
        try FileManager.default.createDirectory(atPath: pkg + "/fresh", withIntermediateDirectories: true)
        usleep(200_000)
        try await install(try build(version: "1.0.0", prefix: "nw"), as: pkg + "/fresh/libnw.so")
        var id = ""
        try await waitFor("nw.version to be accepted") {
            let r = try await client.run(["submit", "nw.version"], taskPaths: false)
            if r.status == 0 { id = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) }
            return r.status == 0
        }
        await #expect(try result(id) == "1.0.0")
        #expect(
            try await client.run(["jobs", "--from-store", "--json"], taskPaths: false).stdout.contains("\"nw.version\"")
        )
        // Removal: the jobs go; a task of them queued meanwhile waits, it is not failed.
        let queued = try await client.submit(["nw.version", "--delay", "0.5"])
        try FileManager.default.removeItem(atPath: pkg + "/fresh/libnw.so")
        try await waitFor("nw.version to be unpublished") {
            !(try await client.run(["jobs", "--from-store", "--json"], taskPaths: false).stdout.contains(
                "\"nw.version\""))
        }
        #expect(host.log.contains("plugin removed"))
        usleep(1_000_000)
        #expect(try await client.status(queued)["status"] as? Int == 6)
        let r = try await client.run(["submit", "nw.version"], taskPaths: false)
        #expect(r.status != 0)
        #expect(r.stderr.contains("unknown job 'nw.version'"))
        #expect(host.stop() == 0)
    }

    @Test func badFilesNeverCrashTheHostAndTheLastGoodGenerationServes() async throws {
        let pkg = try prepareRoot()
        let target = pkg + "/a/librl.so"
        let v1 = try await build(version: "1.0.0")
        try install(v1, as: target)
        let host = try HostProcess(store: store, directory: dir, taskPaths: "pkg.*", pluginsDir: root)
        await #expect(try result(try await client.submit(["rl.version"])) == "1.0.0")

        // A half-written .so, written in place without a rename.
        let v2 = try await build(version: "2.0.0")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: v2))
        try bytes.prefix(4096).write(to: URL(fileURLWithPath: pkg + "/a/libhalf.so"))
        // Garbage, and a wrong ABI.
        try Data("not a library".utf8).write(to: URL(fileURLWithPath: pkg + "/a/libjunk.so"))
        try await Fixtures.compileC(Fixtures.configurablePlugin, to: pkg + "/a/libwrongabi.so", defines: ["ABI=7"])
        try await waitFor("the failures to be logged") {
            host.log.contains("libhalf.so") && host.log.contains("libjunk.so") && host.log.contains("libwrongabi.so")
        }
        #expect(host.isRunning)
        await #expect(try result(try await client.submit(["rl.version"])) == "1.0.0")

        // Overwrite the loaded .so in place (truncate and write): the host runs a private copy.
        let handle = try #require(FileHandle(forWritingAtPath: target))
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: bytes.prefix(2000))
        try handle.close()
        usleep(300_000)
        #expect(host.isRunning)
        await #expect(try result(try await client.submit(["rl.version"])) == "1.0.0")
        let fh = try #require(FileHandle(forWritingAtPath: target))
        try fh.truncate(atOffset: 0)
        try fh.write(contentsOf: bytes)
        try fh.close()
        try await waitFor("the completed in-place write to load") {
            (try await result(try await client.submit(["rl.version"]))) == "2.0.0"
        }

        // Another plugin defining the same job: the later file by name wins, with a warning.
        try await install(try build(version: "9.9.9"), as: pkg + "/a/libzz.so")
        try await waitFor("the duplicate warning") { host.log.contains("is defined by both") }

        // 20 replacements in quick succession: the host ends on the newest.
        try FileManager.default.removeItem(atPath: pkg + "/a/libzz.so")
        var builds: [String] = []
        for i in 0..<3 { await builds.append(try build(version: "3.0.\(i)")) }
        for i in 0..<20 { try install(builds[i % 3], as: target) }
        try await install(try build(version: "4.0.0"), as: target)
        try await waitFor("version 4 to serve") {
            (try await result(try await client.submit(["rl.version"]))) == "4.0.0"
        }
        #expect(host.isRunning)
        #expect(host.stop() == 0)
    }
}

extension HotReloadTests {
    @Test func pqReloadRescansAHostStartedWithoutWatching() async throws {
        let pkg = try prepareRoot()
        try await install(try build(version: "1.0.0"), as: pkg + "/a/librl.so")
        let host = try HostProcess(
            store: store, arguments: ["--no-reload"], directory: dir, taskPaths: "pkg.*", pluginsDir: root)
        try await install(try build(version: "2.0.0"), as: pkg + "/a/librl.so")
        usleep(500_000)
        await #expect(try result(try await client.submit(["rl.version"])) == "1.0.0")
        let r = try await client.run(["reload"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("\(host.pid)"))
        try await waitFor("version 2 after pq reload") {
            (try await result(try await client.submit(["rl.version"]))) == "2.0.0"
        }
        #expect(host.isRunning)
        #expect(host.stop() == 0)
    }
}

extension HotReloadTests {
    @Test func pluginEventsAppearInPQWatch() async throws {
        let pkg = try prepareRoot()
        try install(try await build(version: "1.0.0"), as: pkg + "/a/librl.so")
        let host = try HostProcess(store: store, directory: dir, taskPaths: "pkg.*", pluginsDir: root)
        let watch = try PQCommand.startWatch(
            ["--events", "plugin_loaded,plugin_failed,plugin_removed", "--count", "3"], store: store)
        usleep(300_000)
        try install(try await build(version: "2.0.0"), as: pkg + "/a/librl.so")
        usleep(400_000)
        try Data("junk".utf8).write(to: URL(fileURLWithPath: pkg + "/a/libjunk.so"))
        usleep(400_000)
        try FileManager.default.removeItem(atPath: pkg + "/a/librl.so")
        let events = watch.collect(10)
        #expect(events.map { $0["event"] as? String } == ["plugin_loaded", "plugin_failed", "plugin_removed"])
        let loaded = events.first?["plugin"] as? [String: Any]
        #expect(loaded?["version"] as? String == "2.0.0")
        #expect((events.dropFirst().first?["plugin"] as? [String: Any])?["path"] as? String == pkg + "/a/libjunk.so")
        #expect((events.last?["plugin"] as? [String: Any])?["path"] as? String == pkg + "/a/librl.so")
        #expect(host.stop() == 0)
    }
}
