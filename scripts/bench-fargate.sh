#!/usr/bin/env bash
# Fargate benchmarks (docs/benchmarks.md, "Fargate"): 1,000 Fargate tasks placed on 200 simulated
# platform hosts, and task start (RunTask → RUNNING) on this machine's Docker Engine against
# `docker run -d` of the same image in a network namespace with the same limits, in one run.
# Needs root with Docker and iptables. Environment: SAMPLES [20], BENCH_FARGATE_TASKS [1000],
# BENCH_FARGATE_HOSTS [200], BENCH_FARGATE_VPC [10.200.0.0/20], BENCH_SKIP_BUILD [0].
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    cargo build --release -p gantry --quiet
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec python3 scripts/bench_fargate.py
