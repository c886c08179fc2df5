#!/usr/bin/env bash
# Searches scored by regret on the real-training ground truths (issue 22): every optimizer, 10 seeds,
# 25 evaluations, on the shipped table csv:groundtruth-images (benchmarks/ground_truth_tables.py).
# GraB-NAS uses the shipped nb201-all surrogate (it never saw these tasks; a CSV task has no images,
# so it starts from the learned "no data" embedding); transfer-rank ranks by the mean z-score of the
# table's other tasks; optuna-tpe needs the optuna extra. Reruns resume.
#
#   bash benchmarks/ground_truth_bench.sh           # OUT=... TASKS=a,b JOBS=1 to change
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
PY="${PY:-.venv/bin/python}"
OUT="${OUT:-benchmarks/results/ground-truths/bench}"
JOBS="${JOBS:-1}"
OPTIMIZERS="${OPTIMIZERS:-random,rea,gpbo,transfer-rank,optuna-tpe,grabnas[surrogate=nb201-all]}"
TASKS_ARG=()
[ -n "${TASKS:-}" ] && TASKS_ARG=(--tasks "$TASKS")
"$PY" -m grabnas.cli bench --benchmark csv:groundtruth-images "${TASKS_ARG[@]}" --optimizers "$OPTIMIZERS" \
  --budget 25 --seeds 10 --jobs "$JOBS" --threads 1 --no-progress --out "$OUT"
cat "$OUT/summary.md"
