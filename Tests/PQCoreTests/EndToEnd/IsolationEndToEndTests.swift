import Foundation
import Synchronization
import Testing

/// Process isolation (DESIGN.md section 12) driven as a user would: `bin/pq serve` on a temporary
/// SQLite store with the C `crashy` plugin (Support/CrashPlugin.swift), whose jobs crash, hang,
/// burn CPU, leak and report the pid that ran them.
@Suite(.serialized, .timeLimit(.minutes(2))) struct IsolationEndToEndTests {
    let dir = Fixtures.temporaryDirectory("pqiso")
    var store: String { "sqlite:\(dir)/pq.sqlite" }
    var root: String { dir + "/plugins" }
    var client: PQClient { PQClient(store: store, directory: dir, taskPaths: "crashy", pluginsDir: root) }

    // MARK: helpers

    /// Installs the crashy plugin as the task_paths entry `crashy` and starts a host on it.
    func startHost(
        _ arguments: [String] = [], defines: [String] = [], environment: [String: String] = [:]
    ) async throws -> HostProcess {
        try await CrashPlugin.installPlugin(root: root, defines: defines)
        return try HostProcess(
            store: store, arguments: arguments, directory: dir, taskPaths: "crashy", pluginsDir: root,
            extraEnvironment: environment)
    }

    /// `pq submit ARGS` of a job the host published (the client loads no plugin), retried for a
    /// few seconds while the host has not published its jobs yet; its stdout lines.
    func submitting(_ args: [String], stdin: String? = nil) async throws -> [String] {
        let deadline = Date().addingTimeInterval(10)
        var r = try await client.run(["submit"] + args, stdin: stdin, taskPaths: false)
        while r.status != 0, r.stderr.contains("unknown job"), Date() < deadline {
            usleep(50_000)
            r = try await client.run(["submit"] + args, stdin: stdin, taskPaths: false)
        }
        try #require(r.status == 0, "submit \(args) failed: \(r.stderr)")
        return r.stdout.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
    }

    /// `pq submit ARGS`; the id.
    func submit(_ args: [String]) async throws -> String {
        let lines = try await submitting(args)
        try #require(lines.count == 1, "submit \(args) printed \(lines)")
        return lines[0]
    }

    /// `pq submit JOB --batch -` with `count` lines of `line`; the ids.
    func submitBatch(_ job: String, _ extra: [String] = [], line: String = "{}", count: Int) async throws -> [String] {
        let ids = try await submitting(
            [job, "--batch", "-"] + extra, stdin: String(repeating: line + "\n", count: count))
        try #require(ids.count == count)
        return ids
    }

    /// Waits (bounded) until the task is ready; the task object.
    func finished(_ id: String, timeout: Double = 30) async throws -> [String: Any] {
        try #require(try await client.wait([id], timeout: timeout).first)
    }

    func byID(_ tasks: [[String: Any]]) -> [String: [String: Any]] {
        Dictionary(tasks.compactMap { t in (t["id"] as? String).map { ($0, t) } }) { a, _ in a }
    }

    func exception(_ task: [String: Any]?) -> String { task?["exception"] as? String ?? "" }

    /// Polls `condition` every 20 ms until it holds or `timeout` seconds pass; whether it held.
    /// The pid a `crashy.sleep` wrote to `path`, once it is there (bounded).
    func pid(in path: String, timeout: Double = 15) async throws -> Int32 {
        var pid: Int32?
        _ = await poll(timeout: timeout) {
            pid = ProcTree.readFile(path).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            return pid != nil
        }
        return try #require(pid, "no pid in \(path): the task did not start")
    }

    /// Runs `crashy.pid` to the end; the pid that ran it.
    func pidOfANewTask(sourceLocation: SourceLocation = #_sourceLocation) async throws -> Int {
        let task = try await finished(try await submit(["crashy.pid"]))
        #expect(task["status"] as? Int == 1, "crashy.pid: \(task)", sourceLocation: sourceLocation)
        return try #require(task["result"] as? Int, "crashy.pid result: \(task)", sourceLocation: sourceLocation)
    }

    /// The host crashed nothing of its own: it is the same process and it still runs tasks, in a
    /// worker that is not itself.
    func expectHostServes(_ host: HostProcess, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        #expect(host.isRunning, "host exited: \(host.log.suffix(2000))", sourceLocation: sourceLocation)
        #expect(ProcTree.isAlive(host.pid), sourceLocation: sourceLocation)
        let worker = try await pidOfANewTask(sourceLocation: sourceLocation)
        #expect(worker != Int(host.pid), "a task ran in the host in process mode", sourceLocation: sourceLocation)
    }

    /// A crasher's failure is stored soon after its run started (the issue asks for 1 s; bounded
    /// loosely here).
    func expectRecordedQuickly(_ task: [String: Any], sourceLocation: SourceLocation = #_sourceLocation) {
        if let start = task["time_started"] as? Double, let end = task["time_ended"] as? Double {
            #expect(
                end - start < 3, "failure stored \(end - start) s after the run started", sourceLocation: sourceLocation
            )
        } else {
            Issue.record("no time_started/time_ended: \(task)", sourceLocation: sourceLocation)
        }
    }

    func parseObject(_ text: String) -> [String: Any]? {
        try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
    }

    /// This host's entry in `pq hosts --json`.
    func hostStatus(_ host: HostProcess) async throws -> [String: Any]? {
        let r = try await client.run(["hosts", "--json"], taskPaths: false)
        guard r.status == 0, let list = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]]
        else {
            return nil
        }
        return list.first { ($0["worker"] as? String)?.hasSuffix(":\(host.pid)") == true }
    }

    // MARK: crashes

    @Test func aSegfaultFailsItsTaskAloneAndTheTasksBesideItSucceed() async throws {
        let host = try await startHost(["--workers", "1", "--concurrent-tasks", "4"])
        let a = try await submit(["crashy.sleep", "seconds=3", "pidfile=\(dir)/a.pid"])
        let b = try await submit(["crashy.sleep", "seconds=3", "pidfile=\(dir)/b.pid"])
        let workerA = try await pid(in: dir + "/a.pid")
        let workerB = try await pid(in: dir + "/b.pid")
        // One worker: both run in it; it is a child of the host, not the host.
        #expect(workerA == workerB)
        #expect(workerA != host.pid)
        #expect(ProcTree.parent(of: workerA) == host.pid)
        let crasher = try await submit(["crashy.segv"])
        let tasks = byID(try await client.wait([a, b, crasher], timeout: 40))
        for id in [a, b] {
            // Re-run without being charged: they succeed with one attempt counted.
            #expect(tasks[id]?["status"] as? Int == 1, "\(tasks[id] ?? [:])")
            #expect(tasks[id]?["result"] as? String == "slept")
            #expect(tasks[id]?["retry"] as? Int == 1)
        }
        // They did run again, in the replacement worker: the crash hit the worker they ran in.
        await #expect(try pid(in: dir + "/a.pid") != workerA, "crashy.sleep was not re-run: the crasher ran elsewhere")
        await #expect(try pid(in: dir + "/b.pid") != workerA, "crashy.sleep was not re-run: the crasher ran elsewhere")
        #expect(tasks[crasher]?["status"] as? Int == 2, "\(tasks[crasher] ?? [:])")
        #expect(
            exception(tasks[crasher]).contains("worker killed by SIGSEGV (signal 11)"), "\(exception(tasks[crasher]))")
        try await expectHostServes(host)
        await #expect(try pidOfANewTask() != Int(workerA))
        #expect(host.stop() == 0)
    }

    @Test func aCrashIsSeenEvenWhenAChildOfTheWorkerHoldsItsSocket() async throws {
        let host = try await startHost(["--workers", "1"])
        let started = Date()
        let task = try await finished(try await submit(["crashy.forksegv"]), timeout: 15)
        #expect(task["status"] as? Int == 2, "\(task)")
        #expect(exception(task).contains("worker killed by SIGSEGV (signal 11)"), "\(exception(task))")
        // Found by the host's look at its children, not by the socket (the forked child holds it).
        #expect(Date().timeIntervalSince(started) < 10)
        try await expectHostServes(host)
        #expect(host.stop() == 0)
    }

    @Test func suspectsRunAloneUnderLoadAndKeepTheirTimeout() async throws {
        // One worker kept busy by a stream of short tasks: the suspects must still get their turn.
        let host = try await startHost(["--workers", "1", "--concurrent-tasks", "4"])
        let timed = try await submit(["crashy.sleep", "seconds=1", "pidfile=\(dir)/t.pid", "--timeout", "5"])
        let other = try await submit(["crashy.sleep", "seconds=1", "pidfile=\(dir)/o.pid"])
        _ = try await pid(in: dir + "/t.pid")
        _ = try await pid(in: dir + "/o.pid")
        let crasher = try await submit(["crashy.segv"])
        let load = try await submitBatch("crashy.pid", count: 300)
        let tasks = byID(try await client.wait([timed, other, crasher] + load, timeout: 60))
        // The timed task ran again alone from its start: its 5 s are counted from that run.
        #expect(tasks[timed]?["status"] as? Int == 1, "\(tasks[timed] ?? [:])")
        #expect(tasks[other]?["status"] as? Int == 1, "\(tasks[other] ?? [:])")
        #expect(tasks[crasher]?["status"] as? Int == 2, "\(tasks[crasher] ?? [:])")
        #expect(load.allSatisfy { tasks[$0]?["status"] as? Int == 1 })
        try await expectHostServes(host)
        #expect(host.stop() == 0)
    }

    @Test func workersThatDieBeforeTheyAreReadyGiveTheirTasksBack() async throws {
        // A plugin whose constructor crashes once a marker file exists: the probe loaded it, but
        // every new worker dies loading it.
        let marker = dir + "/crash-now"
        try await CrashPlugin.installPlugin(root: root)
        try await CrashPlugin.install(
            try CrashPlugin.build(constructorCrash: true, defines: ["CRASH_WHEN_MARKED"]),
            as: root + "/crashy/libmarked.so")
        let host = try HostProcess(
            store: store, arguments: ["--workers", "1"], directory: dir, taskPaths: "crashy", pluginsDir: root,
            extraEnvironment: ["PQ_CTOR_CRASH_MARKER": marker])
        _ = try await pidOfANewTask()
        _ = FileManager.default.createFile(atPath: marker, contents: nil)
        for child in ProcTree.children(of: host.pid) { kill(child, SIGKILL) }
        let id = try await submit(["crashy.pid"])
        // The task is not held forever by a host whose workers cannot start.
        #expect(
            await poll(timeout: 20) { host.log.contains("died before they were ready") }, "\(host.log.suffix(3000))")
        unlink(marker)
        let task = try await finished(id, timeout: 30)
        #expect(task["status"] as? Int == 1, "\(task)")
        #expect(task["retry"] as? Int == 1, "released runs are not charged: \(task)")
        #expect(host.isRunning)
        #expect(host.stop() == 0)
    }

    @Test func abortIsNamedAsSIGABRT() async throws {
        let host = try await startHost(["--workers", "1"])
        let task = try await finished(try await submit(["crashy.abort"]))
        #expect(task["status"] as? Int == 2)
        #expect(exception(task).contains("worker killed by SIGABRT (signal 6)"), "\(exception(task))")
        expectRecordedQuickly(task)
        try await expectHostServes(host)
        #expect(host.stop() == 0)
    }

    @Test func exitIsNamedWithItsStatus() async throws {
        let host = try await startHost(["--workers", "1"])
        let task = try await finished(try await submit(["crashy.exit"]))
        #expect(task["status"] as? Int == 2)
        #expect(exception(task).contains("worker exited with status 3"), "\(exception(task))")
        expectRecordedQuickly(task)
        try await expectHostServes(host)
        #expect(host.stop() == 0)
    }

    @Test func tenCrashesInARowThenOrdinaryWork() async throws {
        let host = try await startHost(["--workers", "2", "--concurrent-tasks", "4"])
        let ids = try await submitBatch("crashy.segv", count: 10)
        let tasks = try await client.wait(ids, timeout: 60)
        #expect(tasks.count == 10)
        for task in tasks {
            #expect(task["status"] as? Int == 2, "\(task)")
            #expect(exception(task).contains("worker killed by SIGSEGV (signal 11)"), "\(exception(task))")
        }
        try await expectHostServes(host)
        let ordinary = try await finished(try submit(["crashy.sleep", "seconds=0.1"]))
        #expect(ordinary["status"] as? Int == 1)
        #expect(ordinary["retry"] as? Int == 1)
        #expect(host.stop() == 0)
    }

    // MARK: timeouts, kills, hangs

    @Test func busyLoopsThatIgnoreCancelAreKilledAfterTheGraceAndNothingBurnsAfterwards() async throws {
        let host = try await startHost(["--workers", "2", "--concurrent-tasks", "4", "--kill-grace", "1"])
        let started = Date()
        let ids = try await submitBatch("crashy.busy", ["--timeout", "1"], count: 4)
        let tasks = try await client.wait(ids, timeout: 30)
        #expect(tasks.count == 4)
        for task in tasks {
            #expect(task["status"] as? Int == 3, "\(task)")
            #expect(exception(task).contains("timed out after 1 s"), "\(exception(task))")
        }
        // 1 s timeout + 1 s grace, with room for a loaded machine.
        #expect(Date().timeIntervalSince(started) < 12)
        #expect(host.isRunning)
        // Let the replacement workers settle, then the whole tree must be idle.
        usleep(1_500_000)
        let before = ProcTree.treeCPUSeconds(host.pid)
        let wall = Date()
        usleep(1_000_000)
        let used = ProcTree.treeCPUSeconds(host.pid) - before
        let elapsed = Date().timeIntervalSince(wall)
        #expect(used < 0.3, "host and workers used \(used) s of CPU in \(elapsed) s after the timeouts")
        try await expectHostServes(host)
        #expect(host.stop() == 0)
    }

    @Test func aWorkerKilledFromOutsideFailsItsTaskOrRetriesIt() async throws {
        let host = try await startHost(["--workers", "1"])
        let id = try await submit(["crashy.sleep", "seconds=30", "pidfile=\(dir)/victim.pid"])
        let victim = try await pid(in: dir + "/victim.pid")
        #expect(victim != host.pid)
        #expect(kill(victim, SIGKILL) == 0)
        let task = try await finished(id, timeout: 15)
        #expect(task["status"] as? Int == 2, "\(task)")
        #expect(exception(task).contains("worker killed by SIGKILL (signal 9)"), "\(exception(task))")
        #expect(host.isRunning)

        // With a retry left, the killed run is charged and the task runs again, in a new worker.
        let retryFile = dir + "/retry.pid"
        let again = try await submit(["crashy.sleep-retry", "seconds=2", "pidfile=\(retryFile)"])
        let second = try await pid(in: retryFile)
        #expect(second != victim)
        try FileManager.default.removeItem(atPath: retryFile)
        #expect(kill(second, SIGKILL) == 0)
        let retried = try await finished(again, timeout: 20)
        #expect(retried["status"] as? Int == 1, "\(retried)")
        #expect(retried["result"] as? String == "slept")
        #expect(retried["retry"] as? Int == 2)
        let third = try await pid(in: retryFile, timeout: 1)
        #expect(third != second)
        try await expectHostServes(host)
        #expect(host.stop() == 0)
    }

    @Test func aStoppedWorkerIsFoundByHeartbeatAndReplaced() async throws {
        let host = try await startHost(["--workers", "1", "--heartbeat-timeout", "1"])
        let id = try await submit(["crashy.sleep", "seconds=30", "pidfile=\(dir)/stopped.pid"])
        let worker = try await pid(in: dir + "/stopped.pid")
        #expect(worker != host.pid)
        // Whatever happens, leave no stopped process behind.
        defer { if ProcTree.isAlive(worker) { kill(worker, SIGKILL) } }
        let stoppedAt = Date()
        #expect(kill(worker, SIGSTOP) == 0)
        let task = try await finished(id, timeout: 15)
        #expect(task["status"] as? Int != 1, "\(task)")
        #expect(exception(task).contains("stopped answering"), "\(exception(task))")
        #expect(Date().timeIntervalSince(stoppedAt) < 10)
        #expect(await poll(timeout: 5) { !ProcTree.isAlive(worker) }, "the stopped worker \(worker) was not killed")
        await #expect(try pidOfANewTask() != Int(worker))
        #expect(host.isRunning)
        #expect(host.stop() == 0)
    }

    // MARK: recycling

    @Test func workersAreRecycledAfterMaxTasks() async throws {
        let host = try await startHost(["--workers", "1", "--max-tasks-per-worker", "2"])
        var pids: [Int] = []
        for _ in 0..<6 { pids.append(try await pidOfANewTask()) }
        #expect(Set(pids).count >= 3, "pids of 6 tasks: \(pids)")
        #expect(!pids.contains(Int(host.pid)))
        // A recycled worker finishes and exits.
        let first = Int32(pids[0])
        #expect(await poll(timeout: 5) { !ProcTree.isAlive(first) }, "recycled worker \(first) is still there")
        #expect(host.stop() == 0)
    }

    @Test func aWorkerOverMaxMemoryIsRecycledAfterItsTask() async throws {
        let host = try await startHost(["--workers", "1", "--max-worker-memory", "50"])
        let first = try await pidOfANewTask()
        let second = try await pidOfANewTask()
        // A worker well under 50 MB keeps serving.
        #expect(first == second, "worker recycled without having grown: \(first) then \(second)")
        let leak = try await finished(try await submit(["crashy.leak", "mb=80"]))
        #expect(leak["status"] as? Int == 1, "\(leak)")
        let leaker = try #require(leak["result"] as? Int)
        #expect(leaker == second)
        await #expect(try pidOfANewTask() != leaker)
        #expect(
            await poll(timeout: 5) { !ProcTree.isAlive(Int32(leaker)) }, "the 80 MB worker \(leaker) is still there")
        #expect(host.stop() == 0)
    }

    // MARK: hot reload

    @Test func fiftyHotReloadsKeepMemoryBounded() async throws {
        let target = try await CrashPlugin.installPlugin(root: root)
        let host = try HostProcess(
            store: store, arguments: ["--workers", "2"], directory: dir, taskPaths: "crashy", pluginsDir: root)
        let built = try await Data(contentsOf: URL(fileURLWithPath: try CrashPlugin.build()))
        func serves(_ version: String) async throws -> Bool {
            let r = try await client.run(
                ["submit", "crashy.version", "--wait", "--json"], timeout: 20, taskPaths: false)
            return r.status == 0 && parseObject(r.stdout)?["result"] as? String == version
        }
        #expect(try await poll(timeout: 10) { try await serves(CrashPlugin.versionPlaceholder) })
        var baseline = 0
        for n in 1...50 {
            let version = CrashPlugin.version(n)
            try CrashPlugin.install(try CrashPlugin.patchedVersion(built, version), as: target)
            let served = try await poll(timeout: 10) { try await serves(version) }
            #expect(served, "reload \(n): version \(version) never served")
            if !served { break }
            if n == 1 {
                try await Task.sleep(for: .milliseconds(500))
                baseline = ProcTree.treeRSSKB(host.pid)
            }
        }
        // Workers left with old generations only drain and exit: memory comes back.
        var last = 0
        var children: [Int32] = []
        _ = await poll(timeout: 15) {
            last = ProcTree.treeRSSKB(host.pid)
            children = ProcTree.children(of: host.pid)
            return last - baseline < 60 * 1024 && children.count <= 2
        }
        #expect(baseline > 0)
        #expect(
            last - baseline < 60 * 1024, "RSS of host and workers: \(baseline) KiB after 1 reload, \(last) KiB after 50"
        )
        #expect(children.count <= 2, "old workers did not exit: children \(children)")
        #expect(host.isRunning)
        #expect(host.stop() == 0)
    }

    // MARK: the host's life and death

    @Test func sigtermDrainsPutsTheUnfinishedTaskBackAndLeavesNoWorker() async throws {
        let host = try await startHost(["--workers", "1", "--drain-timeout", "1"])
        let id = try await submit(["crashy.sleep", "seconds=60", "stubborn=true", "pidfile=\(dir)/long.pid"])
        let worker = try await pid(in: dir + "/long.pid")
        await #expect(try poll { try await client.status(id)["status"] as? Int == 5 })
        let workers = ProcTree.descendants(of: host.pid)
        #expect(workers.contains(worker))
        defer { for pid in workers where ProcTree.isAlive(pid) { kill(pid, SIGKILL) } }
        let stoppedAt = Date()
        #expect(host.stop(SIGTERM, within: 15) == 0)
        #expect(Date().timeIntervalSince(stoppedAt) < 10)
        #expect(try await client.status(id)["status"] as? Int == 6)
        #expect(
            await poll(timeout: 2) { workers.allSatisfy { !ProcTree.isAlive($0) } },
            "workers left behind: \(workers.filter(ProcTree.isAlive))")
    }

    @Test func workersStopWhenTheirHostIsKilled() async throws {
        let host = try await startHost(["--workers", "2"])
        _ = try await submit(["crashy.sleep", "seconds=60", "stubborn=true", "pidfile=\(dir)/orphan.pid"])
        let worker = try await pid(in: dir + "/orphan.pid")
        let children = ProcTree.children(of: host.pid)
        #expect(children.contains(worker), "worker \(worker) is not a child of the host: \(children)")
        defer { for pid in children where ProcTree.isAlive(pid) { kill(pid, SIGKILL) } }
        host.stop(SIGKILL)
        #expect(
            await poll(timeout: 2) { children.allSatisfy { !ProcTree.isAlive($0) } },
            "workers still running without their host: \(children.filter(ProcTree.isAlive))")
    }

    // MARK: plugins that crash while they load

    @Test func pqJobsReportsAPluginWhoseConstructorCrashes() async throws {
        let mixed = root + "/mixed"
        try CrashPlugin.makePluginDirectory(root)
        try CrashPlugin.makePluginDirectory(mixed)
        try await CrashPlugin.install(try CrashPlugin.build(constructorCrash: true), as: mixed + "/libbad.so")
        try await CrashPlugin.install(try CrashPlugin.build(), as: mixed + "/libgood.so")
        let r = try await PQCommand.run(
            ["jobs", "--task-paths", "mixed", "--plugins-dir", root], currentDirectory: dir, timeout: 30)
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(r.stdout.contains("crashy.pid") && r.stdout.contains("crashy.segv"), "stdout: \(r.stdout)")
        #expect(!r.stdout.contains("ctorcrash.noop"))
        #expect(r.stderr.contains(mixed + "/libbad.so"), "stderr: \(r.stderr)")
        #expect(r.stderr.contains("SIGSEGV"), "stderr: \(r.stderr)")
        let json = try await PQCommand.run(
            ["jobs", "--json", "--task-paths", "mixed", "--plugins-dir", root], currentDirectory: dir, timeout: 30)
        #expect(json.status == 0)
        let names = ((try? JSONSerialization.jsonObject(with: Data(json.stdout.utf8))) as? [[String: Any]] ?? [])
            .compactMap {
                $0["name"] as? String
            }
        #expect(names.contains("crashy.pid"))
        #expect(!names.contains("ctorcrash.noop"))

        // pq submit resolves the same task_paths without crashing, and a host on them serves the good plugin.
        let env = HostProcess.environment(store: store, taskPaths: "mixed", pluginsDir: root)
        let s = try await PQCommand.run(["submit", "crashy.pid"], environment: env, currentDirectory: dir, timeout: 30)
        #expect(s.status == 0, "submit: \(s.stderr)")
        let id = s.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let host = try HostProcess(store: store, directory: dir, taskPaths: "mixed", pluginsDir: root)
        if s.status == 0 {
            let task = try await finished(id)
            #expect(task["status"] as? Int == 1, "\(task)")
            #expect(task["result"] as? Int != Int(host.pid))
        }
        #expect(host.log.contains("libbad.so"))
        #expect(host.isRunning)
        #expect(host.stop() == 0)
    }

    // MARK: events and status

    @Test func workerLostEventsAppearInPQWatch() async throws {
        let host = try await startHost(["--workers", "1"])
        let watch = try EventFollower(store: store)
        defer { watch.stop() }
        usleep(300_000)
        let segv = try await submit(["crashy.segv"])
        let segvTask = try await finished(segv)
        let exited = try await submit(["crashy.exit"])
        _ = try await finished(exited)
        let events = watch.wait(timeout: 10) { $0.filter { $0["event"] as? String == "worker_lost" }.count >= 2 }
        let lost = events.filter { $0["event"] as? String == "worker_lost" }.compactMap {
            $0["worker"] as? [String: Any]
        }
        #expect(lost.count == 2, "events: \(events)")

        let bySignal = try #require(lost.first { ($0["tasks"] as? [String])?.contains(segv) == true }, "\(lost)")
        #expect(bySignal["cause"] as? String == "worker killed by SIGSEGV (signal 11)")
        #expect(bySignal["signal"] as? Int == 11)
        #expect(bySignal["status"] == nil)
        let signalledPID = try #require(bySignal["pid"] as? Int)
        #expect(signalledPID > 0 && signalledPID != Int(host.pid))
        #expect(bySignal["node"] as? String == segvTask["node"] as? String)

        let byExit = try #require(lost.first { ($0["tasks"] as? [String])?.contains(exited) == true }, "\(lost)")
        #expect(byExit["cause"] as? String == "worker exited with status 3")
        #expect(byExit["status"] as? Int == 3)
        #expect(byExit["signal"] == nil)
        #expect((byExit["pid"] as? Int).map { $0 != signalledPID && $0 != Int(host.pid) } == true)
        #expect((byExit["node"] as? String)?.isEmpty == false)
        #expect(host.stop() == 0)
    }

    @Test func pqHostsShowsTheWorkers() async throws {
        let host = try await startHost(["--workers", "2"])
        for _ in 0..<3 { _ = try await pidOfANewTask() }
        // The status is published every few seconds: wait (bounded) for one that counts the tasks.
        var mine: [String: Any]?
        let counted = try await poll(timeout: 15) {
            mine = try await hostStatus(host)
            let workers = mine?["workers"] as? [[String: Any]] ?? []
            return workers.count == 2 && workers.compactMap { $0["tasks"] as? Int }.reduce(0, +) >= 3
        }
        #expect(counted, "host status: \(mine ?? [:])")
        let status = try #require(mine)
        #expect(status["isolation"] as? String == "process")
        let workers = try #require(status["workers"] as? [[String: Any]])
        let children = ProcTree.children(of: host.pid)
        for worker in workers {
            let pid = try #require(worker["pid"] as? Int, "\(worker)")
            #expect(children.contains(Int32(pid)), "worker \(pid) is not a child of the host: \(children)")
            // Started from the same binary as the host.
            #expect(ProcTree.executable(of: Int32(pid)) == ProcTree.executable(of: host.pid))
            #expect((worker["rss_kb"] as? Int ?? 0) > 0, "\(worker)")
            #expect(["ready", "starting", "draining"].contains(worker["state"] as? String ?? ""), "\(worker)")
        }
        #expect(host.stop() == 0)
    }

    // MARK: bad input

    @Test func badServeOptionsAreRefusedAtOnce() async throws {
        try await CrashPlugin.installPlugin(root: root)
        let env = HostProcess.environment(store: store, taskPaths: "crashy", pluginsDir: root)
        let cases: [([String], String)] = [
            (["--workers", "0"], "--workers"),
            (["--workers=-1"], "--workers"),
            (["--isolation", "other"], "--isolation"),
            (["--kill-grace=-1"], "--kill-grace"),
            (["--max-worker-memory=-5"], "--max-worker-memory"),
            (["--max-worker-memory", "abc"], "--max-worker-memory"),
        ]
        for (args, flag) in cases {
            let started = Date()
            let r = try await PQCommand.run(["serve"] + args, environment: env, currentDirectory: dir, timeout: 20)
            expectOneLineError(r, [flag])
            #expect(!r.stderr.contains("Unknown option"), "pq serve does not know \(flag): \(r.stderr)")
            #expect(
                Date().timeIntervalSince(started) < 5,
                "pq serve \(args) took \(Date().timeIntervalSince(started)) s to refuse")
        }
    }

    @Test func aJobAskingForAnUnknownIsolationIsSkippedAlone() async throws {
        try await CrashPlugin.installPlugin(root: root, defines: ["BAD_ISOLATION"])
        let r = try await PQCommand.run(
            ["jobs", "--task-paths", "crashy", "--plugins-dir", root], currentDirectory: dir, timeout: 30)
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(r.stdout.contains("crashy.pid") && r.stdout.contains("crashy.sleep"))
        #expect(!r.stdout.contains("crashy.badiso"))
        let warnings = r.stderr.split(separator: "\n").filter { $0.contains("crashy.badiso") }
        #expect(warnings.count == 1 && warnings.first?.contains("isolation") == true, "stderr: \(r.stderr)")
        // A host on the plugin serves its other jobs.
        let host = try await startHost(defines: ["BAD_ISOLATION"])
        _ = try await pidOfANewTask()
        #expect(
            host.log.split(separator: "\n").contains { $0.contains("crashy.badiso") && $0.contains("isolation") },
            "\(host.log)")
        #expect(host.stop() == 0)
    }

    // MARK: thread mode

    @Test func threadModeRunsTasksInTheHost() async throws {
        let host = try await startHost(["--isolation", "thread"])
        await #expect(try pidOfANewTask() == Int(host.pid))
        let nap = try await finished(try await submit(["crashy.sleep", "seconds=0.2"]))
        #expect(nap["status"] as? Int == 1)
        // A job that honours cancel, past its timeout: REVOKED, as before.
        let late = try await finished(try await submit(["crashy.sleep", "seconds=20", "--timeout", "0.5"]))
        #expect(late["status"] as? Int == 3)
        #expect(exception(late).contains("timed out"))
        #expect(host.stop() == 0)

        // The same through the environment; a flag wins over it.
        let viaEnv = try await startHost(environment: ["PQ_ISOLATION": "thread"])
        await #expect(try pidOfANewTask() == Int(viaEnv.pid))
        #expect(viaEnv.stop() == 0)
        let flagWins = try await startHost(["--isolation", "process"], environment: ["PQ_ISOLATION": "thread"])
        await #expect(try pidOfANewTask() != Int(flagWins.pid))
        #expect(flagWins.stop() == 0)
    }
}

/// `pq watch --json` in the background; its lines are collected as they come.
final class EventFollower: @unchecked Sendable {
    private let process = Process()
    private let output = Mutex(Data())

    init(store: String) throws {
        process.executableURL = URL(fileURLWithPath: PQCommand.binary)
        process.arguments = ["watch", "--json"]
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PQ_") }
        env["PQ_STORE"] = store
        process.environment = env
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        DispatchQueue.global().async { [self] in
            let reader = pipe.fileHandleForReading
            while true {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                output.withLock { $0.append(chunk) }
            }
        }
    }

    /// The complete lines so far, parsed.
    var events: [[String: Any]] {
        let text = String(decoding: output.withLock { $0 }, as: UTF8.self)
        return text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// Waits (bounded) until `done` holds for the events so far; the events.
    func wait(timeout: Double, until done: ([[String: Any]]) -> Bool) -> [[String: Any]] {
        let deadline = Date().addingTimeInterval(timeout)
        var seen = events
        while !done(seen), Date() < deadline {
            usleep(20_000)
            seen = events
        }
        return seen
    }

    func stop() {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }

    deinit { stop() }
}
