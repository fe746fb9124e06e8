// pq-bench: the figures `make bench` prints. Run from the package root after `make build`.
import ArgumentParser
import CPQPlugin
import Foundation
import Logging
import PQCore
import PQRedis
import ServiceLifecycle
import Synchronization

let root = FileManager.default.currentDirectoryPath
let pluginsRoot = root + "/.pq/plugins"
let pq = root + "/bin/pq"

/// `pq-bench [--quick] [--only SECTION]`.
struct BenchOptions: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pq-bench",
        abstract: "The figures `make bench` prints; run from the package root after `make build`.")
    static let sections = ["plugins", "memory", "sqlite", "ffi", "isolation", "reload", "periodic", "redis"]

    @Flag(help: "Fewer tasks and rounds (a smoke run).") var quick = false
    @Option(help: "Only one section: \(sections.joined(separator: ", ")).") var only: String?

    func validate() throws {
        if let only, !Self.sections.contains(only) {
            throw ValidationError("unknown section '\(only)' (one of \(Self.sections.joined(separator: ", ")))")
        }
    }
}

let options = BenchOptions.parseOrExit()
let quick = options.quick

func now() -> Double { TaskClock.now() }

func percentile(_ values: [Double], _ p: Double) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    return sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded()))]
}

func ms(_ s: Double) -> String { String(format: "%.2f ms", s * 1000) }
func rate(_ n: Int, _ s: Double) -> String { String(format: "%.0f/s", Double(n) / s) }

@discardableResult
func runProcess(_ args: [String], env: [String: String] = [:], stdin: Data? = nil) throws -> (Int32, Data) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: pq)
    p.arguments = args
    var e = ProcessInfo.processInfo.environment
    for (k, v) in env { e[k] = v }
    p.environment = e
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    let input = Pipe()
    p.standardInput = input
    try p.run()
    if let stdin {
        DispatchQueue.global().async {
            input.fileHandleForWriting.write(stdin)
            try? input.fileHandleForWriting.close()
        }
    } else {
        try? input.fileHandleForWriting.close()
    }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, data)
}

/// Starts `bin/pq serve --concurrent-tasks 16` (stderr discarded) with `env` added to this
/// process's environment.
func startHost(env: [String: String]) throws -> Process {
    let host = Process()
    host.executableURL = URL(fileURLWithPath: pq)
    host.arguments = ["serve", "--concurrent-tasks", "16", "--log-level", "warning"]
    host.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
    host.standardError = FileHandle.nullDevice
    try host.run()
    return host
}

/// Starts `bin/pq` with posix_spawn (stdout and stderr to /dev/null) and waits: the way a shell
/// would, without Foundation's Process overhead in the figure.
func spawnAndWait(_ args: [String]) -> Int32 {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    defer { posix_spawn_file_actions_destroy(&actions) }
    let argv = ([pq] + args).map { strdup($0) } + [nil]
    defer { for arg in argv { free(arg) } }
    var pid: pid_t = 0
    guard posix_spawn(&pid, pq, &actions, nil, argv, environ) == 0 else { return -1 }
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    return status
}

let only = options.only
func wanted(_ name: String) -> Bool { only == nil || only == name }

func section(_ title: String) { print("\n== \(title)") }

// MARK: plugin loading

if wanted("plugins") {
    section("plugin loading")
    do {
        let loader = PluginLoader()
        for (label, path) in [
            ("C plugin", pluginsRoot + "/examples/c/libexamples_c.so"),
            ("Swift plugin", pluginsRoot + "/examples/swift/libpq_examples.so"),
        ] {
            var times: [Double] = []
            for _ in 0..<(quick ? 5 : 20) {
                let t0 = now()
                _ = try loader.load(path: path)
                times.append(now() - t0)
            }
            print(
                "load one \(label) (check, private copy, dlopen, validate): median \(ms(percentile(times, 0.5))), min \(ms(times.min()!))"
            )
        }
        var cold: [Double] = []
        for _ in 0..<(quick ? 5 : 15) {
            let t0 = now()
            let status = spawnAndWait(["jobs", "--task-paths", "examples.*", "--plugins-dir", pluginsRoot])
            precondition(status == 0, "pq jobs failed")
            cold.append(now() - t0)
        }
        print(
            "pq jobs over the example plugins, cold process: median \(ms(percentile(cold, 0.5))), min \(ms(cold.min()!)) (target < 50 ms)"
        )
    } catch {
        print("plugin benchmark failed: \(error)")
    }
}

// MARK: typed calls through libffi

if wanted("ffi") {
    section("typed jobs through libffi: per-call overhead of (a:i64,b:i64)->i64, excluding queueing")
    do {
        let plugin = try PluginLoader().load(path: pluginsRoot + "/examples/c/libexamples_c.so")
        guard let mul = plugin.jobs.first(where: { $0.name == "c.mul" }), let typed = mul.typedCall,
            let mulj = plugin.jobs.first(where: { $0.name == "c.mulj" })
        else { throw CLIBenchError("c.mul or c.mulj missing from the C example plugin") }
        typealias Mul = @convention(c) (Int64, Int64) -> Int64
        let direct = unsafeBitCast(mul.definition!.pointee.fn!, to: Mul.self)
        let kwargsText = #"{"a":6,"b":7}"#
        let kwargs = try JSONValue.parse(kwargsText)
        func perCall(_ n: Int, _ body: () throws -> Void) rethrows -> Double {
            for _ in 0..<(n / 10) { try body() }  // warm up
            var best = Double.infinity
            for _ in 0..<3 {
                let t0 = now()
                for _ in 0..<n { try body() }
                best = min(best, (now() - t0) / Double(n))
            }
            return best * 1e9
        }
        let n = quick ? 200_000 : 2_000_000
        var sink: Int64 = 0
        let a = perCall(n) { sink &+= direct(6, 7) }
        var last = CallOutcome.failure("")
        let b = try perCall(n) { last = typed.call(try typed.bind(kwargs)) }
        precondition(last == .success("42"), "c.mul through libffi gave \(last)")
        var bound = try typed.bind(kwargs)
        let bindOnly = try perCall(n) { bound = try typed.bind(kwargs) }
        let callOnly = perCall(n) { last = typed.call(bound) }
        let parseOnly = try perCall(n) { _ = try JSONValue.parse(kwargsText) }
        let bText = try perCall(n) { last = typed.call(try typed.bind(json: kwargsText)) }
        // Both job kinds as the worker pool runs them: on a plugin thread, awaited by a Swift task.
        let threads = PluginThreadPool(size: 2)
        let m = quick ? 5_000 : 50_000
        func perAsyncCall(_ body: () async throws -> Void) async rethrows -> Double {
            for _ in 0..<(m / 10) { try await body() }
            var best = Double.infinity
            for _ in 0..<3 {
                let t0 = now()
                for _ in 0..<m { try await body() }
                best = min(best, (now() - t0) / Double(m))
            }
            return best * 1e9
        }
        let typedPool = try await perAsyncCall {
            let invocation = TypedInvocation()
            typed.start(try typed.bind(json: kwargsText), on: threads, reportingTo: invocation)
            last = await invocation.outcome() ?? .failure("abandoned")
        }
        precondition(last == .success("42"))
        let jsonPool = await perAsyncCall {
            let call = PluginCall(job: mulj, taskID: "bench", argsJSON: kwargsText, attempt: 1, hooks: CallHooks())
            call.start(on: threads)
            last = await call.outcome() ?? .failure("cancelled")
        }
        precondition(last == .success("42"), "c.mulj gave \(last)")
        threads.shutdown()
        func ns(_ x: Double) -> String { String(format: "%.0f ns", x) }
        print("(a) direct C call of c.mul's function: \(ns(a)) per call (sink \(sink & 1))")
        print(
            "(b) libffi: bind parsed kwargs + ffi_call + result to JSON: \(ns(b)) per call (target well under 1000 ns)")
        print("    of which binding \(ns(bindOnly)), ffi_call + result to JSON \(ns(callOnly))")
        print(
            "    libffi from kwargs JSON text (parse + bind + ffi_call + result): \(ns(bText)) per call (JSONValue.parse alone \(ns(parseOnly)))"
        )
        print(
            "(c) on a plugin thread, awaited as the worker pool does: typed c.mul \(ns(typedPool)), JSON c.mulj through PluginCall \(ns(jsonPool)) per call"
        )
        print(
            String(
                format:
                    "    typed/JSON overhead ratio: %.2f on a plugin thread (target <= 2); call alone (b)/(c JSON) %.3f",
                typedPool / jsonPool, b / jsonPool))
    } catch {
        print("typed call benchmark failed: \(error)")
    }
}

struct CLIBenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

// MARK: in-process engine on memory:

func noopRegistry() throws -> JobRegistry {
    let registry = JobRegistry()
    registry.register(try PluginLoader().load(path: pluginsRoot + "/examples/c/libexamples_c.so"))
    return registry
}

func runPool(
    store: any TaskStore, registry: JobRegistry, concurrency: Int, processes: WorkerPool.ProcessOptions? = nil,
    until done: @escaping @Sendable (WorkerPool) async -> Bool
) async throws -> Double {
    var logger = Logger(label: "bench")
    logger.logLevel = .warning
    let pool = WorkerPool(
        store: store, registry: registry,
        options: .init(concurrentTasks: concurrency, drainTimeout: 1, processes: processes),
        logger: logger)
    let group = ServiceGroup(configuration: .init(services: [.init(service: pool)], logger: logger))
    let t0 = now()
    var elapsed = 0.0
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        while !(await done(pool)) { try await Task.sleep(for: .milliseconds(2)) }
        elapsed = now() - t0
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
    }
    return elapsed
}

if wanted("memory") {
    section("engine on memory: c.noop, --concurrent-tasks 16, one process")
    do {
        let n = quick ? 20_000 : 200_000
        let store = MemoryTaskStore()
        let t0 = now()
        var i = 0
        while i < n {
            let chunk = min(10_000, n - i)
            _ = try await store.enqueue((0..<chunk).map { _ in NewTask(name: "c.noop") })
            i += chunk
        }
        let queued = now() - t0
        let elapsed = try await runPool(store: store, registry: try noopRegistry(), concurrency: 16) {
            $0.processedCount >= n
        }
        print("queued \(n) tasks: \(rate(n, queued)); processed: \(rate(n, elapsed)) (target 200,000/s)")

        // The store alone, as a busy host drives it: claim 64, finish them and claim 64 more, on one thread.
        let alone = MemoryTaskStore()
        for _ in 0..<(n / 10_000) { _ = try await alone.enqueue((0..<10_000).map { _ in NewTask(name: "c.noop") }) }
        let request = ClaimRequest(
            worker: "bench:1", node: "bench", queues: nil, jobs: nil, limit: 64, leaseSeconds: 30)
        let s0 = now()
        var batch = try await alone.claim(request)
        var done = 0
        while !batch.isEmpty {
            let outcomes = batch.map { TaskOutcome(id: $0.id, worker: "bench:1", .success(result: "null")) }
            done += outcomes.count
            batch = try await alone.finish(outcomes, thenClaim: request)
        }
        print("  the memory store alone (claim and finish in batches of 64, one thread): \(rate(done, now() - s0))")
    } catch {
        print("memory benchmark failed: \(error)")
    }
}

// MARK: Redis, in-process host on the make-bench redis-server

/// From INFO commandstats: the commands the server ran (scripts' inner calls included), and the
/// microseconds it spent running scripts (their inner calls included).
func redisCommandCount(_ client: RedisClient) async throws -> (commands: Int, scriptMicros: Int) {
    let text = try await client.send(["INFO", "commandstats"]).string ?? ""
    func number(after key: String, in line: Substring) -> Int {
        guard let range = line.range(of: key) else { return 0 }
        return Int(line[range.upperBound...].prefix { $0.isNumber }) ?? 0
    }
    // Lines end in "\r\n", a single Character in Swift: split on any newline.
    var commands = 0
    var scripts = 0
    for line in text.split(whereSeparator: \.isNewline) {
        commands += number(after: "calls=", in: line)
        if line.hasPrefix("cmdstat_evalsha:") || line.hasPrefix("cmdstat_eval:") || line.hasPrefix("cmdstat_fcall:") {
            scripts += number(after: "usec=", in: line)
        }
    }
    return (commands, scripts)
}

if wanted("redis") {
    section("redis store, c.noop, --concurrent-tasks 16, one host in this process")
    if let base = ProcessInfo.processInfo.environment["PQ_TEST_REDIS_URL"],
        case .redis(var url) = try StoreURL(parsing: base)
    {
        do {
            url.namespace = "bench\(getpid())"
            let store = try await RedisTaskStore.connect(url: url)
            let n = quick ? 5_000 : 50_000
            let commandsBefore = try await redisCommandCount(store.client)
            let tripsBefore = store.client.statistics.roundTrips
            let t0 = now()
            var i = 0
            while i < n {
                let chunk = min(1_000, n - i)
                _ = try await store.enqueue((0..<chunk).map { _ in NewTask(name: "c.noop") })
                i += chunk
            }
            let queued = now() - t0
            let tripsQueued = store.client.statistics.roundTrips
            let commandsQueued = try await redisCommandCount(store.client)
            let cpu0 = clock()
            let elapsed = try await runPool(store: store, registry: try noopRegistry(), concurrency: 16) {
                $0.processedCount >= n
            }
            let cpu = Double(clock() - cpu0) / Double(CLOCKS_PER_SEC)
            let commandsAfter = try await redisCommandCount(store.client)
            let tripsAfter = store.client.statistics.roundTrips
            print("queued \(n) tasks: \(rate(n, queued)); processed: \(rate(n, elapsed)) (target 20,000/s)")
            print(String(format: "host CPU per task while processing: %.1f µs (target < 50 µs)", cpu / Double(n) * 1e6))
            print(
                String(
                    format:
                        "Redis round trips per task: queue %.3f, process %.3f; server commands per task (commandstats, script calls included): queue %.1f, process %.1f",
                    Double(tripsQueued - tripsBefore) / Double(n), Double(tripsAfter - tripsQueued) / Double(n),
                    Double(commandsQueued.commands - commandsBefore.commands) / Double(n),
                    Double(commandsAfter.commands - commandsQueued.commands) / Double(n)))
            print(
                String(
                    format: "Redis server time in scripts per task: queue %.1f µs, process %.1f µs",
                    Double(commandsQueued.scriptMicros - commandsBefore.scriptMicros) / Double(n),
                    Double(commandsAfter.scriptMicros - commandsQueued.scriptMicros) / Double(n)))

            // Latency on an idle host: one task at a time, queue time to end time as the store records them.
            let samples = quick ? 50 : 300
            let latencyStore = try await RedisTaskStore.connect(url: url)
            for pause in [0, 5] {
                let collected = Mutex<[Double]>([])
                let parts = Mutex<[[Double]]>([[], []])
                _ = try await runPool(store: store, registry: try noopRegistry(), concurrency: 16) { _ in
                    if collected.withLock({ $0.count }) >= samples { return true }
                    guard let record = try? await latencyStore.enqueue([NewTask(name: "c.noop")]).first else {
                        return true
                    }
                    let deadline = now() + 2
                    while now() < deadline {
                        if let done = try? await latencyStore.task(id: record.id), let end = done.timeEnded {
                            let started = done.timeStarted ?? end
                            collected.withLock { $0.append(end - done.timeQueued) }
                            parts.withLock {
                                $0[0].append(started - done.timeQueued)
                                $0[1].append(end - started)
                            }
                            break
                        }
                        try? await Task.sleep(for: .microseconds(200))
                    }
                    // With a pause, the next task comes to a host (and CPUs) that settled, as in the sqlite section.
                    if pause > 0 { try? await Task.sleep(for: .milliseconds(pause)) }
                    return false
                }
                let latencies = collected.withLock { $0 }
                let when = pause == 0 ? "tasks one after another" : "\(pause) ms pause between tasks"
                print(
                    "queue→end latency, idle host, \(when): p50 \(ms(percentile(latencies, 0.5))), p99 \(ms(percentile(latencies, 0.99))) (target p50 < 1 ms)"
                )
                let split = parts.withLock { $0 }
                print(
                    "  p50 of its parts: queued→started \(ms(percentile(split[0], 0.5))) (enqueue, change message, claim sent), started→ended \(ms(percentile(split[1], 0.5))) (claim script, hand-off, run)"
                )
            }
            await latencyStore.close()
            await store.close()

            // One and two `pq serve` processes on one Redis, from their start to the last task's end.
            for hosts in [1, 2] {
                var hostURL = url
                hostURL.namespace = "bench\(getpid())h\(hosts)"
                let hostStore = try await RedisTaskStore.connect(url: hostURL)
                var queuedCount = 0
                while queuedCount < n {
                    let chunk = min(1_000, n - queuedCount)
                    _ = try await hostStore.enqueue((0..<chunk).map { _ in NewTask(name: "c.noop") })
                    queuedCount += chunk
                }
                let env = [
                    "PQ_STORE": hostURL.description, "PQ_TASK_PATHS": "examples.*", "PQ_PLUGINS_DIR": pluginsRoot,
                ]
                let h0 = now()
                let processes = try (0..<hosts).map { _ in try startHost(env: env) }
                // Nothing waits or runs: every task ended.
                while now() - h0 < 300 {
                    try await Task.sleep(for: .milliseconds(5))
                    if try await hostStore.queueSizes().isEmpty { break }
                }
                let elapsed = now() - h0
                for host in processes {
                    kill(host.processIdentifier, SIGTERM)
                    host.waitUntilExit()
                }
                print(
                    "\(hosts) pq serve process\(hosts == 1 ? "" : "es") on one Redis: \(n) tasks processed at \(rate(n, elapsed)) including start-up"
                )
                await hostStore.close()
            }
        } catch {
            print("redis benchmark failed: \(error)")
        }
    } else {
        print("skipped: PQ_TEST_REDIS_URL is not set (make bench starts a redis-server through scripts/with-redis.sh)")
    }
}

// MARK: SQLite through bin/pq

if wanted("sqlite") {
    section("engine on sqlite: durable (every acknowledged commit synced), c.noop")
    let dir = NSTemporaryDirectory() + "pq-bench-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let storeURL = "sqlite:\(dir)/bench.sqlite"
    let env = ["PQ_STORE": storeURL, "PQ_TASK_PATHS": "examples.*", "PQ_PLUGINS_DIR": pluginsRoot]
    do {
        let n = quick ? 5_000 : 50_000
        let lines = Data(String(repeating: "{}\n", count: n).utf8)
        let t0 = now()
        let (status, out) = try runProcess(["submit", "c.noop", "--batch", "-"], env: env, stdin: lines)
        let submitTime = now() - t0
        precondition(status == 0, "pq submit --batch failed")
        precondition(out.split(separator: UInt8(ascii: "\n")).count == n)
        print("pq submit --batch of \(n) tasks (whole process): \(rate(n, submitTime)) queued (target 20,000/s)")

        let store = try SQLiteTaskStore(path: "\(dir)/bench.sqlite")
        let h0 = now()
        let host = try startHost(env: env)
        // Poll gently, this process must not slow the host: first the last task queued (the host
        // takes them in queue order) by id, then the count of what is left, which scans.
        let lastID = String(decoding: out.split(separator: UInt8(ascii: "\n")).last ?? [], as: UTF8.self)
        while now() - h0 < 300 {
            if let last = try await store.task(id: lastID), last.status.isReady { break }
            try await Task.sleep(for: .milliseconds(2))
        }
        var left = n
        while left > 0 && now() - h0 < 300 {
            let sizes = try await store.queueSizes()
            left = sizes.reduce(0) { $0 + $1.queued + $1.started + $1.retry + $1.delayed }
            if left > 0 { try await Task.sleep(for: .milliseconds(2)) }
        }
        let processTime = now() - h0
        print("one host processed \(n) queued tasks: \(rate(n, processTime)) including host start-up (target 10,000/s)")

        // Latency on the now idle host: enqueue one task from this process, wait for its end.
        var latencies: [Double] = []
        // Where the time goes, from the times the store records: submit to started (a host sees a
        // commit before the submitter's sync ends), started to ended, ended to seen here; and when
        // the enqueue was acknowledged.
        var phases: [[Double]] = [[], [], [], []]
        let wake = Wakeup()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { for await _ in store.changes() { wake.signal() } }
            for _ in 0..<(quick ? 50 : 300) {
                let t = now()
                let id = try await store.enqueue([NewTask(name: "c.noop")])[0].id
                let enqueued = now()
                while true {
                    if let task = try await store.task(id: id), TaskStatus.readyStates.contains(task.status) {
                        let seen = now()
                        phases[0].append(enqueued - t)
                        phases[1].append((task.timeStarted ?? seen) - t)
                        phases[2].append((task.timeEnded ?? seen) - (task.timeStarted ?? seen))
                        phases[3].append(seen - (task.timeEnded ?? seen))
                        break
                    }
                    await wake.wait(timeout: 0.05)
                }
                latencies.append(now() - t)
                try await Task.sleep(for: .milliseconds(5))
            }
            group.cancelAll()
        }
        print(
            "submit→result latency between processes, idle host: p50 \(ms(percentile(latencies, 0.5))), p99 \(ms(percentile(latencies, 0.99))) (target p50 < 2 ms)"
        )
        print(
            "  p50 of its parts: submit→started \(ms(percentile(phases[1], 0.5))), started→ended \(ms(percentile(phases[2], 0.5))), ended→seen \(ms(percentile(phases[3], 0.5))); the enqueue is acknowledged (synced) after \(ms(percentile(phases[0], 0.5)))"
        )
        kill(host.processIdentifier, SIGTERM)
        host.waitUntilExit()
        await store.close()
    } catch {
        print("sqlite benchmark failed: \(error)")
    }
    try? FileManager.default.removeItem(atPath: dir)
}

// MARK: isolation

/// The example C plugin as a process-isolated host knows it: loaded by a child, described here.
func isolatedNoopRegistry() throws -> JobRegistry {
    let registry = JobRegistry()
    let loader = IsolatedPluginLoader(options: .init(executable: pq, trustAll: true))
    registry.register(try loader.load(paths: [pluginsRoot + "/examples/c/libexamples_c.so"])[0].get())
    return registry
}

/// The children of a process (its worker processes), from every process's stat in /proc.
func childPIDs(of pid: Int32) -> [Int32] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return names.compactMap { name -> Int32? in
        guard let child = Int32(name), let stat = try? String(contentsOfFile: "/proc/\(name)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 1 && Int32(fields[1]) == pid ? child : nil
    }
}

func residentMiB(pid: Int32) -> Double {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/statm", encoding: .utf8) else { return 0 }
    return (Double(text.split(separator: " ")[1]) ?? 0) * Double(sysconf(Int32(_SC_PAGESIZE))) / 1_048_576
}

if wanted("isolation") {
    section("isolation: process and thread mode side by side, runs alternating")
    do {
        // Memory store, one process: the pool's own host with worker processes, or its threads.
        let n = quick ? 20_000 : 200_000
        var rates: [String: [Double]] = ["thread": [], "process": []]
        for round in 0..<(quick ? 1 : 3) {
            for mode in (round % 2 == 0 ? ["thread", "process"] : ["process", "thread"]) {
                let store = MemoryTaskStore()
                for _ in 0..<(n / 10_000) {
                    _ = try await store.enqueue((0..<10_000).map { _ in NewTask(name: "c.noop") })
                }
                let process = mode == "process"
                let elapsed = try await runPool(
                    store: store, registry: process ? try isolatedNoopRegistry() : try noopRegistry(), concurrency: 16,
                    processes: process ? .init(workers: 2, executable: pq, checkTrust: false) : nil
                ) { $0.processedCount >= n }
                rates[mode]!.append(Double(n) / elapsed)
            }
        }
        func line(_ mode: String, _ target: String) -> String {
            let r = rates[mode]!.sorted()
            return
                "\(mode): median \(String(format: "%.0f/s", r[r.count / 2])) (runs: \(r.map { String(format: "%.0f", $0) }.joined(separator: ", "))) (target \(target))"
        }
        print("memory store, c.noop, --concurrent-tasks 16, \(n) tasks, one process; process mode with --workers 2")
        print("  " + line("thread", "200,000/s"))
        print("  " + line("process", "100,000/s"))

        // SQLite through bin/pq serve in each mode: processed, idle latency, crash, replacement, memory.
        let dir = NSTemporaryDirectory() + "pq-bench-iso-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var processed: [String: [Double]] = ["thread": [], "process": []]
        var latency: [String: [Double]] = ["thread": [], "process": []]
        var idleRSS: [String: String] = [:]
        var crash: [Double] = []
        var replacement: [Double] = []
        let m = quick ? 5_000 : 50_000
        for round in 0..<(quick ? 1 : 3) {
            for mode in (round % 2 == 0 ? ["thread", "process"] : ["process", "thread"]) {
                let path = "\(dir)/\(mode)-\(round).sqlite"
                let env = [
                    "PQ_STORE": "sqlite:" + path, "PQ_TASK_PATHS": "examples.*", "PQ_PLUGINS_DIR": pluginsRoot,
                    "PQ_ISOLATION": mode,
                    "PQ_WORKERS": "2",
                ]
                let (status, out) = try runProcess(
                    ["submit", "c.noop", "--batch", "-"], env: env,
                    stdin: Data(String(repeating: "{}\n", count: m).utf8))
                precondition(status == 0, "pq submit --batch failed")
                let lastID = String(decoding: out.split(separator: UInt8(ascii: "\n")).last ?? [], as: UTF8.self)
                let store = try SQLiteTaskStore(path: path)
                let h0 = now()
                let host = try startHost(env: env)
                while now() - h0 < 300 {
                    if let last = try await store.task(id: lastID), last.status.isReady { break }
                    try await Task.sleep(for: .milliseconds(2))
                }
                processed[mode]!.append(Double(m) / (now() - h0))
                // Idle latency, one task at a time from this process.
                let wake = Wakeup()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { for await _ in store.changes() { wake.signal() } }
                    for _ in 0..<(quick ? 30 : 150) {
                        let t = now()
                        let id = try await store.enqueue([NewTask(name: "c.noop")])[0].id
                        while true {
                            if let task = try await store.task(id: id), task.status.isReady { break }
                            await wake.wait(timeout: 0.05)
                        }
                        latency[mode]!.append(now() - t)
                        try await Task.sleep(for: .milliseconds(5))
                    }
                    if mode == "process" {
                        // A crash: from the queueing of c.crash to its FAILURE in the store.
                        for _ in 0..<3 {
                            let t = now()
                            let id = try await store.enqueue([NewTask(name: "c.crash")])[0].id
                            while now() - t < 10 {
                                if let task = try await store.task(id: id), task.status.isReady {
                                    crash.append((task.timeEnded ?? now()) - t)
                                    break
                                }
                                await wake.wait(timeout: 0.05)
                            }
                            try await Task.sleep(for: .milliseconds(300))
                        }
                    }
                    group.cancelAll()
                }
                try await Task.sleep(for: .milliseconds(500))
                let children = childPIDs(of: host.processIdentifier)
                let hostRSS = residentMiB(pid: host.processIdentifier)
                let workerRSS = children.map { residentMiB(pid: $0) }
                idleRSS[mode] =
                    String(format: "host %.1f MiB", hostRSS)
                    + (workerRSS.isEmpty
                        ? ""
                        : ", workers " + workerRSS.map { String(format: "%.1f", $0) }.joined(separator: " + ") + " MiB")
                kill(host.processIdentifier, SIGTERM)
                host.waitUntilExit()
                await store.close()
            }
        }
        // Redis: one host in this process, in each mode.
        var redisRates: [String: [Double]] = ["thread": [], "process": []]
        if let text = ProcessInfo.processInfo.environment["PQ_TEST_REDIS_URL"],
            case .redis(var url)? = try? StoreURL(parsing: text)
        {
            let r = quick ? 5_000 : 30_000
            for round in 0..<(quick ? 1 : 2) {
                for mode in (round % 2 == 0 ? ["thread", "process"] : ["process", "thread"]) {
                    url.namespace = "benchiso\(getpid())\(mode)\(round)"
                    let store = try await RedisTaskStore.connect(url: url)
                    var i = 0
                    while i < r {
                        _ = try await store.enqueue((0..<1_000).map { _ in NewTask(name: "c.noop") })
                        i += 1_000
                    }
                    let process = mode == "process"
                    let elapsed = try await runPool(
                        store: store, registry: process ? try isolatedNoopRegistry() : try noopRegistry(),
                        concurrency: 16,
                        processes: process ? .init(workers: 2, executable: pq, checkTrust: false) : nil
                    ) { $0.processedCount >= r }
                    redisRates[mode]!.append(Double(r) / elapsed)
                    await store.close()
                }
            }
        }

        // Replacement workers: spawn → ready, measured by a pool in this process after each crash.
        let store = MemoryTaskStore()
        let registry = try isolatedNoopRegistry()
        var logger = Logger(label: "bench")
        logger.logLevel = .critical
        let pool = WorkerPool(
            store: store, registry: registry,
            options: .init(
                concurrentTasks: 2, drainTimeout: 1, processes: .init(workers: 1, executable: pq, checkTrust: false)),
            logger: logger)
        let group = ServiceGroup(configuration: .init(services: [.init(service: pool)], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            for _ in 0..<5 {
                let id = try await store.enqueue([NewTask(name: "c.crash")])[0].id
                let t = now()
                while now() - t < 10, (try await store.task(id: id))?.status.isReady != true {
                    try await Task.sleep(for: .milliseconds(1))
                }
                let ok = try await store.enqueue([NewTask(name: "c.noop")])[0].id
                while now() - t < 10, (try await store.task(id: ok))?.status.isReady != true {
                    try await Task.sleep(for: .milliseconds(1))
                }
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        replacement = Array(pool.workerReadyTimes.dropFirst())
        func med(_ v: [Double]) -> Double { v.isEmpty ? 0 : v.sorted()[v.count / 2] }
        print("sqlite through bin/pq serve (--concurrent-tasks 16, --workers 2), \(m) queued c.noop, incl. start-up:")
        for mode in ["thread", "process"] {
            print(
                "  \(mode): processed median \(String(format: "%.0f/s", med(processed[mode]!))) (runs: \(processed[mode]!.map { String(format: "%.0f", $0) }.joined(separator: ", "))); idle submit→result p50 \(ms(percentile(latency[mode]!, 0.5))), p99 \(ms(percentile(latency[mode]!, 0.99))); idle RSS \(idleRSS[mode] ?? "?")"
            )
        }
        let tp = med(processed["thread"]!)
        let pp = med(processed["process"]!)
        print(
            String(
                format:
                    "  process/thread throughput: %.2f (target >= 0.90); p50 added by the process hop: %.3f ms (target <= 0.1 ms)",
                pp / tp, (percentile(latency["process"]!, 0.5) - percentile(latency["thread"]!, 0.5)) * 1000))
        if !redisRates["thread"]!.isEmpty {
            print("redis, one host in this process (--concurrent-tasks 16, --workers 2), c.noop:")
            for mode in ["thread", "process"] {
                print(
                    "  \(mode): processed median \(String(format: "%.0f/s", med(redisRates[mode]!))) (runs: \(redisRates[mode]!.map { String(format: "%.0f", $0) }.joined(separator: ", ")))"
                )
            }
            print(
                String(
                    format: "  process/thread throughput: %.2f (target >= 0.90)",
                    med(redisRates["process"]!) / med(redisRates["thread"]!)))
        }
        print(
            "  crash (c.crash, SIGSEGV) → FAILURE stored: \(crash.map { ms($0) }.joined(separator: ", ")) (target < 1 s)"
        )
        print(
            "  replacement worker, spawn → ready (plugins loaded): \(replacement.map { ms($0) }.joined(separator: ", ")) (target < 50 ms)"
        )
    } catch {
        print("isolation benchmark failed: \(error)")
    }
}

// MARK: hot reload

func residentMemory() -> Double { residentMiB(pid: getpid()) }

if wanted("reload") {
    section("hot reload")
    do {
        let work = NSTemporaryDirectory() + "pq-bench-reload-\(getpid())"
        let pkg = work + "/plugins/bench/a"
        try FileManager.default.createDirectory(atPath: pkg, withIntermediateDirectories: true)
        let source = """
            #include "pq_plugin.h"
            static void version_run(const pq_call *call) { call->complete(call, 1, "\\"" VERSION "\\""); }
            static const pq_job_def jobs[] = {{ "rl.version", "version", NULL, version_run, NULL, NULL, NULL }};
            static const pq_plugin plugin = { PQ_ABI_VERSION, sizeof(pq_plugin), "rl", VERSION, "c", 1, jobs, NULL };
            const pq_plugin *pq_plugin_entry(uint32_t v) { return v == PQ_ABI_VERSION ? &plugin : NULL; }
            """
        try source.write(toFile: work + "/rl.c", atomically: true, encoding: .utf8)
        var builds: [String] = []
        for v in ["a", "b"] {
            let out = work + "/lib-\(v).so"
            let cc = Process()
            cc.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            cc.arguments = [
                "cc", "-shared", "-fPIC", "-O1", "-I", root + "/Sources/CPQPlugin/include", "-DVERSION=\"\(v)\"", "-o",
                out, work + "/rl.c",
            ]
            try cc.run()
            cc.waitUntilExit()
            builds.append(out)
        }
        let target = pkg + "/librl.so"
        try FileManager.default.copyItem(atPath: builds[0], toPath: target)
        let registry = JobRegistry()
        let catalog = PluginCatalog(
            taskPaths: ["bench.*"], root: work + "/plugins", loader: PluginLoader(), registry: registry)
        try catalog.rescan()
        let store = MemoryTaskStore()
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let pool = WorkerPool(
            store: store, registry: registry, options: .init(concurrentTasks: 4, drainTimeout: 1), logger: logger)
        let watcher = PluginWatcher(catalog: catalog, options: .init(settle: 0.005), logger: logger) { _ in pool.poke()
        }
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: pool), .init(service: watcher)], logger: logger))
        var reloadTimes: [Double] = []
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await Task.sleep(for: .milliseconds(100))
            for i in 1...(quick ? 10 : 50) {
                let version = i % 2 == 0 ? "a" : "b"
                let tmp = target + ".tmp"
                try FileManager.default.copyItem(atPath: builds[i % 2 == 0 ? 0 : 1], toPath: tmp)
                let t0 = now()
                rename(tmp, target)
                while now() - t0 < 10 {
                    let id = try await store.enqueue([NewTask(name: "rl.version")])[0].id
                    var result: String?
                    while result == nil {
                        if let t = try await store.task(id: id), TaskStatus.readyStates.contains(t.status) {
                            result = t.result ?? ""
                        } else {
                            try await Task.sleep(for: .microseconds(200))
                        }
                    }
                    if result == "\"\(version)\"" { break }
                }
                reloadTimes.append(now() - t0)
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        print(
            "rename of a new .so → first task served by it (\(reloadTimes.count) reloads): p50 \(ms(percentile(reloadTimes, 0.5))), p99 \(ms(percentile(reloadTimes, 0.99))) (target p50 < 100 ms)"
        )
        try? FileManager.default.removeItem(atPath: work)

        let loader = PluginLoader()
        let swiftPlugin = pluginsRoot + "/examples/swift/libpq_examples.so"
        _ = try loader.load(path: swiftPlugin)
        let before = residentMemory()
        let reloads = quick ? 50 : 200
        for _ in 0..<reloads { _ = try loader.load(path: swiftPlugin) }
        let after = residentMemory()
        print(
            String(
                format:
                    "memory growth over %d reloads of the Swift example plugin: %.1f MiB (%.0f KiB a generation; generations are never unloaded)",
                reloads, after - before, (after - before) * 1024 / Double(reloads)))
    } catch {
        print("reload benchmark failed: \(error)")
    }
}

// MARK: periodic scheduler

func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec)
        + Double(usage.ru_stime.tv_usec) / 1e6
}

/// Runs a scheduler with 1,000 jobs (run_every 1...60 s) for `seconds`; returns CPU seconds per
/// wall second and the runs queued.
func schedulerOverhead(store: any PeriodicScheduleStore, seconds: Double) async throws -> (cpu: Double, queued: Int) {
    var logger = Logger(label: "bench")
    logger.logLevel = .warning
    let jobs = (0..<1_000).map { i in
        PeriodicScheduler.Job(
            name: "bench.periodic.\(i)", schedule: .every(seconds: Double(i % 60 + 1), anchor: 0),
            task: NewTask(name: "bench.periodic.\(i)"))
    }
    let scheduler = PeriodicScheduler(store: store, logger: logger, jobs: { jobs })
    let group = ServiceGroup(configuration: .init(services: [.init(service: scheduler)], logger: logger))
    var result = (0.0, 0)
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        try await Task.sleep(for: .milliseconds(200))  // start-up and the first pass
        let c0 = cpuSeconds()
        let t0 = now()
        let q0 = scheduler.queuedCount
        try await Task.sleep(for: .seconds(seconds))
        result = ((cpuSeconds() - c0) / (now() - t0), scheduler.queuedCount - q0)
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
    }
    return result
}

if wanted("periodic") {
    section("periodic scheduler: 1,000 jobs, run_every 1..60 s, nothing else running")
    do {
        let seconds = quick ? 2.0 : 5.0
        let memory = try await schedulerOverhead(store: MemoryTaskStore(), seconds: seconds)
        print(
            String(
                format: "memory: %.4f CPU s per wall s (%.2f%% of a core), %d runs queued in %.0f s", memory.cpu,
                memory.cpu * 100, memory.queued, seconds))
        let folder = NSTemporaryDirectory() + "pq-bench-periodic-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let sqlite = try SQLiteTaskStore(path: folder + "/pq.sqlite")
        let disk = try await schedulerOverhead(store: sqlite, seconds: seconds)
        await sqlite.close()
        try? FileManager.default.removeItem(atPath: folder)
        print(
            String(
                format: "sqlite: %.4f CPU s per wall s (%.2f%% of a core), %d runs queued in %.0f s", disk.cpu,
                disk.cpu * 100, disk.queued, seconds))
    } catch {
        print("periodic scheduler benchmark failed: \(error)")
    }
}
