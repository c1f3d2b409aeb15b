#!/usr/bin/env bash
# Durable commit throughput of the state store, side by side in one run: SQLite (one file,
# group commit) and a 3-member etcd cluster on loopback (each member's data under BENCH_DIR).
#
#   scripts/bench-store.sh                  # 64 concurrent writers, 10 s each
#   BENCH_DURATION=5 BENCH_CONCURRENCY=16 scripts/bench-store.sh
#
# BENCH_DIR (default /var/tmp) must be on the disk being measured, not tmpfs. BENCH_SKIP_BUILD=1
# reuses the release build of the example.
set -euo pipefail
cd "$(dirname "$0")/.."

dir_base="${BENCH_DIR:-/var/tmp}"
seconds="${BENCH_DURATION:-10}"
tasks="${BENCH_CONCURRENCY:-64}"
target_dir="${CARGO_TARGET_DIR:-target}"

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -q -p gantry-store --example bench_commit
fi
bin="$target_dir/release/examples/bench_commit"

work=$(mktemp -d "$dir_base/gantry-bench-store.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cluster=""
clients=()
peers=()
for i in 0 1 2; do
  clients[$i]=$(free_port)
  peers[$i]=$(free_port)
  cluster+="${cluster:+,}m$i=http://127.0.0.1:${peers[$i]}"
done
for i in 0 1 2; do
  etcd --name "m$i" --data-dir "$work/m$i" \
    --listen-client-urls "http://127.0.0.1:${clients[$i]}" --advertise-client-urls "http://127.0.0.1:${clients[$i]}" \
    --listen-peer-urls "http://127.0.0.1:${peers[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${peers[$i]}" \
    --initial-cluster "$cluster" --initial-cluster-state new >"$work/m$i.log" 2>&1 &
  pids+=($!)
done
deadline=$((SECONDS + 30))
for i in 0 1 2; do
  until curl -sf "http://127.0.0.1:${clients[$i]}/health" | grep -q '"health":"true"'; do
    [ $SECONDS -lt $deadline ] || { echo "etcd member m$i did not start" >&2; cat "$work/m$i.log" >&2; exit 1; }
    sleep 0.1
  done
done

echo "== SQLite"
"$bin" "$work" "$seconds" "$tasks"
echo "== etcd, 3 members on loopback"
"$bin" "etcd://127.0.0.1:${clients[0]},127.0.0.1:${clients[1]},127.0.0.1:${clients[2]}/bench" "$seconds" "$tasks"
