#!/usr/bin/env bash
# Does the dataset encoder carry information on held-out tasks? (issue 22)
# 1. The shipped nb201-all surrogate: zero-shot prediction on each ground-truth task with the task's
#    own dataset embedding vs the learned "no data" embedding (benchmarks/task_embeddings.py).
# 2. Leave-one-task-out over the ground-truth tasks: a surrogate meta-trained on the shipped image
#    corpus (30 class-subset tasks) plus the other ground-truth tasks (a corpus whose tasks differ in
#    resolution, corruption and data size, all with data), with the dataset encoder and with
#    --ignore-data; zero-shot and 5/10 random observations (5 seeds), beside a plain GP; the
#    surrogates are saved under $CK.
#
#   bash benchmarks/ground_truth_encoder.sh        # OUT=... to change where the reports go
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
PY="${PY:-.venv/bin/python}"
OUT="${OUT:-benchmarks/results/ground-truths}"
TABLE=src/grabnas/benchmarks/tables/groundtruth-images
TASKS="${TASKS:-digits~train20,digits~noise0.5,digits~4px}"
"$PY" benchmarks/task_embeddings.py --surrogates nb201-all --out "$OUT/task-embeddings.json" | tee "$OUT/task-embeddings.md"
CK="${CK:-runs/ground-truths/encoder-ck}"
mkdir -p "$CK"
for variant in with-data ignore-data; do
  extra=(--save-dir "$CK/$variant")
  [ "$variant" = ignore-data ] && extra+=(--ignore-data)
  "$PY" -m grabnas.cli surrogate eval --benchmark "records:$TABLE-seeds.csv" --extra-corpus images-nb201 \
    --task "$TASKS" --checkpoint train --steps 1500 --batch-size 64 --eval-every 250 --max-minutes 4 \
    --shots 0,5,10 --seeds 5 --plain-gp "${extra[@]}" --threads 1 --no-progress \
    --out "$OUT/encoder-$variant.json" | tee "$OUT/encoder-$variant.md"
done
# 3. The leave-one-task-out surrogates with the dataset encoder, each on the task it held out: its own
#    dataset embedding vs its own "no data" embedding, and how far apart the tasks' embeddings are.
IFS=, read -ra TASK_LIST <<< "$TASKS"
for task in "${TASK_LIST[@]}"; do
  "$PY" benchmarks/task_embeddings.py --surrogates "$CK/with-data/surrogate-records-groundtruth-images-seeds-no-${task//./-}.pt" \
    --tasks "$task" \
    --out "$OUT/task-embeddings-loto-${task//\~/-}.json"
done | tee "$OUT/task-embeddings-loto.md"
