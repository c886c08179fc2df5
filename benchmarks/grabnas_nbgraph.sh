#!/usr/bin/env bash
# GraB-NAS on NAS-Bench-Graph, leave-one-dataset-out (issue 5): each of the 9 datasets is searched
# with the shipped surrogate that held it out; 50 evaluations; search metric = validation
# accuracy, the table's "final test" column = test accuracy of the chosen architecture.
# Usage: bash benchmarks/grabnas_nbgraph.sh [SEEDS] [GPBO_SEEDS]   (default 10 and 5)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/nbgraph}
SEEDS=${1:-10}
GPBO_SEEDS=${2:-5}
.venv/bin/grabnas bench --benchmark nasbench-graph --optimizers random,rea,transfer-rank,grabnas \
  --seeds "$SEEDS" --budget 50 --no-progress --out "$OUT"
.venv/bin/grabnas bench --benchmark nasbench-graph --optimizers gpbo \
  --seeds "$GPBO_SEEDS" --budget 50 --no-progress --out "$OUT-gpbo"
