#!/usr/bin/env bash
# GraB-NAS on NB201 with ensembles of meta-trained surrogates (grabnas[surrogate=A+B+...]).
#
#   GRABNAS_NB201=/path/nb201_accuracies.csv CK=runs/meta-seed-variance OUT=runs/ensembles \
#     bash benchmarks/ensemble_nb201.sh
#
# CK holds the checkpoints benchmarks/meta_seed_variance.sh meta-trained (CK/<dataset>-s<seed>/
# surrogate-nb201-no-<dataset>.pt, seeds 1-9); seed 0 is the shipped checkpoint. Runs one GraB-NAS
# search (default settings, 50 evaluations) per dataset for each ensemble in ENSEMBLES (members'
# seeds joined by commas, ensembles by spaces; by default two disjoint ensembles of five and three
# of three), then prints evaluations to the optimum per ensemble. ~0.5-0.8 s per iteration with 3-5
# members.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CK=${CK:-runs/meta-seed-variance}
OUT=${OUT:-runs/ensembles}
NB201=${GRABNAS_NB201:-../shared/data/nb201/nb201_accuracies.csv}
JOBS=${JOBS:-2}
ENSEMBLES=${ENSEMBLES:-"0,1,2,3,4 5,6,7,8,9 0,1,2 3,4,5 6,7,8"}
mkdir -p "$OUT"

spec() {  # seeds "0,1,2" -> the surrogate option's value
  local out="" s
  for s in ${1//,/ }; do
    if [ "$s" = 0 ]; then m="nb201-no-{group}"; else m="$CK/{group}-s$s/surrogate-nb201-no-{group}.pt"; fi
    out="${out:+$out+}$m"
  done
  echo "$out"
}

for e in $ENSEMBLES; do
  "$PY" -m grabnas.cli bench --benchmark nb201 --data "$NB201" --tasks cifar10,cifar100,imagenet16 --seeds 1 \
    --budget 50 --optimizers "grabnas[surrogate=$(spec "$e")]" --out "$OUT/e${e//,/-}" --jobs "$JOBS" \
    --no-progress > "$OUT/e${e//,/-}.log"
done
"$PY" benchmarks/ensemble_nb201.py --out "$OUT" --data "$NB201" $ENSEMBLES
