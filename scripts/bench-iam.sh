#!/usr/bin/env bash
# IAM policy evaluation benchmark (docs/benchmarks.md, "IAM policy evaluation").
#
# Builds and runs `cargo run --release -p gantry-iam-policy --example bench_eval` pinned to one
# core (BENCH_CPU, default 0, with taskset when it is installed): a user with 10 attached
# policies of 10 statements each, every statement with conditions, evaluated per request;
# prints p50/p90/p99/p99.9 in ns per scenario, then the machine and commit the figures come from.
# Fails when the allowed request's p50 is above BENCH_TARGET_P50_NS (default 5000).
#
# Environment (defaults in brackets):
#   BENCH_CPU [0]                 the core to pin to
#   BENCH_TARGET_P50_NS [5000]    the p50 target for the allowed request
#   BENCH_DEADLINE_S [600]        time allowed for build and run
#   CARGO_TARGET_DIR              as for cargo (default ./target)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CPU=${BENCH_CPU:-0}
TARGET_P50=${BENCH_TARGET_P50_NS:-5000}
DEADLINE_S=${BENCH_DEADLINE_S:-600}

log() { printf '==> %s\n' "$*" >&2; }

cd "$ROOT"
log "building gantry-iam-policy bench_eval (release)"
timeout "$DEADLINE_S" cargo build -q --release -p gantry-iam-policy --example bench_eval
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/bench_eval
[[ -x $BIN ]] || { echo "missing $BIN" >&2; exit 1; }

PIN=()
if command -v taskset >/dev/null 2>&1; then
    PIN=(taskset -c "$CPU")
    log "pinned to core $CPU"
else
    log "taskset not found: running unpinned"
fi
OUT=$(timeout "$DEADLINE_S" "${PIN[@]}" "$BIN")
echo "$OUT"
echo
echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r)"
echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"

P50=$(echo "$OUT" | awk '/^allow ecs:RunTask/ { for (i = 1; i <= NF; i++) if ($i == "p50") { print $(i + 1); exit } }')
[[ -n $P50 ]] || { echo "no p50 for the allowed request in the output" >&2; exit 1; }
if ((P50 > TARGET_P50)); then
    echo "allowed request p50 ${P50} ns is above the ${TARGET_P50} ns target" >&2
    exit 1
fi
echo "allowed request p50 ${P50} ns (target <= ${TARGET_P50} ns)"
