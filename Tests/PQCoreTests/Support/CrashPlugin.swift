import Foundation
import Synchronization
import Testing

/// The C test plugin of the isolation tests: jobs that crash, hang, burn CPU or leak, and a
/// library whose constructor crashes. Built with `Fixtures.compileC` against pq_plugin.h.
enum CrashPlugin {
    /// What `crashy.version` returns and the plugin's version, unless `VERSION` is defined.
    /// Ten bytes that `patchedVersion` overwrites in a built library, so many distinct versions
    /// cost one compile.
    static let versionPlaceholder = "pqver-0000"

    /// The `crashy` plugin. Jobs (kwargs in brackets):
    /// - `crashy.pid`: returns the pid of the process that ran it.
    /// - `crashy.version`: returns `VERSION`.
    /// - `crashy.segv`, `crashy.abort`, `crashy.exit`: NULL store, `abort()`, `exit(3)`; `max_retries` 0.
    /// - `crashy.forksegv`: forks a child that keeps the worker's descriptors for 5 s, then a NULL store.
    /// - `crashy.sleep` [seconds = 1, pidfile, stubborn]: sleeps on its own thread, cancellable unless
    ///   `stubborn` is true; first writes its pid to `pidfile` (atomically); `max_retries` 0.
    ///   `crashy.sleep-retry`: the same with `max_retries` 1, `retry_delay` 0.
    /// - `crashy.busy` [seconds = 60]: burns CPU, never looks at `is_cancelled`; `max_retries` 0.
    /// - `crashy.leak` [mb = 80]: allocates and touches mb MiB, keeps them, returns the pid.
    /// - with `-DBAD_ISOLATION`: `crashy.badiso`, whose options ask for `"isolation": "other"`.
    static let source = #"""
        #include "pq_plugin.h"
        #include <errno.h>
        #include <pthread.h>
        #include <signal.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <time.h>
        #include <unistd.h>

        #ifndef VERSION
        #define VERSION "pqver-0000"
        #endif

        /* The text after "key": in a flat JSON object, or NULL. */
        static const char *find_value(const char *json, const char *key) {
            char pattern[64];
            snprintf(pattern, sizeof pattern, "\"%s\"", key);
            const char *p = strstr(json, pattern);
            if (!p) return NULL;
            p += strlen(pattern);
            while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ':') p++;
            return p;
        }

        static double num_arg(const char *json, const char *key, double fallback) {
            const char *p = find_value(json, key);
            if (!p) return fallback;
            if (strncmp(p, "true", 4) == 0) return 1;
            if (strncmp(p, "false", 5) == 0) return 0;
            char *end;
            double v = strtod(p, &end);
            return end == p ? fallback : v;
        }

        /* A string kwarg copied into out (a backslash takes the next character as is); 0 when absent. */
        static int str_arg(const char *json, const char *key, char *out, size_t cap) {
            const char *p = find_value(json, key);
            if (!p || *p != '"' || cap == 0) return 0;
            p++;
            size_t n = 0;
            while (*p && *p != '"' && n + 1 < cap) {
                if (*p == '\\' && p[1]) p++;
                out[n++] = *p++;
            }
            out[n] = 0;
            return 1;
        }

        static double now_seconds(void) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            return ts.tv_sec + ts.tv_nsec / 1e9;
        }

        /* Writes this process's pid to path, atomically (temporary file, then rename). */
        static void write_pidfile(const char *path) {
            char tmp[4200];
            snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
            FILE *f = fopen(tmp, "w");
            if (!f) return;
            fprintf(f, "%d\n", (int)getpid());
            fclose(f);
            rename(tmp, path);
        }

        static void complete_pid(const pq_call *call) {
            char text[32];
            snprintf(text, sizeof text, "%d", (int)getpid());
            call->complete(call, 1, text);
        }

        /* crashy.pid: the pid of the process that ran it. */
        static void pid_run(const pq_call *call) { complete_pid(call); }

        /* crashy.version: the version this file was built as. */
        static void version_run(const pq_call *call) { call->complete(call, 1, "\"" VERSION "\""); }

        /* crashy.segv: a real invalid memory access (the pointer is volatile, so it stays a store). */
        static void segv_run(const pq_call *call) {
            (void)call;
            volatile int *volatile p = NULL;
            *p = 42;
        }

        /* crashy.forksegv: forks a child that keeps every descriptor (the host's socket too) for 5 s,
           then dereferences NULL: the host must see the worker die without the socket closing. */
        static void forksegv_run(const pq_call *call) {
            (void)call;
            if (fork() == 0) {
                sleep(5);
                _exit(0);
            }
            volatile int *volatile p = NULL;
            *p = 42;
        }

        /* crashy.abort: abort(). */
        static void abort_run(const pq_call *call) {
            (void)call;
            abort();
        }

        /* crashy.exit: exit(3) from inside the job. */
        static void exit_run(const pq_call *call) {
            (void)call;
            exit(3);
        }

        /* crashy.sleep / crashy.sleep-retry: seconds (default 1) on its own thread, honouring
           is_cancelled unless stubborn; writes its pid to pidfile first when given. */
        struct sleeper {
            const pq_call *call;
            double seconds;
            int stubborn;
        };

        static void *sleep_thread(void *arg) {
            struct sleeper *s = arg;
            double end = now_seconds() + s->seconds;
            int cancelled = 0;
            while (now_seconds() < end) {
                if (!s->stubborn && s->call->is_cancelled(s->call)) {
                    cancelled = 1;
                    break;
                }
                usleep(10000);
            }
            const pq_call *call = s->call;
            free(s);
            if (cancelled) call->complete(call, 0, "cancelled");
            else call->complete(call, 1, "\"slept\"");
            return NULL;
        }

        static void sleep_run(const pq_call *call) {
            char path[4096];
            if (str_arg(call->args_json, "pidfile", path, sizeof path)) write_pidfile(path);
            struct sleeper *s = malloc(sizeof *s);
            s->call = call;
            s->seconds = num_arg(call->args_json, "seconds", 1);
            s->stubborn = num_arg(call->args_json, "stubborn", 0) != 0;
            pthread_t t;
            if (pthread_create(&t, NULL, sleep_thread, s) != 0) {
                free(s);
                call->complete(call, 0, "pthread_create failed");
                return;
            }
            pthread_detach(t);
        }

        /* crashy.busy: burns CPU for seconds (default 60), never looks at is_cancelled. */
        static void busy_run(const pq_call *call) {
            double end = now_seconds() + num_arg(call->args_json, "seconds", 60);
            volatile unsigned long spins = 0;
            while (now_seconds() < end) {
                for (int i = 0; i < 100000; i++) spins++;
            }
            call->complete(call, 1, "\"done\"");
        }

        /* crashy.leak: allocates mb MiB (default 80), touches every page, and never frees it;
           returns the pid. */
        static void *volatile leaked[1024];
        static int leaked_count;

        static void leak_run(const pq_call *call) {
            size_t size = (size_t)(num_arg(call->args_json, "mb", 80) * 1024 * 1024);
            char *block = malloc(size);
            if (!block) {
                call->complete(call, 0, "malloc failed");
                return;
            }
            memset(block, 0x5a, size);
            if (leaked_count < 1024) leaked[leaked_count++] = block;
            complete_pid(call);
        }

        static const pq_job_def jobs[] = {
            { "crashy.pid", "Returns the pid of the process that ran it.", NULL, pid_run, NULL, NULL, NULL },
            { "crashy.version", "Returns the version the plugin was built as.", NULL, version_run, NULL, NULL, NULL },
            { "crashy.segv", "Dereferences NULL.", "{\"max_retries\": 0}", segv_run, NULL, NULL, NULL },
            { "crashy.abort", "Calls abort().", "{\"max_retries\": 0}", abort_run, NULL, NULL, NULL },
            { "crashy.forksegv", "Forks a child that holds its descriptors, then dereferences NULL.", "{\"max_retries\": 0}",
              forksegv_run, NULL, NULL, NULL },
            { "crashy.exit", "Calls exit(3).", "{\"max_retries\": 0}", exit_run, NULL, NULL, NULL },
            { "crashy.sleep", "Sleeps seconds (cancellable unless stubborn), writes its pid to pidfile.",
              "{\"max_retries\": 0}", sleep_run, NULL, NULL, NULL },
            { "crashy.sleep-retry", "crashy.sleep with one retry.", "{\"max_retries\": 1, \"retry_delay\": 0}", sleep_run,
              NULL, NULL, NULL },
            { "crashy.busy", "Burns CPU for seconds, ignoring cancel.", "{\"max_retries\": 0}", busy_run, NULL, NULL, NULL },
            { "crashy.leak", "Allocates and touches mb MiB, never frees them, returns the pid.", "{\"max_retries\": 0}",
              leak_run, NULL, NULL, NULL },
        #ifdef BAD_ISOLATION
            { "crashy.badiso", "Asks for an isolation mode that does not exist.", "{\"isolation\": \"other\"}", pid_run,
              NULL, NULL, NULL },
        #endif
        };

        static const pq_plugin plugin = {
            PQ_ABI_VERSION, sizeof(pq_plugin), "crashy", VERSION, "c", sizeof jobs / sizeof jobs[0], jobs, NULL,
        };

        const pq_plugin *pq_plugin_entry(uint32_t host_abi_version) {
            return host_abi_version == PQ_ABI_VERSION ? &plugin : NULL;
        }
        """#

    /// A plugin whose library constructor dereferences NULL: it crashes whatever process loads it.
    static let constructorCrashSource = #"""
        #include "pq_plugin.h"
        #include <stddef.h>
        #include <stdlib.h>
        #include <unistd.h>

        /* Runs when the library is loaded, before pq_plugin_entry: a real invalid memory access
           (with CRASH_WHEN_MARKED, only once the file named by $PQ_CTOR_CRASH_MARKER exists). */
        __attribute__((constructor)) static void crash_on_load(void) {
        #ifdef CRASH_WHEN_MARKED
            const char *marker = getenv("PQ_CTOR_CRASH_MARKER");
            if (!marker || access(marker, F_OK) != 0) return;
        #endif
            volatile int *volatile p = NULL;
            *p = 1;
        }

        static void noop_run(const pq_call *call) { call->complete(call, 1, "null"); }

        static const pq_job_def jobs[] = {
            { "ctorcrash.noop", "Never registered: the library crashes while it loads.", NULL, noop_run, NULL, NULL, NULL },
        };

        static const pq_plugin plugin = { PQ_ABI_VERSION, sizeof(pq_plugin), "ctorcrash", "1.0.0", "c", 1, jobs, NULL };

        const pq_plugin *pq_plugin_entry(uint32_t host_abi_version) {
            return host_abi_version == PQ_ABI_VERSION ? &plugin : NULL;
        }
        """#

    private static let builds = Mutex<[String: String]>([:])

    /// The `crashy` plugin (or, with `constructorCrash`, the constructor crasher) built once per
    /// set of defines in this test process.
    static func build(constructorCrash: Bool = false, defines: [String] = []) async throws -> String {
        let key = (constructorCrash ? "ctor|" : "crashy|") + defines.joined(separator: " ")
        if let path = builds.withLock({ $0[key] }) { return path }
        let out =
            Fixtures.temporaryDirectory("pqcrashbuild") + (constructorCrash ? "/libctorcrash.so" : "/libcrashy.so")
        try await Fixtures.compileC(constructorCrash ? constructorCrashSource : source, to: out, defines: defines)
        builds.withLock { $0[key] = out }
        return out
    }

    /// Creates a plugin directory (and its missing parents) with mode 0755: the trust rule refuses
    /// a directory that group or others can write, whatever the umask.
    static func makePluginDirectory(_ path: String) throws {
        try FileManager.default.createDirectory(
            atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        chmod(path, 0o755)
    }

    /// Installs a library as `target` the careful way: written beside it under a temporary name
    /// (mode 0644), then renamed into place.
    static func install(_ library: Data, as target: String) throws {
        let tmp = target + ".tmp-\(UUID().uuidString.prefix(6))"
        try library.write(to: URL(fileURLWithPath: tmp))
        chmod(tmp, 0o644)
        try #require(rename(tmp, target) == 0, "rename \(tmp) -> \(target) failed: errno \(errno)")
    }

    /// Copies a built library beside `target`, then renames it into place.
    static func install(_ built: String, as target: String) throws {
        try install(try Data(contentsOf: URL(fileURLWithPath: built)), as: target)
    }

    /// Builds (once) and installs the `crashy` plugin as `<root>/<entry>/libcrashy.so`, the
    /// task_paths entry `entry`.
    /// - Returns: the installed path.
    @discardableResult
    static func installPlugin(root: String, entry: String = "crashy", defines: [String] = []) async throws -> String {
        let dir = root + "/" + entry.replacingOccurrences(of: ".", with: "/")
        try makePluginDirectory(root)
        try makePluginDirectory(dir)
        let target = dir + "/libcrashy.so"
        try install(try await build(defines: defines), as: target)
        return target
    }

    /// The version string number `n` (as long as `versionPlaceholder`).
    static func version(_ n: Int) -> String { "pqver-" + String(String(n + 10_000).suffix(4)) }

    /// A built library with every occurrence of `versionPlaceholder` replaced by `version`.
    static func patchedVersion(_ library: Data, _ version: String) throws -> Data {
        let from = Data(versionPlaceholder.utf8)
        let to = Data(version.utf8)
        try #require(from.count == to.count, "version '\(version)' must be as long as '\(versionPlaceholder)'")
        var data = library
        var start = data.startIndex
        var replaced = 0
        while let r = data.range(of: from, in: start..<data.endIndex) {
            data.replaceSubrange(r, with: to)
            start = r.upperBound
            replaced += 1
        }
        try #require(replaced > 0, "no '\(versionPlaceholder)' in the built library")
        return data
    }
}
