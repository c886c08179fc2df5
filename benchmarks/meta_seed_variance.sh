#!/usr/bin/env bash
# How much do the NB201 figures depend on the meta-training seed of the surrogate?
#
#   GRABNAS_NB201=/path/nb201_accuracies.csv OUT=/tmp/mseed benchmarks/meta_seed_variance.sh
#
# For each held-out dataset and meta-training seed 1..9, meta-trains the surrogate exactly as
# benchmarks/surrogate_eval.sh does for the shipped one (seed 0), writes its leave-one-out report
# (zero-shot and 5/10/20 random observations, 5 draws; the seed also changes the draws), then runs
# one GraB-NAS search (default settings, 50 evaluations) with it through
# `grabnas[surrogate=DIR/surrogate-nb201-no-{group}.pt]`. Finally prints, per dataset and seed, the
# top-10 % Spearman after 20 observations, the 90 % coverage at 0/5/10/20 observations and the
# evaluations the search needed to reach the optimum (seed 0 = the shipped checkpoints and the
# README's figures). About 5 min per checkpoint on one core; JOBS=2 runs two at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/meta-seed-variance}
NB201=${GRABNAS_NB201:-../shared/data/nb201/nb201_accuracies.csv}
JOBS=${JOBS:-2}
SEEDS=${SEEDS:-"1 2 3 4 5 6 7 8 9"}
TASKS=${TASKS:-"cifar10 cifar100 imagenet16"}
mkdir -p "$OUT"

one() {  # task seed
  local t=$1 s=$2 dir="$OUT/$1-s$2"
  if [ ! -f "$dir.json" ]; then
    "$PY" -m grabnas.cli surrogate eval --benchmark nb201 --data "$NB201" --task "$t" --checkpoint train \
      --task-offsets --save-dir "$dir" --steps 16000 --shots 0,5,10,20 --seeds 5 --seed "$s" --threads 1 \
      --no-progress --out "$dir.json" > "$dir.md"
  fi
  "$PY" -m grabnas.cli bench --benchmark nb201 --data "$NB201" --tasks "$t" --seeds 1 --budget 50 \
    --optimizers "grabnas[surrogate=$dir/surrogate-nb201-no-{group}.pt]" --out "$dir-search" --jobs 1 \
    --no-progress > "$dir-search.log"
}
export -f one
export PY OUT NB201
for t in $TASKS; do for s in $SEEDS; do echo "$t $s"; done; done | xargs -P "$JOBS" -L 1 bash -c 'one "$0" "$1"'
"$PY" benchmarks/meta_seed_variance.py --out "$OUT" --data "$NB201"
