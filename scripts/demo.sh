#!/usr/bin/env bash
# Set up .venv and run the main job on the embedded default: NAS-Bench-Graph ships with its
# pip package, so this needs no download. Results land in runs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/grabnas bench --benchmark nasbench-graph --tasks cora,citeseer \
  --optimizers random,rea,gpbo,transfer-rank --seeds 3 --budget 50 --out runs/demo "$@"
