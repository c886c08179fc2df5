"""Where each NB201 dataset's optimum sits in the zero-shot rankings a search starts from.

For each held-out dataset, with the shipped surrogate meta-trained on the other two, prints the
rank of the optimum (1 = first proposal) and the accuracies of the first eight cells under: the
surrogate's zero-shot mean at the tasks' centre (GraB-NAS's start), each training dataset's own
learned mean (the directions of the task term), and transfer-rank (the mean z-score of the other
datasets' table values).

    GRABNAS_NB201=path/to/nb201_accuracies.csv .venv/bin/python benchmarks/zero_shot_ranks.py
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from grabnas.meta.checkpoints import load_surrogate, surrogate_vae
from grabnas.meta.corpus import load_corpus
from grabnas.meta.features import latents_for
from grabnas.meta.surrogate_eval import transfer_rank_scores
from grabnas.models.value_maps import predict


def optimum_rank(scores: np.ndarray, values: np.ndarray, top: int = 8) -> tuple[int, list[float]]:
    """``(rank of the first cell with the best value, values of the ``top`` best-scored cells)``."""
    order = np.argsort(-scores, kind="stable")
    hit = int(np.flatnonzero(np.isclose(values[order], values.max()))[0]) + 1
    return hit, np.round(values[order[:top]], 2).tolist()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="NB201 table (default $GRABNAS_NB201)")
    p.add_argument("--tasks", default="cifar10,cifar100,imagenet16")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    corpus = load_corpus("nb201", data=args.data)
    for name in args.tasks.split(","):
        target = corpus.task(name)
        sur = load_surrogate(f"nb201-no-{name}")
        z = latents_for(sur, surrogate_vae(sur))[torch.from_numpy(target.index)]
        rows = {}
        with torch.no_grad():
            rows["zero-shot mean (centre)"] = predict(sur.prior(), sur.inputs(z, sur.task_embedding()))[0].numpy()
            for task, emb in sur.task_offset_embeddings().items():
                rows[f"{task}'s learned mean"] = predict(sur.prior(), sur.inputs(z, emb))[0].numpy()
        transfer = transfer_rank_scores(corpus, target)
        if transfer is not None:  # None: no other dataset covers the target's pool
            rows["transfer-rank"] = transfer
        print(f"== {name} (optimum {target.values.max():.2f})")
        for label, scores in rows.items():
            rank, first = optimum_rank(scores, target.values)
            print(f"  {label:28s} optimum at {rank:3d}; first cells {first}")


if __name__ == "__main__":
    main()
