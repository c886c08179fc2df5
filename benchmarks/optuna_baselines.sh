#!/usr/bin/env bash
# Optuna's samplers as baselines (issue 19): optuna-tpe, optuna-gp, optuna-random over the spaces'
# categorical encodings, 20 seeds, 50 evaluations, on NB201 (3 datasets) and NAS-Bench-Graph (9).
# Needs the optuna extra (bash scripts/setup.sh optuna, or the test extra).
# Usage: OUT=runs JOBS=2 bash benchmarks/optuna_baselines.sh; reruns resume.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs}
JOBS=${JOBS:-1}
bench() { .venv/bin/grabnas bench --budget 50 --seeds 20 --jobs "$JOBS" --no-progress \
  --optimizers optuna-tpe,optuna-gp,optuna-random "$@"; }
bench --benchmark nb201 --tasks cifar10,cifar100,imagenet16 --out "$OUT/nb201-optuna"
bench --benchmark nasbench-graph --out "$OUT/nbgraph-optuna"
