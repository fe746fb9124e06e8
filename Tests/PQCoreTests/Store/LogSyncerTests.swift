import Foundation
import Synchronization
import Testing

@testable import PQCore

/// The thread that syncs the SQLite log behind the writer: acknowledged writes are resumed only
/// after a sync that began after their commit, and a failed sync fails them.
@Suite("LogSyncer")
struct LogSyncerTests {
    /// A log file with some bytes in a new folder; the folder is removed after `body`.
    private func withLog(_ body: (String) throws -> Void) throws {
        let folder = try makeTempFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let log = folder.appendingPathComponent("db-wal").path
        try Data("frames".utf8).write(to: URL(fileURLWithPath: log))
        try body(log)
    }

    @Test func waitersResumeAfterTheSyncAndStopRunsThePendingOnes() throws {
        try withLog { log in
            let syncer = LogSyncer(log: log, name: "test-sync")
            let results = Mutex<[String]>([])
            for i in 1...50 {
                let ticket = syncer.request()
                syncer.whenSynced(ticket) { error in
                    results.withLock { $0.append(error.map { "\(i): \($0)" } ?? "ok") }
                }
            }
            // stop() returns only once every sync asked for ran and its waiters were resumed.
            syncer.stop()
            let seen = results.withLock { $0 }
            #expect(seen.count == 50)
            #expect(seen.allSatisfy { $0 == "ok" })
        }
    }

    @Test func aFailedSyncFailsTheWaitersWithTheFileNamed() throws {
        let log = "/tmp/pq-no-such-folder-\(UUID().uuidString)/db-wal"
        let syncer = LogSyncer(log: log, name: "test-sync")
        let result = Mutex<(any Error)??>(nil)
        let ticket = syncer.request()
        syncer.whenSynced(ticket) { error in result.withLock { $0 = .some(error) } }
        syncer.stop()
        let error = try #require(result.withLock { $0 } ?? nil)
        #expect("\(error)".contains(log))
    }

    @Test func aTicketAlreadySyncedResumesAtOnce() throws {
        try withLog { log in
            let syncer = LogSyncer(log: log, name: "test-sync")
            let first = syncer.request()
            let done = Mutex(false)
            syncer.whenSynced(first) { _ in done.withLock { $0 = true } }
            // Bounded wait for the first sync.
            let deadline = Date().addingTimeInterval(5)
            while !done.withLock({ $0 }) && Date() < deadline { usleep(1000) }
            #expect(done.withLock { $0 })
            let again = Mutex(false)
            syncer.whenSynced(first) { error in again.withLock { $0 = error == nil } }
            #expect(again.withLock { $0 })
            syncer.stop()
        }
    }
}
