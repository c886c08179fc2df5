#!/usr/bin/env bash
# Reproduce the surrogate figures quoted in the README and the shipped surrogate checkpoints
# (src/grabnas/checkpoints/surrogate-<benchmark>-no-<dataset>.pt + .json).
#
#   benchmarks/surrogate_eval.sh                 # nb201, nasbench-graph, images
#   benchmarks/surrogate_eval.sh nb201           # one part
#   GRABNAS_NB201=/path/nb201_accuracies.csv OUT=/tmp/ck REPORTS=/tmp/reports benchmarks/surrogate_eval.sh
#
# nb201:          leave-one-dataset-out over cifar10 / cifar100 / imagenet16; each surrogate is
#                 meta-trained on the two other datasets, all their fidelities (200-epoch and
#                 12-epoch tasks), 16,000 steps, one learned embedding offset per training task
#                 (--task-offsets: the target's embedding is inferred from its observations), and the
#                 new-task variance calibrated by leaving each training dataset out (meta-train does
#                 it; `grabnas surrogate calibrate` for older checkpoints);
#                 then zero-shot and 5/10/20 random observations (5 seeds), beside
#                 transfer-rank and a plain GP on one-hot encodings.
#                 ~6 min per dataset on one CPU core.
# nasbench-graph: leave-one-dataset-out over its 9 datasets, 4,000 steps each; ~6 min each
#                 (calibrated in-sample: no per-task offsets); then the same checkpoints uncalibrated.
# images:         leave-one-task-out over four tasks of the image corpus (tasks with data, so the
#                 dataset encoder is used), with and without the dataset encoder (--ignore-data).
# all:            the deployment checkpoint surrogate-nb201-all: every NB201 task (all fidelities)
#                 plus the image corpus with its data (dataset encoder), tasks drawn by the square
#                 root of their size, validation on 10% of each task's architectures (~4 min).
#
# Each surrogate depends on the graph VAE whose latents it read (its card records the VAE's
# fingerprint): after retraining a VAE, rerun this script. THREADS=1 (default) is fastest on a
# busy machine; seeds are fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-src/grabnas/checkpoints}
REPORTS=${REPORTS:-benchmarks/results/surrogate}
THREADS=${THREADS:-1}
NB201=${GRABNAS_NB201:-../shared/data/nb201/nb201_accuracies.csv}
PARTS=("$@")
[ ${#PARTS[@]} -eq 0 ] && PARTS=(nb201 nasbench-graph images all)
mkdir -p "$REPORTS"

for part in "${PARTS[@]}"; do
  echo "== $part"
  case "$part" in
    nb201)
      "$PY" -m grabnas.cli surrogate eval --benchmark nb201 --data "$NB201" --checkpoint train --task-offsets \
        --save-dir "$OUT" --steps 16000 --shots 0,5,10,20 --seeds 5 --plain-gp \
        --threads "$THREADS" --no-progress --out "$REPORTS/nb201.json" | tee "$REPORTS/nb201.md"
      "$PY" -m grabnas.cli surrogate eval --benchmark nb201 --data "$NB201" --checkpoint auto --widen 5 \
        --threads "$THREADS" --no-progress --out "$REPORTS/nb201-widen5.json" | tee "$REPORTS/nb201-widen5.md"
      "$PY" -m grabnas.cli surrogate eval --benchmark nb201 --data "$NB201" --checkpoint auto --task-prior-var 0 \
        --threads "$THREADS" --no-progress --out "$REPORTS/nb201-no-task-term.json" | tee "$REPORTS/nb201-no-task-term.md"
      "$PY" -m grabnas.cli surrogate eval --benchmark nb201 --data "$NB201" --checkpoint auto --variance-scale 1 \
        --threads "$THREADS" --no-progress --out "$REPORTS/nb201-uncalibrated.json" | tee "$REPORTS/nb201-uncalibrated.md"
      ;;
    nasbench-graph)
      "$PY" -m grabnas.cli surrogate eval --benchmark nasbench-graph --checkpoint train \
        --save-dir "$OUT" --steps 4000 --shots 0,5,10,20 --seeds 5 --plain-gp \
        --threads "$THREADS" --no-progress --out "$REPORTS/nasbench-graph.json" | tee "$REPORTS/nasbench-graph.md"
      "$PY" -m grabnas.cli surrogate eval --benchmark nasbench-graph --checkpoint auto --widen 5 \
        --threads "$THREADS" --no-progress --out "$REPORTS/nasbench-graph-widen5.json" | tee "$REPORTS/nasbench-graph-widen5.md"
      "$PY" -m grabnas.cli surrogate eval --benchmark nasbench-graph --checkpoint auto --variance-scale 1 --plain-gp \
        --threads "$THREADS" --no-progress --out "$REPORTS/nasbench-graph-uncalibrated.json" | tee "$REPORTS/nasbench-graph-uncalibrated.md"
      ;;
    images)
      TASKS="digits[0,1,5,7,8,9]@4881,digits[1,2,3,4,5,6]@6942,mnist-subset[0,1,2,5,6,9]@9634~14px,mnist-subset[0,3,4,6]@8487~14px"
      for variant in with-data ignore-data; do
        extra=()
        [ "$variant" = ignore-data ] && extra=(--ignore-data)
        "$PY" -m grabnas.cli surrogate eval --benchmark images-nb201 --task "$TASKS" --checkpoint train \
          --steps 1500 --batch-size 64 --eval-every 250 --shots 0,5,10 --seeds 5 --plain-gp "${extra[@]}" \
          --threads "$THREADS" --no-progress --out "$REPORTS/images-$variant.json" | tee "$REPORTS/images-$variant.md"
      done
      ;;
    all)
      "$PY" -m grabnas.cli meta-train --corpus nb201+images-nb201 --data "$NB201" --val-architectures \
        --task-weighting sqrt --patience 10 --steps 10000 --out "$OUT/surrogate-nb201-all" \
        --threads "$THREADS" --no-progress | tee "$REPORTS/nb201-all.log"
      ;;
    *)
      echo "unknown part $part; expected nb201, nasbench-graph, images or all" >&2
      exit 2
      ;;
  esac
done
