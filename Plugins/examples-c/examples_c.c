/*
 * Example pq plugin in plain C, written only against pq_plugin.h.
 *
 * Build:  cc -shared -fPIC -O2 -I../../Sources/CPQPlugin/include -o libexamples_c.so examples_c.c -lpthread
 * Drop the .so into a plugin directory named by task_paths; `pq jobs` lists its jobs.
 */
#include "pq_plugin.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* c.echo: returns its kwargs object unchanged. */
static void echo_run(const pq_call *call) {
    call->complete(call, 1, call->args_json);
}

/* c.noop: does nothing (for benchmarks). */
static void noop_run(const pq_call *call) {
    call->complete(call, 1, "null");
}

/* c.fail: always fails. */
static void fail_run(const pq_call *call) {
    call->complete(call, 0, "c.fail failed on purpose");
}

/* c.badjson: completes with text that is not JSON (the host must turn it into FAILURE). */
static void badjson_run(const pq_call *call) {
    call->complete(call, 1, "{this is not json");
}

/* c.crash: dereferences NULL on purpose. In process isolation (the default) it costs this one
 * task, which fails naming SIGSEGV; with --isolation thread it takes the host down. */
static void crash_run(const pq_call *call) {
    volatile int *volatile nowhere = NULL;
    *nowhere = 1;
    call->complete(call, 1, "null");
}

/* Points just past the ':' that follows "key" in a flat JSON object, or NULL when absent. */
static const char *json_value(const char *json, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\"", key);
    const char *at = strstr(json, pattern);
    if (!at) return NULL;
    at = strchr(at + strlen(pattern), ':');
    return at ? at + 1 : NULL;
}

/* Reads a number that follows "key": in a flat JSON object; returns fallback when absent. */
static double json_number(const char *json, const char *key, double fallback) {
    const char *at = json_value(json, key);
    if (!at) return fallback;
    char *end = NULL;
    double value = strtod(at, &end);
    return end == at ? fallback : value;
}

/* Reads an integer that follows "key": in a flat JSON object; returns fallback when absent. */
static long long json_integer(const char *json, const char *key, long long fallback) {
    const char *at = json_value(json, key);
    if (!at) return fallback;
    char *end = NULL;
    long long value = strtoll(at, &end, 10);
    return end == at ? fallback : value;
}

/* c.mulj: c.mul as a JSON job (for comparing the JSON and typed call paths). */
static void mulj_run(const pq_call *call) {
    long long a = json_integer(call->args_json, "a", 0), b = json_integer(call->args_json, "b", 0);
    char result[32];
    snprintf(result, sizeof result, "%lld", (long long)((unsigned long long)a * (unsigned long long)b));
    call->complete(call, 1, result);
}

/* c.sleep: sleeps `seconds` (default 1) on its own thread, stopping early when cancelled. */
static void *sleep_thread(void *arg) {
    const pq_call *call = arg;
    double seconds = json_number(call->args_json, "seconds", 1.0);
    struct timespec tick = {0, 10 * 1000 * 1000};
    double slept = 0;
    while (slept < seconds) {
        if (call->is_cancelled(call)) {
            call->complete(call, 0, "c.sleep cancelled");
            return NULL;
        }
        nanosleep(&tick, NULL);
        slept += 0.01;
    }
    char result[64];
    snprintf(result, sizeof result, "%g", seconds);
    call->complete(call, 1, result);
    return NULL;
}

static void sleep_run(const pq_call *call) {
    pthread_t thread;
    if (pthread_create(&thread, NULL, sleep_thread, (void *)call) != 0) {
        call->complete(call, 0, "c.sleep could not start a thread");
        return;
    }
    pthread_detach(thread);
}

/* c.child: queues a c.echo child task and returns its id. */
static void child_run(const pq_call *call) {
    char id[64];
    if (call->submit(call, "c.echo", "{\"from\":\"c.child\"}", id, sizeof id) != 0) {
        call->complete(call, 0, "c.child could not queue its child task");
        return;
    }
    char result[80];
    snprintf(result, sizeof result, "\"%s\"", id);
    call->log(call, PQ_LOG_INFO, "queued a child task");
    call->complete(call, 1, result);
}

/* c.tick: a periodic job, every 2 seconds. */
static void tick_run(const pq_call *call) {
    call->complete(call, 1, "\"tick\"");
}

/* Typed jobs: plain C functions the host calls through libffi. */
static int64_t mul(int64_t a, int64_t b) { return a * b; }

static char *greet(const char *name) {
    size_t n = strlen(name) + 8;
    char *out = malloc(n);
    if (out) snprintf(out, n, "hello, %s", name);
    return out;
}

static const pq_job_def jobs[] = {
    {"c.echo", "Returns its arguments.", NULL, echo_run, NULL, NULL, NULL},
    {"c.noop", "Does nothing; returns null.", NULL, noop_run, NULL, NULL, NULL},
    {"c.fail", "Always fails.", "{\"max_retries\": 0}", fail_run, NULL, NULL, NULL},
    {"c.badjson", "Returns text that is not JSON.", NULL, badjson_run, NULL, NULL, NULL},
    {"c.sleep", "Sleeps `seconds` on its own thread; cancellable.", "{\"timeout\": 30}", sleep_run, NULL, NULL, NULL},
    {"c.child", "Queues a c.echo child task.", NULL, child_run, NULL, NULL, NULL},
    {"c.tick", "Periodic: every 2 seconds.", "{\"run_every\": 2}", tick_run, NULL, NULL, NULL},
    {"c.mulj", "Multiplies integers a and b (JSON job, like c.mul).", NULL, mulj_run, NULL, NULL, NULL},
    {"c.mul", "Multiplies two integers (typed job).", NULL, NULL, NULL, (void *)mul, "(a:i64,b:i64)->i64"},
    {"c.greet", "Greets a name (typed job).", NULL, NULL, NULL, (void *)greet, "(name:str)->str"},
    {"c.crash", "Crashes (SIGSEGV) on purpose: process isolation costs only this task.", "{\"max_retries\": 0}", crash_run, NULL, NULL, NULL},
};

static void free_string(char *s) { free(s); }

static const pq_plugin plugin = {
    PQ_ABI_VERSION,
    sizeof(pq_plugin),
    "examples-c",
    "1.0.0",
    "c",
    sizeof jobs / sizeof jobs[0],
    jobs,
    free_string,
};

const pq_plugin *pq_plugin_entry(uint32_t host_abi_version) {
    return host_abi_version == PQ_ABI_VERSION ? &plugin : NULL;
}
