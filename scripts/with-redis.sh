#!/usr/bin/env bash
# Runs a command with a private redis-server on a free 127.0.0.1 port, exported as
# PQ_TEST_REDIS_URL=redis://127.0.0.1:PORT/0; stops the server afterwards.
# Usage: scripts/with-redis.sh COMMAND [ARGS...]
set -euo pipefail
if ! command -v redis-server >/dev/null; then
    echo "with-redis.sh: redis-server is not installed (apt-get install redis-server)" >&2
    exit 1
fi
free_port() {
    # A random port that nothing listens on (bounded tries).
    for _ in $(seq 1 50); do
        local p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
    done
    echo "with-redis.sh: no free port found" >&2
    exit 1
}
port=$(free_port)
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no --dir "$dir" \
    --logfile "$dir/redis.log" &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
# Bounded wait until it answers.
for _ in $(seq 1 100); do
    if redis-cli -p "$port" ping >/dev/null 2>&1; then break; fi
    sleep 0.05
done
redis-cli -p "$port" ping >/dev/null || { echo "with-redis.sh: redis-server did not start on port $port" >&2; exit 1; }
export PQ_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
"$@"
