import Foundation
import PQCore
import Testing

/// A C plugin with a typed job for every type, compiled once per test run.
enum TypedFixture {
    static let source = #"""
        #include "pq_plugin.h"
        #include <math.h>
        #include <stdbool.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <time.h>

        static bool id_bool(bool x) { return x; }
        static int32_t id_i32(int32_t x) { return x; }
        static int64_t id_i64(int64_t x) { return x; }
        static uint32_t id_u32(uint32_t x) { return x; }
        static uint64_t id_u64(uint64_t x) { return x; }
        static float id_f32(float x) { return x; }
        static double id_f64(double x) { return x; }
        static char *id_str(const char *x) { return strdup(x); }
        static bool not_bool(bool x) { return !x; }
        static int32_t neg_i32(int32_t x) { return -x; }
        static uint64_t dec_u64(uint64_t x) { return x - 1; }
        static float half_f32(float x) { return x / 2; }
        static size_t len_str(const char *x) { return strlen(x); }
        static const char *null_str(void) { return NULL; }
        static double nan_f64(void) { return NAN; }
        static float inf_f32(void) { return INFINITY; }
        static int64_t last_seen;
        static void remember(int64_t x) { last_seen = x; }
        static int64_t recall(void) { return last_seen; }
        static int64_t frees;
        static int64_t free_count(void) { return frees; }
        static char *mix(int32_t a, double b, const char *c, bool d, uint64_t e, float f, int64_t g, uint32_t h) {
            char *out = malloc(256);
            snprintf(out, 256, "%d|%g|%s|%d|%llu|%g|%lld|%u", a, b, c, d ? 1 : 0, (unsigned long long)e, (double)f, (long long)g, h);
            return out;
        }
        static int64_t sleep_ms(int64_t ms) {
            struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
            nanosleep(&t, NULL);
            return ms;
        }

        #define T(name, fn, sig) { name, NULL, NULL, NULL, NULL, (void *)fn, sig }
        static const pq_job_def jobs[] = {
            T("t.bool", id_bool, "(x:bool)->bool"),
            T("t.i32", id_i32, "(x:i32)->i32"),
            T("t.i64", id_i64, "(x:i64)->i64"),
            T("t.u32", id_u32, "(x:u32)->u32"),
            T("t.u64", id_u64, "(x:u64)->u64"),
            T("t.f32", id_f32, "(x:f32)->f32"),
            T("t.f64", id_f64, "(x:f64)->f64"),
            T("t.str", id_str, "(x:str)->str"),
            T("t.not", not_bool, "(x:bool)->bool"),
            T("t.neg", neg_i32, "(x:i32)->i32"),
            T("t.dec", dec_u64, "(x:u64)->u64"),
            T("t.half", half_f32, "(x:f32)->f32"),
            T("t.len", len_str, "(x:str)->u64"),
            T("t.nullstr", null_str, "()->str"),
            T("t.nan", nan_f64, "()->f64"),
            T("t.inf", inf_f32, "()->f32"),
            T("t.remember", remember, "(x:i64)->void"),
            T("t.recall", recall, "()->i64"),
            T("t.frees", free_count, "()->i64"),
            T("t.mix", mix, "(a:i32,b:f64,c:str,d:bool,e:u64,f:f32,g:i64,h:u32)->str"),
            T("t.sleep", sleep_ms, "(ms:i64)->i64"),
        };
        static void free_string(char *s) { frees++; free(s); }
        static const pq_plugin plugin = {
            PQ_ABI_VERSION, sizeof(pq_plugin), "typed-fixture", "1.0.0", "c",
            sizeof jobs / sizeof jobs[0], jobs, free_string,
        };
        const pq_plugin *pq_plugin_entry(uint32_t v) { return v == PQ_ABI_VERSION ? &plugin : NULL; }
        """#

    /// A plugins root holding `typed/libtyped.so` (task_paths entry `typed`).
    static let root: Result<String, any Error> = Result {
        let root = Fixtures.temporaryDirectory("pqtyped")
        try FileManager.default.createDirectory(atPath: root + "/typed", withIntermediateDirectories: true)
        try Fixtures.compileCOnce(source, to: root + "/typed/libtyped.so")
        return root
    }

    static var library: String {
        get throws { try root.get() + "/typed/libtyped.so" }
    }

    /// The fixture's jobs, loaded in this process.
    static let registry: Result<JobRegistry, any Error> = Result {
        let registry = JobRegistry()
        registry.register(try PluginLoader().load(path: try library))
        return registry
    }

    static func job(_ name: String) throws -> JobDefinition {
        try #require(try registry.get().job(named: name), "fixture has no job \(name)")
    }

    /// Binds `kwargs` (JSON text) and calls the job in this thread.
    static func call(_ name: String, _ kwargs: String) throws -> CallOutcome {
        let typed = try #require(try job(name).typedCall)
        return typed.call(try typed.bind(json: kwargs))
    }
}
