#!/usr/bin/env bash
# CloudWatch metrics benchmark (docs/benchmarks.md, "CloudWatch metrics").
#
# Builds release binaries, starts `gantry server` on loopback with its data dir on a real disk,
# and with gantry-bench:
#   1. ingestion: PutMetricData with 1,000 items per call (one value each, then 150 values each)
#      from BENCH_METRICS_CLIENTS calls in flight for BENCH_METRICS_DURATION; points per second;
#   2. GetMetricData over 100 series x 1 day of one-minute data (period 60 s and 300 s), p50/p90/p99;
#   3. the server's resident memory after loading;
# with the server's CPU time per call (from /proc: a figure other load on the machine skews less
# than calls per second) and the load average before and after;
# prints the figures, stops the server with SIGTERM and removes the data dir.
#
# Environment:
#   BENCH_METRICS_CLIENTS (default 8), BENCH_METRICS_DURATION (default 20s)
#   BENCH_DIR          where the temporary data dir is made (default /var/tmp; must not be tmpfs)
#   BENCH_SKIP_BUILD   1: use the binaries already built
#   BENCH_GANTRY       the server binary to measure (default: the release build's), e.g. an older
#                      build to compare with
#   CARGO_TARGET_DIR   as for cargo (default ./target)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CLIENTS=${BENCH_METRICS_CLIENTS:-8}
DURATION=${BENCH_METRICS_DURATION:-20s}
BASE=${BENCH_DIR:-/var/tmp}
READY_DEADLINE_S=30
STOP_DEADLINE_S=20
STEP_DEADLINE_S=900

log() { printf '==> %s\n' "$*" >&2; }

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    log "building release binaries (target dir $TARGET)"
    (cd "$ROOT" && cargo build --release -p gantry -p gantry-bench)
fi
GANTRY=${BENCH_GANTRY:-$TARGET/release/gantry}
BENCH=$TARGET/release/gantry-bench
for bin in "$GANTRY" "$BENCH"; do
    [[ -x $bin ]] || { echo "missing $bin" >&2; exit 1; }
done

WORK=$(mktemp -d "$BASE/gantry-bench-metrics.XXXXXX")
SERVER_PID=
cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq $((STOP_DEADLINE_S * 10))); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "server did not stop within ${STOP_DEADLINE_S}s of SIGTERM; killing it" >&2
            kill -KILL "$SERVER_PID" 2>/dev/null || true
        fi
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

FSTYPE=$(stat -f -c %T "$WORK")
case $FSTYPE in
    tmpfs | ramfs)
        echo "$WORK is on $FSTYPE: fsync costs nothing there; set BENCH_DIR to a disk" >&2
        exit 1
        ;;
esac
log "data dir $WORK ($FSTYPE)"
df -h "$WORK" >&2

# Throwaway root credentials for this server only (it listens on loopback).
rand() { LC_ALL=C tr -dc "$1" </dev/urandom 2>/dev/null | head -c "$2" || true; }  # tr ends on SIGPIPE
GANTRY_ROOT_ACCESS_KEY_ID=AKIA$(rand 'A-Z2-7' 16)
GANTRY_ROOT_SECRET_ACCESS_KEY=$(rand 'A-Za-z0-9' 40)
export GANTRY_ROOT_ACCESS_KEY_ID GANTRY_ROOT_SECRET_ACCESS_KEY

READY=$WORK/ready.json
GANTRY_LOG=${GANTRY_LOG:-warn} "$GANTRY" server \
    --data-dir "$WORK/data" --listen 127.0.0.1:0 --ready-file "$READY" \
    2>"$WORK/server.log" &
SERVER_PID=$!

deadline=$((SECONDS + READY_DEADLINE_S))
until [[ -s $READY ]]; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "gantry server exited before it was ready:" >&2
        cat "$WORK/server.log" >&2
        exit 1
    fi
    if ((SECONDS >= deadline)); then
        echo "gantry server not ready within ${READY_DEADLINE_S}s" >&2
        cat "$WORK/server.log" >&2
        exit 1
    fi
    sleep 0.1
done
ENDPOINT=$(sed -n 's/.*"endpoint": *"\([^"]*\)".*/\1/p' "$READY")
[[ $ENDPOINT == http://127.0.0.1:* ]] || { echo "unexpected endpoint '$ENDPOINT'" >&2; exit 1; }
log "gantry server pid $SERVER_PID at $ENDPOINT"

LOAD_BEFORE=$(uptime)
status=0
step() {
    local name=$1
    shift
    log "$name"
    if ! timeout "$STEP_DEADLINE_S" "$BENCH" "$@" --endpoint "$ENDPOINT" --server-pid "$SERVER_PID" |
        tee "$WORK/$name.out"; then
        echo "$name: failed" >&2
        status=1
    fi
}
rss() { awk '/^VmRSS/ {printf "%d", $2 / 1024}' "/proc/$SERVER_PID/status"; }
step put1 metrics-put --concurrency "$CLIENTS" --items 1000 --values 1 --series 1000 --duration "$DURATION"
step put150 metrics-put --concurrency "$CLIENTS" --items 1000 --values 150 --series 1000 --duration "$DURATION"
log "server RSS after ingestion: $(rss) MiB; data dir $(du -sh "$WORK/data" | cut -f1)"
step read60 metrics-read --series 100 --minutes 1440 --period 60 --requests 50
step read300 metrics-read --series 100 --minutes 1440 --period 300 --requests 50
log "server RSS at the end: $(rss) MiB"

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "gantry server died during the run:" >&2
    tail -20 "$WORK/server.log" >&2
    status=1
fi
if grep -qE 'ERROR|WARN' "$WORK/server.log"; then
    echo "server log warnings/errors:" >&2
    grep -E 'ERROR|WARN' "$WORK/server.log" | head -20 >&2
fi

echo
echo "== CloudWatch metrics, $(nproc) cores shared by client and server, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
echo "   $(date -u '+%Y-%m-%d %H:%M UTC'); before: $LOAD_BEFORE; after: $(uptime)"
cat "$WORK"/put1.out "$WORK"/put150.out "$WORK"/read60.out "$WORK"/read300.out 2>/dev/null || true
exit "$status"
