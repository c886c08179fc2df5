#!/usr/bin/env bash
# Set up .venv and run the main job on the embedded default: a GraB-NAS search over the 15,625
# NAS-Bench-201 cells for scikit-learn's 8x8 digits (ships with scikit-learn, so no download),
# every candidate trained for real (5 epochs, C=8, N=1). ~1.5 min on 2 CPU cores once set up.
# The study lands in runs/demo/digits.db (rerun to resume), the report in runs/demo/.
# Extra arguments go to `grabnas search`, e.g. `bash scripts/demo.sh --budget 50 --workers 2`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh data
mkdir -p runs/demo
exec .venv/bin/grabnas search --dataset digits --budget 30 --seed 0 \
  --study runs/demo/digits.db --out runs/demo "$@"
