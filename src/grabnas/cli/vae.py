"""``grabnas vae train`` and ``grabnas vae eval``: train, measure and checkpoint the graph VAE.

:func:`add_vae_commands` adds the ``vae`` command to the ``grabnas`` parser; each subcommand
stores its handler ``(args) -> int`` as ``args.handler``. Heavy modules load inside handlers.
"""

from __future__ import annotations

import argparse
import json

from grabnas.cli.args import add_threads_arg, positive_int, set_threads
from grabnas.spaces import SPACE_NAMES


def add_vae_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``vae train`` and ``vae eval`` to a ``grabnas`` subparsers object."""
    p = subparsers.add_parser("vae", help="graph VAE (D-VAE) over a search space's architectures")
    sub = p.add_subparsers(dest="vae_command", required=True)

    t = sub.add_parser(
        "train",
        help="train a graph VAE on all architectures of a space",
        description="Train a graph VAE on all architectures of a space (10%% held out), measure it and "
        "write OUT.pt with its JSON card OUT.json.",
    )
    t.add_argument("--space", choices=SPACE_NAMES, required=True, help="search space")
    t.add_argument("--out", required=True, help="checkpoint path (OUT.pt and OUT.json are written)")
    t.add_argument("--epochs", type=positive_int, default=40, help="most epochs (default 40)")
    t.add_argument("--batch-size", type=positive_int, default=256, help="default 256")
    t.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (cosine-annealed; default 2e-3)")
    t.add_argument("--patience", type=positive_int, default=10, help="early-stop patience in epochs (default 10)")
    t.add_argument("--seed", type=int, default=0, help="master seed (initialisation, batches, noise; default 0)")
    t.add_argument("--split-seed", type=int, default=None, help="seed of the held-out split (default: --seed)")
    t.add_argument("--holdout", type=float, default=0.1, help="held-out fraction (default 0.1)")
    t.add_argument("--latent-dim", type=positive_int, default=16, help="default 16")
    t.add_argument("--hidden-dim", type=positive_int, default=128, help="default 128")
    t.add_argument("--beta", type=float, default=0.005, help="KL weight (default 0.005)")
    t.add_argument("--eps-scale", type=float, default=1.0, help="posterior noise scale while training (default 1)")
    t.add_argument("--unidirectional", action="store_true", help="encode forwards only")
    t.add_argument("--max-minutes", type=float, default=None, help="stop after this many minutes of training")
    t.add_argument("--prior-samples", type=positive_int, default=1000, help="prior draws for validity (default 1000)")
    t.add_argument(
        "--subset", type=positive_int, default=None, help="train on this many random members only (smoke runs)"
    )
    t.add_argument("--no-eval", action="store_true", help="skip the metrics after training")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_threads_arg(t)
    t.set_defaults(handler=cmd_vae_train)

    e = sub.add_parser(
        "eval",
        help="measure a graph VAE checkpoint",
        description="Held-out reconstruction, prior validity/uniqueness/novelty and latent smoothness of a checkpoint.",
    )
    e.add_argument("--checkpoint", required=True, help="shipped name (nb201, nasbench-graph) or OUT.pt path")
    e.add_argument("--space", choices=SPACE_NAMES, default=None, help="fail unless the checkpoint is of this space")
    e.add_argument("--seed", type=int, default=0, help="evaluation seed (default 0)")
    e.add_argument("--prior-samples", type=positive_int, default=1000, help="default 1000")
    e.add_argument("--pairs", type=positive_int, default=100, help="latent interpolation pairs (default 100)")
    e.add_argument("--steps", type=positive_int, default=10, help="interpolation steps (default 10)")
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    add_threads_arg(e)
    e.set_defaults(handler=cmd_vae_eval)


def _print_metrics(metrics: dict, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    for key, value in metrics.items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        print(f"{key:34s} {value}")


def cmd_vae_train(args: argparse.Namespace) -> int:
    """Handler of ``grabnas vae train``."""
    import numpy as np

    from grabnas.meta.vae_training import TrainConfig, evaluate_vae, save_checkpoint, train_vae
    from grabnas.models.graph_vae import GraphVAEConfig
    from grabnas.seeding import child_seed
    from grabnas.spaces import get_space

    set_threads(args)
    space = get_space(args.space)
    cfg = GraphVAEConfig.for_space(
        space,
        hidden_dim=args.hidden_dim,
        latent_dim=args.latent_dim,
        beta=args.beta,
        eps_scale=args.eps_scale,
        bidirectional=not args.unidirectional,
    )
    tc = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        seed=args.seed,
        split_seed=args.split_seed,
        holdout_fraction=args.holdout,
        max_minutes=args.max_minutes,
    )
    archs = None
    if args.subset is not None:
        archs = space.sample(np.random.default_rng(child_seed(args.seed, "vae-subset")), args.subset)
        archs = list(dict.fromkeys(archs))  # without repeats
    result = train_vae(space, cfg, tc, progress=not args.no_progress, checkpoint_path=args.out, archs=archs)
    metrics = {}
    if not args.no_eval:
        split = (result.train_archs, result.holdout_archs)
        metrics = evaluate_vae(result.vae, seed=args.seed, n_prior=args.prior_samples, split=split)
    pt, js = save_checkpoint(result.vae, args.out, metrics=metrics)
    print(
        f"trained {args.space} VAE in {result.train_seconds:.0f} s ({len(result.history)} epochs, best {result.best_epoch})"
    )
    _print_metrics(metrics)
    print(f"wrote {pt} and {js}")
    return 0


def cmd_vae_eval(args: argparse.Namespace) -> int:
    """Handler of ``grabnas vae eval``."""
    from grabnas.meta.vae_training import evaluate_vae, load_checkpoint

    set_threads(args)
    vae = load_checkpoint(args.checkpoint, space=args.space)
    metrics = evaluate_vae(vae, seed=args.seed, n_prior=args.prior_samples, n_pairs=args.pairs, n_steps=args.steps)
    if not args.json:
        print(f"{vae.space.name} VAE {args.checkpoint} (trained {vae.card.get('training_seconds', '?')} s)")
    _print_metrics(metrics, args.json)
    return 0
