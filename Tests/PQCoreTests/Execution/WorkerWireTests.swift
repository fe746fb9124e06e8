import Glibc
import Testing

@testable import PQCore

/// The frames a host and its workers exchange: every kind survives encoding, in any cut of the
/// byte stream, and bad input is refused instead of misread.
@Suite("Worker wire")
struct WorkerWireTests {
    static let frames: [WorkerFrame] = [
        .setup(
            WorkerSetup(
                plugins: [.init(image: "/tmp/pq-host-x/3-a.so", path: "/srv/a.so", generation: 3)], slots: 4,
                memoryLimitKB: 51_200, checkTrust: true, probe: false)),
        .call(token: 7, taskID: "abc", job: "c.echo", kwargs: #"{"s":"wörld ✓"}"#, attempt: 2, reportBegin: true),
        .cancel(token: 7),
        .ping(seq: 9),
        .drain,
        .ready(pid: 1234, failures: ["/srv/b.so: not an ELF file"]),
        .began(token: 7),
        .done(token: 7, end: .completed(.success("42"), plugin: "examples", version: "1.0")),
        .done(token: 8, end: .completed(.failure("boom"), plugin: "p", version: "2")),
        .done(token: 9, end: .refused("kwargs do not fit", plugin: "p", version: "2")),
        .done(token: 10, end: .unknownJob),
        .done(token: 11, end: .returned),
        .done(token: 12, end: .stopped),
        .log(taskID: "abc", level: 2, message: "hello"),
        .submit(parent: "abc", childID: "def", job: "c.echo", kwargs: "{}"),
        .pong(seq: 9, rssKB: 1 << 40, tasksRun: 77),
        .loading(path: "/srv/a.so"),
        .probed(json: #"{"path":"/srv/a.so"}"#),
    ]

    @Test(arguments: [1, 3, 7, 1000])
    func framesRoundTripInAnyChunking(chunk: Int) throws {
        var encoder = FrameEncoder()
        for f in Self.frames { encoder.append(f) }
        let bytes = encoder.bytes
        var decoder = FrameDecoder()
        var decoded: [WorkerFrame] = []
        var at = 0
        while at < bytes.count {
            let end = min(bytes.count, at + chunk)
            bytes[at..<end].withUnsafeBytes { decoder.append($0) }
            while let f = try decoder.next() { decoded.append(f) }
            at = end
        }
        #expect(decoded == Self.frames)
    }

    @Test func unknownKindsAndBadLengthsAreRefused() {
        var decoder = FrameDecoder()
        [UInt8]([1, 0, 0, 0, 99]).withUnsafeBytes { decoder.append($0) }
        #expect(throws: FrameError.self) { _ = try decoder.next() }
        var zero = FrameDecoder()
        [UInt8]([0, 0, 0, 0, 1]).withUnsafeBytes { zero.append($0) }
        #expect(throws: FrameError.self) { _ = try zero.next() }
        // A string that claims more bytes than its frame holds.
        var short = FrameDecoder()
        [UInt8]([6, 0, 0, 0, 16, 200, 0, 0, 0, 65]).withUnsafeBytes { short.append($0) }
        #expect(throws: FrameError.self) { _ = try short.next() }
    }

    @Test func deathsAreNamedAsTaskExceptionsSayThem() {
        #expect(WorkerSpawner.describe(status: 11).cause == "worker killed by SIGSEGV (signal 11)")
        #expect(WorkerSpawner.describe(status: 6).cause == "worker killed by SIGABRT (signal 6)")
        #expect(WorkerSpawner.describe(status: 9).signal == 9)
        let exited = WorkerSpawner.describe(status: 3 << 8)
        #expect(exited.cause == "worker exited with status 3")
        #expect(exited.exitStatus == 3)
    }

    @Test func runTableNotesRunningCallsForTheHost() throws {
        let host = try #require(RunTable(count: 8))
        let worker = try #require(RunTable(inherited: dup(host.fd)))
        let a = try #require(worker.enter(5))
        _ = try #require(worker.enter(6))
        worker.leave(a)
        #expect(host.running() == [6])
    }
}
