#!/usr/bin/env bash
# Reproduce the shipped graph-VAE checkpoints (src/grabnas/checkpoints/vae-*.pt + .json) and
# print their metrics (held-out reconstruction, prior validity/uniqueness/novelty, smoothness).
#
#   benchmarks/vae_train.sh                  # both spaces
#   benchmarks/vae_train.sh nb201            # one space
#   OUT=/tmp/ck THREADS=2 benchmarks/vae_train.sh
#
# The shipped files were made with THREADS=1 (torch intra-op threads) on a shared 2-core CPU;
# on a busy machine one thread is much faster than two. Seeds are fixed, so a rerun with the
# same torch version and thread count gives the same weights.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-src/grabnas/checkpoints}
THREADS=${THREADS:-1}
SPACES=("$@")
[ ${#SPACES[@]} -eq 0 ] && SPACES=(nb201 nasbench-graph)

for space in "${SPACES[@]}"; do
  echo "== $space"
  "$PY" -m grabnas.cli vae train --space "$space" --out "$OUT/vae-$space" \
    --epochs 30 --batch-size 256 --lr 2e-3 --hidden-dim 128 --latent-dim 16 --beta 0.005 \
    --seed 0 --holdout 0.1 --prior-samples 1000 --threads "$THREADS" --no-progress
done
