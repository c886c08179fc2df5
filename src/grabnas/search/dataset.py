"""Searching a user's own image dataset: the task, its embedding and the optimizer.

A search with real training has no table of values to learn from: GraB-NAS reads the target
task through the meta-trained surrogate's *dataset encoder*, so the task embedding is computed
from the user's images exactly as meta-training computed it for the image corpus — ``k``
training images per class (``instances_per_class`` of the surrogate's card, drawn with its
meta-training seed by :func:`grabnas.data.sample_per_class`) through the same feature extractor
(the shipped ``digits-cnn``: grey, resized to 16x16), then the Set Transformer. Only the
*training* split is read; validation and test images never reach the optimizer.

The candidates are the whole NB201 space (15,625 cells); the default surrogate is the shipped
checkpoint that held nothing out (``nb201-all``: every NB201 task plus the image corpus).
"""

from __future__ import annotations

from grabnas.data.tasks import DatasetSplit, TaskSpec
from grabnas.errors import GrabnasError
from grabnas.search.base import Optimizer

#: the search space of dataset searches (what the shipped VAE and surrogates know)
SPACE = "nb201"
#: the default surrogate of dataset searches: ``shipped_surrogate_for(SPACE)``, i.e. ``nb201-all``
DEFAULT_SURROGATE = "auto"


def dataset_task(spec: str, image_size: int | None = None) -> TaskSpec:
    """The task of a ``--dataset`` spec: a task name (``mnist-subset[0,3,7]@12``, ``...~14px``)
    or a dataset spec (``digits``, ``npz:PATH``, ``folder:PATH``, ...; all classes, split seed 0),
    either with task modifiers (``digits~noise0.3``, ``digits~train20``; see
    :mod:`grabnas.data.corruptions`), resized to ``image_size`` when given. The data are loaded and validated later, by the evaluator."""
    task = TaskSpec.from_spec(spec)
    if image_size is not None:
        task = task.with_image_size(int(image_size))
    return task


def resolve_surrogate(name: str = DEFAULT_SURROGATE) -> str:
    """The checkpoint name/path of ``name`` (``auto``: the shipped NB201 one that held nothing out)."""
    if name != "auto":
        return name
    from grabnas.meta.checkpoints import shipped_surrogate_for

    found = shipped_surrogate_for(SPACE)
    if found is None:
        raise GrabnasError("no shipped NB201 surrogate without held-out groups (nb201-all); pass a checkpoint path")
    return found


def task_embedding(surrogate, split: DatasetSplit, extractor: str | None = None, fidelity: str | None = None):
    """``(task_dim,)`` embedding of a task for ``surrogate`` from the train split of ``split``, at
    ``fidelity`` (None: the main one; :func:`grabnas.meta.features.split_task_embedding`)."""
    from grabnas.meta.features import split_task_embedding

    return split_task_embedding(surrogate, split, extractor, fidelity)


def build_dataset_optimizer(
    name: str,
    split: DatasetSplit,
    seed: int,
    surrogate: str = DEFAULT_SURROGATE,
    options: dict | None = None,
    constraints=None,
) -> Optimizer:
    """The optimizer ``name`` over the whole NB201 space for a task with data ``split``.

    GraB-NAS variants (``grabnas``, ``grabnas-bo``, ...) get the shipped NB201 graph VAE and the
    ``surrogate`` checkpoint (default ``nb201-all``) conditioned on the task embedding of the
    train split; ``opt.surrogate_card`` and ``opt.surrogate_name`` say which. Baselines
    (``random``, ``rea``, ``local``, ``gpbo``) need no model; ``transfer-rank`` needs the values of
    other tasks of a benchmark and is refused. ``constraints``
    (:class:`grabnas.search.constraints.Constraints`, already bound to the cost model of the
    network trained, :func:`dataset_cost_model`): the candidates are the feasible cells only and
    GraB-NAS's decodes must be feasible too.
    """
    from grabnas.search.baselines import make_baseline
    from grabnas.search.registry import DATA_OPTION, GRABNAS_VARIANTS, SURROGATE_OPTION, parse_optimizer_spec
    from grabnas.spaces import get_space

    space = get_space(SPACE)
    name, spec_options = parse_optimizer_spec(name)
    if name == "transfer-rank":
        raise GrabnasError(
            "transfer-rank ranks by the values of other tasks of a benchmark; use it with --benchmark/--task"
        )
    pool, feasible = None, None
    if constraints is not None and constraints.active:
        pool, feasible = constraints.filter(space.members()), constraints.feasible
    if name not in GRABNAS_VARIANTS:
        return make_baseline(name, space, pool, seed)
    merged = {**GRABNAS_VARIANTS[name], **spec_options, **(options or {})}
    if SURROGATE_OPTION in merged:
        raise GrabnasError(
            f"the {SURROGATE_OPTION}= option picks a held-out checkpoint on a benchmark; "
            "with --dataset use --surrogate NAME"
        )
    if DATA_OPTION in merged:
        raise GrabnasError(
            f"the {DATA_OPTION}= option gives a table's task images; with --dataset they are the dataset's"
        )
    return build_grabnas_for_dataset(split, seed, merged, surrogate=surrogate, pool=pool, feasible=feasible)


def dataset_cost_model(split: DatasetSplit, channels: int, cells: int):
    """The :class:`~grabnas.search.constraints.CostModel` of the network a dataset search trains:
    C=``channels``, N=``cells``, the split's classes and image shape."""
    from grabnas.search.constraints import network_cost_model
    from grabnas.spaces import get_space
    from grabnas.train.cost import NetworkSetting

    c, h, w = split.image_shape
    setting = NetworkSetting(C=channels, N=cells, num_classes=split.num_classes, in_channels=c, height=h, width=w)
    return network_cost_model(get_space(SPACE), setting)


def build_grabnas_for_dataset(
    split: DatasetSplit,
    seed: int,
    overrides: dict | None = None,
    surrogate: str = DEFAULT_SURROGATE,
    pool=None,
    feasible=None,
) -> Optimizer:
    """GraB-NAS over the NB201 space (or ``pool``, e.g. its feasible cells) for a task with data
    ``split``; ``feasible``: what decodes must meet (see :func:`build_dataset_optimizer`)."""
    import warnings

    from grabnas.meta.checkpoints import load_checkpoint, load_surrogate, vae_fingerprint
    from grabnas.search.registry import assemble_grabnas
    from grabnas.spaces import get_space

    space = get_space(SPACE)
    overrides = dict(overrides or {})
    name = resolve_surrogate(surrogate)
    sur = load_surrogate(name)
    if sur.card.get("space", SPACE) != SPACE:
        raise GrabnasError(
            f"surrogate {name!r} was meta-trained on the {sur.card.get('space')} space; expected {SPACE}"
        )
    vae = load_checkpoint(sur.card.get("vae", {}).get("checkpoint", SPACE), space=space)
    want = sur.card.get("vae", {}).get("fingerprint")
    if want and sur.vae_state is None and want != vae_fingerprint(vae):
        warnings.warn(
            f"surrogate {name!r} was meta-trained on another VAE's latents; its predictions are unreliable",
            stacklevel=2,
        )
    opt = assemble_grabnas(space, sur, vae, task_embedding(sur, split), pool, seed, overrides, evaluable=feasible)
    opt.surrogate_name = name
    return opt


def build_dataset_multifidelity(
    spec: str,
    split: DatasetSplit | None,
    seed: int,
    fidelities,
    surrogate: str = DEFAULT_SURROGATE,
    pool=None,
    options: dict | None = None,
):
    """A multi-fidelity optimizer (:mod:`grabnas.search.multifidelity`) over the whole NB201 space
    (or ``pool``) for a task with data ``split``. ``grabnas-mf`` gets the shipped VAE and the
    ``surrogate`` checkpoint (default ``nb201-all``) with two task embeddings of the train split: at
    the surrogate's low fidelity (its ``12ep`` offset, what its meta-training saw of short trainings)
    for every fidelity below the target, and the main one for the target (``split`` None: the
    surrogate's learned "no data" embeddings, as a table task without ``data=``); its warm-up's
    random screens follow the residual of the corpus the card names (as ``grabnas`` on a dataset)."""
    import torch

    from grabnas.meta.checkpoints import load_checkpoint, load_surrogate, surrogate_vae
    from grabnas.meta.transferability import card_heldout_residual
    from grabnas.search.grabnas import _encode_in_chunks
    from grabnas.search.multifidelity import build_multifidelity_optimizer, parse_multifidelity_spec
    from grabnas.spaces import get_space

    space = get_space(SPACE)
    if parse_multifidelity_spec(spec)[0] != "grabnas-mf":
        return build_multifidelity_optimizer(spec, space, seed, fidelities, pool=pool, options=options)
    name = resolve_surrogate(surrogate)
    sur = load_surrogate(name)
    low = sur.config.fidelities[0] if sur.config.fidelities else None
    if low is None:
        raise GrabnasError(f"surrogate {name!r} learned no low fidelity; grabnas-mf needs one (e.g. nb201-all's 12ep)")
    vae = load_checkpoint(sur.card.get("vae", {}).get("checkpoint", SPACE), space=space)
    pool = list(pool) if pool is not None else space.members()
    with torch.no_grad():
        pool_latents = _encode_in_chunks(surrogate_vae(sur, vae), pool)
    with torch.no_grad():
        high = task_embedding(sur, split) if split is not None else sur.task_embedding().detach()
        at_low = (
            task_embedding(sur, split, fidelity=low) if split is not None else sur.task_embedding(None, low).detach()
        )
    embeddings = [at_low] * (len(fidelities.names) - 1) + [high]
    sur.card["heldout_residual"] = card_heldout_residual(sur.card)  # a card predating the field: its corpus's
    opt = build_multifidelity_optimizer(
        spec,
        space,
        seed,
        fidelities,
        pool=pool,
        surrogate=sur,
        embeddings=embeddings,
        pool_latents=pool_latents,
        heldout_residual=sur.card["heldout_residual"],
        options=options,
    )
    opt.surrogate_card, opt.surrogate_name = sur.card, name
    return opt


def build_table_multifidelity(spec: str, bench, task: str, seed: int, fidelities):
    """A multi-fidelity optimizer for ``task`` of a table other than NB201 (a ``csv:`` table with
    ``TASK@Nep`` columns; ``fidelities`` from
    :func:`grabnas.evaluation.multifidelity.table_fidelities`) over the table's cells. ``grabnas-mf``
    (NB201-space tables) is the dataset search's (:func:`build_dataset_multifidelity`,
    the ``nb201-all`` surrogate) with the task's images when ``data=SPEC`` names them (``{task}``:
    the task's name as a dataset spec), else the surrogate's "no data" embedding."""
    from grabnas.search.multifidelity import build_multifidelity_optimizer, parse_multifidelity_spec

    name, options = parse_multifidelity_spec(spec)
    pool = bench.pool(task)
    if name != "grabnas-mf":
        return build_multifidelity_optimizer(name, bench.space, seed, fidelities, pool=pool, options=options)
    if bench.space.name != SPACE:
        raise GrabnasError(
            f"grabnas-mf on a table needs an {SPACE} table (a shipped surrogate); got {bench.space.name}"
        )
    data = options.pop("data", None)
    split = dataset_task(str(data).replace("{task}", task)).split() if data is not None else None
    return build_dataset_multifidelity(name, split, seed, fidelities, pool=pool, options=options)


__all__ = [
    "DEFAULT_SURROGATE",
    "build_dataset_multifidelity",
    "build_dataset_optimizer",
    "build_table_multifidelity",
    "build_grabnas_for_dataset",
    "dataset_cost_model",
    "dataset_task",
    "resolve_surrogate",
    "task_embedding",
]
