"""Does the dataset encoder carry information about held-out image tasks? (issue 22)

For each surrogate with a dataset encoder and each task of the real-training ground truths
(tasks no surrogate saw: ``csv:groundtruth-images``), the zero-shot prediction over the task's
cells is made twice: with the embedding of the task's own training images (the dataset encoder,
as ``grabnas search --dataset`` does) and with the learned "no data" embedding in its place.
Printed: Spearman of each with the ground truth (seed mean), the same for transfer-rank (mean
z-score of the other ground-truth tasks) and for the two training seeds with each other (the
ceiling set by training noise), and how far apart the tasks' embeddings are (a collapsed encoder
gives every task the same one).

    python benchmarks/task_embeddings.py --surrogates nb201-all,runs/gt/images-data.pt \\
        --out benchmarks/results/ground-truths/task-embeddings.json
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from grabnas.benchmarks import load_benchmark
from grabnas.meta.checkpoints import load_surrogate, surrogate_vae
from grabnas.meta.features import latents_for
from grabnas.models.value_maps import predict
from grabnas.search.dataset import dataset_task, task_embedding


def _seed_values(seeds_csv: Path, task: str, archs: list[str]) -> np.ndarray:
    """``(2, cells)`` validation accuracies of the first two training seeds."""
    vals: dict[tuple[str, int], float] = {}
    seeds: set[int] = set()
    with seeds_csv.open() as f:
        for r in csv.DictReader(f):
            if r["task"] == task and r["value"]:
                vals[(r["arch"], int(r["seed"]))] = float(r["value"])
                seeds.add(int(r["seed"]))
    s1, s2 = sorted(seeds)[:2]
    return np.array([[vals[(a, s)] for a in archs] for s in (s1, s2)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark", default="csv:groundtruth-images")
    ap.add_argument("--surrogates", default="nb201-all", help="comma-separated checkpoint names or paths")
    ap.add_argument("--tasks", default=None, help="default: every task of the benchmark")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="JSON of the numbers")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bench = load_benchmark(args.benchmark)
    seeds_csv = Path(bench.name[4:]).with_name(Path(bench.name[4:]).stem + "-seeds.csv")
    tasks = args.tasks.split(",") if args.tasks else list(bench.tasks)
    space = bench.space
    result: dict = {"benchmark": args.benchmark, "tasks": tasks, "surrogates": {}, "reference": {}}
    pools = {t: bench.pool(t) for t in tasks}
    truth = {t: np.array([bench.value(a, t) for a in pools[t]]) for t in tasks}
    for t in tasks:
        seeds = _seed_values(seeds_csv, t, [a.to_string() for a in pools[t]]) if seeds_csv.exists() else None
        others = [o for o in tasks if o != t]
        z = [np.array([bench.value(a, o) for a in pools[t]]) for o in others]
        z = [(v - v.mean()) / (v.std() or 1.0) for v in z]
        result["reference"][t] = {
            "seed_vs_seed": None if seeds is None else round(float(spearmanr(seeds[0], seeds[1]).statistic), 3),
            "transfer_rank": round(float(spearmanr(np.mean(z, 0), truth[t]).statistic), 3) if z else None,
        }
    for name in args.surrogates.split(","):
        sur = load_surrogate(name)
        latents = latents_for(sur, surrogate_vae(sur))
        has_encoder = sur.task_encoder.has_dataset_encoder
        with torch.no_grad():
            no_data = sur.task_embedding(None, None).detach()
        rows = {}
        # every task of the table is embedded (a collapsed encoder gives them all one embedding)
        embs = {t: task_embedding(sur, dataset_task(t).split()) if has_encoder else no_data for t in bench.tasks}
        for t in tasks:
            idx = torch.as_tensor([space.index_of(a) for a in pools[t]])
            z = latents[idx]
            emb = embs[t]
            with torch.no_grad():
                with_data = predict(sur.prior(), sur.inputs(z, emb))[0].numpy()
                without = predict(sur.prior(), sur.inputs(z, no_data))[0].numpy()
            rows[t] = {
                "dataset_encoder": round(float(spearmanr(with_data, truth[t]).statistic), 3),
                "no_data": round(float(spearmanr(without, truth[t]).statistic), 3),
                "embedding_distance_to_no_data": float(torch.linalg.norm(emb - no_data)),
            }
        pair = [float(torch.linalg.norm(embs[a] - embs[b])) for a, b in itertools.combinations(bench.tasks, 2)]
        result["surrogates"][name] = {
            "has_dataset_encoder": bool(has_encoder),
            "tasks": rows,
            "mean_dataset_encoder": round(float(np.mean([r["dataset_encoder"] for r in rows.values()])), 3),
            "mean_no_data": round(float(np.mean([r["no_data"] for r in rows.values()])), 3),
            "max_embedding_distance_between_tasks": max(pair) if pair else 0.0,
            "no_data_embedding_norm": float(torch.linalg.norm(no_data)),
        }
    print("Zero-shot Spearman with the ground truth (seed mean) on the held-out tasks\n")
    print("| surrogate | " + " | ".join(tasks) + " | mean |")
    print("|---|" + "---|" * (len(tasks) + 1))
    for name, s in result["surrogates"].items():
        for key, label in (("dataset_encoder", "dataset encoder"), ("no_data", '"no data"')):
            vals = [s["tasks"][t][key] for t in tasks]
            print(f"| {name}, {label} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {np.mean(vals):.3f} |")
    for key, label in (
        ("transfer_rank", "transfer-rank (other tasks' z-scores)"),
        ("seed_vs_seed", "seed 1 vs seed 2"),
    ):
        vals = [result["reference"][t][key] for t in tasks]
        if all(v is not None for v in vals):
            print(f"| {label} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {np.mean(vals):.3f} |")
    print()
    for name, s in result["surrogates"].items():
        dist = ", ".join(f"{t} {s['tasks'][t]['embedding_distance_to_no_data']:.3g}" for t in tasks)
        print(
            f"{name}: largest distance between two of the table's tasks' embeddings {s['max_embedding_distance_between_tasks']:.3g}; "
            f'distance to the "no data" embedding (norm {s["no_data_embedding_norm"]:.3g}): {dist}'
        )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
