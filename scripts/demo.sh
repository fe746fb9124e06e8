#!/usr/bin/env bash
# `make run`: a host on the embedded store with the example plugins.
set -euo pipefail
cd "$(dirname "$0")/.."
export PQ_TASK_PATHS="${PQ_TASK_PATHS:-examples.*}"
export PQ_PLUGINS_DIR="${PQ_PLUGINS_DIR:-$PWD/.pq/plugins}"
export PQ_STORE="${PQ_STORE:-sqlite:$PWD/.pq/pq.sqlite}"
HTTP="${PQ_HTTP:-127.0.0.1:5555}"
cat <<EOT

pq demo: a host on $PQ_STORE with the plugins of task_paths '$PQ_TASK_PATHS'.

  Dashboard:  http://$HTTP/      (API under /api, Prometheus metrics at /metrics)

In another terminal, from $PWD:

  export PQ_STORE=$PQ_STORE
  bin/pq submit addition a=1 b=2 --wait --json     # queue a task and wait for its result
  bin/pq submit asynchronous lag=3                 # a 3 second task; then: bin/pq tasks
  bin/pq watch                                     # follow events as they happen
  bin/pq submit c.crash --wait                     # a segfault costs one task: the host and its other tasks live on
  bin/pq hosts                                     # the host and its worker processes
  bin/pq jobs --task-paths 'examples.*' --plugins-dir $PQ_PLUGINS_DIR
  curl -s -X POST http://$HTTP/api/tasks -H 'Content-Type: application/json' \
       -d '{"job": "addition", "kwargs": {"a": 1, "b": 2}}'   # queue through the HTTP API

Ctrl-C stops the host (running tasks get 10 s to finish, the rest go back to the queue).

EOT
exec bin/pq serve --concurrent-tasks 8 --schedule-periodic --http "$HTTP"
