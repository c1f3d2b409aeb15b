#!/usr/bin/env bash
# Control-plane API benchmark (docs/benchmarks.md, "Control-plane API").
#
# Builds release binaries, starts `gantry server` on loopback with its data dir on a real disk
# (durable commits are the point, so tmpfs is refused), runs gantry-bench against it:
#   1. RegisterTaskDefinition, BENCH_CONCURRENCY clients (one family each), BENCH_DURATION;
#   2. DescribeClusters (include TAGS, SETTINGS), same concurrency and duration;
#   3. the same DescribeClusters signed by an IAM user (not the root), whose calls the front
#      authorizes: AmazonECS_FullAccess, ReadOnlyAccess, AmazonEC2ContainerRegistryReadOnly and
#      CloudWatchLogsFullAccess attached, plus an inline policy with conditions; the ratio of its
#      req/s to the root's is printed (issue 14's target: at least 0.9);
# prints the figures, stops the server with SIGTERM and removes the data dir.
#
# Environment:
#   BENCH_CONCURRENCY  concurrent clients (default 64)
#   BENCH_DURATION     per benchmark, gantry-bench syntax (default 10s)
#   BENCH_DIR          where the temporary data dir is made (default /var/tmp; must not be tmpfs)
#   BENCH_SKIP_BUILD   1: use the binaries already built
#   BENCH_CALLGRIND    1: run the server under valgrind's callgrind and also report the
#                      instructions it executed per request (counted between `callgrind_control
#                      --zero` and `--dump` around each benchmark): a figure that does not move
#                      with other load on the machine, for before/after comparisons on a busy one.
#                      The server runs ~50x slower: use a small BENCH_CONCURRENCY (e.g. 8).
#   BENCH_CALLGRIND_KEEP  with BENCH_CALLGRIND=1: a directory to copy each benchmark's callgrind
#                      dump into (callgrind.<run>), for `callgrind_annotate --inclusive=yes`
#   BENCH_RUNS         which benchmarks, in order (default: register-task-definition
#                      describe-clusters describe-clusters-as-user)
#   BENCH_GANTRY       the gantry binary to benchmark (default: the release build), e.g. a copy
#                      of an older build for a before/after comparison
#   CARGO_TARGET_DIR   as for cargo (default ./target)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CONCURRENCY=${BENCH_CONCURRENCY:-64}
DURATION=${BENCH_DURATION:-10s}
BASE=${BENCH_DIR:-/var/tmp}
READY_DEADLINE_S=30
CALLGRIND=${BENCH_CALLGRIND:-0}
[[ $CALLGRIND == 1 ]] && READY_DEADLINE_S=300
STOP_DEADLINE_S=20
# A benchmark may overrun its duration by this much (setup, draining, the check) before it is killed.
RUN_SLACK_S=120

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

WORK=$(mktemp -d "$BASE/gantry-bench.XXXXXX")
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
LAUNCH=()
if [[ $CALLGRIND == 1 ]]; then
    command -v callgrind_control >/dev/null || { echo "BENCH_CALLGRIND=1 needs valgrind" >&2; exit 1; }
    LAUNCH=(valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" --collect-atstart=yes)
fi
GANTRY_LOG=${GANTRY_LOG:-warn} "${LAUNCH[@]}" "$GANTRY" server \
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

duration_s=$(awk -v d="$DURATION" 'BEGIN {
    n = d + 0; if (d ~ /ms$/) n /= 1000; else if (d ~ /m$/) n *= 60; printf "%d", n + 1 }')
# An IAM user for the third run, made with the AWS CLI as the root.
aws_root() {
    AWS_ENDPOINT_URL=$ENDPOINT AWS_ACCESS_KEY_ID=$GANTRY_ROOT_ACCESS_KEY_ID \
        AWS_SECRET_ACCESS_KEY=$GANTRY_ROOT_SECRET_ACCESS_KEY AWS_DEFAULT_REGION=us-east-1 \
        AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
        python3 -m awscli "$@"
}
aws_root iam create-user --user-name bench >/dev/null
for p in AmazonECS_FullAccess ReadOnlyAccess AmazonEC2ContainerRegistryReadOnly CloudWatchLogsFullAccess; do
    aws_root iam attach-user-policy --user-name bench --policy-arn "arn:aws:iam::aws:policy/$p"
done
aws_root iam put-user-policy --user-name bench --policy-name conditions --policy-document '{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "ecs:RunTask", "Resource": "*",
     "Condition": {"ArnEquals": {"ecs:cluster": "arn:aws:ecs:us-east-1:000000000000:cluster/bench"}}},
    {"Effect": "Deny", "Action": "ecs:Delete*", "Resource": "*",
     "Condition": {"StringNotEquals": {"aws:RequestedRegion": "us-east-1"}}}]}'
USER_KEY=$(aws_root iam create-access-key --user-name bench --output text \
    --query 'AccessKey.[AccessKeyId,SecretAccessKey]')
USER_KEY_ID=${USER_KEY%%$'\t'*}
USER_SECRET=${USER_KEY##*$'\t'}

status=0
declare -A FIGURES CPU INSTR IPR
# The instructions of the last callgrind dump (its `totals:` line).
dumped_ir() {
    local f
    f=$(ls -t "$WORK"/callgrind.out.* 2>/dev/null | head -1)
    [[ -n $f ]] && sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$f"
}
read -ra RUNS <<<"${BENCH_RUNS:-register-task-definition describe-clusters describe-clusters-as-user}"
for run in "${RUNS[@]}"; do
    op=${run%-as-user}
    creds=()
    if [[ $run == *-as-user ]]; then
        creds=(--access-key-id "$USER_KEY_ID" --secret-access-key "$USER_SECRET")
    fi
    log "$run: $CONCURRENCY clients, $DURATION"
    out=$WORK/$run.out
    [[ $CALLGRIND == 1 ]] && callgrind_control --zero "$SERVER_PID" >/dev/null
    if ! timeout "$((duration_s + RUN_SLACK_S))" "$BENCH" api --endpoint "$ENDPOINT" \
        --concurrency "$CONCURRENCY" --duration "$DURATION" --op "$op" \
        --server-pid "$SERVER_PID" "${creds[@]}" | tee "$out"; then
        echo "$run: benchmark failed" >&2
        status=1
    fi
    FIGURES[$run]=$(grep '^ok=' "$out" || echo "no figures")
    CPU[$run]=$(sed -n 's/^cpu: //p' "$out")
    if [[ $CALLGRIND == 1 ]]; then
        callgrind_control --dump="$run" "$SERVER_PID" >/dev/null
        ir=$(dumped_ir)
        if [[ -n ${BENCH_CALLGRIND_KEEP:-} ]]; then
            mkdir -p "$BENCH_CALLGRIND_KEEP"
            cp "$(ls -t "$WORK"/callgrind.out.* | head -1)" "$BENCH_CALLGRIND_KEEP/callgrind.$run"
        fi
        ok=$(sed -n 's/^ok=\([0-9]*\).*/\1/p' "$out")
        if [[ -n $ir && ${ok:-0} -gt 0 ]]; then
            INSTR[$run]="server_instructions=$ir server_instructions_per_req=$((ir / ok))"
            IPR[$run]=$((ir / ok))
        else
            INSTR[$run]="no callgrind figures"
        fi
    fi
done

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
echo "== Control-plane API, $CONCURRENCY concurrent clients, $DURATION each, $(nproc) cores shared by client and server"
echo "   (machine_busy_cpu_s counts every process: more than server + client means other load ran too)"
for run in "${RUNS[@]}"; do
    printf '%-26s %s\n%-26s %s\n' "$run" "${FIGURES[$run]}" "" "${CPU[$run]}"
    [[ $CALLGRIND == 1 ]] && printf '%-26s %s\n' "" "${INSTR[$run]}"
done
rps() { sed -n 's/.*req_per_s=\([0-9.]*\).*/\1/p' "$WORK/$1.out" | head -1; }
root_rps=$(rps describe-clusters)
user_rps=$(rps describe-clusters-as-user)
if [[ -n $root_rps && -n $user_rps ]]; then
    awk -v r="$root_rps" -v u="$user_rps" 'BEGIN { printf "describe-clusters as an IAM user / as the root: %.3f\n", u / r }'
fi
if [[ -n ${IPR[describe-clusters]:-} && -n ${IPR[describe-clusters-as-user]:-} ]]; then
    awk -v r="${IPR[describe-clusters]}" -v u="${IPR[describe-clusters-as-user]}" 'BEGIN {
        printf "describe-clusters instructions per request, root / IAM user: %.3f\n", r / u }'
fi
exit "$status"
