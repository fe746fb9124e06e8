import CPQSystem
import Foundation
import Glibc

/// A worker process just started: its pid and the host's ends of its socket and stderr pipe.
struct SpawnedWorker {
    var pid: pid_t
    var socket: Int32
    var stderr: Int32
}

/// Starts worker processes from this program's own binary with `posix_spawn` (never `fork` of
/// a multi-threaded host): socket on descriptor 3, run table on 4, stdout and stderr on a pipe.
enum WorkerSpawner {
    struct SpawnError: Error, CustomStringConvertible {
        var description: String
    }

    /// The running program: `/proc/self/exe` itself, so workers run this very binary even when
    /// its file was replaced (an upgrade) since the host started.
    static let currentExecutable = "/proc/self/exe"

    /// The path of the running program's file.
    static var currentExecutablePath: String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return CommandLine.arguments[0] }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Starts `executable __worker` with the given run table.
    /// - Parameters:
    ///   - executable: the pq binary.
    ///   - table: the run table's descriptor, or -1 (probes).
    /// - Returns: the new process.
    static func spawn(executable: String, table: Int32) throws(SpawnError) -> SpawnedWorker {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw SpawnError(description: "socketpair failed: \(String(cString: strerror(errno)))")
        }
        var pipeFDs: [Int32] = [-1, -1]
        guard pq_pipe_cloexec(&pipeFDs) == 0 else {
            close(pair[0])
            close(pair[1])
            throw SpawnError(description: "pipe failed: \(String(cString: strerror(errno)))")
        }
        // The child's ends, moved above the descriptors they are dup'ed to (dup2 onto itself
        // would keep O_CLOEXEC).
        let childSocket = fcntl(pair[1], F_DUPFD_CLOEXEC, 10)
        let childErr = fcntl(pipeFDs[1], F_DUPFD_CLOEXEC, 10)
        let childTable = table >= 0 ? fcntl(table, F_DUPFD_CLOEXEC, 10) : -1
        close(pair[1])
        close(pipeFDs[1])
        defer {
            close(childSocket)
            close(childErr)
            if childTable >= 0 { close(childTable) }
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, childErr, 1)
        posix_spawn_file_actions_adddup2(&actions, childErr, 2)
        posix_spawn_file_actions_adddup2(&actions, childSocket, WorkerProcess.socketFD)
        if childTable >= 0 { posix_spawn_file_actions_adddup2(&actions, childTable, WorkerProcess.runTableFD) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Signals the host ignores or blocks (its own shutdown handling) are not the worker's.
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let arguments = [
            executable == currentExecutable ? currentExecutablePath : executable, "__worker", "--host-pid",
            String(getpid()),
        ]
        var environment = ProcessInfo.processInfo.environment
        // A crash must be reported within a second: the Swift backtracer takes seconds.
        environment["SWIFT_BACKTRACE"] = "enable=no"
        let envStrings = environment.map { "\($0.key)=\($0.value)" }
        var pid: pid_t = 0
        let rc = withCStrings(arguments) { argv in
            withCStrings(envStrings) { envp in
                posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
            }
        }
        guard rc == 0 else {
            close(pair[0])
            close(pipeFDs[0])
            throw SpawnError(
                description: "cannot start a worker process (\(executable)): \(String(cString: strerror(rc)))")
        }
        return SpawnedWorker(pid: pid, socket: pair[0], stderr: pipeFDs[0])
    }

    private static func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R)
        -> R
    {
        var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
        pointers.append(nil)
        defer { for p in pointers { free(p) } }
        return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
    }

    /// Why a process ended, in the words task exceptions use.
    /// - Parameter status: from `waitpid`.
    /// - Returns: e.g. `worker killed by SIGSEGV (signal 11)` or `worker exited with status 3`,
    ///   and the signal or exit status.
    static func describe(status: Int32) -> (cause: String, signal: Int32?, exitStatus: Int32?) {
        let signal = status & 0x7f
        if signal == 0 {
            let code = (status >> 8) & 0xff
            return ("worker exited with status \(code)", nil, code)
        }
        return ("worker killed by \(signalName(signal)) (signal \(signal))", signal, nil)
    }

    static func signalName(_ signal: Int32) -> String {
        let names: [Int32: String] = [
            SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP",
            SIGABRT: "SIGABRT", SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGUSR1: "SIGUSR1",
            SIGSEGV: "SIGSEGV", SIGUSR2: "SIGUSR2", SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM", SIGTERM: "SIGTERM",
            SIGXCPU: "SIGXCPU", SIGXFSZ: "SIGXFSZ", SIGSYS: "SIGSYS",
        ]
        return names[signal] ?? "signal \(signal)"
    }

    /// Waits for `pid` to end: up to `patience` seconds, then kills it with SIGKILL.
    /// - Returns: its `waitpid` status.
    static func reap(_ pid: pid_t, patience: Double) -> Int32 {
        var status: Int32 = 0
        let deadline = Date().addingTimeInterval(patience)
        while Date() < deadline {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { return status }
            if r < 0 && errno != EINTR { return status }
            usleep(2_000)
        }
        kill(pid, SIGKILL)
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return status
    }
}
