// pq-bench: the figures `make bench` prints. Run from the package root after `make build`.
import Foundation
import Logging
import PQCore
import PQRedis
import ServiceLifecycle
import Synchronization

let root = FileManager.default.currentDirectoryPath
let pluginsRoot = root + "/.pq/plugins"
let pq = root + "/bin/pq"
let quick = CommandLine.arguments.contains("--quick")

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

/// Starts `bin/pq` with posix_spawn (stdout and stderr to /dev/null) and waits: the way a shell
/// would, without Foundation's Process overhead in the figure.
func spawnAndWait(_ args: [String]) -> Int32 {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    defer { posix_spawn_file_actions_destroy(&actions) }
    let argv = ([pq] + args).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    guard posix_spawn(&pid, pq, &actions, nil, argv, environ) == 0 else { return -1 }
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    return status
}

func section(_ title: String) { print("\n== \(title)") }

// MARK: plugin loading

section("plugin loading (issue 1)")
do {
    let loader = PluginLoader()
    for (label, path) in [("C plugin", pluginsRoot + "/examples/c/libexamples_c.so"), ("Swift plugin", pluginsRoot + "/examples/swift/libpq_examples.so")] {
        var times: [Double] = []
        for _ in 0..<(quick ? 5 : 20) {
            let t0 = now()
            _ = try loader.load(path: path)
            times.append(now() - t0)
        }
        print("load one \(label) (check, private copy, dlopen, validate): median \(ms(percentile(times, 0.5))), min \(ms(times.min()!))")
    }
    var cold: [Double] = []
    for _ in 0..<(quick ? 5 : 15) {
        let t0 = now()
        let status = spawnAndWait(["jobs", "--task-paths", "examples.*", "--plugins-dir", pluginsRoot])
        precondition(status == 0, "pq jobs failed")
        cold.append(now() - t0)
    }
    print("pq jobs over the example plugins, cold process: median \(ms(percentile(cold, 0.5))), min \(ms(cold.min()!)) (target < 50 ms)")
} catch {
    print("plugin benchmark failed: \(error)")
}

// MARK: in-process engine on memory:

func noopRegistry() throws -> JobRegistry {
    let registry = JobRegistry()
    registry.register(try PluginLoader().load(path: pluginsRoot + "/examples/c/libexamples_c.so"))
    return registry
}

func runPool(store: any TaskStore, registry: JobRegistry, concurrency: Int, until done: @escaping @Sendable (WorkerPool) async -> Bool) async throws -> Double {
    var logger = Logger(label: "bench")
    logger.logLevel = .warning
    let pool = WorkerPool(store: store, registry: registry, options: .init(concurrentTasks: concurrency, drainTimeout: 1), logger: logger)
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

section("engine on memory: (issue 2), c.noop, --concurrent-tasks 16, one process")
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
    let elapsed = try await runPool(store: store, registry: try noopRegistry(), concurrency: 16) { $0.processedCount >= n }
    print("queued \(n) tasks: \(rate(n, queued)); processed: \(rate(n, elapsed)) (target 200,000/s)")
} catch {
    print("memory benchmark failed: \(error)")
}

// MARK: Redis (issue 6), in-process host on the make-bench redis-server

/// Sum of `calls=` over INFO commandstats: commands the server ran, scripts' inner calls included.
func redisCommandCount(_ client: RedisClient) async throws -> Int {
    let text = try await client.send(["INFO", "commandstats"]).string ?? ""
    return text.split(separator: "\n").reduce(0) { total, line in
        guard let range = line.range(of: "calls=") else { return total }
        return total + (Int(line[range.upperBound...].prefix { $0.isNumber }) ?? 0)
    }
}

section("redis store (issue 6), c.noop, --concurrent-tasks 16, one host in this process")
if let base = ProcessInfo.processInfo.environment["PQ_TEST_REDIS_URL"], case .redis(var url) = try StoreURL(parsing: base) {
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
        let elapsed = try await runPool(store: store, registry: try noopRegistry(), concurrency: 16) { $0.processedCount >= n }
        let cpu = Double(clock() - cpu0) / Double(CLOCKS_PER_SEC)
        let commandsAfter = try await redisCommandCount(store.client)
        let tripsAfter = store.client.statistics.roundTrips
        print("queued \(n) tasks: \(rate(n, queued)); processed: \(rate(n, elapsed)) (target 20,000/s)")
        print(String(format: "host CPU per task while processing: %.1f µs (target < 50 µs)", cpu / Double(n) * 1e6))
        print(String(format: "Redis round trips per task: queue %.3f, process %.3f; server commands per task (commandstats, script calls included): queue %.1f, process %.1f",
            Double(tripsQueued - tripsBefore) / Double(n), Double(tripsAfter - tripsQueued) / Double(n),
            Double(commandsQueued - commandsBefore) / Double(n), Double(commandsAfter - commandsQueued) / Double(n)))

        // Latency on an idle host: one task at a time, queue time to end time as the store records them.
        let samples = quick ? 50 : 300
        let latencyStore = try await RedisTaskStore.connect(url: url)
        let collected = Mutex<[Double]>([])
        _ = try await runPool(store: store, registry: try noopRegistry(), concurrency: 16) { _ in
            if collected.withLock({ $0.count }) >= samples { return true }
            guard let record = try? await latencyStore.enqueue([NewTask(name: "c.noop")]).first else { return true }
            let deadline = now() + 2
            while now() < deadline {
                if let done = try? await latencyStore.task(id: record.id), let end = done.timeEnded {
                    collected.withLock { $0.append(end - done.timeQueued) }
                    break
                }
                try? await Task.sleep(for: .microseconds(200))
            }
            return false
        }
        let latencies = collected.withLock { $0 }
        print("queue→end latency, idle host: p50 \(ms(percentile(latencies, 0.5))), p99 \(ms(percentile(latencies, 0.99))) (target p50 < 1 ms)")
        await latencyStore.close()
        await store.close()
    } catch {
        print("redis benchmark failed: \(error)")
    }
} else {
    print("skipped: PQ_TEST_REDIS_URL is not set (make bench starts a redis-server through scripts/with-redis.sh)")
}

// MARK: SQLite through bin/pq

section("engine on sqlite: (issue 2), durable (WAL, synchronous=FULL), c.noop")
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
    let host = Process()
    host.executableURL = URL(fileURLWithPath: pq)
    host.arguments = ["serve", "--concurrent-tasks", "16", "--log-level", "warning"]
    var e = ProcessInfo.processInfo.environment
    for (k, v) in env { e[k] = v }
    host.environment = e
    host.standardError = FileHandle.nullDevice
    let h0 = now()
    try host.run()
    var left = n
    while left > 0 && now() - h0 < 300 {
        try await Task.sleep(for: .milliseconds(5))
        let sizes = try await store.queueSizes()
        left = sizes.reduce(0) { $0 + $1.queued + $1.started + $1.retry + $1.delayed }
    }
    let processTime = now() - h0
    print("one host processed \(n) queued tasks: \(rate(n, processTime)) including host start-up (target 10,000/s)")

    // Latency on the now idle host: enqueue one task from this process, wait for its end.
    var latencies: [Double] = []
    let wake = Wakeup()
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { for await _ in store.changes() { wake.signal() } }
        for _ in 0..<(quick ? 50 : 300) {
            let t = now()
            let id = try await store.enqueue([NewTask(name: "c.noop")])[0].id
            while true {
                if let task = try await store.task(id: id), TaskStatus.readyStates.contains(task.status) { break }
                await wake.wait(timeout: 0.05)
            }
            latencies.append(now() - t)
            try await Task.sleep(for: .milliseconds(5))
        }
        group.cancelAll()
    }
    print("submit→result latency between processes, idle host: p50 \(ms(percentile(latencies, 0.5))), p99 \(ms(percentile(latencies, 0.99))) (target p50 < 2 ms)")
    kill(host.processIdentifier, SIGTERM)
    host.waitUntilExit()
    await store.close()
} catch {
    print("sqlite benchmark failed: \(error)")
}
try? FileManager.default.removeItem(atPath: dir)
