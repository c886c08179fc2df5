"""Throughput of grabnas's training loop vs a plain hand-written PyTorch loop.

Both train the same NB201 network (same initial weights) on the same preloaded, normalised
tensors with the same SGD + cosine schedule and batch size, on ``--threads`` torch threads.
grabnas's time is ``TrainResult.train_seconds`` (the loop only); the plain loop is timed the
same way. Repeats alternate between the two (A B A B ...) after one warm-up run of each, so
machine load drifts hit both alike. Augmentation is off in both by default (the plain loop has
none); ``--augment`` times grabnas with its crop/flip augmentation as well.

    python benchmarks/train_throughput.py --threads 2 --repeats 5

Prints images/second for each run, the medians and the ratio grabnas / plain (target >= 0.9).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F

from grabnas.data import DatasetSplit, ImageDataset
from grabnas.train.recipe import TrainConfig, build_model, train_and_evaluate

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def make_split(n: int, size: int, channels: int, classes: int) -> DatasetSplit:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n + 64, channels, size, size, generator=g)
    labels = torch.arange(n + 64) % classes
    names = tuple(str(i) for i in range(classes))
    ds = ImageDataset(images, labels, names, "synthetic")
    return DatasetSplit(ds.subset(range(n)), ds.subset(range(n, n + 32)), ds.subset(range(n + 32, n + 64)))


def plain_loop(split: DatasetSplit, config: TrainConfig) -> float:
    """A straightforward loop: tensors, randperm batches, forward/backward/step. Returns seconds."""
    in_ch = split.image_shape[0]
    model = build_model(ARCH, split.num_classes, in_ch, config)
    x = split.train.images
    mean, std = x.mean(dim=(0, 2, 3), keepdim=True), x.std(dim=(0, 2, 3), keepdim=True)
    x, y = (x - mean) / std, split.train.labels
    opt = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay
    )
    n, bs = len(y), config.batch_size
    steps = math.ceil(n / bs) * config.epochs
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    g = torch.Generator().manual_seed(1)
    model.train()
    start = time.perf_counter()
    for _ in range(config.epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return time.perf_counter() - start


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--channels", type=int, default=16, help="C (default 16, the benchmark's)")
    p.add_argument("--cells", type=int, default=5, help="N (default 5)")
    p.add_argument("--images", type=int, default=512, help="training images (default 512)")
    p.add_argument("--size", type=int, default=32, help="image side (default 32)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--augment", action="store_true", help="also time grabnas with augmentation")
    p.add_argument("--json", default=None, help="write the numbers to this JSON file")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    split = make_split(args.images, args.size, 3, 10)
    base = TrainConfig(
        epochs=args.epochs,
        channels=args.channels,
        cells=args.cells,
        batch_size=args.batch_size,
        augment=False,
        device="cpu",
        num_threads=args.threads,
        seed=0,
    )
    n_img = args.images * args.epochs
    variants = {
        "grabnas": lambda: train_and_evaluate(ARCH, split, base).train_seconds,
        "plain": lambda: plain_loop(split, base),
    }
    if args.augment:
        aug = TrainConfig(**{**base.to_dict(), "augment": True, "flip": True})
        variants["grabnas+augment"] = lambda: train_and_evaluate(ARCH, split, aug).train_seconds
    for fn in variants.values():  # warm-up
        fn()
    rates: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(args.repeats):
        for name, fn in variants.items():
            rate = n_img / fn()
            rates[name].append(rate)
            print(f"repeat {r + 1}: {name:16s} {rate:8.1f} images/s", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratio = med["grabnas"] / med["plain"]
    paired = statistics.median(a / b for a, b in zip(rates["grabnas"], rates["plain"]))
    print(
        f"\nC={args.channels} N={args.cells} {args.size}x{args.size}, batch {args.batch_size}, {args.threads} threads, "
        f"torch {torch.__version__}"
    )
    for k, v in med.items():
        print(f"median {k:16s} {v:8.1f} images/s")
    print(f"ratio grabnas / plain: {ratio:.3f} (median of paired ratios {paired:.3f}; target >= 0.9)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"args": vars(args), "rates": rates, "median": med, "ratio": ratio, "paired_ratio": paired}, f, indent=2
            )


if __name__ == "__main__":
    main()
