#!/usr/bin/env bash
# `make bench`: builds the benchmark in release mode and prints the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product pq-bench
"$(swift build -c release --show-bin-path)/pq-bench" "$@"
# pq against Sidekiq on one Redis (Redis CPU per task, tasks/s, two hosts, pq wait): needs
# `apt-get install ruby-sidekiq`; runs on the private redis-server of scripts/with-redis.sh.
if [ "$#" -eq 0 ] || [ "${2:-}" = "redis-peers" ]; then
    echo
    echo "== redis against Sidekiq, one Redis, runs alternating"
    if [ -z "${PQ_TEST_REDIS_URL:-}" ]; then
        echo "skipped: PQ_TEST_REDIS_URL is not set (make bench starts a redis-server through scripts/with-redis.sh)"
    elif ! command -v sidekiq >/dev/null; then
        echo "skipped: sidekiq is not installed (apt-get install ruby-sidekiq)"
    else
        port=${PQ_TEST_REDIS_URL##*:}
        python3 scripts/bench/redis_peers.py "${port%%/*}" "$PWD/bin/pq" "$PWD/.pq/plugins" 10000 3
    fi
fi
# The HTTP face: wrk against /api/queues and /metrics, and a host's throughput with 50 event-stream
# subscribers against none (needs wrk: apt-get install wrk).
if [ "$#" -eq 0 ] || [ "${2:-}" = "http" ]; then
    echo
    echo "== http"
    if ! command -v wrk >/dev/null; then
        echo "skipped: wrk is not installed (apt-get install wrk)"
    else
        python3 scripts/bench/http_bench.py "$PWD/bin/pq" "$PWD/.pq/plugins" 20000 3
    fi
fi
