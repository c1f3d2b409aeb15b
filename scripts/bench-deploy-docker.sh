#!/usr/bin/env bash
# Rolling deployment of a 10-task service on real Docker (one local agent): UpdateService →
# one COMPLETED deployment. TASKS and ROUNDS change the size and the number of rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p gantry --quiet
exec python3 scripts/bench_deploy_docker.py
