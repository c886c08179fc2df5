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

BASELINE_NAMES = ("random", "rea", "local", "gpbo", "transfer-rank", "optuna-tpe", "optuna-gp", "optuna-random")
#: GraB-NAS and its ablations: name -> GraBNASConfig overrides
GRABNAS_VARIANTS: dict[str, dict] = {
    "grabnas": {},
    "grabnas-bo": {"mode": "bo"},
    # the local-step ablations propose their local step unconditionally (gated, knn would be BO only)
    "grabnas-ascent": {"mode": "ascent", "local_gate": False},
    "grabnas-knn": {"local": "knn", "local_gate": False},
}


#: GraB-NAS option naming its surrogate checkpoint: ``auto`` (default: the shipped one that held
#: the target's group out), ``train`` (meta-train one now without that group), or a shipped
#: name or ``.pt`` path, where ``{group}`` stands for the target's group, e.g.
#: ``grabnas[surrogate=ck/surrogate-nb201-no-{group}.pt]``; several joined by ``+`` make an
#: ensemble (their mixture, :mod:`grabnas.search.ensemble`)
SURROGATE_OPTION = "surrogate"

#: GraB-NAS option giving the target's images on a table: a dataset or task spec whose train split
#: the dataset encoder embeds (``{task}`` stands for the target's name), e.g.
#: ``grabnas[surrogate=nb201-all,data={task}]`` on ``csv:groundtruth-images``, whose task names are
#: dataset specs; the search then starts where ``grabnas search --dataset`` would. Default: none
#: (the surrogate's learned "no data" embedding).
DATA_OPTION = "data"
_TEXT_OPTIONS = (SURROGATE_OPTION, DATA_OPTION)


def optimizer_names() -> tuple[str, ...]:
    return BASELINE_NAMES + tuple(GRABNAS_VARIANTS)


def parse_optimizer_spec(spec: str) -> tuple[str, dict]:
    """``"grabnas[t_bo=5,eta=0.1]"`` -> ``("grabnas", {"t_bo": 5, "eta": 0.1})``.

    Options in brackets override GraB-NAS settings (:class:`grabnas.search.grabnas.GraBNASConfig`
    fields, and ``adapt_*`` keywords of the surrogate's ``fit``); values are read as int,
    float, true/false, or left as text. ``surrogate=CHECKPOINT`` picks the meta-trained
    surrogate (see :data:`SURROGATE_OPTION`). Baselines take no options.
    """
    from grabnas.specs import split_top_level

    name, bracket, rest = spec.strip().partition("[")
    if not bracket:
        base = spec.strip()
        if base not in optimizer_names():
            raise GrabnasError(f"unknown optimizer {base!r}; expected one of {', '.join(optimizer_names())}")
        return base, {}
    if not rest.endswith("]") or name not in GRABNAS_VARIANTS:
        raise GrabnasError(
            f"bad optimizer {spec!r}; expected NAME or a GraB-NAS variant with options, e.g. grabnas[t_bo=5,eta=0.1]"
        )
    options: dict = {}
    for item in filter(None, (x.strip() for x in split_top_level(rest[:-1]))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise GrabnasError(f"bad option {item!r} in {spec!r}; expected KEY=VALUE, e.g. eta=0.1")
        key = key.strip()
        options[key] = value.strip() if key in _TEXT_OPTIONS else _option_value(value.strip())
    from dataclasses import fields

    from grabnas.search.grabnas import GraBNASConfig

    known = {f.name for f in fields(GraBNASConfig)}
    bad = [k for k in options if k not in known and k not in _TEXT_OPTIONS and not k.startswith("adapt_")]
    if bad:
        raise GrabnasError(
            f"unknown GraB-NAS option {bad[0]!r} in {spec!r}; expected one of "
            f"{', '.join(sorted(known | set(_TEXT_OPTIONS)))} or adapt_*"
        )
    GraBNASConfig(**{**GRABNAS_VARIANTS[name], **{k: v for k, v in options.items() if k in known}})  # checks values
    return name, options


def _option_value(text: str) -> object:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


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
    cache: dict | None = None,
    constraints=None,
) -> Optimizer:
    """The optimizer ``name`` over ``pool`` (default: the task's pool), seeded with ``seed``.

    ``options`` override GraB-NAS settings (:class:`grabnas.search.grabnas.GraBNASConfig`).
    ``cache``: a dict the caller keeps between calls on one benchmark (e.g. the runs of a
    bench) so GraB-NAS loads its VAE, encodes the space and loads each surrogate only once.
    ``constraints`` (:class:`grabnas.search.constraints.Constraints`): the pool is cut to the
    feasible cells (costs of the task's network, :func:`~grabnas.search.constraints.benchmark_cost_model`)
    before the optimizer is built, and GraB-NAS's decodes outside the pool must be feasible too;
    no feasible cell is a one-line error naming the limits.
    """
    from grabnas.search.baselines import TransferRank, make_baseline, transfer_scores

    name, spec_options = parse_optimizer_spec(name)
    pool = list(pool) if pool is not None else bench.pool(task)
    feasible = None
    if constraints is not None and constraints.active:
        from grabnas.search.constraints import benchmark_cost_model

        bound = constraints.with_costs(benchmark_cost_model(bench, task))
        pool, feasible = bound.filter(pool), bound.feasible
    if name in GRABNAS_VARIANTS:
        merged, checkpoint = _grabnas_options(name, {**spec_options, **(options or {})}, bench, task)
        return build_grabnas(
            bench, task, seed, pool, merged, checkpoint=checkpoint, log=log, cache=cache, feasible=feasible
        )
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
    cache: dict | None = None,
    feasible=None,
) -> Optimizer:
    """GraB-NAS for ``task``: the space's shipped graph VAE and a surrogate that never saw the
    task's group (the shipped checkpoint for that hold-out, or one meta-trained now on the
    benchmark's other groups). ``feasible``: ``Architecture -> bool``, the constraints a decode
    outside the pool must meet too (default: none)."""
    import torch

    from grabnas.meta.features import latents_for

    cache = {} if cache is None else cache
    overrides = dict(overrides)
    data = overrides.pop(DATA_OPTION, None)
    vae, latents = _vae_and_latents(bench, cache)
    names, surs = _surrogates(bench, task, checkpoint, cache, log)
    member_latents = latents_for(surs[0], vae, latents)  # (len(space), latent_dim), encoded once
    if any(not torch.equal(latents_for(s, vae, latents), member_latents) for s in surs[1:]):
        raise GrabnasError(
            f"the surrogates of ensemble {checkpoint!r} read different graph-VAE latents; expected one VAE"
        )
    opt = assemble_grabnas(
        bench.space,
        surs[0],
        vae,
        _data_embedding(surs[0], data, cache),
        pool,
        seed,
        overrides,
        member_latents,
        ensemble=[(s, _data_embedding(s, data, cache)) for s in surs[1:]],
        # a table only has its rows; a constrained search only takes feasible cells
        evaluable=lambda arch: bench.value(arch, task) is not None and (feasible is None or feasible(arch)),
    )
    if len(surs) > 1:
        opt.surrogate_card = {
            **surs[0].card,
            "groups_seen": sorted(set().union(*(s.card.get("groups_seen", []) for s in surs))),
            "ensemble": [
                {
                    "checkpoint": n,
                    "seed": s.card.get("train_config", {}).get("seed"),
                    "best_step": s.card.get("best_step"),
                }
                for n, s in zip(names, surs)
            ],
        }
    return opt


def prepare_grabnas(bench: TabularBenchmark, runs: Sequence[tuple[str, str]], cache: dict, log=None) -> list[str]:
    """Load or meta-train, into ``cache``, the VAE, latents and surrogates that the GraB-NAS runs
    among ``runs`` (``(task, optimizer spec)`` pairs) need, each once, so that runs which get a copy
    of ``cache`` (e.g. worker processes) reuse them. Returns one line per surrogate meta-trained now,
    with its time; ``log`` receives the loading messages."""
    import time

    done, lines = set(), []
    for task, spec in runs:
        name, options = parse_optimizer_spec(spec)
        if name not in GRABNAS_VARIANTS:
            continue
        _, checkpoint = _grabnas_options(name, options, bench, task)
        if (bench.group(task), checkpoint) in done:
            continue
        done.add((bench.group(task), checkpoint))
        before = set(cache)
        t0 = time.perf_counter()
        _vae_and_latents(bench, cache)
        _surrogates(bench, task, checkpoint, cache, log)
        trained = [
            key
            for key in set(cache) - before
            if key[0] == "surrogate" and any("meta-training" in m for m in cache[key][1])
        ]
        if trained:
            lines.append(
                f"meta-trained the surrogate without {bench.group(task)!r} once "
                f"({time.perf_counter() - t0:.0f} s); every run on it reuses it"
            )
    return lines


def _grabnas_options(name: str, options: dict, bench: TabularBenchmark, task: str) -> tuple[dict, str]:
    """``(overrides, checkpoint)`` of GraB-NAS variant ``name`` with ``options``: its GraBNASConfig
    overrides (plus :data:`DATA_OPTION` with ``{task}`` filled in, when given) and its surrogate
    checkpoint (``{group}`` filled in with the task's group)."""
    merged = {**GRABNAS_VARIANTS[name], **options}
    if DATA_OPTION in merged:
        merged[DATA_OPTION] = str(merged[DATA_OPTION]).replace("{task}", task)
    return merged, str(merged.pop(SURROGATE_OPTION, "auto")).replace("{group}", bench.group(task))


def _data_embedding(sur, spec: str | None, cache: dict):
    """The embedding of the images of ``spec`` for ``sur`` (None: its "no data" embedding), once per cache."""
    if not spec:
        return sur.task_embedding()
    key = ("embedding", id(sur), spec)
    if key not in cache:
        from grabnas.data.tasks import TaskSpec
        from grabnas.meta.features import split_task_embedding

        cache[key] = split_task_embedding(sur, TaskSpec.from_spec(spec).split())
    return cache[key]


def _vae_and_latents(bench: TabularBenchmark, cache: dict):
    """``(vae, latents)``: the space's shipped graph VAE and its (len(space), latent_dim) member latents."""
    import torch

    from grabnas.meta.checkpoints import load_checkpoint
    from grabnas.meta.features import encode_members

    space = bench.space
    if ("vae", space.name) not in cache:
        vae = load_checkpoint(space.name, space=space)
        with torch.no_grad():
            cache[("vae", space.name)] = (vae, encode_members(vae))
    return cache[("vae", space.name)]


def _surrogates(bench: TabularBenchmark, task: str, checkpoint: str, cache: dict, log=None):
    """``(names, surrogates)`` of ``checkpoint`` (one name or ``A+B+...``) for ``task``, none of which
    saw the task's group; loaded or meta-trained once per ``cache``."""
    from grabnas.meta.corpus import benchmark_corpus
    from grabnas.meta.surrogate_training import surrogate_for_group

    vae, latents = _vae_and_latents(bench, cache)
    group = bench.group(task)
    names = [name.strip() for name in checkpoint.split("+")]
    if not all(names):
        raise GrabnasError(
            f"bad surrogate {checkpoint!r}; expected CHECKPOINT or an ensemble CHECKPOINT+CHECKPOINT+..."
        )
    surs = []
    for name in names:
        key = ("surrogate", bench.name, group, name)
        if key not in cache:
            corpus = benchmark_corpus(bench)  # surrogate_for_group holds the group out
            messages: list[str] = []
            sur = surrogate_for_group(
                corpus,
                group,
                vae,
                latents,
                checkpoint=name,
                benchmark=bench.name.split(":")[0],
                vae_name=bench.space.name,
                log=messages.append,
            )
            cache[key] = (sur, messages)
        sur, messages = cache[key]
        for message in messages:
            (log or (lambda _msg: None))(message)
        if group in set(sur.card.get("groups_seen", [])):  # belt and braces: the target's values must never reach it
            raise GrabnasError(f"the surrogate for {task!r} saw its group {group!r}; expected one that held it out")
        _fill_heldout_residual(sur, bench, cache)
        surs.append(sur)
    return names, surs


def _fill_heldout_residual(sur, bench: TabularBenchmark, cache: dict) -> None:
    """Add ``heldout_residual`` to the card of a checkpoint written before cards had it
    (:func:`grabnas.meta.transferability.card_heldout_residual` on ``bench``'s corpus, or on the
    card's own corpus where ``bench`` lacks a group it saw), once per set of groups seen."""
    if "heldout_residual" in sur.card:
        return
    key = ("heldout_residual", bench.name, tuple(sorted(sur.card.get("groups_seen", []))))
    if key not in cache:
        from grabnas.meta.corpus import benchmark_corpus
        from grabnas.meta.transferability import card_heldout_residual

        cache[key] = card_heldout_residual(sur.card, benchmark_corpus(bench))
    sur.card["heldout_residual"] = cache[key]


def assemble_grabnas(
    space,
    sur,
    vae,
    task_embedding,
    pool: Sequence[Architecture] | None,
    seed: int,
    overrides: dict,
    member_latents=None,
    ensemble: Sequence[tuple] = (),
    evaluable=None,
) -> Optimizer:
    """GraB-NAS from its parts: a meta-trained surrogate, the graph VAE its latents come from
    and the target's ``(task_dim,)`` embedding. ``overrides`` are GraBNASConfig fields plus
    ``adapt_*`` keywords of the surrogate's ``fit`` (e.g. ``adapt_steps``); ``member_latents``
    ``(len(space), latent_dim)`` saves encoding the pool again. ``ensemble``: further
    ``(surrogate, task_embedding)`` pairs reading the same latents; with them the search uses
    the mixture of all (:class:`grabnas.search.ensemble.EnsembleLatentSurrogate`). ``evaluable``:
    which decodes outside the pool the evaluator can evaluate (see :class:`GraBNAS`)."""
    import inspect

    import torch

    from grabnas.meta.checkpoints import surrogate_vae
    from grabnas.meta.transferability import card_heldout_residual
    from grabnas.models.latent_surrogate import MetaLatentSurrogate
    from grabnas.search.grabnas import GraBNAS, GraBNASConfig, warmup_probe_count

    overrides = dict(overrides)
    fit_options = {k[len("adapt_") :]: overrides.pop(k) for k in list(overrides) if k.startswith("adapt_")}
    known = set(inspect.signature(sur.fit).parameters) - {"X", "Y"}
    unknown = sorted(set(fit_options) - known)
    if unknown:
        raise GrabnasError(
            f"unknown surrogate option adapt_{unknown[0]}; expected adapt_ followed by one of {', '.join(sorted(known))}"
        )
    config = GraBNASConfig(**overrides)
    members = [(sur, task_embedding), *ensemble]
    for member, _ in members:  # a card written before cards had it: from the corpus it names
        member.card["heldout_residual"] = card_heldout_residual(member.card)
    residual = sur.card["heldout_residual"]
    pool = list(pool) if pool is not None else space.members()
    extra_dims = len(space.encode_onehot(pool[0])) if config.target_kernel != "latent" and pool else 0
    finetune = config.finetune_steps(warmup_probe_count(config, residual))
    latent_surs = [
        MetaLatentSurrogate(
            s,
            d,
            adaptation=config.adaptation,
            seed=seed + i,
            prior_mean_kernel=config.prior_mean_kernel,
            calibrate=config.calibrate,
            extra_dims=extra_dims,
            mean_weight=config.mean_weight,
            onehot_kernel="hamming" if config.target_kernel == "hamming" else "ard",
            fit_start=config.fit_start,
            integrate=config.integrate,
            hyper_draw=config.hyper_draw,
            finetune=finetune,
            finetune_start=config.finetune_start,
            finetune_refit=config.finetune_refit,
            finetune_select=config.finetune_select,
            finetune_every=config.finetune_every,
            target_scale=s.card["heldout_residual"] if config.target_scale == "corpus" else None,
            **fit_options,
        )
        for i, (s, d) in enumerate(members)
    ]
    latent_sur = latent_surs[0]
    if ensemble:
        from grabnas.search.ensemble import EnsembleLatentSurrogate

        latent_sur = EnsembleLatentSurrogate(latent_surs)
    pool_latents = None
    if member_latents is not None:
        pool_latents = member_latents[torch.as_tensor([space.index_of(a) for a in pool], dtype=torch.long)]
    opt = GraBNAS(
        space,
        latent_sur,
        surrogate_vae(sur, vae),
        pool=pool,
        seed=seed,
        config=config,
        pool_latents=pool_latents,
        evaluable=evaluable,
        heldout_residual=residual,
    )
    opt.surrogate_card = sur.card  # which tasks meta-training saw (reported with each run)
    return opt
