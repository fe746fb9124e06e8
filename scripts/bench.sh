#!/usr/bin/env bash
# `make bench`: builds the benchmark in release mode and prints the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product pq-bench
"$(swift build -c release --show-bin-path)/pq-bench" "$@"
