#!/usr/bin/env bash
# Scheduler benchmarks (docs/benchmarks.md, "Placement" and "Services").
#
# Builds release binaries, starts `gantry server` on loopback (data dir on a real disk: commits
# are durable), starts BENCH_INSTANCES simulated container instances (crates/sim: 3 zones, mixed
# instance types, one assignment stream each, tasks acknowledged at once), waits until all are
# registered and connected, then measures:
#   (a) BENCH_TASKS tasks through RunTask, BENCH_COUNT per call, BENCH_CONCURRENCY calls in
#       flight, spread(attribute:ecs.availability-zone) + binpack(memory) +
#       memberOf(attribute:ecs.instance-type =~ m5.*): tasks/s, call latency, time to all RUNNING;
#   (e) DescribeTasks of BENCH_DESCRIBE_BATCH of those tasks from BENCH_DESCRIBE_CONCURRENCY
#       clients for BENCH_DESCRIBE_S seconds (answers counted, not decoded), then ListTasks pages;
#   (b) a BENCH_SERVICE_TASKS-task service on the same cluster: UpdateService to a new revision
#       until one COMPLETED deployment is left (BENCH_DEPLOY_ROUNDS rounds);
# stops the simulator and the server, then runs the in-process figures:
#   (c) cargo run --release -p gantry-scheduler --example bench_place
#   (d) cargo run --release -p gantry-controller --example bench_reconcile
#
# Environment (defaults in brackets):
#   BENCH_INSTANCES [10000]  BENCH_TASKS [10000]  BENCH_COUNT [10]  BENCH_CONCURRENCY [64]
#   BENCH_SERVICE_TASKS [50] BENCH_DEPLOY_ROUNDS [3]
#   BENCH_DESCRIBE_BATCH [100] BENCH_DESCRIBE_CONCURRENCY [64] BENCH_DESCRIBE_S [10]
#   BENCH_CONNECT_DEADLINE_S [600]  time allowed to register and connect the fleet
#   BENCH_DIR [/var/tmp]     where the temporary data dir is made (must not be tmpfs)
#   BENCH_SKIP_BUILD [0]     1: use the binaries already built
#   BENCH_PROFILE [release]  debug: use (and build) the debug binaries, for before/after CPU
#                            comparisons on a machine busy with builds; not for the figures
#   BENCH_SKIP_PURE [0]      1: skip (c) and (d)
#   BENCH_GANTRY             the gantry binary to measure (default: the profile's build)
#   CARGO_TARGET_DIR         as for cargo (default ./target)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
INSTANCES=${BENCH_INSTANCES:-10000}
TASKS=${BENCH_TASKS:-10000}
COUNT=${BENCH_COUNT:-10}
CONCURRENCY=${BENCH_CONCURRENCY:-64}
SERVICE_TASKS=${BENCH_SERVICE_TASKS:-50}
DEPLOY_ROUNDS=${BENCH_DEPLOY_ROUNDS:-3}
DESCRIBE_BATCH=${BENCH_DESCRIBE_BATCH:-100}
DESCRIBE_CONCURRENCY=${BENCH_DESCRIBE_CONCURRENCY:-64}
DESCRIBE_S=${BENCH_DESCRIBE_S:-10}
CONNECT_DEADLINE_S=${BENCH_CONNECT_DEADLINE_S:-600}
BASE=${BENCH_DIR:-/var/tmp}
CLUSTER=bench
READY_DEADLINE_S=30
STOP_DEADLINE_S=30
RUN_DEADLINE_S=1200
PURE_DEADLINE_S=600

log() { printf '==> %s\n' "$*" >&2; }

# One socket per simulated instance on each side of loopback.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < INSTANCES + 1024)); then
    echo "open-files limit $(ulimit -n) is too low for $INSTANCES instances (hard limit $(ulimit -Hn))" >&2
    exit 1
fi

PROFILE=${BENCH_PROFILE:-release}
case $PROFILE in
    release) PROFILE_FLAG=(--release) ;;
    debug) PROFILE_FLAG=() ;;
    *) echo "BENCH_PROFILE must be release or debug, not '$PROFILE'" >&2; exit 1 ;;
esac
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    log "building $PROFILE binaries (target dir $TARGET)"
    (cd "$ROOT" && cargo build "${PROFILE_FLAG[@]}" -p gantry -p gantry-sim --bins --examples)
fi
GANTRY=${BENCH_GANTRY:-$TARGET/$PROFILE/gantry}
SIM=$TARGET/$PROFILE/examples/simulate
DRIVE=$TARGET/$PROFILE/examples/bench_cluster
for bin in "$GANTRY" "$SIM" "$DRIVE"; do
    [[ -x $bin ]] || { echo "missing $bin" >&2; exit 1; }
done

WORK=$(mktemp -d "$BASE/gantry-bench-sched.XXXXXX")
SERVER_PID=
SIM_PID=
stop_pid() { # pid name
    local pid=$1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq $((STOP_DEADLINE_S * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "$2 did not stop within ${STOP_DEADLINE_S}s of SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    stop_pid "$SIM_PID" simulator
    SIM_PID=
    stop_pid "$SERVER_PID" server
    SERVER_PID=
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

# Throwaway root credentials for this server only (it listens on loopback).
rand() { LC_ALL=C tr -dc "$1" </dev/urandom 2>/dev/null | head -c "$2" || true; }
GANTRY_ROOT_ACCESS_KEY_ID=AKIA$(rand 'A-Z2-7' 16)
GANTRY_ROOT_SECRET_ACCESS_KEY=$(rand 'A-Za-z0-9' 40)
export GANTRY_ROOT_ACCESS_KEY_ID GANTRY_ROOT_SECRET_ACCESS_KEY

cpu_s() { # utime + stime of a pid, seconds
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo "?"
}
children_cpu_s() { # user + system seconds of this shell's finished children, into $1 (the load generator)
    times > "$WORK/times" # in this shell: a command substitution would report its own children
    printf -v "$1" '%s' "$(tail -1 "$WORK/times" | awk '{ t = 0; for (i = 1; i <= 2; i++) { split($i, p, /[ms]/); t += p[1] * 60 + p[2] } printf "%.1f", t }')"
}
rss_mib() { awk '/VmHWM/ { printf "%d", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"; }
alive() {
    for p in "$SERVER_PID" "$SIM_PID"; do
        kill -0 "$p" 2>/dev/null || { echo "process $p died; logs:" >&2; tail -20 "$WORK"/*.log >&2; exit 1; }
    done
}

READY=$WORK/ready.json
# One agent stream per simulated instance, plus the load generator's connections.
GANTRY_LOG=${GANTRY_LOG:-warn} "$GANTRY" server \
    --data-dir "$WORK/data" --listen 127.0.0.1:0 --ready-file "$READY" \
    --max-connections $((INSTANCES + 1024)) \
    2>"$WORK/server.log" &
SERVER_PID=$!
deadline=$((SECONDS + READY_DEADLINE_S))
until [[ -s $READY ]]; do
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
    ((SECONDS < deadline)) || { echo "server not ready in ${READY_DEADLINE_S}s" >&2; exit 1; }
    sleep 0.1
done
ENDPOINT=$(sed -n 's/.*"endpoint": *"\([^"]*\)".*/\1/p' "$READY")
[[ $ENDPOINT == http://127.0.0.1:* ]] || { echo "unexpected endpoint '$ENDPOINT'" >&2; exit 1; }
log "gantry server pid $SERVER_PID at $ENDPOINT"

STATUS=$WORK/sim.json
GANTRY_LOG=${SIM_LOG:-warn} "$SIM" --endpoint "$ENDPOINT" --cluster "$CLUSTER" \
    --instances "$INSTANCES" --status-file "$STATUS" 2>"$WORK/sim.log" &
SIM_PID=$!
log "simulator pid $SIM_PID: $INSTANCES instances"
field() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" "$STATUS" 2>/dev/null || true; }
t0=$(date +%s.%N)
deadline=$((SECONDS + CONNECT_DEADLINE_S))
last=
while :; do
    alive
    reg=$(field registered) con=$(field connected)
    if [[ ${reg:-0} == "$INSTANCES" && ${con:-0} == "$INSTANCES" ]]; then break; fi
    if ((SECONDS >= deadline)); then
        echo "only ${reg:-0} registered / ${con:-0} connected of $INSTANCES within ${CONNECT_DEADLINE_S}s" >&2
        cat "$STATUS" >&2 || true
        exit 1
    fi
    if [[ "$reg/$con" != "$last" && $((SECONDS % 5)) == 0 ]]; then
        log "registered ${reg:-0}, connected ${con:-0}"
        last="$reg/$con"
    fi
    sleep 0.2
done
CONNECT_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
log "all $INSTANCES instances registered and connected in ${CONNECT_S}s"
SERVER_CPU_FLEET=$(cpu_s "$SERVER_PID")
SIM_CPU_FLEET=$(cpu_s "$SIM_PID")
FLEET=$(timeout 300 "$DRIVE" --endpoint "$ENDPOINT" --cluster "$CLUSTER" fleet --expect "$INSTANCES" | tee /dev/stderr | grep '^RESULT' || echo "RESULT fleet check failed")

status=0
log "(a) RunTask: $TASKS tasks, $COUNT per call, $CONCURRENCY in flight"
srv0=$(cpu_s "$SERVER_PID") sim0=$(cpu_s "$SIM_PID")
if ! timeout "$RUN_DEADLINE_S" "$DRIVE" --endpoint "$ENDPOINT" --cluster "$CLUSTER" run-tasks \
    --tasks "$TASKS" --count "$COUNT" --concurrency "$CONCURRENCY" | tee "$WORK/run.out"; then
    echo "run-tasks failed" >&2
    status=1
fi
RUN=$(grep '^RESULT' "$WORK/run.out" || echo "RESULT none")
RUN_CPU="server ${srv0}→$(cpu_s "$SERVER_PID") s, simulator ${sim0}→$(cpu_s "$SIM_PID") s"
alive

log "(e) DescribeTasks of $DESCRIBE_BATCH tasks, $DESCRIBE_CONCURRENCY clients, ${DESCRIBE_S}s"
srv0=$(cpu_s "$SERVER_PID")
children_cpu_s gen0
if ! timeout "$RUN_DEADLINE_S" "$DRIVE" --endpoint "$ENDPOINT" --cluster "$CLUSTER" describe-tasks \
    --batch "$DESCRIBE_BATCH" --concurrency "$DESCRIBE_CONCURRENCY" --duration-s "$DESCRIBE_S" \
    | tee "$WORK/describe.out"; then
    echo "describe-tasks failed" >&2
    status=1
fi
DESCRIBE=$(grep '^RESULT' "$WORK/describe.out" || echo "RESULT none")
children_cpu_s gen1
DESCRIBE_CPU="server ${srv0}→$(cpu_s "$SERVER_PID") s, load generator $(awk -v a="$gen0" -v b="$gen1" 'BEGIN { printf "%.1f", b - a }') s"
alive

log "(b) rolling deployment of a $SERVICE_TASKS-task service, $DEPLOY_ROUNDS rounds"
if ! timeout "$RUN_DEADLINE_S" "$DRIVE" --endpoint "$ENDPOINT" --cluster "$CLUSTER" deploy \
    --tasks "$SERVICE_TASKS" --rounds "$DEPLOY_ROUNDS" | tee "$WORK/deploy.out"; then
    echo "deploy failed" >&2
    status=1
fi
DEPLOY=$(grep '^RESULT' "$WORK/deploy.out" || echo "RESULT none")
alive
SERVER_RSS=$(rss_mib "$SERVER_PID") SIM_RSS=$(rss_mib "$SIM_PID")
SERVER_CPU=$(cpu_s "$SERVER_PID") SIM_CPU=$(cpu_s "$SIM_PID")
SIM_FINAL=$(cat "$STATUS")
if grep -qE 'ERROR|WARN' "$WORK/server.log"; then
    echo "server log warnings/errors ($(grep -cE 'ERROR|WARN' "$WORK/server.log") lines), first ones:" >&2
    grep -E 'ERROR|WARN' "$WORK/server.log" | head -10 >&2
fi
stop_pid "$SIM_PID" simulator
SIM_PID=
stop_pid "$SERVER_PID" server
SERVER_PID=

PLACE="(skipped)" RECONCILE="(skipped)"
if [[ ${BENCH_SKIP_PURE:-0} != 1 ]]; then
    log "(c) gantry-scheduler bench_place"
    PLACE=$(cd "$ROOT" && timeout "$PURE_DEADLINE_S" cargo run -q --release -p gantry-scheduler --example bench_place 2>&1) || status=1
    echo "$PLACE"
    log "(d) gantry-controller bench_reconcile"
    RECONCILE=$(cd "$ROOT" && timeout "$PURE_DEADLINE_S" cargo run -q --release -p gantry-controller --example bench_reconcile 2>&1) || status=1
    echo "$RECONCILE"
fi

echo
echo "== Scheduler benchmarks: $INSTANCES simulated instances, $(nproc) cores shared by server, simulator and client"
echo "fleet: registered and connected in ${CONNECT_S}s (server CPU ${SERVER_CPU_FLEET}s, simulator CPU ${SIM_CPU_FLEET}s); $FLEET"
echo "(a) run-tasks: $RUN"
echo "    CPU during (a): $RUN_CPU"
echo "(e) describe:  $DESCRIBE"
echo "    CPU during (e): $DESCRIBE_CPU"
echo "(b) deploy:    $DEPLOY"
echo "totals: server CPU ${SERVER_CPU}s, peak RSS ${SERVER_RSS} MiB; simulator CPU ${SIM_CPU}s, peak RSS ${SIM_RSS} MiB"
echo "simulator: $SIM_FINAL"
echo "(c) bench_place:"
echo "$PLACE" | sed 's/^/    /'
echo "(d) bench_reconcile:"
echo "$RECONCILE" | sed 's/^/    /'
exit "$status"
