#!/usr/bin/env bash
# CloudWatch Logs reads benchmark (docs/benchmarks.md, "CloudWatch Logs reads").
#
# Builds release binaries, starts `gantry server` on loopback with its data dir on a real disk,
# and with gantry-bench:
#   1. loads a log group of BENCH_LOGS_BYTES (default 1 GiB) into BENCH_LOGS_STREAMS streams
#      (1 MiB PutLogEvents batches, BENCH_LOGS_LOADERS in flight, timestamps over 6 hours);
#   2. measures `FilterLogEvents --limit 100` from the head, the middle and the tail
#      (p50/p90/p99 over BENCH_LOGS_REQUESTS calls each, one client);
#   3. has BENCH_LOGS_CLIENTS (default 16) clients page through the group at once for
#      BENCH_LOGS_PAGE_DURATION with 10,000-event pages, sampling the server's resident memory;
#      fails when its peak exceeds BENCH_LOGS_MAX_RSS_MIB (default 150);
# prints the figures, stops the server with SIGTERM and removes the data dir.
#
# Environment:
#   BENCH_LOGS_BYTES, BENCH_LOGS_STREAMS, BENCH_LOGS_LOADERS, BENCH_LOGS_REQUESTS,
#   BENCH_LOGS_CLIENTS, BENCH_LOGS_PAGE_DURATION, BENCH_LOGS_MAX_RSS_MIB  as above
#   BENCH_DIR          where the temporary data dir is made (default /var/tmp; must not be tmpfs)
#   BENCH_SKIP_BUILD   1: use the binaries already built
#   CARGO_TARGET_DIR   as for cargo (default ./target)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BYTES=${BENCH_LOGS_BYTES:-1073741824}
STREAMS=${BENCH_LOGS_STREAMS:-16}
LOADERS=${BENCH_LOGS_LOADERS:-8}
REQUESTS=${BENCH_LOGS_REQUESTS:-200}
CLIENTS=${BENCH_LOGS_CLIENTS:-16}
PAGE_DURATION=${BENCH_LOGS_PAGE_DURATION:-60s}
MAX_RSS_MIB=${BENCH_LOGS_MAX_RSS_MIB:-150}
BASE=${BENCH_DIR:-/var/tmp}
READY_DEADLINE_S=30
STOP_DEADLINE_S=20
# No step may take longer than this (loading 1 GiB included).
STEP_DEADLINE_S=1800

log() { printf '==> %s\n' "$*" >&2; }

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    log "building release binaries (target dir $TARGET)"
    (cd "$ROOT" && cargo build --release -p gantry -p gantry-bench)
fi
GANTRY=$TARGET/release/gantry
BENCH=$TARGET/release/gantry-bench
for bin in "$GANTRY" "$BENCH"; do
    [[ -x $bin ]] || { echo "missing $bin" >&2; exit 1; }
done

WORK=$(mktemp -d "$BASE/gantry-bench-logs.XXXXXX")
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

status=0
step() {
    local name=$1
    shift
    log "$name"
    if ! timeout "$STEP_DEADLINE_S" "$BENCH" "$@" --endpoint "$ENDPOINT" | tee "$WORK/$name.out"; then
        echo "$name: failed" >&2
        status=1
    fi
}
step load logs-load --bytes "$BYTES" --streams "$STREAMS" --concurrency "$LOADERS"
rss() { awk '/^VmRSS/ {printf "%d", $2 / 1024}' "/proc/$SERVER_PID/status"; }
log "server RSS after loading: $(rss) MiB; data dir $(du -sh "$WORK/data" | cut -f1)"
step read logs-read --limit 100 --requests "$REQUESTS"
step page logs-page --clients "$CLIENTS" --limit 10000 --duration "$PAGE_DURATION" \
    --server-pid "$SERVER_PID" --max-rss-mib "$MAX_RSS_MIB"

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
echo "== CloudWatch Logs reads, $(nproc) cores shared by client and server, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
cat "$WORK/load.out" "$WORK/read.out" "$WORK/page.out" 2>/dev/null | grep -E '^(loaded|filter-log-events|paging|server_rss)' || true
exit "$status"
