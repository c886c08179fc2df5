"""Build an optimizer by name for a task of a tabular benchmark.

This is where leave-one-task-out knowledge is assembled: optimizers that learn from earlier
tasks (``transfer-rank`` and the GraB-NAS family) only ever receive the values of tasks from
*other* groups than the target's, so the target's values at any fidelity never reach them.
"""

from __future__ import annotations

from collections.abc import Sequence

from grabnas.benchmarks.base import TabularBenchmark
from grabnas.errors import GrabnasError
from grabnas.search.base import Optimizer
from grabnas.spaces.base import Architecture

BASELINE_NAMES = ("random", "rea", "local", "gpbo", "transfer-rank")
#: GraB-NAS and its ablations: name -> GraBNASConfig overrides
GRABNAS_VARIANTS: dict[str, dict] = {
    "grabnas": {},
    "grabnas-bo": {"mode": "bo"},
    "grabnas-ascent": {"mode": "ascent"},
    "grabnas-knn": {"local": "knn"},
}


def optimizer_names() -> tuple[str, ...]:
    return BASELINE_NAMES + tuple(GRABNAS_VARIANTS)


def pruned_pool(bench: TabularBenchmark, task: str, prune_top: float) -> list[Architecture]:
    """The task's pool without its best ``prune_top`` percent (by the search metric)."""
    pool = bench.pool(task)
    if prune_top <= 0:
        return pool
    if not 0 < prune_top < 100:
        raise GrabnasError(f"--prune-top takes a percentage in (0, 100), got {prune_top}")
    values = bench.values(task)
    k = int(round(len(pool) * prune_top / 100))
    removed = set(sorted(pool, key=lambda a: -values[a])[:k])
    return [a for a in pool if a not in removed]


def build_optimizer(
    name: str,
    bench: TabularBenchmark,
    task: str,
    seed: int,
    pool: Sequence[Architecture] | None = None,
    options: dict | None = None,
    log=None,
) -> Optimizer:
    """The optimizer ``name`` over ``pool`` (default: the task's pool), seeded with ``seed``.

    ``options`` override GraB-NAS settings (:class:`grabnas.search.grabnas.GraBNASConfig`).
    """
    from grabnas.search.baselines import TransferRank, make_baseline, transfer_scores

    pool = list(pool) if pool is not None else bench.pool(task)
    if name in GRABNAS_VARIANTS:
        return build_grabnas(bench, task, seed, pool, {**GRABNAS_VARIANTS[name], **(options or {})}, log=log)
    if name == "transfer-rank":
        others = bench.other_tasks(task)
        if not others:
            raise GrabnasError(
                f"transfer-rank needs tasks of other datasets than {task!r}; benchmark {bench.name} has none"
            )
        scores = transfer_scores([bench.values(t) for t in others])
        return TransferRank(bench.space, pool, seed=seed, scores=scores)
    if name not in BASELINE_NAMES:
        raise GrabnasError(f"unknown optimizer {name!r}; expected one of {', '.join(optimizer_names())}")
    return make_baseline(name, bench.space, pool, seed)


def build_grabnas(
    bench: TabularBenchmark,
    task: str,
    seed: int,
    pool: Sequence[Architecture],
    overrides: dict,
    checkpoint: str = "auto",
    log=None,
) -> Optimizer:
    """GraB-NAS for ``task``: the space's shipped graph VAE and a surrogate that never saw the
    task's group (the shipped checkpoint for that hold-out, or one meta-trained now on the
    benchmark's other groups)."""
    import torch

    from grabnas.meta.corpus import benchmark_corpus
    from grabnas.meta.surrogate_training import encode_members, surrogate_for_group
    from grabnas.meta.vae_training import load_checkpoint
    from grabnas.search.grabnas import GraBNAS, GraBNASConfig, MetaLatentSurrogate

    space = bench.space
    vae = load_checkpoint(space.name, space=space)
    with torch.no_grad():
        latents = encode_members(vae)
    group = bench.group(task)
    corpus = benchmark_corpus(bench)  # surrogate_for_group holds the group out
    sur = surrogate_for_group(
        corpus, group, vae, latents, checkpoint=checkpoint, benchmark=bench.name.split(":")[0],
        vae_name=space.name, log=log or (lambda _msg: None),
    )
    seen = set(sur.card.get("groups_seen", []))
    if group in seen:  # belt and braces: the target's values must never reach the surrogate
        raise GrabnasError(f"the surrogate for {task!r} saw its group {group!r}; expected one that held it out")
    steps = int(overrides.pop("adapt_steps", 0))
    latent_sur = MetaLatentSurrogate(sur, sur.task_embedding(), steps=steps)
    opt = GraBNAS(space, latent_sur, vae, pool=pool, seed=seed, config=GraBNASConfig(**overrides))
    opt.surrogate_card = sur.card  # which tasks meta-training saw (reported with each run)
    return opt
