import Foundation
import PQCore
import PQRedis
import Testing

enum StoreKind: String, CaseIterable, CustomTestStringConvertible {
    /// `rediss`: Redis over TLS (a private TLS server, see ``TestRedisTLS``); `cluster`: a
    /// one-node Redis Cluster (``TestRedisCluster``).
    case memory, sqlite, redis, rediss, cluster
    var testDescription: String { rawValue }
}

/// A fresh store of `kind`; SQLite stores live in a fresh temporary folder.
struct TestStore {
    let store: any TaskStore
    let folder: URL?

    init(_ kind: StoreKind) throws {
        switch kind {
        case .memory:
            store = MemoryTaskStore()
            folder = nil
        case .sqlite:
            let folder = try makeTempFolder()
            self.folder = folder
            store = try SQLiteTaskStore(path: folder.appendingPathComponent("pq.db").path)
        case .redis:
            folder = nil
            store = RedisTaskStore(url: try TestRedis.url(namespace: TestRedis.uniqueNamespace()))
        case .rediss:
            folder = nil
            store = RedisTaskStore(url: try TestRedisTLS.storeURL())
        case .cluster:
            folder = nil
            store = RedisTaskStore(url: try TestRedisCluster.url(namespace: TestRedis.uniqueNamespace()))
        }
    }

    func close() async {
        await store.close()
        if let folder { try? FileManager.default.removeItem(at: folder) }
    }
}

func makeTempFolder() throws -> URL {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("pq-store-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    return folder
}

/// Runs `body` with a fresh store and closes it afterwards.
func withStore(_ kind: StoreKind, _ body: (any TaskStore) async throws -> Void) async throws {
    let test = try TestStore(kind)
    do {
        try await body(test.store)
    } catch {
        await test.close()
        throw error
    }
    await test.close()
}

/// Waits for the next element of `iterator`, or `nil` after `timeout`.
func next(_ stream: AsyncStream<Void>, timeout: Duration) async -> Bool {
    await withTaskGroup(of: Bool.self) { group in
        group.addTask {
            var iterator = stream.makeAsyncIterator()
            return await iterator.next() != nil
        }
        group.addTask {
            try? await Task.sleep(for: timeout)
            return false
        }
        let first = await group.next() ?? false
        group.cancelAll()
        return first
    }
}

let worker = "testhost:100"
let otherWorker = "testhost:200"

func claimRequest(
    limit: Int = 10, now: Double = TaskClock.now(), worker: String = worker, queues: Set<String>? = nil,
    jobs: Set<String>? = nil, lease: Double = 30
) -> ClaimRequest {
    ClaimRequest(
        worker: worker, node: "testhost", queues: queues, jobs: jobs, limit: limit, leaseSeconds: lease, now: now)
}

/// The events `body` causes, as a follower of the store sees them: read from the store's event
/// log after a cursor taken before, or, where the store keeps no log (Redis, DESIGN.md section
/// 6) or when `viaFollower` asks, through ``TaskEventLog/followEvents(after:batch:following:_:)`` started
/// before `body` (the first `count` events, within 10 s).
func recordedEvents(
    _ store: any TaskStore, count: Int, viaFollower: Bool = false, during body: () async throws -> Void
) async throws -> [TaskEvent] {
    guard viaFollower || store is RedisTaskStore else {
        let start = try await store.lastEventCursor()
        try await body()
        return try await store.events(after: start, limit: 1_000)
    }
    // The cursor is taken before `body`, so a log follower misses nothing however late it starts.
    let start: Int64? = store.keepsEventLog ? try await store.lastEventCursor() : nil
    return try await withThrowingTaskGroup(of: [TaskEvent]?.self) { group in
        group.addTask {
            var seen: [TaskEvent] = []
            try await store.followEvents(after: start) { event in
                seen.append(event)
                return seen.count < count
            }
            return seen
        }
        try await Task.sleep(for: .milliseconds(300))  // the subscription is made
        try await body()
        group.addTask {
            try await Task.sleep(for: .seconds(10))
            return nil
        }
        var first: [TaskEvent]? = nil
        for try await result in group {
            first = result
            break
        }
        group.cancelAll()
        return first ?? []
    }
}
