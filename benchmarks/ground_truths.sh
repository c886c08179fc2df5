#!/usr/bin/env bash
# Real-training ground truths for image tasks the shipped corpus does not contain (issue 22).
# The same 200 random NB201 cells (sample seed 0) are trained with the default proxy recipe
# (5 epochs, C=8, N=1, batch 128, one CPU thread) with training seeds 1 and 2 on each task.
# Every training is appended to benchmarks/results/ground-truths/<task>.jsonl as it ends, so a
# rerun resumes; afterwards benchmarks/ground_truth_tables.py builds the shipped tables.
#
#   bash benchmarks/ground_truths.sh            # JOBS=1 CELLS=200 TASKS="digits~train20 ..." to change
#   RECIPE=1:8:1:128 bash benchmarks/ground_truths.sh   # a shorter training of the same cells: <task>@1ep.jsonl
#                                                       # (then benchmarks/ground_truth_mf_table.py)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
PY="${PY:-.venv/bin/python}"
JOBS="${JOBS:-1}"
CELLS="${CELLS:-200}"
TASKS="${TASKS:-digits~train20 digits~noise0.5 digits~4px}"
RECIPE="${RECIPE:-5:8:1:128}"
OUT=benchmarks/results/ground-truths
mkdir -p "$OUT"
DEFAULT_EPOCHS=5
EPOCHS="${RECIPE%%:*}"
SUFFIX=""
[ "$EPOCHS" = "$DEFAULT_EPOCHS" ] || SUFFIX="@${EPOCHS}ep"
for task in $TASKS; do
  slug="${task//\~/-}$SUFFIX"
  "$PY" benchmarks/proxy_quality.py --dataset "$task" --cells "$CELLS" --recipes "$RECIPE" --seeds 1,2 \
    --jobs "$JOBS" --sample-seed 0 --out "$OUT/$slug.jsonl" --summary-out "$OUT/$slug.summary.json" \
    | tee "$OUT/$slug.md"
done
