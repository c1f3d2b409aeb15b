#!/usr/bin/env bash
# Load-balancer benchmark (docs/benchmarks.md, "Load balancer").
#
# Side by side in one interleaved run, on loopback only:
#   backend  nginx serving a static 1 KiB file with keep-alive on two ports (CPU 1);
#   proxies  `gantry lb` (release, configured through the ELBv2 API with boto3), nginx
#            (upstream keepalive 64) and haproxy (http-reuse always), each pinned to CPU 0;
#   load     wrk -t1 -c64 (CPU 1) through each proxy in turn, BENCH_ROUNDS rounds of
#            gantry, nginx, haproxy; per run: req/s and the proxy's CPU time (utime+stime from
#            /proc/<pid>/stat) per request.
# Then the churn check: 20 s of wrk through `gantry lb` to a target group of both backends while
# one of them is deregistered and re-registered every second; wrk must see no socket error and
# no non-2xx response (counted by a Lua `response` hook).
# With BENCH_TLS=1 the three proxies terminate TLS instead, with the same RSA 2048 certificate
# (openssl, made for the run) and the same protocol and cipher, TLS 1.2 with
# ECDHE-RSA-AES128-GCM-SHA256 (`gantry lb`'s listener: HTTPS with the certificate imported into
# ACM, SSL policy ELBSecurityPolicy-2016-08); wrk runs twice per proxy and round: over keep-alive
# connections (the cost of the records) and with a new connection per request (`Connection:
# close`, a full handshake each time).
# Every process and temp file is removed on exit.
#
# Needs: nginx, haproxy, wrk, taskset (Debian), python3 with boto3, and openssl for BENCH_TLS.
# Environment:
#   BENCH_DURATION     seconds per wrk run (default 10)
#   BENCH_ROUNDS       interleaved rounds (default 3)
#   BENCH_CONNECTIONS  wrk connections (default 64)
#   BENCH_CHURN        seconds of the register/deregister check (default 20; 0 skips it)
#   BENCH_TLS          1: the proxies terminate TLS (see above; default 0)
#   BENCH_SKIP_BUILD   1: use the release binary already built
#   BENCH_HOLD         seconds to pause once everything is up, before the runs (to attach perf
#                      or strace to the printed pids; default 0)
#   CARGO_TARGET_DIR   as for cargo (default ./target)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-3}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
CHURN=${BENCH_CHURN:-20}
TLS=${BENCH_TLS:-0}
SCHEME=http
[[ $TLS == 1 ]] && SCHEME=https
PROXY_CPU=0
LOAD_CPU=1
READY_DEADLINE_S=30
CLK_TCK=$(getconf CLK_TCK)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-lb: %s\n' "$*" >&2; exit 1; }

for tool in nginx haproxy wrk taskset python3; do
    command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] || die "missing $tool (apt-get install nginx haproxy wrk util-linux)"
done
python3 -c 'import boto3' 2>/dev/null || die "python3 needs boto3 (pip install boto3)"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
(( $(nproc) >= 2 )) || die "needs 2 CPUs (proxy on CPU $PROXY_CPU, wrk and backend on CPU $LOAD_CPU)"

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    log "building the release binary (target dir $TARGET)"
    (cd "$ROOT" && cargo build --release -p gantry)
fi
GANTRY=$TARGET/release/gantry
[[ -x $GANTRY ]] || die "missing $GANTRY"

WORK=$(mktemp -d /tmp/gantry-bench-lb.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free loopback ports, all held at once while chosen so they differ.
read -r BACKEND1 BACKEND2 NGINX_PORT HAPROXY_PORT GANTRY_PORT CHURN_PORT < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(6):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)

mkdir -p "$WORK/www" "$WORK/nginx-tmp" "$WORK/data"
head -c 1024 /dev/zero | tr '\0' 'x' >"$WORK/www/1k"

# TLS: one certificate for every proxy, and each proxy's listen options.
NGINX_LISTEN="127.0.0.1:$NGINX_PORT"
NGINX_TLS=""
TLS_ENV=()
HAPROXY_BIND="127.0.0.1:$HAPROXY_PORT"
if [[ $TLS == 1 ]]; then
    command -v openssl >/dev/null || die "missing openssl (apt-get install openssl)"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench.example.test \
        -addext subjectAltName=DNS:bench.example.test \
        -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
    cat "$WORK/tls.crt" "$WORK/tls.key" >"$WORK/tls.pem"
    NGINX_LISTEN="$NGINX_LISTEN ssl"
    NGINX_TLS="ssl_certificate $WORK/tls.crt; ssl_certificate_key $WORK/tls.key; ssl_protocols TLSv1.2; ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256;"
    HAPROXY_BIND="$HAPROXY_BIND ssl crt $WORK/tls.pem ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.2 ciphers ECDHE-RSA-AES128-GCM-SHA256"
    TLS_ENV=(BENCH_TLS_CERT="$WORK/tls.crt" BENCH_TLS_KEY="$WORK/tls.key")
fi

# --- backend: nginx, two server blocks (CPU 1) ---
cat >"$WORK/backend.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $WORK/backend.pid;
error_log $WORK/backend-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx-tmp/b-body;
    proxy_temp_path $WORK/nginx-tmp/b-proxy;
    fastcgi_temp_path $WORK/nginx-tmp/b-fastcgi;
    uwsgi_temp_path $WORK/nginx-tmp/b-uwsgi;
    scgi_temp_path $WORK/nginx-tmp/b-scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    open_file_cache max=16;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$BACKEND1;
        root $WORK/www;
        location = /health { return 200 "ok\n"; }
    }
    server {
        listen 127.0.0.1:$BACKEND2;
        root $WORK/www;
        location = /health { return 200 "ok\n"; }
    }
}
EOF

# --- nginx as the proxy (CPU 0) ---
cat >"$WORK/nginx-proxy.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $WORK/nginx-proxy.pid;
error_log $WORK/nginx-proxy-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx-tmp/p-body;
    proxy_temp_path $WORK/nginx-tmp/p-proxy;
    fastcgi_temp_path $WORK/nginx-tmp/p-fastcgi;
    uwsgi_temp_path $WORK/nginx-tmp/p-uwsgi;
    scgi_temp_path $WORK/nginx-tmp/p-scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    upstream backend {
        server 127.0.0.1:$BACKEND1;
        keepalive 64;
        keepalive_requests 10000000;
    }
    server {
        listen $NGINX_LISTEN;
        $NGINX_TLS
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }
}
EOF

# --- haproxy (CPU 0) ---
cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    http-reuse always
    option forwardfor
frontend fe
    bind $HAPROXY_BIND
    default_backend be
backend be
    server b1 127.0.0.1:$BACKEND1
EOF

start() { # name cpu cmd...
    local name=$1 cpu=$2
    shift 2
    taskset -c "$cpu" "$@" >"$WORK/$name.out" 2>&1 &
    PIDS+=($!)
    eval "${name//-/_}_PID=$!"
}

wait_http() { # url (https: the run's own certificate, not verified)
    local deadline=$((SECONDS + READY_DEADLINE_S))
    until python3 -c "import ssl,sys,urllib.request; sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=2, context=ssl._create_unverified_context()).status == 200 else 1)" "$1" 2>/dev/null; do
        (( SECONDS < deadline )) || { tail -n 20 "$WORK"/*.out >&2 || true; die "$1 not answering 200 within ${READY_DEADLINE_S}s"; }
        sleep 0.2
    done
}

log "starting the backend (nginx on $BACKEND1 and $BACKEND2, CPU $LOAD_CPU)"
start backend "$LOAD_CPU" "$NGINX" -p "$WORK" -e "$WORK/backend-error.log" -c "$WORK/backend.conf"
wait_http "http://127.0.0.1:$BACKEND1/1k"
wait_http "http://127.0.0.1:$BACKEND2/1k"

log "starting nginx ($NGINX_PORT) and haproxy ($HAPROXY_PORT) on CPU $PROXY_CPU"
start nginx "$PROXY_CPU" "$NGINX" -p "$WORK" -e "$WORK/nginx-proxy-error.log" -c "$WORK/nginx-proxy.conf"
start haproxy "$PROXY_CPU" "$HAPROXY" -db -f "$WORK/haproxy.cfg"

log "starting gantry server (CPU $LOAD_CPU)"
export GANTRY_ROOT_ACCESS_KEY_ID=AKIDBENCHLB0000000000
export GANTRY_ROOT_SECRET_ACCESS_KEY=bench-lb-secret-access-key-0000000000000
start server "$LOAD_CPU" "$GANTRY" server --data-dir "$WORK/data" --listen 127.0.0.1:0 --ready-file "$WORK/ready.json"
deadline=$((SECONDS + READY_DEADLINE_S))
until [[ -s $WORK/ready.json ]] && ENDPOINT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["endpoint"])' "$WORK/ready.json" 2>/dev/null); do
    (( SECONDS < deadline )) || { tail -n 20 "$WORK/server.out" >&2; die "gantry server not ready"; }
    kill -0 "$server_PID" 2>/dev/null || { tail -n 20 "$WORK/server.out" >&2; die "gantry server exited"; }
    sleep 0.1
done
export AWS_ENDPOINT_URL=$ENDPOINT AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=$GANTRY_ROOT_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$GANTRY_ROOT_SECRET_ACCESS_KEY
log "configuring load balancers through ELBv2 at $ENDPOINT"
env "${TLS_ENV[@]}" timeout 60 python3 "$ROOT/scripts/bench_lb.py" setup bench "$GANTRY_PORT" "$BACKEND1" >/dev/null
CHURN_TG=$(timeout 60 python3 "$ROOT/scripts/bench_lb.py" setup churn "$CHURN_PORT" "$BACKEND1" "$BACKEND2")

log "starting gantry lb on CPU $PROXY_CPU (listeners $GANTRY_PORT, $CHURN_PORT)"
start gantry "$PROXY_CPU" env GANTRY_LOG=warn "$GANTRY" lb --endpoint "$ENDPOINT"
wait_http "$SCHEME://127.0.0.1:$NGINX_PORT/1k"
wait_http "$SCHEME://127.0.0.1:$HAPROXY_PORT/1k"
wait_http "$SCHEME://127.0.0.1:$GANTRY_PORT/1k"
wait_http "http://127.0.0.1:$CHURN_PORT/1k"

cat >"$WORK/report.lua" <<'EOF'
function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("RESULT requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d\n",
        summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
        latency:percentile(50), latency:percentile(99)))
end
EOF
cat >"$WORK/churn.lua" <<'EOF'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) non2xx = 0 end
function response(status, headers, body)
    if status < 200 or status > 299 then non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
    local n = 0
    for _, t in ipairs(threads) do n = n + t:get("non2xx") end
    local e = summary.errors
    io.write(string.format("RESULT requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d non2xx=%d\n",
        summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, n))
end
EOF

cpu_ticks() { # pid -> utime+stime of the whole process
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# run_wrk NAME PORT PID SECONDS [WRK ARGS...] -> "name rps cpu_us_per_req p50 p99 errors"
run_wrk() {
    local name=$1 port=$2 pid=$3 secs=$4 before after out
    shift 4
    before=$(cpu_ticks "$pid")
    out=$(timeout $((secs + 30)) taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${secs}s" \
        -s "$WORK/report.lua" "$@" "$SCHEME://127.0.0.1:$port/1k")
    after=$(cpu_ticks "$pid")
    grep '^RESULT' <<<"$out" | python3 -c '
import re, sys
name, ticks, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
f = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", sys.stdin.read()))
rps = f["requests"] / (f["duration_us"] / 1e6)
cpu_us = ticks / hz * 1e6 / max(f["requests"], 1)
errors = f["connect"] + f["read"] + f["write"] + f["status"] + f["timeout"]
p50, p99 = f["p50_us"], f["p99_us"]
print(f"{name} {rps:.0f} {cpu_us:.2f} {p50} {p99} {errors}")
' "$name" $((after - before)) "$CLK_TCK"
}

if (( ${BENCH_HOLD:-0} > 0 )); then
    log "holding ${BENCH_HOLD}s: gantry lb pid $gantry_PID port $GANTRY_PORT (churn $CHURN_PORT);" \
        "nginx pid $nginx_PID port $NGINX_PORT; haproxy pid $haproxy_PID port $HAPROXY_PORT;" \
        "backend $BACKEND1 $BACKEND2; wrk -s $WORK/report.lua"
    sleep "$BENCH_HOLD"
fi

log "warming up each proxy (2 s)"
run_wrk gantry "$GANTRY_PORT" "$gantry_PID" 2 >/dev/null
run_wrk nginx "$NGINX_PORT" "$nginx_PID" 2 >/dev/null
run_wrk haproxy "$HAPROXY_PORT" "$haproxy_PID" 2 >/dev/null

RESULTS=$WORK/results.txt
: >"$RESULTS"
for round in $(seq "$ROUNDS"); do
    for proxy in gantry nginx haproxy; do
        case $proxy in
            gantry) port=$GANTRY_PORT pid=$gantry_PID ;;
            nginx) port=$NGINX_PORT pid=$nginx_PID ;;
            haproxy) port=$HAPROXY_PORT pid=$haproxy_PID ;;
        esac
        line=$(run_wrk "$proxy" "$port" "$pid" "$DURATION")
        log "round $round: $line"
        echo "$line" >>"$RESULTS"
        if [[ $TLS == 1 ]]; then
            line=$(run_wrk "$proxy" "$port" "$pid" "$DURATION" -H "Connection: close")
            log "round $round, a handshake per request: $line"
            echo "${line/#$proxy/$proxy-handshake}" >>"$RESULTS"
        fi
    done
done

CHURN_LINE="skipped"
if (( CHURN > 0 )); then
    log "churn: ${CHURN}s of wrk through gantry lb while 127.0.0.1:$BACKEND2 is deregistered/registered every second"
    timeout $((CHURN + 60)) python3 "$ROOT/scripts/bench_lb.py" churn "$CHURN_TG" "$BACKEND2" "$CHURN" >"$WORK/churn-count.txt" &
    churn_pid=$!
    PIDS+=("$churn_pid")
    out=$(timeout $((CHURN + 30)) taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${CHURN}s" \
        -s "$WORK/churn.lua" "http://127.0.0.1:$CHURN_PORT/1k")
    wait "$churn_pid" || die "the register/deregister loop failed"
    CHURN_LINE="$(grep '^RESULT' <<<"$out") changes=$(cat "$WORK/churn-count.txt")"
fi

python3 - "$RESULTS" "$CHURN_LINE" "$DURATION" "$CONNECTIONS" "$TLS" <<'EOF'
import re, statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
churn, duration, conns, tls = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "1"
by = {}
for name, rps, cpu, p50, p99, err in rows:
    by.setdefault(name, []).append((float(rps), float(cpu), int(p50), int(p99), int(err)))
print()
mode = "TLS 1.2 ECDHE-RSA-AES128-GCM-SHA256, RSA 2048, " if tls else ""
print(f"wrk -t1 -c{conns} -d{duration}s, {mode}1 KiB response, median of {len(by['nginx'])} interleaved runs")
print(f"{'proxy':<18} {'req/s':>8} {'CPU us/req':>10} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}  runs (req/s @ us/req)")
med = {}
for name in by:
    r = by[name]
    m = (statistics.median(x[0] for x in r), statistics.median(x[1] for x in r),
         statistics.median(x[2] for x in r) / 1000, statistics.median(x[3] for x in r) / 1000,
         sum(x[4] for x in r))
    med[name] = m
    runs = ", ".join(f"{x[0]:.0f} @ {x[1]:.1f}" for x in r)
    print(f"{name:<18} {m[0]:>8.0f} {m[1]:>10.2f} {m[2]:>7.2f} {m[3]:>7.2f} {m[4]:>6}  {runs}")
for suffix in ("", "-handshake") if tls else ("",):
    g, n, h = med["gantry" + suffix], med["nginx" + suffix], med["haproxy" + suffix]
    what = " (a handshake per request)" if suffix else ""
    print(f"gantry/nginx{what}: CPU per request {g[1] / n[1]:.2f}x (target <= 1.0), req/s {g[0] / n[0]:.2f}x (target >= 0.9)")
    print(f"haproxy/nginx{what}: CPU per request {h[1] / n[1]:.2f}x, req/s {h[0] / n[0]:.2f}x")
print(f"churn: {churn}")
if churn != "skipped":
    f = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", churn))
    socket_errors = f["connect"] + f["read"] + f["write"] + f["timeout"]
    print(f"churn: {f['requests']} requests, {socket_errors} socket errors, {f['non2xx']} non-2xx, "
          f"{f['changes']} registration changes -> {'PASS' if socket_errors == 0 and f['non2xx'] == 0 else 'FAIL'}")
EOF
