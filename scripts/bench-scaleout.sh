#!/usr/bin/env bash
# Scale-out backends benchmark (docs/benchmarks.md, "Scale-out backends: SQLite vs etcd, fs vs S3"):
# one `gantry server` on its default backends against one on the scale-out ones, side by side in
# one run, everything on 127.0.0.1 with its data under BENCH_DIR (a disk, not tmpfs):
#   1. state store, SQLite (the default, in the data dir) vs a 3-member etcd cluster (three real
#      `etcd` processes on this machine, each with its own data dir and fsync):
#      a. RegisterTaskDefinition, BENCH_CONCURRENCY clients (one family each), BENCH_DURATION,
#         through gantry-bench (as scripts/bench-api.sh): durable writes/s;
#      b. RunTask: BENCH_INSTANCES simulated instances (gantry-sim's `simulate`, as
#         scripts/bench-scheduler.sh), then BENCH_TASKS tasks, BENCH_COUNT per call,
#         BENCH_RUN_CONCURRENCY calls in flight (one pass per value), until every task is RUNNING
#         (bench_cluster run-tasks): tasks/s;
#   2. registry blob store, the filesystem (the default, in the data dir) vs S3 (s3s-fs, a
#      real-wire S3 server, serving a bucket from a directory on the same disk):
#      a. push: BENCH_BLOBS blobs of BENCH_BLOB_MIB MiB of fresh random data, each a POST then a
#         PUT of the whole file with its digest (curl -T): MB/s;
#      b. pull: GET of those blobs to /dev/null: MB/s;
#      c. manifest GET: a small OCI manifest, BENCH_MANIFEST_GETS GETs over BENCH_MANIFEST_CONNS
#         connections of one `curl --parallel`: req/s.
# It prints every figure with each server's (and each etcd member's / s3s-fs's) CPU seconds, and
# the ratios scale-out/default. Every step is bounded in time; every process it starts is stopped
# and its data removed on exit. It exits non-zero when a step fails.
#
# Environment:
#   BENCH_CONCURRENCY       RegisterTaskDefinition clients (default 64)
#   BENCH_DURATION          RegisterTaskDefinition duration, gantry-bench syntax (default 10s)
#   BENCH_INSTANCES         simulated instances (default 1000; 10000 as bench-scheduler.sh)
#   BENCH_TASKS             tasks started by RunTask (default 2000)
#   BENCH_COUNT             tasks per RunTask call (default 10)
#   BENCH_RUN_CONCURRENCY   RunTask calls in flight; a list runs one pass each (default "1 16")
#   BENCH_BLOBS             blobs pushed (default 2)
#   BENCH_BLOB_MIB          MiB per blob (default 128)
#   BENCH_MANIFEST_GETS     manifest GETs (default 5000)
#   BENCH_MANIFEST_CONNS    parallel connections for them (default 32)
#   BENCH_PARTS             which parts: "store blob" (default), "store" or "blob"
#   BENCH_DIR               where the temporary dir is made (default /var/tmp; not tmpfs)
#   BENCH_SKIP_BUILD        1: use the binaries already built
#   CARGO_TARGET_DIR        as for cargo (default ./target)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CONCURRENCY=${BENCH_CONCURRENCY:-64}
DURATION=${BENCH_DURATION:-10s}
INSTANCES=${BENCH_INSTANCES:-1000}
TASKS=${BENCH_TASKS:-2000}
COUNT=${BENCH_COUNT:-10}
RUN_CONCURRENCY=${BENCH_RUN_CONCURRENCY:-1 16}
BLOBS=${BENCH_BLOBS:-2}
BLOB_MIB=${BENCH_BLOB_MIB:-128}
MANIFEST_GETS=${BENCH_MANIFEST_GETS:-5000}
MANIFEST_CONNS=${BENCH_MANIFEST_CONNS:-32}
PARTS=${BENCH_PARTS:-store blob}
BASE=${BENCH_DIR:-/var/tmp}
CLUSTER=bench
READY_DEADLINE_S=60
STOP_DEADLINE_S=30
CONNECT_DEADLINE_S=600
RUN_DEADLINE_S=1200
CURL_SMALL_S=30
CURL_BLOB_S=600

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-scaleout: %s\n' "$*" >&2; exit 1; }

for tool in curl etcd s3s-fs sha256sum python3; do
    command -v "$tool" >/dev/null || die "missing $tool (etcd: apt-get install etcd-server; \
s3s-fs: cargo install s3s-fs --version 0.14.1 --features binary --locked)"
done

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < INSTANCES + 1024)); then
    die "open-files limit $(ulimit -n) is too low for $INSTANCES instances (hard limit $(ulimit -Hn))"
fi

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    log "building release binaries (target dir $TARGET)"
    (cd "$ROOT" && cargo build --release -p gantry -p gantry-bench -p gantry-sim \
        --bin gantry --bin gantry-bench --example simulate --example bench_cluster)
fi
GANTRY=$TARGET/release/gantry
BENCH=$TARGET/release/gantry-bench
SIM=$TARGET/release/examples/simulate
DRIVE=$TARGET/release/examples/bench_cluster
for bin in "$GANTRY" "$BENCH" "$SIM" "$DRIVE"; do
    [[ -x $bin ]] || die "missing $bin"
done

WORK=$(mktemp -d "$BASE/gantry-bench-scaleout.XXXXXX")
PIDS=() # everything started, stopped in reverse order
stop_pid() { # pid
    local pid=$1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq $((STOP_DEADLINE_S * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "pid $pid did not stop within ${STOP_DEADLINE_S}s of SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
stop_all() {
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
    PIDS=()
}
cleanup() {
    stop_all
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

FSTYPE=$(stat -f -c %T "$WORK")
case $FSTYPE in
    tmpfs | ramfs) die "$WORK is on $FSTYPE: fsync costs nothing there; set BENCH_DIR to a disk" ;;
esac
log "work dir $WORK ($FSTYPE); load average $(cut -d' ' -f1-3 /proc/loadavg)"

rand() { LC_ALL=C tr -dc "$1" </dev/urandom 2>/dev/null | head -c "$2" || true; } # tr ends on SIGPIPE
AK=AKIA$(rand 'A-Z2-7' 16)
SK=$(rand 'A-Za-z0-9' 40)
export GANTRY_ROOT_ACCESS_KEY_ID=$AK GANTRY_ROOT_SECRET_ACCESS_KEY=$SK

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
cpu_s() { # utime + stime of pids, seconds
    local t=0 p
    for p in "$@"; do
        t=$((t + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    awk -v t="$t" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / hz }'
}
alive() {
    local p
    for p in "$@"; do
        kill -0 "$p" 2>/dev/null || { tail -20 "$WORK"/*/*.log >&2; die "process $p died"; }
    done
}

# ---- backends ------------------------------------------------------------------------------

ETCD_PIDS=()
start_etcd() { # dir -> ETCD_URL, ETCD_PIDS
    local dir=$1 i initial="" deadline=$((SECONDS + READY_DEADLINE_S))
    local -a cports pports
    for i in 0 1 2; do cports[i]=$(free_port); pports[i]=$(free_port); done
    for i in 0 1 2; do initial+="${initial:+,}m$i=http://127.0.0.1:${pports[i]}"; done
    ETCD_PIDS=()
    for i in 0 1 2; do
        etcd --name "m$i" --data-dir "$dir/etcd-m$i" \
            --listen-client-urls "http://127.0.0.1:${cports[i]}" \
            --advertise-client-urls "http://127.0.0.1:${cports[i]}" \
            --listen-peer-urls "http://127.0.0.1:${pports[i]}" \
            --initial-advertise-peer-urls "http://127.0.0.1:${pports[i]}" \
            --initial-cluster "$initial" --initial-cluster-state new \
            --heartbeat-interval 50 --election-timeout 500 >"$dir/etcd-m$i.log" 2>&1 &
        ETCD_PIDS+=($!)
        PIDS+=($!)
    done
    for i in 0 1 2; do
        until curl -sf --max-time 2 "http://127.0.0.1:${cports[i]}/health" | grep -q '"health":"true"'; do
            alive "${ETCD_PIDS[@]}"
            ((SECONDS < deadline)) || die "etcd member m$i not healthy within ${READY_DEADLINE_S}s"
            sleep 0.1
        done
    done
    ETCD_URL="etcd://127.0.0.1:${cports[0]},127.0.0.1:${cports[1]},127.0.0.1:${cports[2]}/gantry"
}

S3_PID=
start_s3() { # dir -> S3_URL, S3_PID, S3 credentials in S3_AK/S3_SK
    local dir=$1 port deadline=$((SECONDS + READY_DEADLINE_S))
    port=$(free_port)
    mkdir -p "$dir/s3/registry"
    S3_AK=S3$(rand 'A-Z0-9' 16)
    S3_SK=$(rand 'A-Za-z0-9' 32)
    s3s-fs --host 127.0.0.1 --port "$port" --access-key "$S3_AK" --secret-key "$S3_SK" \
        "$dir/s3" >"$dir/s3s-fs.log" 2>&1 &
    S3_PID=$!
    PIDS+=($!)
    until curl -s --max-time 1 -o /dev/null "http://127.0.0.1:$port/"; do
        alive "$S3_PID"
        ((SECONDS < deadline)) || die "s3s-fs not listening within ${READY_DEADLINE_S}s"
        sleep 0.1
    done
    S3_URL="s3://registry/blobs?endpoint=http://127.0.0.1:$port&region=us-east-1"
}

GANTRY_PID=
start_gantry() { # dir [server args...] -> GANTRY_PID, ENDPOINT
    local dir=$1 ready=$1/ready.json deadline=$((SECONDS + READY_DEADLINE_S))
    shift
    GANTRY_LOG=${GANTRY_LOG:-warn} "$GANTRY" server --data-dir "$dir/data" \
        --listen 127.0.0.1:0 --ready-file "$ready" --max-connections $((INSTANCES + 1024)) \
        "$@" 2>"$dir/server.log" &
    GANTRY_PID=$!
    PIDS+=($!)
    until [[ -s $ready ]]; do
        kill -0 "$GANTRY_PID" 2>/dev/null || { cat "$dir/server.log" >&2; die "gantry exited before it was ready"; }
        ((SECONDS < deadline)) || { cat "$dir/server.log" >&2; die "gantry not ready within ${READY_DEADLINE_S}s"; }
        sleep 0.1
    done
    ENDPOINT=$(sed -n 's/.*"endpoint": *"\([^"]*\)".*/\1/p' "$ready")
    [[ $ENDPOINT == http://127.0.0.1:* ]] || die "unexpected endpoint '$ENDPOINT'"
}

log_errors() { # dir
    if grep -qE 'ERROR|WARN' "$1/server.log"; then
        echo "server log warnings/errors ($(grep -cE 'ERROR|WARN' "$1/server.log") lines), first ones:" >&2
        grep -E 'ERROR|WARN' "$1/server.log" | head -5 >&2 || true
    fi
}

declare -A RES
status=0

# ---- 1. state store ------------------------------------------------------------------------

duration_s=$(awk -v d="$DURATION" 'BEGIN {
    n = d + 0; if (d ~ /ms$/) n /= 1000; else if (d ~ /m$/) n *= 60; printf "%d", n + 1 }')

store_run() { # sqlite|etcd
    local s=$1 dir=$WORK/store-$1 out extra=() backend=() reg
    mkdir -p "$dir"
    ETCD_PIDS=()
    if [[ $s == etcd ]]; then
        start_etcd "$dir"
        extra=(--store "$ETCD_URL")
        backend=("${ETCD_PIDS[@]}")
        log "etcd members pids ${ETCD_PIDS[*]}: $ETCD_URL"
    fi
    start_gantry "$dir" "${extra[@]}"
    log "$s: gantry pid $GANTRY_PID at $ENDPOINT; load average $(cut -d' ' -f1-3 /proc/loadavg)"
    RES[$s.load]=$(cut -d' ' -f1-3 /proc/loadavg)

    log "$s: RegisterTaskDefinition, $CONCURRENCY clients, $DURATION"
    local g0 b0 g1 b1
    g0=$(cpu_s "$GANTRY_PID") b0=$(cpu_s "${backend[@]}")
    out=$dir/register.out
    if ! timeout "$((duration_s + 120))" "$BENCH" api --endpoint "$ENDPOINT" \
        --concurrency "$CONCURRENCY" --duration "$DURATION" --op register-task-definition \
        --server-pid "$GANTRY_PID" | tee "$out" >&2; then
        echo "$s: RegisterTaskDefinition benchmark failed" >&2
        status=1
    fi
    g1=$(cpu_s "$GANTRY_PID") b1=$(cpu_s "${backend[@]}")
    RES[$s.register]=$(grep '^ok=' "$out" || echo "no figures")
    RES[$s.register_rps]=$(sed -n 's/.*req_per_s=\([0-9.]*\).*/\1/p' "$out" | head -1)
    RES[$s.register_cpu]="server ${g0}→${g1} s${backend:+, etcd members ${b0}→${b1} s}"
    alive "$GANTRY_PID" "${backend[@]}"

    local st=$dir/sim.json sim reg con t0 deadline
    GANTRY_LOG=${SIM_LOG:-warn} "$SIM" --endpoint "$ENDPOINT" --cluster "$CLUSTER" \
        --instances "$INSTANCES" --status-file "$st" 2>"$dir/sim.log" &
    sim=$!
    PIDS+=($sim)
    log "$s: simulator pid $sim, $INSTANCES instances"
    field() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" "$st" 2>/dev/null || true; }
    t0=$EPOCHREALTIME
    deadline=$((SECONDS + CONNECT_DEADLINE_S))
    while :; do
        alive "$GANTRY_PID" "$sim" "${backend[@]}"
        reg=$(field registered) con=$(field connected)
        [[ ${reg:-0} == "$INSTANCES" && ${con:-0} == "$INSTANCES" ]] && break
        ((SECONDS < deadline)) || die "$s: only ${reg:-0} registered / ${con:-0} connected of $INSTANCES"
        sleep 0.2
    done
    RES[$s.connect_s]=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    log "$s: $INSTANCES instances registered and connected in ${RES[$s.connect_s]}s"

    local c
    for c in $RUN_CONCURRENCY; do
        log "$s: RunTask, $TASKS tasks, $COUNT per call, $c in flight"
        g0=$(cpu_s "$GANTRY_PID") b0=$(cpu_s "${backend[@]}")
        out=$dir/run-$c.out
        if ! timeout "$RUN_DEADLINE_S" "$DRIVE" --endpoint "$ENDPOINT" --cluster "$CLUSTER" run-tasks \
            --tasks "$TASKS" --count "$COUNT" --concurrency "$c" | tee "$out" >&2; then
            echo "$s: run-tasks ($c in flight) failed" >&2
            status=1
        fi
        g1=$(cpu_s "$GANTRY_PID") b1=$(cpu_s "${backend[@]}")
        RES[$s.run.$c]=$(grep '^RESULT' "$out" || echo "RESULT none")
        RES[$s.run_tps.$c]=$(sed -n 's/.*tasks_per_s=\([0-9.]*\).*/\1/p' "$out" | head -1)
        RES[$s.run_cpu.$c]="server ${g0}→${g1} s${backend:+, etcd members ${b0}→${b1} s}"
        alive "$GANTRY_PID" "$sim" "${backend[@]}"
    done
    alive "$GANTRY_PID" "$sim" "${backend[@]}"
    log_errors "$dir"
    stop_all
    rm -rf "$dir"
}

# ---- 2. blob store -------------------------------------------------------------------------

OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json

push_blob() { # endpoint repo file digest
    local ep=$1 repo=$2 file=$3 digest=$4 loc code sep
    loc=$(curl -sS --max-time "$CURL_SMALL_S" -H "$REG_AUTH" -X POST -o /dev/null -D - \
        "$ep/v2/$repo/blobs/uploads/" | tr -d '\r' | awk 'tolower($1) == "location:" {print $2}')
    [[ -n $loc ]] || die "no upload location from $ep"
    [[ $loc == /* ]] && loc=$ep$loc
    [[ $loc == *\?* ]] && sep='&' || sep='?'
    code=$(curl -sS --max-time "$CURL_BLOB_S" -H "$REG_AUTH" -X PUT -H 'Expect:' \
        -H 'Content-Type: application/octet-stream' -T "$file" \
        -o /dev/null -w '%{http_code}' "$loc${sep}digest=$digest")
    [[ $code == 201 ]] || die "blob PUT to $ep answered $code"
}

pull_blob() { # endpoint repo digest size
    local out
    out=$(curl -sS --max-time "$CURL_BLOB_S" -H "$REG_AUTH" -o /dev/null \
        -w '%{http_code} %{size_download}' "$1/v2/$2/blobs/$3")
    [[ $out == "200 $4" ]] || die "blob GET from $1: $out (want 200 $4)"
}

# The registry's Basic credential, as `docker login` gets it: ECR GetAuthorizationToken.
registry_login() { # endpoint -> REG_AUTH (an Authorization header)
    local out token
    out=$(curl -sS --max-time "$CURL_SMALL_S" --aws-sigv4 "aws:amz:us-east-1:ecr" -u "$AK:$SK" \
        -H 'X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken' \
        -H 'Content-Type: application/x-amz-json-1.1' --data '{}' "$1/")
    token=$(printf '%s' "$out" | python3 -c 'import json, sys; print(json.load(sys.stdin)["authorizationData"][0]["authorizationToken"])') ||
        die "GetAuthorizationToken failed: $out"
    REG_AUTH="Authorization: Basic $token"
}

create_repo() { # endpoint repo
    local out
    out=$(curl -sS --max-time "$CURL_SMALL_S" --aws-sigv4 "aws:amz:us-east-1:ecr" -u "$AK:$SK" \
        -H 'X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.CreateRepository' \
        -H 'Content-Type: application/x-amz-json-1.1' \
        --data "{\"repositoryName\":\"$2\"}" -w '\n%{http_code}' "$1/")
    [[ ${out##*$'\n'} == 200 ]] || die "CreateRepository $2 failed: $out"
}

# Pushes a small OCI manifest (a config and a 1 KiB layer) as <repo>:small.
push_small_manifest() { # endpoint repo dir
    local ep=$1 repo=$2 dir=$3 cd cs ld ls manifest code
    printf '%s' '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}' >"$dir/config"
    rand 'A-Za-z0-9' 1024 >"$dir/layer"
    cd=sha256:$(sha256sum "$dir/config" | awk '{print $1}') cs=$(stat -c %s "$dir/config")
    ld=sha256:$(sha256sum "$dir/layer" | awk '{print $1}') ls=$(stat -c %s "$dir/layer")
    push_blob "$ep" "$repo" "$dir/config" "$cd"
    push_blob "$ep" "$repo" "$dir/layer" "$ld"
    manifest="{\"schemaVersion\":2,\"mediaType\":\"$OCI_MANIFEST\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"$cd\",\"size\":$cs},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"$ld\",\"size\":$ls}]}"
    code=$(printf '%s' "$manifest" | curl -sS --max-time "$CURL_SMALL_S" -H "$REG_AUTH" -X PUT \
        -H "Content-Type: $OCI_MANIFEST" --data-binary @- -o /dev/null -w '%{http_code}' \
        "$ep/v2/$repo/manifests/small")
    [[ $code == 201 ]] || die "manifest PUT to $ep answered $code"
    MANIFEST_LEN=${#manifest}
}

blob_run() { # fs|s3
    local s=$1 dir=$WORK/blob-$1 extra=() backend=() i t0 t1 g0 g1 b0 b1 bytes
    mkdir -p "$dir/src"
    for ((i = 0; i < BLOBS; i++)); do
        head -c "$((BLOB_MIB << 20))" /dev/urandom | tee "$dir/src/blob$i" | sha256sum |
            awk '{print "sha256:" $1}' >"$dir/src/blob$i.digest"
    done
    bytes=$((BLOBS * (BLOB_MIB << 20)))
    if [[ $s == s3 ]]; then
        start_s3 "$dir"
        extra=(--blob-store "$S3_URL")
        backend=("$S3_PID")
        log "s3s-fs pid $S3_PID: $S3_URL"
        AWS_ACCESS_KEY_ID=$S3_AK AWS_SECRET_ACCESS_KEY=$S3_SK start_gantry "$dir" "${extra[@]}"
    else
        start_gantry "$dir"
    fi
    log "$s: gantry pid $GANTRY_PID at $ENDPOINT; load average $(cut -d' ' -f1-3 /proc/loadavg)"
    RES[$s.load]=$(cut -d' ' -f1-3 /proc/loadavg)
    create_repo "$ENDPOINT" bench
    registry_login "$ENDPOINT"

    log "$s: push $BLOBS x $BLOB_MIB MiB"
    g0=$(cpu_s "$GANTRY_PID") b0=$(cpu_s "${backend[@]}") t0=$EPOCHREALTIME
    for ((i = 0; i < BLOBS; i++)); do
        push_blob "$ENDPOINT" bench "$dir/src/blob$i" "$(<"$dir/src/blob$i.digest")"
    done
    t1=$EPOCHREALTIME g1=$(cpu_s "$GANTRY_PID") b1=$(cpu_s "${backend[@]}")
    RES[$s.push]=$(awk -v b="$bytes" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f", b / (t1 - t0) / 1e6 }')
    RES[$s.push_cpu]="server $(awk -v a="$g0" -v b="$g1" 'BEGIN { printf "%.1f", b - a }') s${backend:+, s3s-fs $(awk -v a="$b0" -v b="$b1" 'BEGIN { printf "%.1f", b - a }') s}"

    log "$s: pull"
    g0=$(cpu_s "$GANTRY_PID") b0=$(cpu_s "${backend[@]}") t0=$EPOCHREALTIME
    for ((i = 0; i < BLOBS; i++)); do
        pull_blob "$ENDPOINT" bench "$(<"$dir/src/blob$i.digest")" $((BLOB_MIB << 20))
    done
    t1=$EPOCHREALTIME g1=$(cpu_s "$GANTRY_PID") b1=$(cpu_s "${backend[@]}")
    RES[$s.pull]=$(awk -v b="$bytes" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f", b / (t1 - t0) / 1e6 }')
    RES[$s.pull_cpu]="server $(awk -v a="$g0" -v b="$g1" 'BEGIN { printf "%.1f", b - a }') s${backend:+, s3s-fs $(awk -v a="$b0" -v b="$b1" 'BEGIN { printf "%.1f", b - a }') s}"
    rm -rf "$dir/src"
    if [[ $s == s3 ]]; then # the blobs went through the bucket, not the data dir
        [[ -n $(find "$dir/s3/registry" -type f -size +$((BLOB_MIB - 1))M -print -quit) ]] ||
            die "s3: no blob of $BLOB_MIB MiB in the bucket's directory"
    fi

    log "$s: manifest GET x $MANIFEST_GETS over $MANIFEST_CONNS connections"
    mkdir -p "$dir/m"
    push_small_manifest "$ENDPOINT" bench "$dir/m"
    {
        echo "header = \"$REG_AUTH\""
        echo "header = \"Accept: $OCI_MANIFEST\""
        for ((i = 0; i < MANIFEST_GETS; i++)); do
            echo "url = \"$ENDPOINT/v2/bench/manifests/small\""
            echo "output = /dev/null"
        done
    } >"$dir/m/curl.cfg"
    g0=$(cpu_s "$GANTRY_PID") b0=$(cpu_s "${backend[@]}") t0=$EPOCHREALTIME
    timeout 300 curl -sS --parallel --parallel-max "$MANIFEST_CONNS" -K "$dir/m/curl.cfg" \
        -w '%{http_code} %{size_download}\n' >"$dir/m/codes" 2>"$dir/m/curl.err" ||
        { cat "$dir/m/curl.err" >&2; die "$s: manifest GETs failed"; }
    t1=$EPOCHREALTIME g1=$(cpu_s "$GANTRY_PID") b1=$(cpu_s "${backend[@]}")
    local good
    good=$(grep -c "^200 $MANIFEST_LEN\$" "$dir/m/codes" || true)
    ((good == MANIFEST_GETS)) || { sort "$dir/m/codes" | uniq -c >&2; die "$s: $good of $MANIFEST_GETS manifest GETs answered 200"; }
    RES[$s.manifest]=$(awk -v n="$MANIFEST_GETS" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f", n / (t1 - t0) }')
    RES[$s.manifest_cpu]="server $(awk -v a="$g0" -v b="$g1" -v n="$MANIFEST_GETS" 'BEGIN { printf "%.0f", (b - a) / n * 1e6 }') µs/req${backend:+, s3s-fs $(awk -v a="$b0" -v b="$b1" 'BEGIN { printf "%.1f", b - a }') s}"
    log_errors "$dir"
    stop_all
    rm -rf "$dir"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b != "") printf "%.2f", b / a; else print "n/a" }'; }

for part in $PARTS; do
    case $part in
        store) store_run sqlite; store_run etcd ;;
        blob) blob_run fs; blob_run s3 ;;
        *) die "unknown part '$part' in BENCH_PARTS" ;;
    esac
done

echo
echo "== Scale-out backends, $(nproc) cores shared by everything (load average now $(cut -d' ' -f1-3 /proc/loadavg))"
if [[ " $PARTS " == *" store "* ]]; then
    for s in sqlite etcd; do
        echo "[$s] (load at start ${RES[$s.load]})"
        echo "  register-task-definition ($CONCURRENCY clients, $DURATION): ${RES[$s.register]}"
        echo "      CPU: ${RES[$s.register_cpu]}"
        echo "  fleet of $INSTANCES connected in ${RES[$s.connect_s]}s"
        for c in $RUN_CONCURRENCY; do
            echo "  run-tasks ($TASKS tasks, count $COUNT, $c in flight): ${RES[$s.run.$c]}"
            echo "      CPU: ${RES[$s.run_cpu.$c]}"
        done
    done
    line="etcd/sqlite: RegisterTaskDefinition $(ratio "${RES[sqlite.register_rps]}" "${RES[etcd.register_rps]}")"
    for c in $RUN_CONCURRENCY; do
        line+=", RunTask ($c in flight) $(ratio "${RES[sqlite.run_tps.$c]}" "${RES[etcd.run_tps.$c]}")"
    done
    echo "$line"
fi
if [[ " $PARTS " == *" blob "* ]]; then
    for s in fs s3; do
        echo "[$s] (load at start ${RES[$s.load]})"
        echo "  push $BLOBS x $BLOB_MIB MiB: ${RES[$s.push]} MB/s (CPU: ${RES[$s.push_cpu]})"
        echo "  pull: ${RES[$s.pull]} MB/s (CPU: ${RES[$s.pull_cpu]})"
        echo "  manifest GET: ${RES[$s.manifest]} req/s (CPU: ${RES[$s.manifest_cpu]})"
    done
    echo "s3/fs: push $(ratio "${RES[fs.push]}" "${RES[s3.push]}"), pull $(ratio "${RES[fs.pull]}" "${RES[s3.pull]}"), manifest GET $(ratio "${RES[fs.manifest]}" "${RES[s3.manifest]}")"
fi
exit "$status"
