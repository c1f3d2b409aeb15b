#!/usr/bin/env bash
# Registry benchmark (docs/benchmarks.md, "Registry"): Gantry against Debian's docker-registry
# (CNCF distribution 2.8), side by side in one run, both on 127.0.0.1, data dirs on one disk.
#
# Every round starts both servers on fresh data dirs and measures, for each of them:
#   1. blob push: BENCH_BLOBS blobs of BENCH_BLOB_MIB MiB of fresh random data (generated
#      beforehand, different for each server and round, so nothing deduplicates), each carried
#      by curl: POST /v2/<repo>/blobs/uploads/, then PUT <location>&digest=sha256:... with the
#      file streamed as the body (-T); MB/s (10^6 bytes) over the whole set, one upload at a
#      time;
#   2. blob pull: GET of those blobs with curl to /dev/null; MB/s;
#   3. skopeo copy of a hand-written OCI layout (BENCH_LAYERS random tar layers of
#      BENCH_LAYER_MIB MiB, different for each server) into the registry; seconds;
#   4. manifest GET: one small OCI manifest pushed by tag, then wrk (BENCH_WRK_THREADS threads,
#      BENCH_WRK_CONNS connections, BENCH_WRK_DURATION) on GET /v2/<repo>/manifests/<tag>; req/s.
# Both servers go through each phase back to back; which one goes first alternates from round
# to round. The peer runs at its best: no authentication, no access log, the packaged in-memory
# descriptor cache; Gantry authenticates every request (Basic, the root key pair). At the end
# the script prints every round, the medians, and the ratios Gantry/peer against the targets of
# issue 3 (push >= 3x, pull >= 1.2x, manifest GET >= 3x), with each server's CPU time per GiB or
# per request and the CPU the rest of the machine used meanwhile. It exits non-zero when a step
# fails, not when a target is missed. Every step is bounded in time, everything stays on
# 127.0.0.1, and servers and temporary data are removed on exit.
#
# Environment:
#   BENCH_ROUNDS        rounds (default 3; the medians are over them)
#   BENCH_DIR           where the temporary dir is made (default /var/tmp; must not be tmpfs)
#   BENCH_BLOBS         blobs per push (default 4)
#   BENCH_BLOB_MIB      MiB per blob (default 256)
#   BENCH_LAYERS        layers of the skopeo image (default 5)
#   BENCH_LAYER_MIB     MiB per layer (default 20)
#   BENCH_WRK_DURATION  wrk duration (default 10s)
#   BENCH_WRK_THREADS   wrk threads (default 2)
#   BENCH_WRK_CONNS     wrk connections (default 64)
#   BENCH_SKIP_BUILD    1: use the gantry binary already built
#   CARGO_TARGET_DIR    as for cargo (default ./target)
#   PEER_REGISTRY       the peer binary (default docker-registry)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BASE=${BENCH_DIR:-/var/tmp}
ROUNDS=${BENCH_ROUNDS:-3}
BLOBS=${BENCH_BLOBS:-4}
BLOB_MIB=${BENCH_BLOB_MIB:-256}
LAYERS=${BENCH_LAYERS:-5}
LAYER_MIB=${BENCH_LAYER_MIB:-20}
WRK_DURATION=${BENCH_WRK_DURATION:-10s}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
WRK_CONNS=${BENCH_WRK_CONNS:-64}
PEER=${PEER_REGISTRY:-docker-registry}
READY_DEADLINE_S=30
STOP_DEADLINE_S=20
CURL_SMALL_S=30   # any small request
CURL_BLOB_S=300   # one blob upload or download
SKOPEO_S=300

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-registry: %s\n' "$*" >&2; exit 1; }

for tool in curl wrk skopeo sha256sum tar python3 "$PEER"; do
    command -v "$tool" >/dev/null ||
        die "missing $tool (Debian: apt-get install -y curl wrk skopeo docker-registry python3)"
done

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    log "building the release binary (target dir $TARGET)"
    (cd "$ROOT" && cargo build --release -p gantry)
fi
GANTRY=$TARGET/release/gantry
[[ -x $GANTRY ]] || die "missing $GANTRY"

WORK=$(mktemp -d "$BASE/gantry-bench-registry.XXXXXX")
GANTRY_PID=
PEER_PID=
stop() { # pid
    local pid=$1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq $((STOP_DEADLINE_S * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "process $pid did not stop within ${STOP_DEADLINE_S}s of SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    stop "$GANTRY_PID"
    stop "$PEER_PID"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

FSTYPE=$(stat -f -c %T "$WORK")
case $FSTYPE in
    tmpfs | ramfs) die "$WORK is on $FSTYPE, not a disk; set BENCH_DIR to a directory on a disk" ;;
esac
log "work dir $WORK ($FSTYPE); both servers' data dirs live under it"
df -h "$WORK" >&2

# Throwaway root credentials for this Gantry only (it listens on loopback).
rand() { LC_ALL=C tr -dc "$1" </dev/urandom 2>/dev/null | head -c "$2" || true; } # tr ends on SIGPIPE
AK=AKIA$(rand 'A-Z2-7' 16)
SK=$(rand 'A-Za-z0-9' 40)
export GANTRY_ROOT_ACCESS_KEY_ID=$AK GANTRY_ROOT_SECRET_ACCESS_KEY=$SK
BASIC="Basic $(printf '%s:%s' "$AK" "$SK" | base64 -w0)"

# CPU time (user + system) of a process, in clock ticks.
TICKS_PER_S=$(getconf CLK_TCK)
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- servers ------------------------------------------------------------------------------

start_gantry() { # dir
    local dir=$1 ready=$1/ready.json deadline=$((SECONDS + READY_DEADLINE_S))
    GANTRY_LOG=${GANTRY_LOG:-warn} "$GANTRY" server --data-dir "$dir/data" \
        --listen 127.0.0.1:0 --ready-file "$ready" --registry-root-basic-auth 2>"$dir/server.log" &
    GANTRY_PID=$!
    until [[ -s $ready ]]; do
        kill -0 "$GANTRY_PID" 2>/dev/null || { cat "$dir/server.log" >&2; die "gantry exited before it was ready"; }
        ((SECONDS < deadline)) || { cat "$dir/server.log" >&2; die "gantry not ready within ${READY_DEADLINE_S}s"; }
        sleep 0.1
    done
    GANTRY_ENDPOINT=$(sed -n 's/.*"endpoint": *"\([^"]*\)".*/\1/p' "$ready")
    [[ $GANTRY_ENDPOINT == http://127.0.0.1:* ]] || die "unexpected gantry endpoint '$GANTRY_ENDPOINT'"
}

start_peer() { # dir
    local dir=$1 port deadline=$((SECONDS + READY_DEADLINE_S))
    port=$(free_port)
    # Its best case: no auth, no per-request log lines, the packaged in-memory descriptor cache.
    cat >"$dir/config.yml" <<EOF
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $dir/data}
  delete: {enabled: true}
  cache: {blobdescriptor: inmemory}
http: {addr: 127.0.0.1:$port}
EOF
    "$PEER" serve "$dir/config.yml" >"$dir/server.log" 2>&1 &
    PEER_PID=$!
    PEER_ENDPOINT=http://127.0.0.1:$port
    until curl -sf --max-time 1 -o /dev/null "$PEER_ENDPOINT/v2/"; do
        kill -0 "$PEER_PID" 2>/dev/null || { cat "$dir/server.log" >&2; die "peer exited before it was ready"; }
        ((SECONDS < deadline)) || { cat "$dir/server.log" >&2; die "peer not ready within ${READY_DEADLINE_S}s"; }
        sleep 0.1
    done
}

# ECR CreateRepository, SigV4-signed by curl itself.
create_repo() { # repo
    local out
    out=$(curl -sS --max-time "$CURL_SMALL_S" --aws-sigv4 "aws:amz:us-east-1:ecr" -u "$AK:$SK" \
        -H 'X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.CreateRepository' \
        -H 'Content-Type: application/x-amz-json-1.1' \
        --data "{\"repositoryName\":\"$1\"}" -w '\n%{http_code}' "$GANTRY_ENDPOINT/")
    [[ ${out##*$'\n'} == 200 ]] || die "CreateRepository $1 failed: $out"
}

# ---- data ---------------------------------------------------------------------------------

# A file of random bytes; prints its sha256 digest.
random_file() { # path mib
    head -c "$(($2 << 20))" /dev/urandom | tee "$1" | sha256sum | awk '{print "sha256:" $1}'
}

# An OCI image layout with random uncompressed tar layers, tagged "bench".
make_layout() { # dir layers layer_mib
    local dir=$1 n=$2 mib=$3 i d size layers="" diff_ids="" tmp
    mkdir -p "$dir/blobs/sha256" "$dir/.src"
    tmp=$dir/.src
    for ((i = 0; i < n; i++)); do
        head -c "$((mib << 20))" /dev/urandom >"$tmp/file$i"
        tar -cf "$tmp/layer" -C "$tmp" "file$i"
        d=$(sha256sum "$tmp/layer" | awk '{print $1}')
        size=$(stat -c %s "$tmp/layer")
        mv "$tmp/layer" "$dir/blobs/sha256/$d"
        rm "$tmp/file$i"
        layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:$d\",\"size\":$size}"
        diff_ids+="${diff_ids:+,}\"sha256:$d\""
    done
    rmdir "$tmp"
    blob() { # content -> prints "digest size", stores the blob
        local content=$1 h
        h=$(printf '%s' "$content" | sha256sum | awk '{print $1}')
        printf '%s' "$content" >"$dir/blobs/sha256/$h"
        echo "$h ${#content}"
    }
    local config manifest cd cs md ms
    config="{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[$diff_ids]}}"
    read -r cd cs < <(blob "$config")
    manifest="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$cd\",\"size\":$cs},\"layers\":[$layers]}"
    read -r md ms < <(blob "$manifest")
    printf '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' \
        "$md" "$ms" >"$dir/index.json"
}

# ---- registry operations (curl) -----------------------------------------------------------

# Monolithic upload: POST to open a session, then PUT the whole file with the digest.
push_blob() { # endpoint repo file digest [curl auth args...]
    local ep=$1 repo=$2 file=$3 digest=$4 loc code sep
    shift 4
    loc=$(curl -sS --max-time "$CURL_SMALL_S" "$@" -X POST -o /dev/null -D - \
        "$ep/v2/$repo/blobs/uploads/" | tr -d '\r' | awk 'tolower($1) == "location:" {print $2}')
    [[ -n $loc ]] || die "no upload location from $ep"
    [[ $loc == /* ]] && loc=$ep$loc
    [[ $loc == *\?* ]] && sep='&' || sep='?'
    # -T streams the file; --data-binary @file would first read all of it into curl's memory
    # (about a second per 256 MiB here), which would make the client the bottleneck.
    code=$(curl -sS --max-time "$CURL_BLOB_S" "$@" -X PUT -H 'Expect:' \
        -H 'Content-Type: application/octet-stream' -T "$file" \
        -o /dev/null -w '%{http_code}' "$loc${sep}digest=$digest")
    [[ $code == 201 ]] || die "blob PUT to $ep answered $code"
}

pull_blob() { # endpoint repo digest size [curl auth args...]
    local ep=$1 repo=$2 digest=$3 size=$4 out
    shift 4
    out=$(curl -sS --max-time "$CURL_BLOB_S" "$@" -o /dev/null -w '%{http_code} %{size_download}' \
        "$ep/v2/$repo/blobs/$digest")
    [[ $out == "200 $size" ]] || die "blob GET from $ep: $out (want 200 $size)"
}

# Pushes a small blob (POST then PUT; distribution 2.8 ignores a body on the POST); prints
# "digest size".
push_small() { # endpoint repo content [curl auth args...]
    local ep=$1 repo=$2 content=$3 d f
    shift 3
    f=$(mktemp "$WORK/small.XXXXXX")
    printf '%s' "$content" >"$f"
    d=sha256:$(sha256sum "$f" | awk '{print $1}')
    push_blob "$ep" "$repo" "$f" "$d" "$@"
    rm -f "$f"
    echo "$d ${#content}"
}

OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json

# Pushes a small OCI manifest (a config and a 1 KiB layer) as <repo>:small.
push_small_manifest() { # endpoint repo [curl auth args...]
    local ep=$1 repo=$2 cd cs ld ls manifest code
    shift 2
    read -r cd cs < <(push_small "$ep" "$repo" '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}' "$@")
    read -r ld ls < <(push_small "$ep" "$repo" "$(rand 'A-Za-z0-9' 1024)" "$@")
    manifest="{\"schemaVersion\":2,\"mediaType\":\"$OCI_MANIFEST\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"$cd\",\"size\":$cs},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"$ld\",\"size\":$ls}]}"
    code=$(printf '%s' "$manifest" | curl -sS --max-time "$CURL_SMALL_S" "$@" -X PUT \
        -H "Content-Type: $OCI_MANIFEST" --data-binary @- -o /dev/null -w '%{http_code}' \
        "$ep/v2/$repo/manifests/small")
    [[ $code == 201 ]] || die "manifest PUT to $ep answered $code"
    code=$(curl -sS --max-time "$CURL_SMALL_S" "$@" -H "Accept: $OCI_MANIFEST" -o /dev/null \
        -w '%{http_code} %{size_download}' "$ep/v2/$repo/manifests/small")
    [[ $code == "200 ${#manifest}" ]] || die "manifest GET from $ep: $code (want 200 ${#manifest})"
}

# ---- one round ----------------------------------------------------------------------------

declare -A RES     # RES[<round>.<server>.<metric>]
declare -A EP PID DIR
declare -a AUTH_gantry AUTH_peer

# Machine-wide busy CPU time (all cores), in clock ticks.
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }

# Runs "$@" against server $1 and records its throughput/CPU under metric $2.
phase_push() { # round server
    local r=$1 s=$2 i t0 t1 c0 c1 bytes=$((BLOBS * (BLOB_MIB << 20))) auth
    auth="AUTH_$s[@]"
    c0=$(cpu_ticks "${PID[$s]}"); t0=$EPOCHREALTIME
    for ((i = 0; i < BLOBS; i++)); do
        push_blob "${EP[$s]}" bench "${DIR[$s]}/src/blob$i" "$(<"${DIR[$s]}/src/blob$i.digest")" "${!auth}"
    done
    t1=$EPOCHREALTIME; c1=$(cpu_ticks "${PID[$s]}")
    RES[$r.$s.push]=$(awk -v b="$bytes" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f", b / (t1 - t0) / 1e6 }')
    RES[$r.$s.push_cpu]=$(awk -v c=$((c1 - c0)) -v hz="$TICKS_PER_S" -v b="$bytes" 'BEGIN { printf "%.2f", c / hz / (b / 2^30) }')
}

phase_pull() { # round server
    local r=$1 s=$2 i t0 t1 c0 c1 bytes=$((BLOBS * (BLOB_MIB << 20))) auth
    auth="AUTH_$s[@]"
    c0=$(cpu_ticks "${PID[$s]}"); t0=$EPOCHREALTIME
    for ((i = 0; i < BLOBS; i++)); do
        pull_blob "${EP[$s]}" bench "$(<"${DIR[$s]}/src/blob$i.digest")" $((BLOB_MIB << 20)) "${!auth}"
    done
    t1=$EPOCHREALTIME; c1=$(cpu_ticks "${PID[$s]}")
    RES[$r.$s.pull]=$(awk -v b="$bytes" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f", b / (t1 - t0) / 1e6 }')
    RES[$r.$s.pull_cpu]=$(awk -v c=$((c1 - c0)) -v hz="$TICKS_PER_S" -v b="$bytes" 'BEGIN { printf "%.2f", c / hz / (b / 2^30) }')
}

phase_skopeo() { # round server
    local r=$1 s=$2 t0 t1
    local -a creds=(--dest-no-creds)
    [[ $s == gantry ]] && creds=(--dest-creds "$AK:$SK")
    t0=$EPOCHREALTIME
    timeout "$SKOPEO_S" skopeo --insecure-policy copy --quiet --dest-tls-verify=false "${creds[@]}" \
        "oci:${DIR[$s]}/layout:bench" "docker://${EP[$s]#http://}/skopeo:bench" >&2 ||
        die "skopeo copy into $s failed"
    t1=$EPOCHREALTIME
    RES[$r.$s.skopeo]=$(awk -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.2f", t1 - t0 }')
}

phase_manifest() { # round server
    local r=$1 s=$2 c0 c1 total out=${DIR[$s]}/wrk.out auth
    auth="AUTH_$s[@]"
    push_small_manifest "${EP[$s]}" bench "${!auth}"
    {
        echo "wrk.headers[\"Accept\"] = \"$OCI_MANIFEST\""
        if [[ $s == gantry ]]; then echo "wrk.headers[\"Authorization\"] = \"$BASIC\""; fi
    } >"${DIR[$s]}/wrk.lua"
    c0=$(cpu_ticks "${PID[$s]}")
    timeout 120 wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$WRK_DURATION" --latency \
        -s "${DIR[$s]}/wrk.lua" "${EP[$s]}/v2/bench/manifests/small" >"$out" ||
        die "wrk against $s failed"
    c1=$(cpu_ticks "${PID[$s]}")
    if grep -qE 'Non-2xx|Socket errors' "$out"; then
        cat "$out" >&2
        die "$s answered errors under wrk"
    fi
    RES[$r.$s.manifest]=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")
    total=$(awk '/requests in/ { print $1 }' "$out")
    RES[$r.$s.manifest_cpu]=$(awk -v c=$((c1 - c0)) -v hz="$TICKS_PER_S" -v n="$total" 'BEGIN { printf "%.0f", c / hz / n * 1e6 }')
    RES[$r.$s.manifest_p99]=$(awk '$1 == "99%" { print $2 }' "$out")
}

prepare_data() { # dir
    local dir=$1 i
    mkdir -p "$dir/src"
    for ((i = 0; i < BLOBS; i++)); do
        random_file "$dir/src/blob$i" "$BLOB_MIB" >"$dir/src/blob$i.digest"
    done
    make_layout "$dir/layout" "$LAYERS" "$LAYER_MIB"
}

# What a fresh page-cache page costs here. On a virtual machine whose host takes freed guest
# memory back (free page reporting), the first write to a page costs several times a normal one;
# every byte either server writes through the page cache pays it.
probe() { # dd output flags
    local t
    t=$( { TIMEFORMAT='%R %S'; time dd if=/dev/zero of="$WORK/probe" bs=1M count=256 status=none "$@"; } 2>&1 )
    rm -f "$WORK/probe"
    awk -v r="${t% *}" -v s="${t#* }" 'BEGIN { printf "%.0f MB/s, %.2f CPU-s per GiB", 268.435456 / r, s * 4 }'
}
PROBE_BUFFERED=$(probe)
sleep 1
PROBE_DIRECT=$(probe oflag=direct)
log "writing 256 MiB: through the page cache $PROBE_BUFFERED; O_DIRECT $PROBE_DIRECT"

for ((r = 1; r <= ROUNDS; r++)); do
    RD=$WORK/round$r
    DIR[gantry]=$RD/gantry DIR[peer]=$RD/peer
    mkdir -p "${DIR[gantry]}" "${DIR[peer]}"
    log "round $r/$ROUNDS: generating fresh random data for each server (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
    prepare_data "${DIR[gantry]}"
    prepare_data "${DIR[peer]}"
    start_gantry "${DIR[gantry]}"
    start_peer "${DIR[peer]}"
    EP[gantry]=$GANTRY_ENDPOINT EP[peer]=$PEER_ENDPOINT
    PID[gantry]=$GANTRY_PID PID[peer]=$PEER_PID
    AUTH_gantry=(-u "$AK:$SK")
    AUTH_peer=() # the peer runs without authentication
    create_repo bench
    create_repo skopeo
    log "gantry pid $GANTRY_PID at $GANTRY_ENDPOINT; peer pid $PEER_PID at $PEER_ENDPOINT"
    # Both servers go through each phase back to back, so that they see the same machine; who
    # goes first alternates from round to round.
    if ((r % 2)); then order=(gantry peer); else order=(peer gantry); fi
    b0=$(busy_ticks); g0=$(cpu_ticks "$GANTRY_PID"); p0=$(cpu_ticks "$PEER_PID"); w0=$EPOCHREALTIME
    for phase in push pull skopeo manifest; do
        for s in "${order[@]}"; do
            log "round $r, $phase: $s"
            "phase_$phase" "$r" "$s"
        done
    done
    b1=$(busy_ticks); g1=$(cpu_ticks "$GANTRY_PID"); p1=$(cpu_ticks "$PEER_PID"); w1=$EPOCHREALTIME
    # CPU the machine spent outside the two servers: the clients (curl, skopeo, wrk) and
    # anything else running; a high share means the round was disturbed.
    RES[$r.all.others]=$(awk -v b=$((b1 - b0)) -v s=$((g1 - g0 + p1 - p0)) -v hz="$TICKS_PER_S" \
        -v w0="$w0" -v w1="$w1" -v n="$(nproc)" 'BEGIN { printf "%.0f%%", 100 * (b - s) / hz / ((w1 - w0) * n) }')
    for s in gantry peer; do
        if grep -v 'response completed with error' "${DIR[$s]}/server.log" |
            grep -qiE 'level=(error|fatal|panic)|panicked| ERROR '; then
            echo "$s log errors:" >&2
            grep -iE 'level=(error|fatal|panic)|panicked| ERROR ' "${DIR[$s]}/server.log" | head -10 >&2
        fi
    done
    stop "$GANTRY_PID"; GANTRY_PID=
    stop "$PEER_PID"; PEER_PID=
    rm -rf "$RD"
done

# ---- report -------------------------------------------------------------------------------

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
values() { # server metric
    local r out=()
    for ((r = 1; r <= ROUNDS; r++)); do out+=("${RES[$r.$1.$2]}"); done
    echo "${out[@]}"
}

echo
echo "== Registry: Gantry vs docker-registry $("$PEER" --version 2>/dev/null | awk '{print $NF}') (the peer), $ROUNDS round(s), $(nproc) cores shared by clients and servers"
echo "   push/pull: $BLOBS x $BLOB_MIB MiB, one curl at a time, MB = 10^6 bytes; skopeo: $LAYERS x $LAYER_MIB MiB layers;"
echo "   manifest GET: wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DURATION; CPU = the server process's user+system time;"
echo "   others = CPU spent outside both servers (clients and anything else), % of all cores over the round"
echo "   writing 256 MiB of fresh pages here: through the page cache $PROBE_BUFFERED; O_DIRECT $PROBE_DIRECT"
echo "   load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '%-16s %-32s %-32s\n' "per round" "gantry" "peer"
for m in push pull skopeo manifest push_cpu pull_cpu manifest_cpu manifest_p99; do
    printf '%-16s %-32s %-32s\n' "$m" "$(values gantry $m)" "$(values peer $m)"
done
printf '%-16s %s\n' "others" "$(values all others)"
echo
printf '%-30s %10s %10s %12s %8s\n' "median" "gantry" "peer" "ratio" "target"
row() { # label metric target higher_is_better
    local g p ratio verdict=""
    g=$(median $(values gantry "$2")); p=$(median $(values peer "$2"))
    if [[ $4 == 1 ]]; then
        ratio=$(awk -v g="$g" -v p="$p" 'BEGIN { printf "%.2f", g / p }')
    else
        ratio=$(awk -v g="$g" -v p="$p" 'BEGIN { printf "%.2f", p / g }')
    fi
    if [[ $3 != - ]]; then
        verdict=$(awk -v r="$ratio" -v t="$3" 'BEGIN { print (r >= t ? "met" : "MISSED") }')
        printf '%-30s %10s %10s %11sx %7sx %s\n' "$1" "$g" "$p" "$ratio" "$3" "$verdict"
    else
        printf '%-30s %10s %10s %11sx\n' "$1" "$g" "$p" "$ratio"
    fi
}
echo "throughput, ratio = gantry/peer:"
row "blob push, MB/s" push 3 1
row "blob pull, MB/s" pull 1.2 1
row "manifest GET, req/s" manifest 3 1
echo "time and cost, ratio = peer/gantry (how many times less gantry needs):"
row "skopeo copy, s" skopeo - 0
row "push, server CPU s per GiB" push_cpu - 0
row "pull, server CPU s per GiB" pull_cpu - 0
row "manifest GET, server CPU us" manifest_cpu - 0
