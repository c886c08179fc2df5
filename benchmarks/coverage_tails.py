"""Where the target-adapted GP's 90 % intervals miss after a few random observations.

`grabnas surrogate eval` measures coverage in the model's own units: the normal scores of the
observations, extended to the task's other values by the map the model carries
(`grabnas.models.value_maps.RankGaussMap`: piecewise linear between the observed values,
continued linearly beyond them with slope 1 / their standard deviation). This script repeats that
evaluation (the same draws of observations, so the same coverage) and splits the coverage by
where a cell's value lies: below the smallest observed value, inside the observed range, or above
the largest. It also gives the coverage against the task's own normal scores (what the
observations' normal scores estimate when they are a random sample).

    .venv/bin/python benchmarks/coverage_tails.py --benchmark nb201 --shots 5,10 --draws 10
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from grabnas.meta.corpus import load_corpus
from grabnas.meta.features import encode_members, latents_for, target_features
from grabnas.meta.surrogate_eval import Z90
from grabnas.meta.surrogate_training import surrogate_for_group
from grabnas.meta.vae_training import load_checkpoint
from grabnas.models.latent_surrogate import MetaLatentSurrogate
from grabnas.models.surrogate_config import DTYPE
from grabnas.models.value_maps import predict, rank_gauss
from grabnas.search.grabnas import DEFAULT_INTEGRATE
from grabnas.seeding import child_seed


def split_coverage(sur, Z, task, n: int, draws: int, seed: int = 0) -> dict:
    """Coverage of the 90 % intervals after ``n`` random observations, over ``draws`` draws (those
    of ``grabnas surrogate eval --seed seed``): overall, by region of the value and against the
    task's normal scores; plus each region's share of the cells."""
    y = task.values
    population = rank_gauss(torch.as_tensor(y)).numpy()
    d = sur.task_embedding(target_features(sur, task, None), None).detach()
    Zt = Z[torch.from_numpy(task.index)]
    X = sur.inputs(Zt, d)
    hits = {"all": [], "below": [], "inside": [], "above": [], "population": []}
    for s in range(draws):
        g = np.random.default_rng(child_seed(seed, "surrogate-eval", task.name, n, s))
        obs = g.choice(len(y), size=n, replace=False)
        model = MetaLatentSurrogate(
            sur, d, adaptation="target", seed=child_seed(seed, "adapt", n, s), integrate=DEFAULT_INTEGRATE
        )
        gp = model.fit(Zt[obs], torch.as_tensor(y[obs], dtype=DTYPE)).gp
        mu, var = predict(gp, X, observation_noise=True)
        target = gp.transform_values(torch.as_tensor(y, dtype=DTYPE)).numpy()
        mu, sd = mu.detach().numpy(), var.clamp_min(1e-12).sqrt().detach().numpy()
        covered = np.abs(target - mu) <= Z90 * sd
        lo, hi = y[obs].min(), y[obs].max()
        for key, mask in (
            ("all", np.ones(len(y), dtype=bool)),
            ("below", y < lo),
            ("inside", (y >= lo) & (y <= hi)),
            ("above", y > hi),
        ):
            hits[key].append((covered[mask].sum(), mask.sum()))
        hits["population"].append(((np.abs(population - mu) <= Z90 * sd).sum(), len(y)))
    out = {}
    for key, rows in hits.items():
        got, total = np.sum(rows, 0)
        out[key] = (float(got / max(total, 1)), float(total / (len(y) * draws)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--benchmark", default="nb201")
    p.add_argument("--tasks", default="", help="comma-separated; default every main task")
    p.add_argument("--shots", default="5,10,20")
    p.add_argument("--draws", type=int, default=10)
    args = p.parse_args()
    corpus = load_corpus(args.benchmark, None)
    vae = load_checkpoint(corpus.space.name, space=corpus.space.name)
    Z0 = encode_members(vae)
    names = args.tasks.split(",") if args.tasks else [t.name for t in corpus.tasks if t.fidelity is None]
    print(
        "| task | obs | 90 % coverage | below the observed range (share of cells) | inside | above | against the task's normal scores |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in names:
        task = corpus.task(name)
        sur = surrogate_for_group(
            corpus, task.group, vae, Z0, checkpoint="auto", benchmark=args.benchmark, vae_name=corpus.space.name
        )
        Z = latents_for(sur, vae, Z0)
        for n in (int(k) for k in args.shots.split(",")):
            r = split_coverage(sur, Z, task, n, args.draws)
            cells = " | ".join(f"{r[k][0]:.3f} ({r[k][1]:.2f})" for k in ("below", "inside", "above"))
            print(f"| {name} | {n} | {r['all'][0]:.3f} | {cells} | {r['population'][0]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
