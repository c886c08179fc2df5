#!/usr/bin/env bash
# How much do the NAS-Bench-Graph figures depend on the meta-training seed of the surrogate?
#
#   OUT=runs/nbg-meta-seeds JOBS=2 bash benchmarks/nbg_meta_seeds.sh
#
# For each dataset and meta-training seed (SEEDS, default "1 2"; seed 0 is the shipped checkpoint),
# meta-trains the leave-one-dataset-out surrogate exactly as benchmarks/surrogate_eval.sh does for the
# shipped one (4,000 steps), writes its surrogate report (zero-shot and 20 random observations,
# SHOT_DRAWS draws), then runs SEARCH_SEEDS default GraB-NAS searches (50 evaluations) with it through
# `grabnas[surrogate=DIR/surrogate-nasbench-graph-no-{group}.pt]`. Finally
# benchmarks/nbg_meta_seed_report.py (OUT/report.md) tabulates regret@10 / @50 per dataset and meta-training seed against
# GP-BO, REA and transfer-rank (issue 18's no-harm and transfer-kept tests). About 5 min per
# checkpoint on one core plus 1-2 min per search; every step resumes when rerun.
#
# TRAIN_OPTS adds meta-training options, e.g. the per-task offsets the shipped NB201 surrogates have
# (and so the task term): OUT=runs/nbg-offsets SEEDS=0 TRAIN_OPTS=--task-offsets bash benchmarks/nbg_meta_seeds.sh
# SEARCH_OPTS adds GraB-NAS options to the searches, e.g. SEARCH_OPTS=warmup_random=corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/nbg-meta-seeds}
JOBS=${JOBS:-2}
SEEDS=${SEEDS:-"1 2"}
SEARCH_SEEDS=${SEARCH_SEEDS:-10}
SHOT_DRAWS=${SHOT_DRAWS:-3}
TRAIN_OPTS=${TRAIN_OPTS:-}
SEARCH_OPTS=${SEARCH_OPTS:+,$SEARCH_OPTS}
TASKS=${TASKS:-"cora citeseer pubmed cs physics photo computers arxiv proteins"}
mkdir -p "$OUT"

one() {  # task seed
  local t=$1 s=$2 dir="$OUT/$1-s$2"
  if [ ! -f "$dir.json" ]; then
    "$PY" -m grabnas.cli surrogate eval --benchmark nasbench-graph --task "$t" --checkpoint train \
      --save-dir "$dir" --steps 4000 --shots 0,20 --seeds "$SHOT_DRAWS" --seed "$s" --threads 1 \
      $TRAIN_OPTS --no-progress --out "$dir.json" > "$dir.md"
  fi
  "$PY" -m grabnas.cli bench --benchmark nasbench-graph --tasks "$t" --seeds "$SEARCH_SEEDS" --budget 50 \
    --optimizers "grabnas[surrogate=$dir/surrogate-nasbench-graph-no-{group}.pt$SEARCH_OPTS]" --out "$dir-search" --jobs 1 \
    --no-progress > "$dir-search.log"
}
export -f one
export PY OUT SEARCH_SEEDS SHOT_DRAWS TRAIN_OPTS SEARCH_OPTS
for s in $SEEDS; do for t in $TASKS; do echo "$t $s"; done; done | xargs -P "$JOBS" -L 1 bash -c 'one "$0" "$1"'
"$PY" benchmarks/nbg_meta_seed_report.py --runs "$OUT" --out "$OUT/report.md"
