#!/usr/bin/env bash
# The NB201 baseline table of the README: 5 optimizers x 3 datasets x 20 seeds x 100 evaluations.
# Usage: GRABNAS_NB201=path/to/nb201_accuracies.csv bash benchmarks/nb201_baselines.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/nb201-baselines}"
.venv/bin/grabnas bench --benchmark nb201 --tasks cifar10,cifar100,imagenet16 \
  --optimizers random,rea,local,gpbo,transfer-rank --seeds 20 --budget 100 --jobs 2 --out "$out"
