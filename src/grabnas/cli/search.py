"""``grabnas search``: search one task of a tabular benchmark, or an image dataset of yours with
real training; every ask and tell goes into a SQLite study, so rerunning the command resumes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grabnas.cli.args import (
    NB201_DATA_HELP,
    add_constraint_args,
    add_ray_args,
    add_recipe_args,
    constraints_from_args,
    executor_from_args,
    positive_int,
    recipe_from_args,
    set_threads,
)
from grabnas.errors import GrabnasError, one_line


def add_search_command(sub: argparse._SubParsersAction) -> None:
    """Add ``search`` to the ``grabnas`` subcommands."""
    p = sub.add_parser(
        "search",
        help="search one task (a benchmark task, or your dataset with real training); rerun to resume",
        description="Search one task: a task of a tabular benchmark (--task, values looked up) or an image "
        "dataset of yours (--dataset, every evaluation trains the cell; the candidates are the whole NB201 "
        "space). Every ask and tell is stored in --study as it happens; rerunning the same command resumes "
        "without losing or repeating evaluations.",
    )
    g = p.add_argument_group("what to search (one of --task or --dataset)")
    g.add_argument("--task", default=None, help="a benchmark task to search (e.g. cifar10, cora)")
    g.add_argument("--benchmark", default=None, help="nb201, nasbench-graph or csv:PATH (default nb201; with --task)")
    g.add_argument("--data", default=None, help=NB201_DATA_HELP)
    g.add_argument(
        "--dataset",
        default=None,
        metavar="SPEC",
        help="search your dataset with real training: digits, mnist-subset, npz:PATH, folder:PATH, "
        "torchvision:NAME:ROOT or a task name such as mnist-subset[0,3,7]@12",
    )
    g.add_argument(
        "--image-size", type=positive_int, default=None, metavar="N", help="with --dataset: resize images to N x N"
    )
    g.add_argument(
        "--surrogate",
        default=None,
        metavar="NAME",
        help="with --dataset: the meta-trained surrogate checkpoint for GraB-NAS (default: the shipped nb201-all)",
    )
    p.add_argument(
        "--optimizer",
        default="grabnas",
        help="grabnas (default), grabnas-bo, grabnas-ascent, grabnas-knn, random, rea, local, gpbo, "
        "optuna-tpe, optuna-gp, optuna-random (pip install grabnas[optuna]), "
        "transfer-rank (benchmark tasks only), or the multi-fidelity grabnas-mf, asha-random, "
        "optuna-tpe-hyperband (nb201 tasks, csv: tables with TASK@Nep columns, or --dataset; see --low-epochs)",
    )
    p.add_argument("--budget", type=positive_int, default=30, help="number of evaluations (default 30)")
    p.add_argument(
        "--low-epochs",
        type=positive_int,
        default=None,
        metavar="N",
        help="multi-fidelity optimizers (grabnas-mf, asha-random, optuna-tpe-hyperband) with --dataset: the low "
        "fidelity's training epochs (default: a quarter of --epochs, at least 1); on nb201 the fidelities are "
        "its 12- and 200-epoch columns; on a csv: table its TASK@Nep column (default: every one), the task "
        "column being --epochs",
    )
    add_constraint_args(
        p.add_argument_group(
            "cost constraints (of the network evaluated: the benchmark task's NB201 network, or the one --dataset trains)"
        )
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="on resume, evaluate the study's failed trials once more (they stop counting towards --budget)",
    )
    p.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    p.add_argument("--study", required=True, help="SQLite study file (created, or resumed when it exists)")
    p.add_argument("--out", default=None, help="report folder (default: beside the study)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_recipe_args(p, epochs=5, channels=8, cells=1, batch=128, title="training recipe (with --dataset)")
    e = p.add_argument_group("execution (with --dataset)")
    e.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="evaluations in flight at once: local worker processes, or Ray tasks with --ray (default 1; with Ray, its CPUs / --threads)",
    )
    add_ray_args(e)
    e.add_argument(
        "--final-train",
        nargs="?",
        const="nb201-200",
        default=None,
        metavar="PRESET",
        help="after the search, train its best cell with this recipe preset (default nb201-200; proxy: the "
        "search's own) in OUT/final-train, resumably, and record the result in the study",
    )
    p.set_defaults(handler=cmd_search)


def _search_target(args: argparse.Namespace) -> str:
    """``benchmark`` or ``dataset``; a one-line error when both or neither are given."""
    if args.dataset is not None and (args.task is not None or args.benchmark is not None):
        given = "--task" if args.task is not None else "--benchmark"
        raise GrabnasError(
            f"--dataset and {given} exclude each other; pass --dataset SPEC (real training) or --task NAME (a benchmark)"
        )
    if args.dataset is None and args.task is None:
        raise GrabnasError(
            "nothing to search; pass --task NAME (a benchmark task) or --dataset SPEC (your images, real training)"
        )
    if args.dataset is None:
        for flag, value in (
            ("--image-size", args.image_size),
            ("--surrogate", args.surrogate),
            ("--ray", args.ray or args.ray_address),
            ("--final-train", args.final_train),
        ):
            if value:
                hint = (
                    '; on a benchmark task pick the checkpoint with --optimizer "grabnas[surrogate=PATH]"'
                    if flag == "--surrogate"
                    else ""
                )
                raise GrabnasError(f"{flag} applies to --dataset searches, not to benchmark tasks{hint}")
        return "benchmark"
    return "dataset"


def _progress(args: argparse.Namespace, desc: str):
    """A progress bar with the best value so far, and the ``on_result`` callback that updates it."""
    if args.no_progress:
        return None, None
    from tqdm.auto import tqdm

    bar = tqdm(total=args.budget, desc=desc, unit="eval", dynamic_ncols=True)

    def on_result(st) -> None:
        best = st.best(1)
        bar.n = st.count("done") + st.count("failed") - len(st.retried())
        bar.set_postfix_str(f"best {best[0].value:.4g}" if best else "no finished trial at the target fidelity yet")
        bar.refresh()

    return bar, on_result


def cmd_search(args: argparse.Namespace) -> int:
    """Handler of ``grabnas search``."""
    import time

    args.started = time.perf_counter()
    set_threads(args)
    args.constraints = constraints_from_args(args)  # bad values are refused before anything loads
    target = _search_target(args)
    out = Path(args.out) if args.out else Path(args.study).with_suffix("")
    if out.exists() and not out.is_dir():  # found now, not after the whole search
        raise GrabnasError(f"--out {out} is a file; expected a folder for the report (it is created if missing)")
    if target == "dataset":
        return _search_dataset(args)
    from grabnas.benchmarks import load_benchmark
    from grabnas.evaluation.lookup import LookupEvaluator
    from grabnas.search.multifidelity import is_multifidelity
    from grabnas.search.registry import build_optimizer
    from grabnas.seeding import child_seed
    from grabnas.study import Study

    benchmark = args.benchmark or "nb201"
    multifidelity = is_multifidelity(args.optimizer)
    nb201 = benchmark == "nb201"
    if multifidelity and (args.constraints.active or (nb201 and args.low_epochs)):
        raise GrabnasError(
            f"{args.optimizer} on a benchmark searches its fidelity columns (nb201: 12 and 200 epochs, no "
            "--low-epochs; a csv: table: TASK@Nep), without cost constraints"
        )
    bench = load_benchmark(benchmark, args.data)
    settings = {"benchmark": benchmark, "task": args.task, "optimizer": args.optimizer, "seed": args.seed}
    if multifidelity:
        from grabnas.evaluation.multifidelity import MultiFidelityLookup

        if nb201:
            evaluate = MultiFidelityLookup(bench, args.task)
        else:
            lows = [args.low_epochs] if args.low_epochs else None
            evaluate = MultiFidelityLookup(bench, args.task, args.epochs, lows)
        settings["fidelities"] = evaluate.fidelities.to_dict()
    else:
        evaluate = LookupEvaluator(bench, args.task)
    constraints, notes, optimum, background = args.constraints, [], None, None
    if constraints.active:
        from grabnas.search.constraints import benchmark_cost_model

        constraints = constraints.with_costs(benchmark_cost_model(bench, args.task))
        pool = bench.pool(args.task)
        feasible = constraints.filter(pool)  # an empty feasible set is refused before any study exists
        settings["constraints"] = constraints.to_dict()
        notes.append(_constraints_note(constraints, len(feasible), len(pool)))
        print(notes[-1])
        background = bench.values(args.task)
        optimum = max(background, key=background.get)
    study = _open_existing(args.study, settings)
    try:
        messages: list[str] = []
        if multifidelity and nb201:
            from grabnas.search.multifidelity import build_nb201_multifidelity

            optimizer = build_nb201_multifidelity(
                args.optimizer, bench, args.task, child_seed(args.seed, args.task), log=messages.append
            )
        elif multifidelity:
            from grabnas.search.dataset import build_table_multifidelity

            seed = child_seed(args.seed, args.task)
            optimizer = build_table_multifidelity(args.optimizer, bench, args.task, seed, evaluate.fidelities)
        else:
            optimizer = build_optimizer(
                args.optimizer,
                bench,
                args.task,
                child_seed(args.seed, args.task),
                log=messages.append,
                constraints=constraints,
            )
        study = study or Study.open(args.study, settings)
        study.check_optimizer_settings(optimizer.settings())  # before any info is overwritten
        card = getattr(optimizer, "surrogate_card", None)
        if card is not None:  # GraB-NAS: say which surrogate, and that it never saw the task's dataset
            head = messages[0] if messages else "surrogate"
            line = f"{head}; {meta_training_line(card)}, never on {bench.group(args.task)!r}"
            print(line)
            _report_transfer(card, notes)
            for message in messages[1:]:  # e.g. the meta-validation rule of a surrogate trained now
                print(message)
            notes.append(f"GraB-NAS: {line}.")
            study.set_info("surrogate", {"log": messages, "card": card})
        return _run_and_report(
            args,
            study,
            optimizer,
            evaluate,
            bench.space,
            f"{benchmark} {args.task}, {args.optimizer}",
            args.workers or 1,
            notes=notes,
            constraints=constraints,
            optimum=optimum,
            background=background,
        )
    finally:
        if study is not None:
            study.close()


def _search_dataset(args: argparse.Namespace) -> int:
    from grabnas.evaluation.training import TrainingEvaluator
    from grabnas.search.dataset import build_dataset_optimizer, dataset_task, resolve_surrogate
    from grabnas.seeding import child_seed
    from grabnas.study import Study
    from grabnas.train.recipe import check_device

    task = dataset_task(args.dataset, args.image_size)
    config = recipe_from_args(args)
    if args.final_train:
        from grabnas.train.recipe import preset

        preset(args.final_train)  # an unknown preset is refused before the search
    if not (args.ray or args.ray_address):  # Ray workers may see devices this machine does not
        check_device(config.device)
    else:
        import importlib.util

        if importlib.util.find_spec("ray") is None:  # before any study file exists
            raise GrabnasError("--ray needs ray; install it with pip install 'grabnas[ray]'")
    from grabnas.search.multifidelity import Fidelities, is_multifidelity

    multifidelity = is_multifidelity(args.optimizer)
    fidelities = None
    if multifidelity:
        low = args.low_epochs or max(1, config.epochs // 4)
        if low >= config.epochs or args.constraints.active:
            raise GrabnasError(
                f"{args.optimizer} needs --low-epochs below --epochs ({low} >= {config.epochs}) and no cost constraints"
                if low >= config.epochs
                else f"{args.optimizer} does not take cost constraints"
            )
        fidelities = Fidelities((f"{low}ep", f"{config.epochs}ep"), (low, config.epochs))
    elif args.low_epochs:
        raise GrabnasError(
            "--low-epochs applies to the multi-fidelity optimizers (grabnas-mf, asha-random, optuna-tpe-hyperband)"
        )
    evaluate = TrainingEvaluator(task, config)  # loads and validates the data now
    split = evaluate.split
    if multifidelity:
        from grabnas.evaluation.multifidelity import MultiFidelityTraining

        evaluate = MultiFidelityTraining(evaluate)
    surrogate = resolve_surrogate(args.surrogate or "auto") if args.optimizer.startswith("grabnas") else None
    execution = ("device", "num_threads", "eval_batch_size", "seed")  # where and how fast, not what
    recipe = {k: v for k, v in config.to_dict().items() if k not in execution}
    settings = {"dataset": task.name, "optimizer": args.optimizer, "seed": args.seed, "surrogate": surrogate, **recipe}
    if fidelities is not None:
        settings["fidelities"] = fidelities.to_dict()
    constraints, constraint_notes = args.constraints, []
    if constraints.active:
        from grabnas.search.dataset import dataset_cost_model

        constraints = constraints.with_costs(dataset_cost_model(split, config.channels, config.cells))
        members = constraints.cost_model.space.members()
        feasible = constraints.filter(members)  # an empty feasible set is refused before any study exists
        settings["constraints"] = constraints.to_dict()
        constraint_notes.append(_constraints_note(constraints, len(feasible), len(members)))
    print(
        f"dataset {task.name}: {split.num_classes} classes, images {'x'.join(map(str, split.image_shape))}, "
        f"{len(split.train)} train / {len(split.val)} val / {len(split.test)} test; "
        f"recipe {config.epochs} epochs, C={config.channels}, N={config.cells}, batch {config.batch_size}"
    )
    for note in constraint_notes:
        print(note)
    study = _open_existing(args.study, settings)
    fingerprint = split.fingerprint()
    if study is not None:
        _check_data_fingerprint(study, fingerprint, task.name)
    try:
        if fidelities is not None:
            from grabnas.search.dataset import build_dataset_multifidelity

            optimizer = build_dataset_multifidelity(
                args.optimizer, split, child_seed(args.seed, task.name), fidelities, surrogate or "auto"
            )
        else:
            optimizer = build_dataset_optimizer(
                args.optimizer, split, child_seed(args.seed, task.name), surrogate or "auto", constraints=constraints
            )
        # the executor first: a Ray cluster that cannot be joined leaves no study file behind
        with executor_from_args(args, workers=args.workers or 1) as executor:
            study = study or Study.open(args.study, settings)
            study.check_optimizer_settings(optimizer.settings())  # before any info is overwritten
            notes = [
                f"Dataset `{task.name}` ({split.num_classes} classes, {len(split.train)} train / {len(split.val)} val / "
                f"{len(split.test)} test images); candidates: the 15,625 NB201 cells; values: validation accuracy (%) after "
                f"training with {', '.join(f'{k}={v}' for k, v in recipe.items())} (trial seeds from seed {args.seed}).",
                *constraint_notes,
            ]
            if surrogate is not None:
                card = optimizer.surrogate_card
                line = (
                    f"surrogate checkpoint {surrogate} ({meta_training_line(card)} of {card.get('corpus', '?')}; "
                    f"the task embedding reads "
                    f"{card.get('train_config', {}).get('instances_per_class', 20)} training images per class)"
                )
                print(f"using {line}")
                notes.append(f"GraB-NAS used the {line}.")
                _report_transfer(card, notes)
                study.set_info("surrogate", {"checkpoint": surrogate, "card": card})
            _check_data_fingerprint(study, fingerprint, task.name)
            study.set_info(
                "dataset",
                {
                    "task": task.name,
                    "classes": split.num_classes,
                    "image_shape": list(split.image_shape),
                    "n_train": len(split.train),
                    "n_val": len(split.val),
                    "n_test": len(split.test),
                },
            )
            workers = args.workers or (executor.max_workers if (args.ray or args.ray_address) else 1)
            status = _run_and_report(
                args,
                study,
                optimizer,
                evaluate,
                optimizer.space,
                f"{task.name}, {args.optimizer}",
                workers,
                executor=executor,
                notes=notes,
                test_for_best_only=True,
                constraints=constraints,
            )
        if status == 0 and args.final_train:
            status = _final_train(args, study, split, task.name, config)
        return status
    finally:
        if study is not None:
            study.close()


def _check_data_fingerprint(study, fingerprint: str, name: str) -> None:
    """Refuse to resume a study on other data under the same spec (a replaced file); record the
    fingerprint on first use (and in studies made before it was recorded)."""
    stored = study.info("data_fingerprint")
    if stored is not None and stored != fingerprint:
        study.close()
        raise GrabnasError(
            f"{study.path} was searched on other contents of {name!r} (data fingerprint {stored[:12]} there, "
            f"{fingerprint[:12]} now): the files changed; use another --study file or the data it was made with"
        )
    study.set_info("data_fingerprint", fingerprint)


def _open_existing(path: str, settings: dict):
    """The study at ``path`` if it exists (refused now if its settings differ, before any work),
    else None: it is created once the optimizer is built, so a failed build leaves no study behind."""

    from grabnas.study import Study

    return Study.open(path, settings) if Path(path).exists() else None


def _task_inference_line(optimizer) -> str | None:
    """What GraB-NAS's surrogate inferred about the task at its last fit (None: nothing)."""
    surrogate = getattr(optimizer, "surrogate", None)
    fitted = getattr(surrogate, "adapted_hyperparameters", None)
    if fitted:
        return (
            f"the target's observations weight the meta-learned mean by {fitted['mean_scale']:+.2f} "
            f"(1: as meta-learned, 0: ignored) and give the target's own kernel the scale "
            f"{fitted['target_scale']:.3f} beside the meta-learned one's factor {fitted['meta_factor']:.3f}"
        )
    weights = getattr(surrogate, "task_weights", None)
    if not weights:
        return None
    parts = ", ".join(f"{k} {v:+.2f}" for k, v in sorted(weights.items(), key=lambda kv: -kv[1]))
    return f"the observations moved the task embedding towards these meta-training tasks (weights): {parts}"


def _constraints_note(constraints, n_feasible: int, n_pool: int) -> str:
    return (
        f"constraints {constraints.describe()} (costs of {constraints.cost_model.description}): "
        f"{n_feasible:,} of the {n_pool:,} candidates are feasible; every proposal is one of them"
    )


def _final_train(args, study, split, task_name: str, search_config) -> int:
    """``--final-train``: train the study's best cell with the preset (the search's seed, device
    and threads) in ``OUT/final-train``; a rerun of the search resumes or reports it. The result is
    recorded in the study's info ``final_train``."""
    from dataclasses import replace

    from grabnas.cli.train import train_and_deploy
    from grabnas.train.recipe import preset

    best = study.best(1)
    if not best:
        return 1
    config = replace(
        preset(args.final_train),
        seed=args.seed,
        device=search_config.device,
        num_threads=search_config.num_threads,
    )
    out = (Path(args.out) if args.out else Path(args.study).with_suffix("")) / "final-train"
    print(f"final training of the best cell with the {args.final_train} recipe in {out}")
    result = train_and_deploy(best[0].arch, split, task_name, config, out)
    keys = ("architecture", "status", "val_acc", "test_acc", "epochs_done", "params", "flops", "train_seconds", "error")
    study.set_info("final_train", {"preset": args.final_train, "dir": str(out), **{k: result.get(k) for k in keys}})
    return 0 if result["status"] == "ok" else 1


def _run_and_report(
    args,
    study,
    optimizer,
    evaluate,
    space,
    title,
    workers,
    executor=None,
    notes=(),
    test_for_best_only=False,
    constraints=None,
    optimum=None,
    background=None,
) -> int:
    """Run the search loop with a progress bar, write the report and print the outcome. With
    active ``constraints`` the outcome says which limit binds (the best cell's use of each, and
    whether the unconstrained ``optimum``, where known, is infeasible) and the report has a
    Pareto plot (``background``: every cell's value, where known)."""
    import time

    from grabnas.report import write_search_report
    from grabnas.search.loop import run_search

    if args.retry_failed and hasattr(optimizer, "fidelities"):
        raise GrabnasError("--retry-failed is not supported by the multi-fidelity optimizers yet")
    bar, on_result = _progress(args, f"search {args.task or study.settings().get('dataset')}")
    try:
        outcome = run_search(
            optimizer,
            evaluate,
            study,
            args.budget,
            workers=workers,
            executor=executor,
            on_result=on_result,
            retry_failed=args.retry_failed,
        )
    finally:
        if bar is not None:
            bar.close()
    out = Path(args.out) if args.out else Path(args.study).with_suffix("")
    fallbacks = getattr(optimizer, "numerical_log", [])
    if fallbacks:  # recorded, not raised: the GP's numerical failures (this process's asks)
        line = f"{len(fallbacks)} asks fell back after a numerical failure of the GP (first: {fallbacks[0]})"
        print(line)
        notes = [*notes, f"GraB-NAS: {line}."]
    inferred = _task_inference_line(optimizer)
    if inferred:
        print(inferred)
        notes = [*notes, f"GraB-NAS: {inferred}."]
    best = study.best(1)
    binding_lines = []
    if constraints is not None and constraints.active:
        binding_lines = constraints.report_lines(space.parse(best[0].arch) if best else None, optimum)
        notes = [*notes, "Constraints: " + "; ".join(binding_lines[1:]) + "."]
    report = write_search_report(
        study,
        space,
        out,
        title=title,
        notes=notes,
        test_for_best_only=test_for_best_only,
        constraints=constraints,
        background=background,
    )
    trials = [t for t in study.trials() if t.status != "asked"]
    failed = sum(t.status == "failed" for t in trials)
    print(
        f"{outcome.evaluated} new evaluations ({outcome.replayed} replayed from {args.study}), {failed} failed; "
        f"wall time {time.perf_counter() - args.started:.1f} s (search loop {outcome.seconds:.1f} s)"
    )
    costs = [t.cost for t in trials if t.cost is not None]
    if test_for_best_only and costs:
        print(
            f"training time per evaluation: mean {sum(costs) / len(costs):.1f} s, total {sum(costs):.1f} s over {len(costs)}"
        )
    if best:
        b = best[0]
        if test_for_best_only:
            test = "n/a" if b.test_value is None else f"{b.test_value:.2f}"
            print(f"best architecture: {b.arch}\nvalidation accuracy: {b.value:.2f}\ntest accuracy: {test}")
        else:
            test = "" if b.test_value is None else f" (test {b.test_value:.4f})"
            print(f"best architecture: {b.arch}\nbest value: {b.value:.4f}{test}")
    for line in binding_lines:
        print(line)
    print(f"report: {report}")
    if not best and failed:
        last = next(t.error for t in reversed(trials) if t.status == "failed")
        print(
            f"grabnas: error: no evaluation succeeded ({failed} failed); the last error: {one_line(last or 'none')}",
            file=sys.stderr,
        )
        return 1
    return 0


def meta_training_line(card: dict) -> str:
    """``meta-trained on datasets A, B (meta-validated on C)`` from a surrogate card; the validation
    datasets are named apart (cards written before they were recorded list every group they saw)."""
    train = card.get("train_groups", card.get("groups_seen", []))
    val = card.get("meta_validation_groups", [])
    return f"meta-trained on datasets {_names(train)}" + (f" (meta-validated on {_names(val)})" if val else "")


def transfer_line(card: dict) -> str | None:
    """How far the surrogate's meta-training datasets predict one another (the card's
    ``heldout_residual``, :func:`grabnas.meta.transferability.heldout_residual_fraction`), with a
    hint where they hardly do; None where the card does not know."""
    r = card.get("heldout_residual")
    if r is None:
        return None
    line = (
        f"the meta-training datasets leave {r:.0%} of a left-out one's variance unexplained by the others "
        f"(NAS-Bench-201: 4-9%, NAS-Bench-Graph: 71-79%)"
    )
    if r >= 0.5:
        line += (
            "; expect little transfer: GraB-NAS's default makes that share of its warm-up random and fine-tunes "
            "its feature map to the observations (alternatives: docs/usage.md#which-setting-for-which-target)"
        )
    return line


def _report_transfer(card: dict, notes: list[str]) -> None:
    """Print :func:`transfer_line` and add it to the report's notes, where the card knows it."""
    line = transfer_line(card)
    if line:
        print(line)
        notes.append(f"GraB-NAS: {line}.")


def _names(names: list[str], shown: int = 6) -> str:
    """``a, b, c`` or, for a long list, its first ``shown`` and how many in all."""
    if len(names) <= shown + 2:
        return ", ".join(names)
    return f"{', '.join(names[:shown])}, ... ({len(names)} in all)"
