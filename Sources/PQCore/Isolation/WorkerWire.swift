import Glibc

/// The frames a host and its worker processes exchange over their socket (DESIGN.md section 12).
///
/// A frame is a little-endian `u32` length (of what follows), a one-byte kind and its fields:
/// `u32`/`u64` integers and strings as a `u32` length and UTF-8 bytes. Frames are small and
/// written back to back, so one `write` carries every call (or outcome) that piled up while the
/// previous one was in flight: batching comes from the writers, not from a timer.
enum WorkerFrame: Equatable, Sendable {
    // Host to worker.
    /// The plugins to load, then `slots` threads to run calls on (the first frame a worker gets).
    case setup(WorkerSetup)
    /// Run a job. `reportBegin`: say when it starts (the host times it out from then).
    case call(token: UInt32, taskID: String, job: String, kwargs: String, attempt: UInt32, reportBegin: Bool)
    /// Ask a running call to stop (its `cancel`, `is_cancelled`).
    case cancel(token: UInt32)
    /// Are you there? Answered by `pong`.
    case ping(seq: UInt32)
    /// Take no more calls; give back the ones not started, finish the rest, then exit 0.
    case drain

    // Worker to host.
    /// The worker loaded its plugins and takes calls; `failures` name what did not load.
    case ready(pid: Int32, failures: [String])
    /// A call began on a thread (only when asked with `reportBegin`).
    case began(token: UInt32)
    /// A call ended.
    case done(token: UInt32, end: WorkerCallEnd)
    /// A job's log line.
    case log(taskID: String, level: UInt8, message: String)
    /// A job queued a child task (the worker checked it and gave it `childID`).
    case submit(parent: String, childID: String, job: String, kwargs: String)
    /// The answer to `ping`, with the worker's resident memory and the calls it ran.
    case pong(seq: UInt32, rssKB: UInt64, tasksRun: UInt32)
    /// Probe mode: about to load this file (so a crash while loading names it).
    case loading(path: String)
    /// Probe mode: what loading one file gave (JSON, see ``PluginProbe``).
    case probed(json: String)

    fileprivate var kind: UInt8 {
        switch self {
        case .setup: 1
        case .call: 2
        case .cancel: 3
        case .ping: 4
        case .drain: 5
        case .ready: 10
        case .began: 11
        case .done: 12
        case .log: 13
        case .submit: 14
        case .pong: 15
        case .loading: 16
        case .probed: 17
        }
    }
}

/// How a call ended in a worker.
enum WorkerCallEnd: Equatable, Sendable {
    /// The job completed: a result or an error (retry rules apply), on this plugin generation.
    case completed(CallOutcome, plugin: String, version: String)
    /// Refused before the job was called (kwargs that do not fit a typed signature): fail, no retry.
    case refused(String, plugin: String, version: String)
    /// The worker has no such job (it was unregistered): give the task back.
    case unknownJob
    /// Not started (the worker drains): run it elsewhere, uncharged.
    case returned
    /// Not started: it was cancelled before it began.
    case stopped
}

/// The first frame of a worker: what to load and how many threads to run.
struct WorkerSetup: Equatable, Sendable {
    /// One plugin generation to load.
    struct Plugin: Equatable, Sendable {
        /// The file to open (a snapshot the host keeps, or the original for manifests).
        var image: String
        /// The original path, as reported in tasks and errors.
        var path: String
        /// The host's generation number for it.
        var generation: Int
    }

    var plugins: [Plugin]
    var slots: Int
    /// Resident memory (KiB) past which the worker asks to be recycled, read after each call; 0: never.
    var memoryLimitKB: UInt64 = 0
    /// Whether the trust check runs in the worker (false when the host checked the originals).
    var checkTrust: Bool
    /// Probe mode: load each plugin, report it, and exit.
    var probe: Bool
}

/// Encodes frames into one byte buffer.
struct FrameEncoder {
    private(set) var bytes: [UInt8] = []

    var isEmpty: Bool { bytes.isEmpty }

    mutating func removeFirst(_ n: Int) {
        if n >= bytes.count { bytes.removeAll(keepingCapacity: true) } else { bytes.removeFirst(n) }
    }

    mutating func append(_ frame: WorkerFrame) {
        let start = bytes.count
        bytes.append(contentsOf: [0, 0, 0, 0, frame.kind])
        switch frame {
        case .setup(let s):
            u32(UInt32(s.slots))
            u32(s.checkTrust ? 1 : 0)
            u32(s.probe ? 1 : 0)
            u64(s.memoryLimitKB)
            u32(UInt32(s.plugins.count))
            for p in s.plugins {
                string(p.image)
                string(p.path)
                u64(UInt64(p.generation))
            }
        case .call(let token, let taskID, let job, let kwargs, let attempt, let reportBegin):
            u32(token)
            string(taskID)
            string(job)
            string(kwargs)
            u32(attempt)
            u32(reportBegin ? 1 : 0)
        case .cancel(let token), .began(let token):
            u32(token)
        case .ping(let seq):
            u32(seq)
        case .drain:
            break
        case .ready(let pid, let failures):
            u32(UInt32(bitPattern: pid))
            u32(UInt32(failures.count))
            for f in failures { string(f) }
        case .done(let token, let end):
            u32(token)
            switch end {
            case .completed(.success(let text), let plugin, let version):
                bytes.append(0)
                string(text)
                string(plugin)
                string(version)
            case .completed(.failure(let text), let plugin, let version):
                bytes.append(1)
                string(text)
                string(plugin)
                string(version)
            case .refused(let text, let plugin, let version):
                bytes.append(2)
                string(text)
                string(plugin)
                string(version)
            case .unknownJob:
                bytes.append(3)
            case .returned:
                bytes.append(4)
            case .stopped:
                bytes.append(5)
            }
        case .log(let taskID, let level, let message):
            string(taskID)
            bytes.append(level)
            string(message)
        case .submit(let parent, let childID, let job, let kwargs):
            string(parent)
            string(childID)
            string(job)
            string(kwargs)
        case .pong(let seq, let rss, let tasks):
            u32(seq)
            u64(rss)
            u32(tasks)
        case .loading(let path):
            string(path)
        case .probed(let json):
            string(json)
        }
        let length = UInt32(bytes.count - start - 4)
        for i in 0..<4 { bytes[start + i] = UInt8(truncatingIfNeeded: length >> (8 * UInt32(i))) }
    }

    private mutating func u32(_ v: UInt32) {
        for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) }
    }

    private mutating func u64(_ v: UInt64) {
        for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }

    private mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { utf8 in
            u32(UInt32(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }
}

/// A frame that does not decode: the peer is not a pq host or worker of this build.
struct FrameError: Error, CustomStringConvertible {
    var description: String
}

/// Collects bytes read from a socket and cuts them into frames.
struct FrameDecoder {
    private var buffer: [UInt8] = []
    private var head = 0
    /// Frames longer than this are refused (a task's kwargs are capped far below it).
    static let maximumFrame = 256 << 20

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        if head > 0 && head == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            head = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next complete frame, or nil when more bytes are needed.
    mutating func next() throws(FrameError) -> WorkerFrame? {
        guard buffer.count - head >= 5 else { return nil }
        var length = 0
        for i in 0..<4 { length |= Int(buffer[head + i]) << (8 * i) }
        guard length >= 1, length <= Self.maximumFrame else {
            throw FrameError(description: "bad frame length \(length)")
        }
        guard buffer.count - head >= 4 + length else { return nil }
        var reader = FieldReader(bytes: buffer, at: head + 5, end: head + 4 + length)
        let frame = try reader.frame(kind: buffer[head + 4])
        head += 4 + length
        if head > 1 << 20 && head * 2 > buffer.count {
            buffer.removeFirst(head)
            head = 0
        }
        return frame
    }
}

private struct FieldReader {
    let bytes: [UInt8]
    var at: Int
    let end: Int

    mutating func u8() throws(FrameError) -> UInt8 {
        guard at + 1 <= end else { throw FrameError(description: "frame too short") }
        defer { at += 1 }
        return bytes[at]
    }

    mutating func u32() throws(FrameError) -> UInt32 {
        guard at + 4 <= end else { throw FrameError(description: "frame too short") }
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(bytes[at + i]) << (8 * UInt32(i)) }
        at += 4
        return v
    }

    mutating func u64() throws(FrameError) -> UInt64 {
        guard at + 8 <= end else { throw FrameError(description: "frame too short") }
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(bytes[at + i]) << (8 * UInt64(i)) }
        at += 8
        return v
    }

    mutating func string() throws(FrameError) -> String {
        let n = Int(try u32())
        guard at + n <= end else { throw FrameError(description: "string past the frame's end") }
        defer { at += n }
        return String(decoding: bytes[at..<(at + n)], as: UTF8.self)
    }

    mutating func frame(kind: UInt8) throws(FrameError) -> WorkerFrame {
        switch kind {
        case 1:
            let slots = Int(try u32())
            let checkTrust = try u32() != 0
            let probe = try u32() != 0
            let memoryLimitKB = try u64()
            let count = Int(try u32())
            var plugins: [WorkerSetup.Plugin] = []
            for _ in 0..<count {
                plugins.append(.init(image: try string(), path: try string(), generation: Int(try u64())))
            }
            return .setup(
                WorkerSetup(
                    plugins: plugins, slots: slots, memoryLimitKB: memoryLimitKB, checkTrust: checkTrust, probe: probe))
        case 2:
            return .call(
                token: try u32(), taskID: try string(), job: try string(), kwargs: try string(), attempt: try u32(),
                reportBegin: try u32() != 0)
        case 3: return .cancel(token: try u32())
        case 4: return .ping(seq: try u32())
        case 5: return .drain
        case 10:
            let pid = Int32(bitPattern: try u32())
            let count = Int(try u32())
            var failures: [String] = []
            for _ in 0..<count { failures.append(try string()) }
            return .ready(pid: pid, failures: failures)
        case 11: return .began(token: try u32())
        case 12:
            let token = try u32()
            switch try u8() {
            case 0:
                return .done(
                    token: token, end: .completed(.success(try string()), plugin: try string(), version: try string()))
            case 1:
                return .done(
                    token: token, end: .completed(.failure(try string()), plugin: try string(), version: try string()))
            case 2: return .done(token: token, end: .refused(try string(), plugin: try string(), version: try string()))
            case 3: return .done(token: token, end: .unknownJob)
            case 4: return .done(token: token, end: .returned)
            case 5: return .done(token: token, end: .stopped)
            case let other: throw FrameError(description: "unknown call end \(other)")
            }
        case 13: return .log(taskID: try string(), level: try u8(), message: try string())
        case 14: return .submit(parent: try string(), childID: try string(), job: try string(), kwargs: try string())
        case 15: return .pong(seq: try u32(), rssKB: try u64(), tasksRun: try u32())
        case 16: return .loading(path: try string())
        case 17: return .probed(json: try string())
        default: throw FrameError(description: "unknown frame kind \(kind)")
        }
    }
}

/// Writes all of `bytes` to a blocking descriptor; false when the peer is gone.
func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
        if n < 0 {
            if errno == EINTR { continue }
            return false
        }
        offset += n
    }
    return true
}

/// Resident memory of this process in KiB (from `/proc/self/statm`), 0 when unknown.
func residentKB() -> UInt64 {
    let fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return 0 }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 128)
    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard n > 0 else { return 0 }
    let fields = String(decoding: buffer[0..<n], as: UTF8.self).split(separator: " ")
    guard fields.count > 1, let pages = UInt64(fields[1]) else { return 0 }
    return pages * UInt64(sysconf(Int32(_SC_PAGESIZE))) / 1024
}
