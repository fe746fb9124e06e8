import Foundation
import PQCore
import Testing

@Suite("SQLiteTaskStore")
struct SQLiteTaskStoreTests {
    @Test func missingFolderNamesThePathAndTheFix() throws {
        let path = "/tmp/pq-no-such-folder-\(UUID().uuidString)/pq.db"
        do {
            _ = try SQLiteTaskStore(path: path)
            Issue.record("opened a store in a missing folder")
        } catch let error as TaskStoreError {
            #expect(error.code == .cannotOpen)
            #expect(error.message.contains(path))
            #expect(error.message.contains("does not exist"))
            #expect(error.message.contains("mkdir -p"))
        }
    }

    /// Task arguments and results often hold secrets: the store's files are the owner's alone.
    @Test func storeFilesAreReadableByTheirOwnerOnly() async throws {
        let dir = Fixtures.temporaryDirectory("pqmode")
        let path = dir + "/pq.sqlite"
        let store = try SQLiteTaskStore(path: path)
        _ = try await store.enqueue([NewTask(name: "secret", kwargs: #"{"password":"hunter2"}"#)])
        for file in [path, path + "-wal", path + "-shm"] {
            let mode = try #require(
                try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int, "\(file)")
            #expect(mode & 0o777 == 0o600, "\(file) has mode \(String(mode, radix: 8))")
        }
        await store.close()
    }

    /// A store of schema version 1 (published jobs without their plugin file) is upgraded in place.
    @Test func aVersionOneStoreIsUpgraded() async throws {
        let path = Fixtures.temporaryDirectory("pqschema") + "/pq.sqlite"
        let old = try SQLiteTaskStore(path: path)
        let id = try await old.enqueue([NewTask(name: "kept")])[0].id
        await old.close()
        // Make it what pq wrote before version 2.
        let downgrade = try await Fixtures.run(
            "/usr/bin/env",
            [
                "python3", "-c",
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('ALTER TABLE published_jobs DROP COLUMN path'); c.execute('PRAGMA user_version=1'); c.commit()",
                path,
            ])
        try #require(downgrade.status == 0, "\(downgrade.stderr)")
        let store = try SQLiteTaskStore(path: path)
        #expect(try await store.task(id: id)?.name == "kept")
        try await store.publishJobs(
            host: "h", jobs: [JobInfo(name: "j", plugin: "p", pluginVersion: "1", path: "/plugins/p.so")])
        #expect(try await store.publishedJobs().first?.path == "/plugins/p.so")
        await store.close()
    }

    /// Root writes anywhere (and CI runs as root): there the check runs `bin/pq` as `nobody`.
    @Test(.enabled(if: getuid() == 0, "needs root to become nobody; unwritableFolderIsExplained runs instead"))
    func unwritableFolderIsExplainedToAnotherUser() async throws {
        let folder = "/tmp/pq-readonly-\(UUID().uuidString)"
        try FileManager.default.createDirectory(
            atPath: folder, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o555])
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let r = try await Fixtures.run(
            "/usr/bin/setpriv",
            [
                "--reuid=65534", "--regid=65534", "--clear-groups", "--", PQCommand.binary, "queues", "--store",
                "sqlite:\(folder)/pq.db",
            ],
            environment: ["PATH": "/usr/bin:/bin", "HOME": "/tmp"], currentDirectory: "/tmp", timeout: 30)
        #expect(r.status != 0)
        #expect(r.stderr.contains("not writable"), "\(r.stderr)")
        #expect(r.stderr.contains(folder), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: folder + "/pq.db"))
    }

    @Test(.enabled(if: getuid() != 0, "root writes anywhere: see unwritableFolderIsExplainedToAnotherUser"))
    func unwritableFolderIsExplained() throws {
        let folder = try makeTempFolder()
        defer {
            chmod(folder.path, 0o755)
            try? FileManager.default.removeItem(at: folder)
        }
        chmod(folder.path, 0o555)
        do {
            _ = try SQLiteTaskStore(path: folder.appendingPathComponent("pq.db").path)
            Issue.record("opened a store in a read-only folder")
        } catch let error as TaskStoreError {
            #expect(error.code == .cannotOpen)
            #expect(error.message.contains("not writable"))
        }
    }

    @Test func aFileThatIsNotADatabaseIsRefused() throws {
        let folder = try makeTempFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("notes.txt").path
        try Data(String(repeating: "not a database\n", count: 200).utf8).write(to: URL(fileURLWithPath: path))
        do {
            _ = try SQLiteTaskStore(path: path)
            Issue.record("opened a text file as a store")
        } catch let error as TaskStoreError {
            #expect(error.code == .cannotOpen)
            #expect(error.message.contains("not a SQLite database"))
        }
    }

    @Test func relativePathsAreResolved() async throws {
        let folder = try makeTempFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        // A path relative to the current directory (not changed: tests run in parallel).
        let depth = FileManager.default.currentDirectoryPath.split(separator: "/").count
        let relative = String(repeating: "../", count: depth) + folder.path.dropFirst() + "/rel.db"
        let store = try SQLiteTaskStore(path: relative)
        #expect(store.path == folder.appendingPathComponent("rel.db").standardizedFileURL.path)
        await store.close()
    }

    @Test func dataSurvivesReopening() async throws {
        let folder = try makeTempFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("pq.db").path
        let first = try SQLiteTaskStore(path: path)
        let task = try await first.enqueue([NewTask(name: "a", kwargs: #"{"x":[1,2]}"#, timeout: 5, plugin: "p")])[0]
        await first.close()
        let second = try SQLiteTaskStore(path: path)
        #expect(try await second.task(id: task.id) == task)
        await second.close()
    }

    @Test func twoInstancesOnOneFileSeeEachOthersWrites() async throws {
        let folder = try makeTempFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("shared.db").path
        let host = try SQLiteTaskStore(path: path)
        let client = try SQLiteTaskStore(path: path)
        // The host waits for work; the client (as another process would) queues a task.
        let changes = host.changes()
        let woke = Task { await next(changes, timeout: .seconds(2)) ? TaskClock.now() : nil }
        try await Task.sleep(for: .milliseconds(20))
        let queuedAt = TaskClock.now()
        let task = try await client.enqueue([NewTask(name: "a")])[0]
        let acknowledgedAt = TaskClock.now()
        let wokeAt = try #require(await woke.value)
        print(
            "SQLite change signal across instances: enqueue acknowledged after "
                + "\(String(format: "%.2f", (acknowledgedAt - queuedAt) * 1000)) ms, other instance woken after "
                + "\(String(format: "%.2f", (wokeAt - queuedAt) * 1000)) ms")
        let claimed = try await host.claim(claimRequest())
        #expect(claimed.map(\.id) == [task.id])
        // And back: the client sees the host's write.
        #expect(try await client.task(id: task.id)?.status == .started)
        #expect(try await client.events(after: 0, limit: 10).map(\.kind) == [.queued, .started])
        await host.close()
        await client.close()
    }

    @Test func changeSignalFromAnotherInstanceWithoutInotifyFallsBackToPolling() async throws {
        // The watcher's data_version poll alone (what runs where inotify is unavailable).
        let folder = try makeTempFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("shared.db").path
        let host = try SQLiteTaskStore(path: path, options: .init(fallbackPoll: .milliseconds(50)))
        let client = try SQLiteTaskStore(path: path, options: .init(watchOtherProcesses: false))
        let changes = host.changes()
        let woke = Task { await next(changes, timeout: .seconds(2)) }
        try await Task.sleep(for: .milliseconds(20))
        _ = try await client.enqueue([NewTask(name: "a")])
        #expect(await woke.value)
        await host.close()
        await client.close()
    }

    @Test func concurrentWritersShareTheFileSafely() async throws {
        let folder = try makeTempFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("shared.db").path
        let stores = try (0..<3).map { _ in try SQLiteTaskStore(path: path) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, store) in stores.enumerated() {
                group.addTask {
                    for round in 0..<20 {
                        _ = try await store.enqueue(
                            (0..<10).map { NewTask(name: "s\(index)", kwargs: #"{"r":\#(round),"i":\#($0)}"#) })
                        _ = try await store.claim(claimRequest(limit: 7, worker: "h:\(index)"))
                    }
                }
            }
            try await group.waitForAll()
        }
        let all = try await stores[0].tasks(status: nil, job: nil, limit: 10_000)
        #expect(all.count == 600)
        let started = all.filter { $0.status == .started }
        #expect(started.count <= 3 * 20 * 7)
        // Whatever is left is claimed once; nothing was claimed twice.
        let rest = try await stores[1].claim(claimRequest(limit: 1000, worker: "h:9"))
        #expect(started.count + rest.count == 600)
        #expect(Set(started.map(\.id) + rest.map(\.id)).count == 600)
        for store in stores { await store.close() }
    }

    @Test func eventsAreTrimmed() async throws {
        let folder = try makeTempFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let store = try SQLiteTaskStore(
            path: folder.appendingPathComponent("pq.db").path, options: .init(maxEvents: 100))
        for _ in 0..<5 { _ = try await store.enqueue((0..<100).map { _ in NewTask(name: "a") }) }
        let events = try await store.events(after: 0, limit: 10_000)
        #expect(events.count <= 200)
        #expect(events.last?.seq == 500)
        await store.close()
    }

    /// Measured, not asserted: 10,000 tasks queued in one batch, then claimed and finished in
    /// batches of 100, each acknowledged after its commit was synced.
    @Test(arguments: StoreKind.allCases)
    func throughput(kind: StoreKind) async throws {
        if let only = ProcessInfo.processInfo.environment["PQ_BENCH_STORE"], only != kind.rawValue { return }
        try await withStore(kind) { store in
            let count = 10_000
            let tasks = (0..<count).map { NewTask(name: "add", kwargs: #"{"a":\#($0),"b":1}"#) }
            var t0 = TaskClock.now()
            _ = try await store.enqueue(tasks)
            let enqueueSeconds = TaskClock.now() - t0
            t0 = TaskClock.now()
            var processed = 0
            while true {
                let claimed = try await store.claim(claimRequest(limit: 100))
                if claimed.isEmpty { break }
                _ = try await store.finish(
                    claimed.map { TaskOutcome(id: $0.id, worker: worker, .success(result: "1")) })
                processed += claimed.count
            }
            let processSeconds = TaskClock.now() - t0
            #expect(processed == count)
            // Concurrent producers: 100 enqueues of one task each, in flight at once (group commit).
            t0 = TaskClock.now()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<1000 {
                    group.addTask { _ = try await store.enqueue([NewTask(name: "one", kwargs: #"{"i":\#(i)}"#)]) }
                }
                try await group.waitForAll()
            }
            let singleSeconds = TaskClock.now() - t0
            print(
                "\(kind) store: enqueue \(count) in one batch: \(Int(Double(count) / enqueueSeconds)) tasks/s; "
                    + "claim+finish in batches of 100: \(Int(Double(count) / processSeconds)) tasks/s; "
                    + "1000 concurrent single enqueues: \(Int(1000 / singleSeconds)) tasks/s")
        }
    }
}
