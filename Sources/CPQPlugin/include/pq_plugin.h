/*
 * pq_plugin.h — the pq plugin ABI, version 1.
 *
 * A pq plugin is a shared library (.so) that exports one C symbol:
 *
 *     const pq_plugin *pq_plugin_entry(uint32_t host_abi_version);
 *
 * The host (pq) resolves its task_paths into plugin directories, checks every
 * .so found there, copies it to a private path, dlopen()s the copy and calls
 * pq_plugin_entry(PQ_ABI_VERSION). The plugin returns a pointer to a static
 * description of itself and its jobs, or NULL when it cannot serve that ABI
 * version. The returned pointer and every string and array it reaches must stay
 * valid for as long as the library is loaded.
 *
 * Everything crosses this boundary as plain C: strings are NUL-terminated
 * UTF-8, arguments and results are JSON text. The names, types and field order
 * below are a fixed contract. Later ABI versions only append fields to the end
 * of a struct; readers check `struct_size` before touching a newer field.
 *
 * Two kinds of job:
 *
 *  - JSON job: `run` is set. The host calls run(call) on a worker thread (never
 *    on an async executor). The plugin calls call->complete(call, ok, text)
 *    exactly once, from any thread, before or after run() returns:
 *      ok = 1: text is the result, as JSON ("null", "3", "{\"a\":1}", ...);
 *      ok = 0: text is the error message (plain text).
 *    The pq_call and all its strings stay valid until complete() was called;
 *    after that the plugin must not touch them.
 *    `cancel`, when set, asks a running call to stop (the task was revoked, it
 *    timed out, or the host shuts down). The plugin should then call complete()
 *    soon (ok = 0 with a short reason is fine). It may be called from any thread
 *    and may race with complete(); the host keeps the call alive until complete.
 *
 *  - Typed job: `fn` and `signature` are set and `run` is NULL. `fn` is a plain
 *    C function that the host calls through libffi, taking its arguments from
 *    the task's kwargs by name. `signature` is "(name:type,...)->type" with types
 *    bool i32 i64 u32 u64 f32 f64 str; the return type may also be void.
 *    Example: "(a:i64,b:i64)->i64". A `str` argument is passed as
 *    `const char *` (valid during the call only). A `str` result is copied by
 *    the host and then passed to the plugin's `free_string`, when that is set.
 *
 * Job options (`options_json`, may be NULL) are a JSON object with any of:
 *    "timeout"          seconds (number), counted from the start of a run
 *    "max_retries"      runs after the first one on failure (integer)
 *    "retry_delay"      seconds between runs (number)
 *    "max_concurrency"  at most N tasks of this job running at once, all hosts
 *    "can_overlap"      false: no second task with the same kwargs is queued
 *                       while one is queued or running
 *    "queue"            the queue the job's tasks go to (string)
 *    "run_every"        seconds (number): makes the job periodic
 *    "anchor"           "HH:MM:SS" that run_every is aligned to (UTC)
 *    "cron"             five-field cron expression: makes the job periodic
 *
 * Job names are slugs: [a-z0-9][a-z0-9._-]*
 *
 * `toolchain` is "c" for a plugin without Swift code, else "swift-X.Y.Z" of the
 * compiler that built it; the host refuses a Swift plugin built by a different
 * toolchain than its own (Swift has no stable ABI on Linux).
 *
 * A minimal C plugin:
 *
 *     #include "pq_plugin.h"
 *     static void hello_run(const pq_call *call) {
 *         call->complete(call, 1, "\"hello\"");
 *     }
 *     static const pq_job_def jobs[] = {
 *         { "hello", "Says hello.", NULL, hello_run, NULL, NULL, NULL },
 *     };
 *     static const pq_plugin plugin = {
 *         PQ_ABI_VERSION, sizeof(pq_plugin), "hello", "1.0.0", "c",
 *         1, jobs, NULL,
 *     };
 *     const pq_plugin *pq_plugin_entry(uint32_t host_abi_version) {
 *         return host_abi_version == PQ_ABI_VERSION ? &plugin : NULL;
 *     }
 *
 * Build it with: cc -shared -fPIC -o libhello.so hello.c -I<dir of this header>
 */
#ifndef PQ_PLUGIN_H
#define PQ_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The ABI version this header describes. */
#define PQ_ABI_VERSION 1

/** The name of the symbol every plugin exports. */
#define PQ_PLUGIN_ENTRY_SYMBOL "pq_plugin_entry"

/** Log levels for pq_call.log. */
#define PQ_LOG_DEBUG 0
#define PQ_LOG_INFO 1
#define PQ_LOG_WARNING 2
#define PQ_LOG_ERROR 3

typedef struct pq_call pq_call;

/** One run of one task, handed by the host to a JSON job. */
struct pq_call {
    /** sizeof(pq_call) as the host knows it. */
    uint32_t struct_size;
    /** The task id (32 hex digits). */
    const char *task_id;
    /** The job's name. */
    const char *job_name;
    /** The task's kwargs as a JSON object; "{}" when there are none. */
    const char *args_json;
    /** 1 on the first run, 2 on the first retry, ... */
    uint32_t attempt;
    /** The host's own data; the plugin must not touch it. */
    void *host_data;
    /** Ends the call, exactly once: ok = 1 with a JSON result, ok = 0 with an error message. */
    void (*complete)(const pq_call *call, int ok, const char *json_or_error);
    /** Writes a log line attributed to this task (level: PQ_LOG_*). */
    void (*log)(const pq_call *call, int level, const char *message);
    /** Non-zero once the call was asked to stop (revoke, timeout, shutdown). */
    int (*is_cancelled)(const pq_call *call);
    /** Queues a child task of `job` (from_task = this task). Returns 0 and writes the
     *  new task id (NUL-terminated) into id_out, or non-zero on failure. */
    int (*submit)(const pq_call *call, const char *job, const char *args_json, char *id_out, size_t id_cap);
};

/** One job a plugin offers. */
typedef struct pq_job_def {
    /** The job's name, a slug: [a-z0-9][a-z0-9._-]* */
    const char *name;
    /** One-line description (may be NULL). */
    const char *doc;
    /** Options as a JSON object (may be NULL); see the top of this file. */
    const char *options_json;
    /** JSON job: runs one call; NULL for a typed job. */
    void (*run)(const pq_call *call);
    /** JSON job: asks a running call to stop (may be NULL). */
    void (*cancel)(const pq_call *call);
    /** Typed job: the C function to call through libffi; NULL for a JSON job. */
    void *fn;
    /** Typed job: "(name:type,...)->type"; NULL for a JSON job. */
    const char *signature;
} pq_job_def;

/** What pq_plugin_entry returns. */
typedef struct pq_plugin {
    /** PQ_ABI_VERSION the plugin was built against. */
    uint32_t abi_version;
    /** sizeof(pq_plugin) as the plugin knows it. */
    uint32_t struct_size;
    /** The plugin's name. */
    const char *name;
    /** The plugin's version (free text, e.g. "1.2.0"). */
    const char *version;
    /** "c", or "swift-X.Y.Z" of the compiler that built it. */
    const char *toolchain;
    /** Number of entries in `jobs`. */
    uint32_t job_count;
    /** The jobs. */
    const pq_job_def *jobs;
    /** Frees a string returned by a typed job with a str result (may be NULL). */
    void (*free_string)(char *);
} pq_plugin;

/** The one symbol a plugin exports. Returns NULL when it cannot serve host_abi_version. */
typedef const pq_plugin *(*pq_plugin_entry_fn)(uint32_t host_abi_version);

#ifdef __cplusplus
}
#endif

#endif /* PQ_PLUGIN_H */
