"""``grabnas train``: full training of one NB201 cell, resumable, with a deployable export.

The recipe is a named preset (``nb201-200``, the NAS-Bench-201 recipe; ``proxy``, what
``grabnas search --dataset`` trains candidates with) with any of its settings overridden by flags.
The run folder holds the checkpoint of the last complete epoch; rerunning the same command
resumes there, and a finished folder just reports its result (see :mod:`grabnas.train.run`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from grabnas.cli.args import add_threads_arg, non_negative_int, positive_int

DEFAULT_PRESET = "nb201-200"


def add_train_command(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` to the ``grabnas`` subcommands."""
    p = sub.add_parser(
        "train",
        help="train one NB201 cell with a full recipe (resumable) and export it with its weights",
        description="Train one NB201 cell on your dataset with a named recipe (--preset) whose settings the flags "
        "override. Every epoch is checkpointed in DIR; rerun the same command to resume after an interruption "
        "(a finished DIR just reports its result). Writes DIR/history.csv, DIR/curve.png, DIR/result.json, "
        "DIR/weights.pt and DIR/model.py (a standalone module: load_model() returns the trained network).",
    )
    p.add_argument(
        "arch", help="NB201 cell: |op~0|+|op~0|op~1|+|op~0|op~1|op~2| or a NASLib index tuple (2, 2, 0, 4, 2, 0)"
    )
    p.add_argument(
        "--dataset",
        required=True,
        metavar="SPEC",
        help="digits, mnist-subset, npz:PATH, folder:PATH, torchvision:NAME:ROOT, or a task name "
        "DATASET[c1,c2,...]@SEED (all classes and split seed 0 otherwise)",
    )
    p.add_argument("--image-size", type=positive_int, default=None, metavar="N", help="resize images to N x N")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder (new, or an earlier run's to resume)")
    g = p.add_argument_group("training recipe (flags override the preset)")
    g.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        help="nb201-200 (200 epochs, C=16, N=5, batch 256, lr 0.1 cosine, weight decay 5e-4, Nesterov; the default) "
        "or proxy (5 epochs, C=8, N=1, batch 128: what grabnas search --dataset trains candidates with)",
    )
    g.add_argument("--epochs", type=positive_int, default=None, help="epochs")
    g.add_argument("--channels", type=positive_int, default=None, help="C, channels of the first stage")
    g.add_argument("--cells", type=non_negative_int, default=None, help="N, cells per stage")
    g.add_argument("--batch-size", type=positive_int, default=None, help="training batch size")
    g.add_argument("--lr", type=float, default=None, help="initial learning rate, cosine-annealed to 0")
    g.add_argument("--weight-decay", type=float, default=None, help="SGD weight decay")
    g.add_argument("--no-augment", action="store_true", help="no random crops or flips")
    g.add_argument(
        "--seed", type=int, default=0, help="seed of the weight init, batch order and augmentation (default 0)"
    )
    e = p.add_argument_group("execution (not settings of the run: a resume may change them)")
    e.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    add_threads_arg(e, help="torch CPU threads (default: torch's choice; resume with the same for identical weights)")
    p.set_defaults(handler=cmd_train)


def recipe_from_train_args(args: argparse.Namespace):
    """The :class:`~grabnas.train.recipe.TrainConfig` of ``--preset`` with the given flags applied."""
    from grabnas.train.recipe import preset

    overrides = {
        "epochs": args.epochs,
        "channels": args.channels,
        "cells": args.cells,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "augment": False if args.no_augment else None,
    }
    config = replace(preset(args.preset), **{k: v for k, v in overrides.items() if v is not None})
    return replace(config, seed=args.seed, device=args.device, num_threads=args.threads)


def cmd_train(args: argparse.Namespace) -> int:
    """Handler of ``grabnas train``."""
    from pathlib import Path

    from grabnas.errors import GrabnasError
    from grabnas.search.dataset import dataset_task
    from grabnas.train.recipe import check_device
    from grabnas.train.run import architecture_string

    config = recipe_from_train_args(args)
    arch = architecture_string(args.arch)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise GrabnasError(f"--out {out} is a file; expected a folder (new, empty or of an earlier run)")
    check_device(config.device)
    task = dataset_task(args.dataset, args.image_size)
    split = task.split()

    result = train_and_deploy(arch, split, task.name, config, out)
    return 0 if result["status"] == "ok" else 1


def train_and_deploy(arch: str, split, task_name: str, config, out) -> dict:
    """Train ``arch`` on ``split`` with ``config`` in the run folder ``out`` (resuming it), print one
    line per epoch on stderr and the outcome, write ``model.py`` and ``curve.png``; returns the
    run's ``result.json`` contents (``status`` ``ok`` or ``failed``)."""
    from grabnas.train.run import RESULT_FILE, train_run

    def start(done: int) -> None:
        print(
            f"train {arch} on {task_name} ({split.num_classes} classes, images "
            f"{'x'.join(map(str, split.image_shape))}, {len(split.train)} train / {len(split.val)} val / "
            f"{len(split.test)} test): {config.epochs} epochs, C={config.channels}, N={config.cells}, "
            f"batch {config.batch_size}, lr {config.lr}, seed {config.seed}"
            + (f"; resuming after epoch {done}" if done else ""),
            file=sys.stderr,
            flush=True,
        )

    def progress(r) -> None:
        print(
            f"epoch {r.epoch}/{config.epochs}  train loss {r.train_loss:.4f}  val acc {r.val_acc:.2f} %  "
            f"{r.seconds:.1f} s",
            file=sys.stderr,
            flush=True,
        )

    run = train_run(arch, split, config, out, dataset=task_name, on_epoch=progress, on_start=start)
    result = run.result
    assert result is not None
    if result["status"] != "ok":
        print(f"grabnas: training failed: {result['error']} (see {out / RESULT_FILE})", file=sys.stderr)
        return result
    _write_deployment_files(run, result)
    print(
        f"{arch}: val acc {result['val_acc']:.2f} %, test acc {result['test_acc']:.2f} % after {result['epochs_done']} "
        f"epochs ({result['params'] / 1e6:.4f} M params, {result['flops'] / 1e6:.2f} MFLOPs, "
        f"{result['train_seconds']:.1f} s of training); wrote {out}/result.json, weights.pt, model.py, curve.png"
    )
    return result


def _write_deployment_files(run, result: dict) -> None:
    """``model.py`` (the standalone module with ``load_model()`` reading ``weights.pt``) and
    ``curve.png``; on a finished folder only where they are missing."""
    from grabnas.export import export_architecture
    from grabnas.report import plot_training_curve
    from grabnas.train.run import WEIGHTS_FILE

    out = run.out_dir
    fresh = run.model is not None
    recipe = result["recipe"]
    if fresh or not (out / "model.py").exists():
        norm = result["input_normalisation"]
        export_architecture(
            result["architecture"],
            out,
            num_classes=result["num_classes"],
            channels=recipe["channels"],
            cells=recipe["cells"],
            in_channels=result["image_shape"][0],
            image_size=result["image_shape"][1],
            name="model",
            weights=out / WEIGHTS_FILE,
            normalisation=(norm["mean"], norm["std"]),
        )
    if (fresh or not (out / "curve.png").exists()) and run.history:
        title = (
            f"{result['architecture']}\n{result['dataset']}, C={recipe['channels']}, N={recipe['cells']}, "
            f"{result['epochs_done']} epochs: "
            f"val {result['val_acc']:.2f} %, test {result['test_acc']:.2f} %"
        )
        plot_training_curve(run.history, out / "curve.png", title=title)
