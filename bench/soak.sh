#!/usr/bin/env bash
# The relay under faults (issue 18), from outside: 20 kill -9 at random moments under load, then
# the queue drained by a last start (prints acknowledged, lost — must be 0 — and duplicated);
# and mail for a healthy destination alone and beside a backlog for a dead and a silent one
# (prints both rates). Figures in BENCHMARKS.md; guarantees in RELIABILITY.md.
#
#   bench/soak.sh            RUNS=20 CONNS=10 BACKLOG=1500 MESSAGES=5000 by default
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p relayward -p relayward-bench
target/release/soak kill --runs "${RUNS:-20}" --connections "${CONNS:-10}"
target/release/soak dead --backlog "${BACKLOG:-1500}" --messages "${MESSAGES:-5000}"
