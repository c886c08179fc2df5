"""``grabnas meta-train``, ``grabnas surrogate eval`` and ``grabnas surrogate calibrate``: meta-train,
measure and calibrate the surrogate.

:func:`add_surrogate_commands` adds them to the ``grabnas`` parser; each stores its handler
``(args) -> int`` as ``args.handler``. Heavy modules load inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grabnas.cli.args import NB201_DATA_HELP, add_threads_arg, csv_list, fraction, int_list, positive_int, set_threads


def _add_training_options(p: argparse.ArgumentParser, steps_default: int = 10000) -> None:
    p.add_argument(
        "--vae", default=None, help="graph VAE checkpoint: shipped name or path (default: the space's shipped one)"
    )
    p.add_argument(
        "--steps", type=positive_int, default=steps_default, help=f"most meta-training steps (default {steps_default})"
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=256, help="records per step, all from one task (default 256)"
    )
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate, cosine-annealed (default 2e-3)")
    p.add_argument("--eval-every", type=positive_int, default=500, help="steps between meta-validations (default 500)")
    p.add_argument(
        "--patience",
        type=positive_int,
        default=6,
        help="meta-validations without improvement before stopping (default 6)",
    )
    p.add_argument(
        "--task-weighting",
        choices=("uniform", "sqrt"),
        default="uniform",
        help="draw tasks uniformly (default) or by the square root of their number of records",
    )
    p.add_argument(
        "--val-architectures",
        action="store_true",
        help="meta-validate on 10%% of each task's architectures instead of on held-out tasks",
    )
    p.add_argument(
        "--val-tasks",
        type=csv_list,
        default=None,
        help="meta-validation tasks, comma-separated (default: with 5 or more groups the tasks of 15%% of the groups, "
        "drawn by --seed; with fewer, 10%% of each task's architectures; the choice is printed and recorded in the card)",
    )
    p.add_argument(
        "--value-transform",
        choices=("rank-gauss", "standardize"),
        default="rank-gauss",
        help="per-task value standardisation (default rank-gauss)",
    )
    p.add_argument(
        "--kernel",
        choices=("matern52", "matern32", "rbf"),
        default="matern52",
        help="kernel on the learned features (default matern52)",
    )
    p.add_argument("--hidden-dim", type=positive_int, default=256, help="width of the feature MLP (default 256)")
    p.add_argument("--feature-dim", type=positive_int, default=16, help="kernel feature size (default 16)")
    p.add_argument(
        "--finetune-encoder", action="store_true", help="train the graph encoder too (its reconstruction loss kept)"
    )
    p.add_argument(
        "--extractor",
        default="digits-cnn",
        help="image feature extractor for tasks with data: digits-cnn, resnet18 or a .pt path",
    )
    p.add_argument(
        "--ignore-data",
        action="store_true",
        help="treat every task as one without data samples (no dataset encoder; an ablation)",
    )
    p.add_argument(
        "--task-offsets",
        action="store_true",
        help="learn an embedding offset per training task (lets a search infer which task the target resembles)",
    )
    p.add_argument(
        "--top-batch-fraction",
        type=fraction,
        default=0.0,
        help="share of each batch drawn from the best 10%% of the task's training records (default 0: uniform batches)",
    )
    p.add_argument("--max-minutes", type=float, default=None, help="stop meta-training after this many minutes")
    p.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    add_threads_arg(p, help="torch intra-op threads (default: torch's)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def add_surrogate_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``meta-train`` and ``surrogate eval`` to a ``grabnas`` subparsers object."""
    t = subparsers.add_parser(
        "meta-train",
        help="meta-train the deep-kernel GP surrogate on a corpus of (task, architecture, value) records",
        description="Meta-train the surrogate by maximising the exact marginal likelihood of one-task batches; "
        "write OUT.pt and its JSON card OUT.json (tasks seen and held out, config, metrics). With --holdout, "
        "the held-out groups' main tasks are evaluated after training and their metrics go into the card.",
    )
    t.add_argument(
        "--corpus",
        required=True,
        help="nb201, nasbench-graph, csv:PATH, records:PATH, images-nb201 or images:PATH; join several with +",
    )
    t.add_argument("--data", default=None, help=NB201_DATA_HELP)
    t.add_argument("--holdout", type=csv_list, default=(), help="groups (datasets) to leave out, e.g. cifar10")
    t.add_argument("--tasks", type=csv_list, default=None, help="use only these corpus tasks")
    t.add_argument("--out", required=True, help="checkpoint path (OUT.pt and OUT.json are written)")
    t.add_argument(
        "--eval-shots", type=int_list, default=(0, 20), help="observations for the held-out evaluation (default 0,20)"
    )
    t.add_argument("--eval-seeds", type=positive_int, default=3, help="seeds per number of observations (default 3)")
    _add_training_options(t)
    t.set_defaults(handler=cmd_meta_train)

    p = subparsers.add_parser("surrogate", help="surrogate tools")
    sub = p.add_subparsers(dest="surrogate_command", required=True)
    e = sub.add_parser(
        "eval",
        help="leave-one-dataset-out report of the surrogate",
        description="For each target task: a surrogate that never saw its dataset (the shipped checkpoint that "
        "held it out, or one meta-trained now on the other datasets), then Spearman and Kendall over all "
        "architectures and within the top 10%, NLL and 90% interval coverage, zero-shot and after n random "
        "observations (mean over seeds); beside it the transfer-rank baseline and, with --plain-gp, a plain "
        "SingleTaskGP on one-hot encodings given the same observations.",
    )
    e.add_argument(
        "--benchmark",
        default="nb201",
        help="nb201, nasbench-graph, csv:PATH, records:PATH or images-nb201 (default nb201)",
    )
    e.add_argument("--data", default=None, help=NB201_DATA_HELP)
    e.add_argument(
        "--task",
        type=csv_list,
        default=None,
        help="target task(s), comma-separated (default: every main-fidelity task)",
    )
    e.add_argument(
        "--extra-corpus", default=None, help="more meta-training tasks (e.g. images-nb201), never a target's group"
    )
    e.add_argument(
        "--checkpoint",
        default="auto",
        help="auto (shipped if it held the target out, else train), train, or a name/path",
    )
    e.add_argument("--shots", type=int_list, default=(0, 5, 10, 20), help="numbers of observations (default 0,5,10,20)")
    e.add_argument("--seeds", type=positive_int, default=5, help="random observation sets per number (default 5)")
    e.add_argument(
        "--adapt-steps",
        type=int,
        default=0,
        help="MLL fine-tuning steps at each adaptation (default 0; --adaptation meta, or with --finetune-features)",
    )
    e.add_argument(
        "--adapt-lr",
        type=float,
        default=None,
        help="Adam learning rate of those steps (default 0.05 for --adaptation meta, 1e-3 for --finetune-features with target)",
    )
    e.add_argument(
        "--finetune-features",
        action="store_true",
        help="fine-tune the feature map by --adapt-steps Adam steps of the marginal likelihood (TNAS/FSBO-style); "
        "with --adaptation target, before the target-adapted GP is fitted on it",
    )
    e.add_argument(
        "--finetune-start",
        type=int,
        default=2,
        metavar="N",
        help="with --finetune-features and --adaptation target: fine-tune the map from N observations on "
        "(default 2: every fit), as grabnas[finetune_start=N]",
    )
    e.add_argument(
        "--no-finetune-refit",
        dest="finetune_refit",
        action="store_false",
        help="with --finetune-features and --adaptation target: fit the target-adapted GP's hyperparameters on the "
        "meta-learned map, then swap in the fine-tuned one (default: fit them on the fine-tuned map)",
    )
    e.add_argument(
        "--widen",
        type=float,
        default=None,
        metavar="NU",
        help="widen the predictive variance to the observations' residuals, shrunk by NU pseudo-observations "
        "(default: off; 5 calibrates NB201 imagenet16)",
    )
    e.add_argument(
        "--task-prior-var",
        type=float,
        default=1.0,
        metavar="S2",
        help="prior variance of the task term's weights for surrogates with per-task offsets (default 1; 0: off)",
    )
    e.add_argument(
        "--variance-scale",
        type=float,
        default=None,
        metavar="F",
        help="factor on a new task's prior covariance (default: the checkpoint's calibrated table, see "
        "'surrogate calibrate'; 1: as meta-learned)",
    )
    e.add_argument(
        "--adaptation",
        choices=("target", "meta"),
        default="target",
        help="how the surrogate learns from the target's observations: target (default: the target-adapted GP, "
        "hyperparameters and a target kernel refitted by marginal likelihood) or meta (meta-learned "
        "hyperparameters, as before issue 18)",
    )
    e.add_argument(
        "--calibrate",
        choices=("loo", "none"),
        default="none",
        help="target adaptation only: widen the posterior by the leave-one-out variance factor (loo) or not (none)",
    )
    e.add_argument(
        "--target-kernel",
        choices=("latent", "onehot", "hamming"),
        default="latent",
        help="target adaptation only: the target kernel reads the graph latent (default), the one-hot "
        "encoding, or both (hamming: a Hamming kernel on the one-hot encoding added to the latent's)",
    )
    e.add_argument(
        "--target-scale",
        choices=("meta", "corpus"),
        default="meta",
        help="target adaptation only: centre the target kernel's scale prior on the meta-learned output scale "
        "(default) or on the share of a left-out dataset's variance the surrogate's meta-training datasets leave "
        "unexplained (corpus)",
    )
    e.add_argument(
        "--integrate",
        type=int,
        default=None,
        help="target adaptation only: mix this many importance-weighted samples of the target-adapted GP's scalar "
        "hyperparameters instead of its MAP fit (default: 16, as the search; 0: the MAP fit; at least 2 otherwise)",
    )
    e.add_argument("--plain-gp", action="store_true", help="also fit a plain SingleTaskGP on one-hot encodings")
    e.add_argument(
        "--save-dir", default=None, help="save each surrogate meta-trained here as surrogate-<benchmark>-no-<group>"
    )
    e.add_argument("--json", action="store_true", help="print the report as JSON")
    e.add_argument("--out", default=None, help="also write the JSON report to this file")
    _add_training_options(e)
    e.set_defaults(handler=cmd_surrogate_eval)

    c = sub.add_parser(
        "calibrate",
        help="fit a surrogate's new-task variance scale on its meta-training tasks",
        description="Predict each main-fidelity training task as a new one (zero-shot and after 5, 10, 20 random "
        "observations): from the other tasks for a surrogate meta-trained with --task-offsets, by the surrogate "
        "as it is otherwise (its residuals then widened by (K+1)/(K-1) for K tasks); fit the variance factor "
        "that makes the 90%% interval cover 90%% and write the table into the checkpoint (meta-train does this "
        "itself; this command updates checkpoints trained before it did).",
    )
    c.add_argument("--checkpoint", required=True, help="surrogate checkpoint: shipped name or path")
    c.add_argument(
        "--benchmark", default="nb201", help="the corpus it was meta-trained on: nb201, nasbench-graph, csv:PATH, ..."
    )
    c.add_argument("--data", default=None, help=NB201_DATA_HELP)
    c.add_argument("--out", default=None, help="where to write (default: over the checkpoint when it is a path)")
    add_threads_arg(c, help="torch threads")
    c.set_defaults(handler=cmd_surrogate_calibrate)


# -- shared ----------------------------------------------------------------------------------------
def _configs(args, corpus, vae, has_data: bool):
    from grabnas.meta.surrogate_training import MetaTrainConfig
    from grabnas.models.feature_extractor import load_feature_extractor
    from grabnas.models.surrogate import SurrogateConfig

    instance_dim = 64
    if has_data:
        instance_dim = int(getattr(load_feature_extractor(args.extractor), "feature_dim", 64))
    cfg = SurrogateConfig(
        latent_dim=vae.latent_dim,
        hidden_dim=args.hidden_dim,
        feature_dim=args.feature_dim,
        kernel=args.kernel,
        value_transform=args.value_transform,
        fidelities=tuple(corpus.fidelities),
        dataset_encoder=has_data,
        instance_dim=instance_dim,
    )
    tc = MetaTrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        eval_every=args.eval_every,
        patience=args.patience,
        val_tasks=args.val_tasks,
        min_groups_for_val_tasks=10**9 if args.val_architectures else 5,
        task_weighting=args.task_weighting,
        seed=args.seed,
        finetune_encoder=args.finetune_encoder,
        max_minutes=args.max_minutes,
        task_offsets=args.task_offsets,
        top_batch_fraction=args.top_batch_fraction,
    )
    return cfg, tc


def _vae(args, space_name: str):
    from grabnas.meta.vae_training import load_checkpoint

    name = args.vae or space_name
    return load_checkpoint(name, space=space_name), str(name)


def _maybe_strip(corpus, ignore_data: bool):
    if not ignore_data:
        return corpus
    from dataclasses import replace

    from grabnas.meta.corpus import Corpus

    return Corpus(corpus.space, [replace(t, data=None) for t in corpus.tasks])


def _benchmark_name(spec: str) -> str:
    first = spec.split("+")[0].strip()
    return "nasbench-graph" if first == "nbgraph" else first


def _file_part(text: str) -> str:
    """``text`` as part of a file name: a ``kind:PATH`` benchmark becomes ``kind-STEM``, and any
    character but letters, digits, ``_``, ``~`` and ``-`` becomes ``-`` (``digits~noise0.5`` ->
    ``digits~noise0-5``: a dot would read as a file suffix)."""
    import re

    kind, colon, path = text.partition(":")
    if colon and path:
        text = f"{kind}-{Path(path).stem}"
    return re.sub(r"[^A-Za-z0-9_~-]+", "-", text)


def _fmt(v) -> str:
    return "-" if v is None or v != v else f"{v:.3f}"


def _print_report(report: dict) -> None:
    cols = ("spearman", "kendall", "spearman_top", "kendall_top", "nll", "coverage90")
    head = "| task | obs | Spearman | Kendall | Spearman top 10% | Kendall top 10% | NLL | 90% coverage | plain GP Spearman | plain GP top 10% |"
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for res in report["tasks"]:
        tr = res.get("transfer_rank")
        if tr:
            print(
                f"| {res['task']} | transfer-rank | {_fmt(tr['spearman'])} | {_fmt(tr['kendall'])} | "
                f"{_fmt(tr['spearman_top'])} | {_fmt(tr['kendall_top'])} | | | | |"
            )
        for n, row in res["shots"].items():
            gp = row.get("plain_gp", {})
            print(
                f"| {res['task']} | {n} | "
                + " | ".join(_fmt(row[c]) for c in cols)
                + f" | {_fmt(gp.get('spearman'))} | {_fmt(gp.get('spearman_top'))} |"
            )
    if report.get("mean"):
        print()
        print(
            "mean over tasks: "
            + "; ".join(
                f"{n} obs: Spearman {_fmt(r['spearman'])}, top {_fmt(r['spearman_top'])}"
                + (f", plain GP {_fmt(r['plain_gp_spearman'])}" if "plain_gp_spearman" in r else "")
                for n, r in report["mean"].items()
            )
        )
    print(f"adaptation + prediction: {report.get('seconds_per_fit_predict', float('nan')):.3f} s per call (mean)")


# -- meta-train ------------------------------------------------------------------------------------
def cmd_meta_train(args: argparse.Namespace) -> int:
    set_threads(args)
    from grabnas.errors import GrabnasError
    from grabnas.meta.corpus import load_corpus
    from grabnas.meta.surrogate_training import (
        card_fields,
        encode_members,
        evaluate_task,
        latents_for,
        meta_train,
        plan_meta_validation,
        save_surrogate,
        target_features,
        transfer_rank_scores,
    )

    corpus = _maybe_strip(load_corpus(args.corpus, args.data), args.ignore_data)
    full = corpus
    if args.tasks:
        corpus = corpus.select(args.tasks)
    if args.holdout:
        corpus = corpus.without_groups(args.holdout)
    if len(corpus) == 0:
        raise GrabnasError("no corpus task is left to meta-train on after --tasks/--holdout")
    vae, vae_name = _vae(args, corpus.space.name)
    has_data = any(t.data is not None for t in corpus.tasks)
    cfg, tc = _configs(args, corpus, vae, has_data)
    Z = None if tc.finetune_encoder else encode_members(vae)
    groups = corpus.groups
    shown = ", ".join(groups[:6]) + (f", ... ({len(groups)} groups)" if len(groups) > 6 else "")
    print(f"meta-training on {len(corpus)} tasks ({corpus.num_records} records; groups: {shown})")
    print(f"meta-validation: {plan_meta_validation(corpus, tc)[2]}")

    def log(r: dict) -> None:
        if args.no_progress:
            print(
                f"step {r['step']}: train NLL {r['train_nll']:.3f}, validation score {r.get('val_score', float('nan')):.3f}, "
                f"validation Spearman {r.get('val_spearman', float('nan')):.3f} ({r['seconds']:.0f} s)",
                flush=True,
            )

    res = meta_train(
        corpus,
        vae,
        cfg,
        tc,
        latents=Z,
        extractor=args.extractor if has_data else None,
        progress=not args.no_progress,
        log=log,
    )
    card = card_fields(
        corpus,
        res,
        vae,
        benchmark=_benchmark_name(args.corpus),
        corpus_spec=args.corpus,
        held_out_groups=list(args.holdout),
        train_config=tc,
        vae_name=vae_name,
    )
    metrics = {}
    if args.holdout:
        Z_eval = latents_for(res.surrogate, vae, Z)
        for t in full.tasks:
            if t.group in args.holdout and t.fidelity is None:
                r = evaluate_task(
                    res.surrogate,
                    Z_eval,
                    t,
                    shots=args.eval_shots,
                    seeds=args.eval_seeds,
                    instance_features=target_features(res.surrogate, t, args.extractor),
                    transfer=transfer_rank_scores(full, t),
                    seed=args.seed,
                )
                metrics[t.name] = r
                for n, row in r["shots"].items():
                    print(
                        f"held-out {t.name}, {n} obs: Spearman {row['spearman']:.3f}, top 10% {row['spearman_top']:.3f}, "
                        f"NLL {row['nll']:.3f}, 90% coverage {row['coverage90']:.3f}"
                    )
    pt, js = save_surrogate(res.surrogate, args.out, vae_state=res.vae_state, **card, heldout_metrics=metrics)
    print(f"wrote {pt} and {js} (best step {res.best_step}, {res.train_seconds:.0f} s)")
    return 0


# -- surrogate eval ------------------------------------------------------------------------------------
def cmd_surrogate_eval(args: argparse.Namespace) -> int:
    set_threads(args)
    import numpy as np

    from grabnas.errors import GrabnasError
    from grabnas.meta.corpus import load_corpus
    from grabnas.meta.surrogate_training import (
        encode_members,
        evaluate_task,
        latents_for,
        save_surrogate,
        surrogate_for_group,
        target_features,
        transfer_rank_scores,
    )

    if args.integrate is None:
        from grabnas.search.grabnas import DEFAULT_INTEGRATE

        args.integrate = DEFAULT_INTEGRATE if args.adaptation == "target" else 0
    if args.integrate == 1 or args.integrate < 0:
        raise GrabnasError(f"--integrate must be 0 (the MAP fit) or at least 2 samples, got {args.integrate}")
    if args.integrate and args.adaptation != "target":
        raise GrabnasError("--integrate needs --adaptation target (the meta-learned model has nothing to integrate)")
    if args.finetune_start < 2:
        raise GrabnasError(
            f"--finetune-start must be >= 2 (the first fit of the target-adapted GP), got {args.finetune_start}"
        )
    if args.finetune_features and args.adapt_steps <= 0:
        raise GrabnasError(
            "--finetune-features needs --adapt-steps N > 0 (the Adam steps that fine-tune the feature map)"
        )
    corpus = _maybe_strip(load_corpus(args.benchmark, args.data), args.ignore_data)
    targets = list(args.task) if args.task else [t.name for t in corpus.tasks if t.fidelity is None]
    for name in targets:
        corpus.task(name)
    train_corpus = corpus
    if args.extra_corpus:
        extra = _maybe_strip(load_corpus(args.extra_corpus, args.data), args.ignore_data)
        clash = {corpus.group_of(t) for t in targets} & set(extra.groups)
        if clash:
            raise GrabnasError(
                f"--extra-corpus holds the target group {sorted(clash)[0]!r}; it would leak into meta-training"
            )
        train_corpus = corpus.merged(extra)
    vae, vae_name = _vae(args, corpus.space.name)
    has_data = any(t.data is not None for t in train_corpus.tasks)
    cfg, tc = _configs(args, train_corpus, vae, has_data)
    Z = encode_members(vae)
    bench = _benchmark_name(args.benchmark)
    onehot = None
    if args.plain_gp or args.target_kernel != "latent":
        members = corpus.space.members()
    report = {"benchmark": bench, "shots": list(args.shots), "seeds": args.seeds, "tasks": []}
    for name in targets:
        task = corpus.task(name)
        sur = surrogate_for_group(
            train_corpus,
            task.group,
            vae,
            Z,
            checkpoint=args.checkpoint,
            benchmark=bench,
            vae_name=vae_name,
            config=cfg,
            train_config=tc,
            progress=not args.no_progress,
            log=lambda m: print(m, file=sys.stderr),
        )
        if args.save_dir and not sur.card.get("format"):  # meta-trained just now (no card format yet)
            stem = Path(args.save_dir) / f"surrogate-{_file_part(bench)}-no-{_file_part(task.group)}"
            save_surrogate(sur, stem, vae_state=sur.vae_state, **{k: v for k, v in sur.card.items()})
            print(f"saved {stem}.pt", file=sys.stderr)
        if args.plain_gp or args.target_kernel != "latent":
            onehot = np.asarray(corpus.space.onehot([members[i] for i in task.index]), dtype=np.float64)
        res = evaluate_task(
            sur,
            latents_for(sur, vae, Z),
            task,
            shots=args.shots,
            seeds=args.seeds,
            steps=args.adapt_steps,
            fit_options={
                "adaptation": args.adaptation,
                "finetune_features": args.finetune_features,
                "finetune_refit": args.finetune_refit,
                "finetune_start": args.finetune_start,
                **({} if args.adapt_lr is None else {"lr": args.adapt_lr}),
                "calibrate": args.calibrate == "loo",
                "target_kernel": args.target_kernel,
                "target_scale": _target_scale(args.target_scale, sur, train_corpus, task.group),
                "integrate": args.integrate,
                "widen_prior_strength": args.widen,
                "task_prior_var": args.task_prior_var,
                "variance_scale": args.variance_scale,
            },
            instance_features=target_features(sur, task, args.extractor),
            seed=args.seed,
            plain_gp=args.plain_gp,
            onehot=onehot,
            transfer=transfer_rank_scores(corpus, task),
        )
        res["surrogate"] = {
            k: sur.card.get(k) for k in ("train_tasks", "meta_validation_tasks", "held_out_groups", "best_step")
        }
        report["tasks"].append(res)
        if not args.json:
            print(f"{name}: done ({res['seconds_per_fit_predict']:.3f} s per adaptation + prediction)", file=sys.stderr)
    report["mean"] = {}
    for n in map(str, args.shots):
        rows = [r["shots"][n] for r in report["tasks"] if n in r["shots"]]
        if rows:
            m = {
                k: float(np.mean([r[k] for r in rows]))
                for k in ("spearman", "kendall", "spearman_top", "kendall_top", "nll", "coverage90")
            }
            gp = [r["plain_gp"]["spearman"] for r in rows if "plain_gp" in r]
            if gp:
                m["plain_gp_spearman"] = float(np.mean(gp))
                m["plain_gp_spearman_top"] = float(
                    np.mean([r["plain_gp"]["spearman_top"] for r in rows if "plain_gp" in r])
                )
            report["mean"][n] = m
    report["seconds_per_fit_predict"] = float(np.mean([r["seconds_per_fit_predict"] for r in report["tasks"]]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(report)
    return 0


def _target_scale(mode: str, sur, corpus, group: str) -> float | None:
    """``--target-scale corpus``: the surrogate's share of a left-out dataset's variance left
    unexplained (its card's, else computed on ``corpus``'s tasks of the groups it saw, which
    exclude ``group``: :func:`grabnas.meta.transferability.card_heldout_residual`); None for ``meta``."""
    if mode != "corpus":
        return None
    from grabnas.meta.transferability import card_heldout_residual

    return card_heldout_residual(sur.card, corpus)


# -- surrogate calibrate -------------------------------------------------------------------------------
def cmd_surrogate_calibrate(args: argparse.Namespace) -> int:
    set_threads(args)
    from grabnas.errors import GrabnasError
    from grabnas.meta.corpus import load_corpus
    from grabnas.meta.surrogate_training import (
        calibrate_new_task_variance,
        encode_members,
        latents_for,
        load_surrogate,
        save_surrogate,
        shipped_surrogate_names,
        surrogate_vae,
    )

    shipped = args.checkpoint in shipped_surrogate_names()
    if shipped and not args.out:
        raise GrabnasError(f"{args.checkpoint!r} is a shipped checkpoint; give --out PATH to write the calibrated copy")
    sur = load_surrogate(args.checkpoint)
    corpus = load_corpus(args.benchmark, args.data).without_groups(sur.card.get("held_out_groups", []))
    vae = surrogate_vae(sur)
    result = calibrate_new_task_variance(sur, corpus, latents_for(sur, vae, encode_members(vae)))
    if result is None:
        raise GrabnasError(
            f"the corpus {args.benchmark!r} holds fewer than two of the surrogate's meta-training tasks "
            "(without data, main fidelity); give the corpus it was meta-trained on"
        )
    how = "left out" if result["method"] == "leave-one-out" else "in-sample"
    for task, rows in result["tasks"].items():
        print(
            f"{task} {how}: 90% coverage "
            + ", ".join(
                f"{r['coverage90_uncalibrated']:.3f} at {n} obs (factor {r['factor']:.2f})" for n, r in rows.items()
            )
        )
    print("new-task variance scale: " + ", ".join(f"{f:.3f} at {n} obs" for n, f in result["scale"]))
    card = {k: v for k, v in sur.card.items() if k != "config"}
    card["new_task_calibration"] = result
    pt, _ = save_surrogate(sur, args.out or args.checkpoint, vae_state=sur.vae_state, **card)
    print(f"wrote {pt}")
    return 0


__all__ = ["add_surrogate_commands", "cmd_meta_train", "cmd_surrogate_calibrate", "cmd_surrogate_eval"]
