#!/bin/sh
# Prints throughput and connection-rate figures of rivers on loopback, next to direct connections.
# Nothing is asserted about speed. Usage: scripts/bench-rivers.sh
#   RIVERS_BENCH_PROFILE=dev   use the debug build (default: release, which is what ships)
#   RIVERS_BENCH_MIB=512       MiB uploaded per throughput row
#   RIVERS_BENCH_CONNS=4000    connections per concurrent connection-rate row
set -eu
cd "$(dirname "$0")/.."
profile="${RIVERS_BENCH_PROFILE:-release}"
if [ "$profile" = release ]; then set -- --release; else set --; fi
exec cargo test "$@" --test rivers -- --ignored --nocapture --test-threads=1 bench_
