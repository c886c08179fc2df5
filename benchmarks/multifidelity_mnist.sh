#!/usr/bin/env bash
# A real multi-fidelity search (issue 22): grabnas-mf on the MNIST subset with training at 2 and 8
# epochs (14 px, the proxy recipe's C=8, N=1), run once uninterrupted and once killed (SIGKILL after
# KILL_AFTER seconds) and resumed; a check at the end: the two studies must hold the
# same trials (architecture, fidelity, value) in the same order, none evaluated twice.
# Usage: bash benchmarks/multifidelity_mnist.sh   (OUT=runs/mf-mnist by default; ~6 min on 1 thread)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/mf-mnist}
KILL_AFTER=${KILL_AFTER:-75}
ARGS=(--dataset mnist-subset --image-size 14 --optimizer grabnas-mf --epochs 8 --low-epochs 2 --budget 16
      --seed 0 --threads 1 --no-progress)
rm -rf "$OUT" && mkdir -p "$OUT"
s=$(date +%s)
.venv/bin/grabnas search "${ARGS[@]}" --study "$OUT/whole.db" --out "$OUT/whole" > "$OUT/whole.log" 2>&1
echo "uninterrupted: $(( $(date +%s) - s )) s wall" | tee "$OUT/times.txt"
s=$(date +%s)
timeout -s KILL "$KILL_AFTER" .venv/bin/grabnas search "${ARGS[@]}" --study "$OUT/cut.db" --out "$OUT/cut" \
  > "$OUT/cut-1.log" 2>&1 || echo "killed (SIGKILL) after $(( $(date +%s) - s )) s" | tee -a "$OUT/times.txt"
.venv/bin/python - "$OUT/cut.db" <<'PY' | tee -a "$OUT/times.txt"
import sys
from grabnas.study import Study
st = Study.load(sys.argv[1])
print(f"at the kill: {st.count('done')} done, {st.count('asked')} asked and never told")
PY
s2=$(date +%s)
.venv/bin/grabnas search "${ARGS[@]}" --study "$OUT/cut.db" --out "$OUT/cut" > "$OUT/cut-2.log" 2>&1
echo "resumed run: $(( $(date +%s) - s2 )) s wall; killed + resumed: $(( $(date +%s) - s )) s wall" | tee -a "$OUT/times.txt"
.venv/bin/python - "$OUT/whole.db" "$OUT/cut.db" <<'PY' | tee "$OUT/compare.md"
import sys
from grabnas.study import Study
rows = []
for path in sys.argv[1:]:
    st = Study.load(path)
    rows.append([(t.arch, t.extra.get("fidelity"), t.value, t.cost) for t in st.trials()])
whole, cut = rows
print("| trial | fidelity | architecture | uninterrupted value | killed+resumed value | train s (uninterrupted / resumed) |")
print("|---|---|---|---|---|---|")
for i, (a, b) in enumerate(zip(whole, cut), 1):
    arch = a[0].replace("|", "\\|")
    f = lambda x, d: "-" if x is None else f"{x:.{d}f}"  # noqa: E731
    print(f"| {i} | {a[1]} | `{arch}` | {f(a[2], 2)} | {f(b[2], 2)} | {f(a[3], 1)} / {f(b[3], 1)} |")
same = [(a[0], a[1], a[2]) for a in whole] == [(b[0], b[1], b[2]) for b in cut]
pairs = [(b[0], b[1]) for b in cut]
print()
print(f"{len(whole)} and {len(cut)} trials; identical (architecture, fidelity, value) sequences: {same}; "
      f"an (architecture, fidelity) evaluated twice in the resumed study: {len(pairs) != len(set(pairs))}")
PY
