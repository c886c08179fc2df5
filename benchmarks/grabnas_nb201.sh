#!/usr/bin/env bash
# The GraB-NAS tables of the README on NAS-Bench-201 (issue 5):
#   main      GraB-NAS vs random / REA / local / GP-BO / transfer-rank, 3 datasets x 20 seeds x 50 evaluations
#   pruned    cifar100 with its best 1 % removed from the pool: grabnas vs grabnas-knn, 20 seeds
#   ablations BO only / ascent only / hybrid (gated, and ungated: local_gate=false), T_BO, eta, the surrogate's task term (prior variance 0 = off, 3)
#             its new-task variance calibration (variance scale 1 = off) and the acquisition on the
#             latent function instead of a new evaluation (observation_noise=false):
#             imagenet16, and pruned cifar100, 5 seeds
# GraB-NAS uses the shipped VAE and, per target, the shipped surrogate that held its dataset out.
# Usage: GRABNAS_NB201=path/to/nb201_accuracies.csv bash benchmarks/grabnas_nb201.sh [main|pruned|ablations ...] 
# Every part resumes when rerun (finished runs are skipped). OUT=runs by default.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs}
JOBS=${JOBS:-1}
PARTS=("$@")
[ ${#PARTS[@]} -eq 0 ] && PARTS=(main pruned ablations)
bench() { .venv/bin/grabnas bench --benchmark nb201 --budget 50 --jobs "$JOBS" --no-progress "$@"; }
ABLATIONS="grabnas,grabnas-bo,grabnas-ascent,grabnas[local_gate=false],grabnas[t_bo=5],grabnas[t_bo=20],grabnas[eta=0.01],grabnas[eta=0.2],grabnas[adapt_task_prior_var=0],grabnas[adapt_task_prior_var=3],grabnas[adapt_variance_scale=1],grabnas[observation_noise=false]"
for part in "${PARTS[@]}"; do
  case "$part" in
    main)
      bench --tasks cifar10,cifar100,imagenet16 --optimizers random,rea,local,gpbo,transfer-rank,grabnas \
        --seeds 20 --out "$OUT/nb201-grabnas" ;;
    pruned)
      bench --tasks cifar100 --prune-top 1 --optimizers grabnas,grabnas-knn --seeds 20 --out "$OUT/nb201-pruned" ;;
    ablations)
      bench --tasks imagenet16 --optimizers "$ABLATIONS" --seeds 5 --out "$OUT/nb201-ablations"
      bench --tasks cifar100 --prune-top 1 --optimizers "$ABLATIONS" --seeds 5 --out "$OUT/nb201-pruned-ablations" ;;
    *) echo "unknown part $part; expected main, pruned or ablations" >&2; exit 2 ;;
  esac
done
