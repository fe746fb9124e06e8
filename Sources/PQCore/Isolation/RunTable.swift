import CPQSystem
import Glibc
import Synchronization

/// A page shared by a host and one worker process, where the worker notes which calls are
/// running right now (a call's token in a free entry while it runs, 0 otherwise).
///
/// It costs the worker two plain stores per call and no message; the host reads it only after
/// the worker died, when nothing writes it any more, to tell the call that was running alone
/// (the culprit) from calls that were merely queued in the worker.
final class RunTable: @unchecked Sendable {
    // @unchecked: the mapping is written by the worker only (entries claimed under `free`), read
    // by the host only once the worker is dead.
    let fd: Int32
    let count: Int
    private let base: UnsafeMutablePointer<UInt64>
    private let free = Mutex<[Int]>([])

    /// Creates the shared memory (host side).
    /// - Parameter count: how many calls may run at once in the worker.
    init?(count: Int) {
        let fd = pq_memfd("pq-worker-runs")
        guard fd >= 0 else { return nil }
        guard ftruncate(fd, off_t(count * 8)) == 0 else {
            close(fd)
            return nil
        }
        guard let table = Self.map(fd: fd, count: count) else {
            close(fd)
            return nil
        }
        self.fd = fd
        self.count = count
        self.base = table
    }

    /// Maps the table a host passed (worker side).
    /// - Parameter fd: the descriptor the worker inherited.
    init?(inherited fd: Int32) {
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size >= 8 else { return nil }
        let count = Int(st.st_size) / 8
        guard let table = Self.map(fd: fd, count: count) else { return nil }
        self.fd = fd
        self.count = count
        self.base = table
        free.withLock { $0 = Array((0..<count).reversed()) }
    }

    private static func map(fd: Int32, count: Int) -> UnsafeMutablePointer<UInt64>? {
        let p = mmap(nil, count * 8, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let p, p != MAP_FAILED else { return nil }
        return p.bindMemory(to: UInt64.self, capacity: count)
    }

    deinit {
        munmap(base, count * 8)
        close(fd)
    }

    /// Notes that the call `token` runs; returns the entry to clear when it ends (nil when full).
    func enter(_ token: UInt32) -> Int? {
        guard let entry = free.withLock({ $0.popLast() }) else { return nil }
        base[entry] = UInt64(token)
        return entry
    }

    /// Notes that the call in `entry` ended.
    func leave(_ entry: Int) {
        base[entry] = 0
        free.withLock { $0.append(entry) }
    }

    /// The tokens noted as running (host side, after the worker died).
    func running() -> Set<UInt32> {
        var out = Set<UInt32>()
        for i in 0..<count where base[i] != 0 { out.insert(UInt32(truncatingIfNeeded: base[i])) }
        return out
    }
}
