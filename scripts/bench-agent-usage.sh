#!/usr/bin/env bash
# Agent CPU with 50 tasks sampled (docs/benchmarks.md, "CloudWatch metrics"): a real agent runs 50
# sleeping tasks and samples their usage every --usage-interval; its CPU is read from /proc over a
# window of whole intervals. BENCH_SKIP_BUILD=1 reuses the release binary; WINDOW, USAGE_INTERVAL
# and TASKS as in scripts/bench_agent_usage.py.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    cargo build --release -p gantry --quiet
fi
exec python3 scripts/bench_agent_usage.py
