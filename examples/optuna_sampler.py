"""GraB-NAS as an Optuna sampler on NAS-Bench-201, with the shipped table lookup as objective.

    python examples/optuna_sampler.py --trials 20 --task cifar10 --storage sqlite:///grabnas-optuna.db

Running it again with the same ``--storage`` and ``--study-name`` continues the study: before
each proposal the sampler tells GraB-NAS every finished trial the storage holds. Needs
``pip install grabnas[optuna]``.
"""

from __future__ import annotations

import argparse

import optuna

from grabnas.benchmarks.nb201 import load_nb201
from grabnas.integrations.optuna import GraBNASSampler, suggest_nb201


def main(argv: list[str] | None = None) -> optuna.Study:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20, help="trials to run now (default 20)")
    p.add_argument("--task", default="cifar10", help="NB201 task: cifar10, cifar100, ImageNet16-120")
    p.add_argument("--storage", default=None, help="Optuna storage URL, e.g. sqlite:///nas.db (default: in memory)")
    p.add_argument("--study-name", default=None, help="study name (default: grabnas-nb201-TASK)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    bench = load_nb201()
    sampler = GraBNASSampler(task=args.task, benchmark=bench, seed=args.seed)
    study = optuna.create_study(
        study_name=args.study_name or f"grabnas-nb201-{args.task}",
        storage=args.storage,
        direction="maximize",
        sampler=sampler,
        load_if_exists=True,
    )

    def objective(trial: optuna.Trial) -> float | None:
        arch = suggest_nb201(trial)
        trial.set_user_attr("arch", arch.to_string())
        return bench.value(arch, args.task)  # validation accuracy (%) from the table

    study.optimize(objective, n_trials=args.trials)
    best = study.best_trial
    print(f"{len(study.trials)} trials; best {best.value:.2f} {best.user_attrs['arch']}")
    return study


if __name__ == "__main__":
    main()
