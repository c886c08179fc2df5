"""Optimizer overhead per iteration: GraB-NAS against GP-BO on NB201 cifar10, in one process.

One iteration = ask(1) + tell (the lookup itself is free). For GraB-NAS that is the surrogate's
adaptation to the observations, the acquisition over the untried part of the 15,625-cell pool
and, on local steps, the latent gradient ascent and the decodes. The two optimizers advance
step by step in turn, so machine noise hits both alike; iterations after ``--warmup`` are
timed (GraB-NAS's local steps start after its T_BO = 10 observations).

    GRABNAS_NB201=path/to/nb201_accuracies.csv .venv/bin/python benchmarks/overhead.py --threads 2

``--grabnas SPEC`` times another GraB-NAS spec instead of the default, e.g. an ensemble
``"grabnas[surrogate=nb201-no-{group}+ck/{group}-s1/surrogate-nb201-no-{group}.pt]"``.
``--multifidelity SPEC`` (e.g. ``grabnas-mf``) times a multi-fidelity optimizer instead (issue 22):
one iteration = ask(1) + tell of one trial at the fidelity it chose (12 or 200 epochs, a lookup).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from grabnas.benchmarks import load_benchmark
from grabnas.search.registry import build_optimizer
from grabnas.seeding import child_seed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="NB201 table (default $GRABNAS_NB201)")
    p.add_argument("--task", default="cifar10")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--grabnas", default="grabnas", help="the GraB-NAS spec to time (default: grabnas)")
    p.add_argument("--multifidelity", default=None, metavar="SPEC", help="time this multi-fidelity optimizer instead")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    bench = load_benchmark("nb201", args.data)
    if args.multifidelity:
        return multifidelity(args, bench)
    times: dict[str, list[float]] = {"gpbo": [], "grabnas": [], "grabnas-global": [], "grabnas-local": []}
    for seed in range(args.seeds):
        opts = {
            name: build_optimizer(spec, bench, args.task, child_seed(0, args.task, seed))
            for name, spec in (("gpbo", "gpbo"), ("grabnas", args.grabnas))
        }
        for step in range(1, args.iterations + 1):
            for name, opt in opts.items():
                local_before = len(getattr(opt, "local_log", []))
                t0 = time.perf_counter()
                archs = opt.ask(1)
                opt.tell(archs, [bench.value(a, args.task) for a in archs])
                dt = time.perf_counter() - t0
                if step > args.warmup:
                    times[name].append(dt)
                    if name == "grabnas":
                        kind = "local" if len(opt.local_log) > local_before else "global"
                        times[f"grabnas-{kind}"].append(dt)
    print(
        f"NB201 {args.task}, {args.threads} torch threads, {args.seeds} seeds, iterations {args.warmup + 1}-{args.iterations}"
        f"; grabnas = {args.grabnas}"
    )
    print("| optimizer | iterations timed | median s/iter | 25-75 % | mean | max |")
    print("|---|---|---|---|---|---|")
    for name, ts in times.items():
        if ts:
            q25, q50, q75 = np.percentile(ts, [25, 50, 75])
            print(f"| {name} | {len(ts)} | {q50:.3f} | {q25:.3f}-{q75:.3f} | {np.mean(ts):.3f} | {max(ts):.3f} |")
    ratio = np.median(times["grabnas"]) / np.median(times["gpbo"])
    print(f"median GraB-NAS / GP-BO iteration time: {ratio:.2f}")
    # a setting that does expensive work once every k iterations can hide it from the median
    print(f"mean GraB-NAS / GP-BO iteration time: {np.mean(times['grabnas']) / np.mean(times['gpbo']):.2f}")


def multifidelity(args, bench) -> None:
    from grabnas.evaluation.multifidelity import MultiFidelityLookup
    from grabnas.search.multifidelity import build_nb201_multifidelity

    ev, times, cache = MultiFidelityLookup(bench, args.task), {"12ep": [], "200ep": []}, {}
    for seed in range(args.seeds):
        opt = build_nb201_multifidelity(args.multifidelity, bench, args.task, child_seed(0, args.task, seed), cache)
        for step in range(1, args.iterations + 1):
            t0 = time.perf_counter()
            trials = opt.ask(1)
            if not trials:
                break
            opt.tell(trials, [ev(t).value for t in trials])
            if step > args.warmup:
                times[trials[0].name].append(time.perf_counter() - t0)
    print(
        f"NB201 {args.task}, {args.threads} torch threads, {args.seeds} seeds, iterations {args.warmup + 1}-{args.iterations}"
        f"; {args.multifidelity}, by the fidelity each iteration chose"
    )
    print("| optimizer | iterations timed | median s/iter | 25-75 % | max |")
    print("|---|---|---|---|---|")
    for name, ts in [("all", times["12ep"] + times["200ep"]), *times.items()]:
        if ts:
            q25, q50, q75 = np.percentile(ts, [25, 50, 75])
            print(f"| {args.multifidelity} ({name}) | {len(ts)} | {q50:.3f} | {q25:.3f}-{q75:.3f} | {max(ts):.3f} |")


if __name__ == "__main__":
    main()
