"""GraB-NAS inside Optuna: :class:`GraBNASSampler`, an ``optuna.samplers.BaseSampler``.

A study whose objective suggests the NAS-Bench-201 cell with :func:`suggest_nb201` gets whole
architectures proposed by a GraB-NAS optimizer (or any grabnas :class:`~grabnas.search.base.Optimizer`)::

    import optuna
    from grabnas.benchmarks.nb201 import load_nb201
    from grabnas.integrations.optuna import GraBNASSampler, suggest_nb201

    bench = load_nb201()
    sampler = GraBNASSampler(task="cifar10", benchmark=bench, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler, storage="sqlite:///nas.db",
                                study_name="nb201-cifar10", load_if_exists=True)
    study.optimize(lambda trial: bench.value(suggest_nb201(trial), "cifar10"), n_trials=20)

The parameters are those of the ``optuna-*`` baselines (:mod:`grabnas.search.optuna_baselines`):
one categorical per NB201 edge, ``edge_0_1, edge_0_2, edge_1_2, edge_0_3, edge_1_3, edge_2_3``
(the official edge order), each over ``none, skip_connect, nor_conv_1x1, nor_conv_3x3,
avg_pool_3x3`` in this order (:data:`NB201_PARAMS`, :func:`nb201_search_space`). An objective
must suggest them with exactly these choices (:func:`suggest_nb201` does); other parameters it
suggests are sampled independently (by a seeded ``RandomSampler`` unless another is given).

The wrapped optimizer learns from the study itself: before each proposal it is told every
finished trial it has not been told yet (read with ``study.get_trials``): a COMPLETE trial with
its value (negated when the study minimises, since grabnas maximises), a FAIL or PRUNED one as a
failure. So a study loaded from any Optuna storage resumes with what it holds, as with any
sampler, and trials evaluated by other workers reach the optimizer too. Use one sampler per study.
"""

from __future__ import annotations

from typing import Any

from grabnas.errors import GrabnasError
from grabnas.search.optuna_baselines import NB201Encoding, encoding_for, import_optuna

optuna = import_optuna("grabnas.integrations.optuna")

from optuna.distributions import BaseDistribution  # noqa: E402
from optuna.samplers import BaseSampler, RandomSampler  # noqa: E402
from optuna.study import Study, StudyDirection  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

_NB201 = NB201Encoding()
#: the Optuna parameter names of the NB201 edges, in official edge order
NB201_PARAMS: tuple[str, ...] = _NB201.names


def nb201_search_space() -> dict[str, BaseDistribution]:
    """``{"edge_0_1": CategoricalDistribution(ops), ...}`` for the six NB201 edges."""
    return _NB201.distributions()


def suggest_nb201(trial):  # -> grabnas.spaces.nb201.NB201Arch
    """Suggest the six edge ops on ``trial`` (an ``optuna.Trial``) and return the NB201 cell."""
    arch = _NB201.decode(_NB201.suggest(trial))
    assert arch is not None  # every op combination is a cell
    return arch


class GraBNASSampler(BaseSampler):
    """Propose whole architectures with a grabnas optimizer (GraB-NAS by default).

    Args:
        optimizer: any grabnas ``Optimizer``, fresh or already told some results; when None,
            ``build_optimizer(optimizer_name, benchmark, task, seed)`` makes one for a task of a
            tabular benchmark (GraB-NAS uses the shipped checkpoints that held the task out).
        task: the benchmark task (e.g. ``"cifar10"``), when ``optimizer`` is None.
        benchmark: a :class:`~grabnas.benchmarks.base.TabularBenchmark` or its name for
            ``load_benchmark`` (default: the shipped NB201 table).
        seed: seed of the built optimizer and of the default independent sampler.
        optimizer_name: the grabnas optimizer to build (``grabnas``, ``grabnas-bo``, ``rea``, ...).
        independent_sampler: samples parameters outside the architecture (default
            ``RandomSampler(seed=seed)``).

    ``infer_relative_search_space`` is the space's categorical encoding (for NB201 the six edge
    distributions); ``sample_relative`` proposes one architecture per trial (an empty dict, so
    independent sampling, once the optimizer's pool is exhausted or for an enqueued trial).
    """

    def __init__(
        self,
        optimizer=None,
        *,
        task: str | None = None,
        benchmark=None,
        seed: int = 0,
        optimizer_name: str = "grabnas",
        independent_sampler: BaseSampler | None = None,
    ) -> None:
        if optimizer is None:
            if task is None:
                raise GrabnasError("GraBNASSampler needs optimizer=... or task=... (e.g. task='cifar10')")
            from grabnas.search.registry import build_optimizer

            if benchmark is None:
                from grabnas.benchmarks.nb201 import load_nb201

                benchmark = load_nb201()
            elif isinstance(benchmark, str):
                from grabnas.benchmarks import load_benchmark

                benchmark = load_benchmark(benchmark)
            optimizer = build_optimizer(optimizer_name, benchmark, task, seed)
        self.optimizer = optimizer
        self.encoding = encoding_for(optimizer.space, optimizer.pool)
        self._search_space = self.encoding.distributions()
        self._independent = independent_sampler or RandomSampler(seed=seed)
        self._seen: set[tuple[str, int]] = set()  # (study name, trial number) of trials read
        self._told: set = set()  # architectures told

    # -- BaseSampler ----------------------------------------------------------------------------
    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self._search_space)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        fixed = trial.system_attrs.get("fixed_params", {})
        if all(name in fixed for name in search_space):
            return {}  # an enqueued trial: asking would leave a proposal that is never evaluated
        self.tell_finished(study)
        archs = self.optimizer.ask(1)
        if not archs:
            return {}
        params = self.encoding.encode(archs[0])
        return {name: value for name, value in params.items() if name in search_space}

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    def reseed_rng(self) -> None:
        self._independent.reseed_rng()

    # -- learning from the study ------------------------------------------------------------------
    def tell_finished(self, study: Study) -> int:
        """Tell the optimizer every finished trial of ``study`` it has not been told; returns how
        many architectures were told (trials without the architecture's parameters, and repeats
        of an architecture already told, are skipped)."""
        if len(study.directions) != 1:
            raise GrabnasError("GraBNASSampler optimises one objective; the study has several directions")
        sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        states = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
        archs: list = []
        values: list[float | None] = []
        for t in study.get_trials(deepcopy=False, states=states):
            key = (study.study_name, t.number)
            if key in self._seen:
                continue
            self._seen.add(key)
            arch = self.encoding.decode(t.params)
            if arch is None or arch in self._told:
                continue
            self._told.add(arch)
            archs.append(arch)
            values.append(sign * t.value if t.state == TrialState.COMPLETE and t.value is not None else None)
        if archs:
            self.optimizer.tell(archs, values)
        return len(archs)


__all__ = ["GraBNASSampler", "NB201_PARAMS", "nb201_search_space", "suggest_nb201"]
