"""Summarise ``benchmarks/ensemble_nb201.sh``: evaluations to the NB201 optimum per ensemble.

.venv/bin/python benchmarks/ensemble_nb201.py --out runs/ensembles 0,1,2,3,4 5,6,7,8,9
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from meta_seed_variance import evaluations_to_optimum  # noqa: E402

TASKS = ("cifar10", "cifar100", "imagenet16")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/ensembles")
    p.add_argument("--data", default=None, help="NB201 table (default $GRABNAS_NB201)")
    p.add_argument("ensembles", nargs="+", help="members' meta-training seeds, e.g. 0,1,2")
    args = p.parse_args()
    from grabnas.benchmarks.nb201 import load_nb201

    bench = load_nb201(args.data)
    print("| ensemble (meta-training seeds) | " + " | ".join(TASKS) + " |")
    print("|---|" + "---|" * len(TASKS))
    for e in args.ensembles:
        folder = Path(args.out) / f"e{e.replace(',', '-')}"
        found = [f for f in (folder / "results.csv", folder.with_suffix(".csv.gz")) if f.is_file()]
        runs = pd.read_csv(found[0])
        cells = []
        for task in TASKS:
            ev = evaluations_to_optimum(runs[runs.task == task], bench.optimum(task))
            cells.append(f"> {int((runs.task == task).sum())}" if ev is None else str(ev))
        print(f"| {e} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
