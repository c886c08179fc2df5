#!/usr/bin/env bash
# GraB-NAS on NAS-Bench-Graph, leave-one-dataset-out (issue 5): each of the 9 datasets is searched
# with the shipped surrogate that held it out; 50 evaluations; search metric = validation
# accuracy, the table's "final test" column = test accuracy of the chosen architecture.
# Usage: bash benchmarks/grabnas_nbgraph.sh [SEEDS] [GPBO_SEEDS]   (default 20 and 20; the README's run)
# JOBS=2 runs two worker processes (default 1). Rerunning resumes (done runs are skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/nbgraph}
SEEDS=${1:-20}
GPBO_SEEDS=${2:-20}
JOBS=${JOBS:-1}
.venv/bin/grabnas bench --benchmark nasbench-graph --optimizers random,rea,transfer-rank,grabnas \
  --seeds "$SEEDS" --budget 50 --jobs "$JOBS" --no-progress --out "$OUT"
.venv/bin/grabnas bench --benchmark nasbench-graph --optimizers gpbo \
  --seeds "$GPBO_SEEDS" --budget 50 --jobs "$JOBS" --no-progress --out "$OUT-gpbo"
# one table with every optimizer: $OUT-all/{results.csv,summary.md,regret.png}
.venv/bin/python - "$OUT" "$OUT-gpbo" "$OUT-all" <<'PY'
import csv, sys
from pathlib import Path
from grabnas.report import write_bench_report

*sources, target = map(Path, sys.argv[1:])
target.mkdir(parents=True, exist_ok=True)
rows, fields = [], None
for src in sources:
    with (src / "results.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        fields = fields or reader.fieldnames
        rows += list(reader)
with (target / "results.csv").open("w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
write_bench_report(target)
print((target / "summary.md").read_text())
PY
