"""Cost constraints on the searched cells: ``--max-params`` (millions of parameters),
``--max-flops`` (MFLOPs) and ``--max-latency`` (ms, predicted from a latency table measured on the
user's device, :mod:`grabnas.train.latency`).

A :class:`Constraints` value holds the limits; bound to a :class:`CostModel` (the costs of the
network that the evaluation would train, or look up) it says which cells are feasible, one at
a time (:meth:`Constraints.feasible`, what GraB-NAS's ``evaluable`` filter reads for decodes
outside the pool) or for a whole pool at once (:meth:`Constraints.feasible_mask`,
:meth:`Constraints.filter`). Optimizers see only the feasible pool
(:func:`grabnas.search.registry.build_optimizer`), so none of them can propose an infeasible
cell: baselines only propose pool members (REA's and local search's mutants off the pool are
resampled or skipped), GraB-NAS's initial design and global steps pick pool members and its
decodes pass the same feasibility test.

Cost models:

* NB201 cells: the NB201 network's parameters and FLOPs by per-edge-op arithmetic
  (:mod:`grabnas.train.cost`). On the NB201 benchmark each task's own network (C=16, N=5, 3x32x32
  inputs with 10 classes for CIFAR-10 and 100 for CIFAR-100, 3x16x16 with 120 classes for
  ImageNet16-120); on a user table over NB201 cells the CIFAR-10 network; for ``search
  --dataset`` the network trained (its C, N, classes, channels and image size).
* NAS-Bench-Graph: the parameter counts its table records (``para``); it has no FLOPs and no
  latency model.
* Latency: a cost model of an NB201 network (one that knows its ``setting``) gets the cost
  ``latency`` when constraints with ``max_latency`` are bound to it (:meth:`Constraints.with_costs`):
  the predicted ms of every cell from the constraints' :class:`~grabnas.train.latency.LatencyTable`,
  which must have been measured for that very network (else a one-line error).

Extension point: a new limit is a field of :class:`Constraints`, an entry of :data:`LIMITS` and a
cost of that name in the cost models that can provide it; the filtering, the reports and the study
settings then take it as they take the others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

import numpy as np

from grabnas.errors import GrabnasError
from grabnas.spaces.base import Architecture, SearchSpace

#: limit field -> (cost name, unit, command-line flag)
LIMITS: dict[str, tuple[str, str, str]] = {
    "max_params": ("params", "M params", "--max-params"),
    "max_flops": ("flops", "MFLOPs", "--max-flops"),
    "max_latency": ("latency", "ms", "--max-latency"),
}
#: a limit is *binding* where the constrained choice uses more than this share of it
BINDING_SHARE = 0.95


@dataclass(frozen=True)
class CostModel:
    """Costs of a space's members under one evaluation setting.

    Attributes:
        space: the search space.
        tables: cost name (``params``, ``flops``, ``latency``) -> ``(len(space),)`` costs in
            ``space.members()`` order (millions; ``latency`` in ms), NaN where unknown.
        description: where the costs come from, for messages and reports.
        setting: the :class:`grabnas.train.cost.NetworkSetting` of the NB201 network costed (None
            elsewhere); a latency table must match it.
    """

    space: SearchSpace
    tables: Mapping[str, np.ndarray]
    description: str = ""
    setting: object = None

    def costs(self, archs: Sequence[Architecture], name: str) -> np.ndarray:
        """``(len(archs),)`` costs ``name`` of ``archs`` (NaN for a non-member or an unknown cost)."""
        table = self.tables[name]
        rows = np.array([self._row(a) for a in archs], dtype=np.int64)
        out = np.full(len(archs), np.nan)
        ok = rows >= 0
        out[ok] = table[rows[ok]]
        return out

    def cost(self, arch: Architecture, name: str) -> float:
        return float(self.costs([arch], name)[0])

    def _row(self, arch: Architecture) -> int:
        try:
            return self.space.index_of(arch)
        except GrabnasError:  # not a member (e.g. a cell of another space)
            return -1


@dataclass(frozen=True)
class Constraints:
    """Limits on the cost of a cell's network; None: no limit.

    Attributes:
        max_params: millions of parameters.
        max_flops: MFLOPs (multiply-accumulates of one forward pass on one input).
        max_latency: ms per forward pass, as predicted by ``latency_table``.
        latency_table: the :class:`grabnas.train.latency.LatencyTable` that ``max_latency`` reads
            (its fingerprint is part of :meth:`to_dict`).
        cost_model: the costs the limits are checked against (:meth:`with_costs`); not part of
            the value (two constraints with the same limits are equal).
    """

    max_params: float | None = None
    max_flops: float | None = None
    max_latency: float | None = None
    latency_table: object = field(default=None, compare=False, repr=False)
    cost_model: CostModel | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name, (_cost, unit, flag) in LIMITS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    raise GrabnasError(f"{flag} takes a positive number ({unit}), got {value!r}") from None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise GrabnasError(f"{flag} takes a positive number ({unit}), got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.max_latency is not None and self.latency_table is None:
            raise GrabnasError(
                "--max-latency needs --latency-table TABLE (measure one with grabnas latency --out TABLE)"
            )

    # -- the value ------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """Whether any limit is set."""
        return bool(self.limits())

    def limits(self) -> dict[str, float]:
        """Cost name -> limit, for the limits set."""
        return {cost: getattr(self, name) for name, (cost, _u, _f) in LIMITS.items() if getattr(self, name) is not None}

    def describe(self) -> str:
        """One line: ``params <= 0.5 M, FLOPs <= 50 MFLOPs`` (``no constraints`` when none is set)."""
        parts = [f"{_label(cost)} <= {_fmt(limit)} {_short_unit(cost)}" for cost, limit in self.limits().items()]
        return ", ".join(parts) if parts else "no constraints"

    def to_dict(self) -> dict:
        """The limits set (JSON-able), e.g. for a study's settings; with ``max_latency`` also the
        latency table's fingerprint (``latency_table``), so that a changed table is refused."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name in LIMITS and getattr(self, f.name)}
        if self.max_latency is not None:
            out["latency_table"] = self.latency_table.fingerprint
        return out

    @classmethod
    def from_dict(cls, data: Mapping | None, latency_table=None) -> Constraints:
        """The limits of ``data`` (:meth:`to_dict`'s, or a bench's ``bench.json``); ``max_latency``
        needs ``latency_table`` (a :class:`~grabnas.train.latency.LatencyTable` or its path)."""
        if isinstance(latency_table, (str, bytes)) or hasattr(latency_table, "__fspath__"):
            from grabnas.train.latency import load_latency_table

            latency_table = load_latency_table(latency_table)
        return cls(**{k: v for k, v in (data or {}).items() if k in LIMITS}, latency_table=latency_table)

    def with_costs(self, cost_model: CostModel) -> Constraints:
        """These limits checked against ``cost_model``; a one-line error when it lacks a cost
        that a limit needs. ``max_latency`` adds the cost ``latency`` to a model of an NB201 network
        (the table's predictions for all cells) when the table was measured for that network."""
        if self.max_latency is not None and "latency" not in cost_model.tables:
            cost_model = _with_latency(cost_model, self.latency_table)
        for name, (cost, _unit, flag) in LIMITS.items():
            if getattr(self, name) is not None and cost not in cost_model.tables:
                have = [LIMITS_BY_COST[c][2] for c in cost_model.tables if c in LIMITS_BY_COST]
                raise GrabnasError(
                    f"{flag} is not supported on {cost_model.description or cost_model.space.name}: it records no "
                    f"{_label(cost)}" + (f" (supported there: {', '.join(have)})" if have else "")
                )
        return Constraints(
            **{n: getattr(self, n) for n in LIMITS}, latency_table=self.latency_table, cost_model=cost_model
        )

    # -- feasibility -----------------------------------------------------------------------------
    def _model(self) -> CostModel:
        if self.cost_model is None:
            raise GrabnasError("constraints without a cost model; bind one with Constraints.with_costs")
        return self.cost_model

    def feasible_mask(self, archs: Sequence[Architecture]) -> np.ndarray:
        """``(len(archs),)`` bools: every limit met (an unknown cost is infeasible)."""
        ok = np.ones(len(archs), dtype=bool)
        for cost, limit in self.limits().items():
            c = self._model().costs(archs, cost)
            ok &= ~np.isnan(c) & (c <= limit * (1 + 1e-12))
        return ok

    def feasible(self, arch: Architecture) -> bool:
        return bool(self.feasible_mask([arch])[0]) if self.active else True

    def filter(self, archs: Sequence[Architecture]) -> list[Architecture]:
        """The feasible ``archs``, in order; a one-line error naming the limits when none is."""
        archs = list(archs)
        if not self.active:
            return archs
        mask = self.feasible_mask(archs)
        if not mask.any():
            lows = []
            for cost in self.limits():
                c = self._model().costs(archs, cost)
                if (~np.isnan(c)).any():
                    lows.append(f"the smallest has {_fmt(np.nanmin(c))} {_short_unit(cost)}")
            raise GrabnasError(
                f"no candidate satisfies the constraints {self.describe()}"
                + (f" ({'; '.join(lows)})" if lows else "")
                + f" under {self._model().description}; loosen {', '.join(self.flags())}"
            )
        return [a for a, m in zip(archs, mask) if m]

    def flags(self) -> list[str]:
        return [flag for name, (_c, _u, flag) in LIMITS.items() if getattr(self, name) is not None]

    # -- reports ---------------------------------------------------------------------------------
    def usage(self, arch: Architecture) -> dict[str, tuple[float, float]]:
        """Cost name -> ``(cost, share of the limit)`` of ``arch``, for the limits set."""
        return {
            cost: (c := self._model().cost(arch, cost), c / limit if math.isfinite(c) else math.nan)
            for cost, limit in self.limits().items()
        }

    def binding(self, arch: Architecture) -> list[str]:
        """The costs whose limit ``arch`` uses more than :data:`BINDING_SHARE` of."""
        return [cost for cost, (_c, share) in self.usage(arch).items() if share > BINDING_SHARE]

    def usage_text(self, arch: Architecture) -> str:
        """``0.49 M params (98 % of the limit), 45.1 MFLOPs (90 %)``: ``arch``'s costs and their
        shares of the limits."""
        parts = []
        for i, (cost, (c, share)) in enumerate(self.usage(arch).items()):
            of = " of the limit" if i == 0 else ""
            parts.append(f"{_fmt(c)} {_long_unit(cost)} ({100 * share:.0f} %{of})")
        return ", ".join(parts)

    def report_lines(
        self, best: Architecture | None, optimum: Architecture | None = None, what: str = "the best cell found"
    ) -> list[str]:
        """Which constraint was binding: the usage of ``best`` (the chosen cell) and, where known,
        whether the unconstrained ``optimum`` was infeasible (and by which limits)."""
        lines = [f"constraints: {self.describe()} (costs of {self._model().description})"]
        if best is not None:
            bind = self.binding(best)
            verdict = (
                f"binding: {' and '.join(_label(c) for c in bind)} (above {100 * BINDING_SHARE:.0f} % of the limit)"
                if bind
                else f"no limit above {100 * BINDING_SHARE:.0f} % used"
            )
            lines.append(f"{what} uses {self.usage_text(best)}; {verdict}")
        if optimum is not None:
            over = [c for c, (_v, share) in self.usage(optimum).items() if not share <= 1 + 1e-12]
            head = f"the unconstrained optimum {optimum} needs {self.usage_text(optimum)}"
            lines.append(
                f"{head}: infeasible ({' and '.join(_label(c) for c in over)} over the limit), so the constraints bind"
                if over
                else f"{head}: feasible, so the constraints do not change the optimum"
            )
        return lines


LIMITS_BY_COST = {cost: (name, unit, flag) for name, (cost, unit, flag) in LIMITS.items()}


def _label(cost: str) -> str:
    return {"params": "params", "flops": "FLOPs"}.get(cost, cost)


def _short_unit(cost: str) -> str:
    return {"params": "M", "flops": "MFLOPs", "latency": "ms"}.get(cost, "")


def _long_unit(cost: str) -> str:
    return {"params": "M params", "flops": "MFLOPs", "latency": "ms"}.get(cost, "")


def _with_latency(model: CostModel, table) -> CostModel:
    """``model`` plus the cost ``latency``: ``table``'s predicted ms of every cell; one-line errors
    where the model has no NB201 network or the table was measured for another one."""
    where = model.description or model.space.name
    if model.setting is None or model.space.name != "nb201":
        raise GrabnasError(
            f"--max-latency is not supported on {where}: there is no latency model for its cells "
            "(latency tables are measured for NB201 networks)"
        )
    if table.setting != model.setting:
        s = table.setting
        raise GrabnasError(
            f"the latency table was measured for {s.describe()}, but this search evaluates {where}; "
            "measure a table for that network (grabnas latency --channels, --cells, --classes, --image-size ...)"
        )
    what = f"{model.description}; latency predicted from the table of {table.device['kind']} {table.device['name']!r}, batch {table.batch_size}"
    return CostModel(model.space, {**model.tables, "latency": table.predict_all()}, what, model.setting)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


# -- cost models ---------------------------------------------------------------------------------
def network_cost_model(space: SearchSpace, setting=None) -> CostModel:
    """Costs of NB201 cells built into the NB201 network at ``setting``
    (:class:`grabnas.train.cost.NetworkSetting`; default NB201's CIFAR-10 network)."""
    from grabnas.train.cost import NetworkSetting, nb201_costs

    if space.name != "nb201":
        raise GrabnasError(f"parameter and FLOP counts are computed for NB201 cells, not for the {space.name} space")
    setting = setting or NetworkSetting()
    return CostModel(space, nb201_costs(setting), setting.describe(), setting)


def benchmark_cost_model(bench, task: str) -> CostModel:
    """Costs of ``bench``'s cells for ``task``: on NB201 cells the network the table's values come
    from (the task's own NB201 network on the NB201 benchmark, else NB201's CIFAR-10 network);
    elsewhere the model costs the task's table records (NAS-Bench-Graph: parameters only)."""
    from grabnas.train.cost import NB201_NETWORKS

    table = bench.table(task)
    if bench.space.name == "nb201":
        known = bench.name == "nb201" and table.group in NB201_NETWORKS
        model = network_cost_model(bench.space, NB201_NETWORKS[table.group] if known else NB201_NETWORKS["cifar10"])
        what = f"{model.description}{'' if known else ' (NB201 CIFAR-10)'}"
        return CostModel(bench.space, model.tables, what, model.setting)
    recorded = dict(getattr(table, "model_costs", {}) or {})
    return CostModel(bench.space, recorded, f"{bench.name} {task} (its table's records)")


def constrained_optimum(
    constraints: Constraints, values: Mapping[Architecture, float]
) -> tuple[Architecture, float] | None:
    """The best feasible architecture among ``values`` and its value (None: none is feasible)."""
    archs = list(values)
    if not archs:
        return None
    mask = constraints.feasible_mask(archs) if constraints.active else np.ones(len(archs), dtype=bool)
    feasible = [a for a, m in zip(archs, mask) if m]
    if not feasible:
        return None
    best = max(feasible, key=lambda a: values[a])
    return best, values[best]


__all__ = [
    "BINDING_SHARE",
    "LIMITS",
    "Constraints",
    "CostModel",
    "benchmark_cost_model",
    "constrained_optimum",
    "network_cost_model",
]
