#!/usr/bin/env bash
# Takes the README's dashboard screenshot (docs/dashboard.png) with headless Chromium:
# a host with the example plugins on a scratch SQLite store, a few tasks, the page at 1280x900.
# Needs `make build`, python3 and chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-docs/dashboard.png}"
work="$(mktemp -d)"
host_pid=""
cleanup() {
    [ -n "$host_pid" ] && kill "$host_pid" 2>/dev/null && wait "$host_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
export PQ_STORE="sqlite:$work/pq.sqlite" PQ_TASK_PATHS='examples.*' PQ_PLUGINS_DIR="$PWD/.pq/plugins"
bin/pq serve --http 127.0.0.1:0 --concurrent-tasks 4 >"$work/host.log" 2>&1 &
host_pid=$!
url=""
for _ in $(seq 1 100); do
    url="$(grep -o 'http://127.0.0.1:[0-9]*/' "$work/host.log" | head -1 || true)"
    [ -n "$url" ] && break
    sleep 0.1
done
[ -n "$url" ] || { cat "$work/host.log"; exit 1; }
mkfifo "$work/commands"
python3 scripts/browser-check.py "$url" <"$work/commands" >"$work/browser.out" &
browser_pid=$!
exec 7>"$work/commands"
for _ in $(seq 1 200); do grep -q '^ready\|^error' "$work/browser.out" && break; sleep 0.1; done
grep -q '^ready' "$work/browser.out" || { cat "$work/browser.out"; exit 1; }
post() { curl -s -o /dev/null -X POST "${url}api/tasks" -H 'Content-Type: application/json' -d "$1"; }
for i in 1 2 3 4 5 6; do post "{\"job\":\"addition\",\"kwargs\":{\"a\":$i,\"b\":$((i * 10))}}"; done
post '{"job":"asynchronous","kwargs":{"lag":30}}'
post '{"job":"c.fail"}'
post '{"job":"m.pow","kwargs":{"x":2,"y":10}}'
post '{"job":"c.echo","kwargs":{"note":"<b>shown as text</b>"},"delay":600}'
post '{"job":"c.greet","kwargs":{"name":"pq"}}'
sleep 3
mkdir -p "$(dirname "$out")"
echo "screenshot $(cd "$(dirname "$out")" && pwd)/$(basename "$out")" >&7
for _ in $(seq 1 100); do grep -q '"ok"' "$work/browser.out" && break; sleep 0.1; done
echo quit >&7
exec 7>&-
wait "$browser_pid" || true
echo "wrote $out"
