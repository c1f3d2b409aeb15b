#!/usr/bin/env bash
# Task-start benchmark (issue: agent and tasks): RunTask → RUNNING against `docker run` of the same
# cached image, interleaved in one run; 50 tasks on one agent; idle RSS of agent and server.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p gantry --quiet
exec python3 scripts/bench_tasks.py
