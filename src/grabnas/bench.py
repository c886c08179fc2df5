"""``grabnas bench``: optimizers x tasks x seeds on a tabular benchmark.

Every (optimizer, task, seed) run is a thin ask/tell loop against the benchmark's lookup. A run's
rows are appended to ``results.csv`` as soon as it finishes, so an interrupted bench resumes
by skipping the runs already on disk (runs are deterministic given their seed).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from grabnas.benchmarks import load_benchmark
from grabnas.benchmarks.base import TabularBenchmark
from grabnas.errors import GrabnasError
from grabnas.evaluation.executors import exit_with_parent
from grabnas.search.constraints import Constraints, benchmark_cost_model, constrained_optimum
from grabnas.search.registry import build_optimizer, prepare_grabnas, pruned_pool
from grabnas.seeding import child_seed

RESULT_COLUMNS = (
    "optimizer",
    "task",
    "seed",
    "step",
    "arch",
    "value",
    "best",
    "regret",
    "best_test",
    "seconds",
    "in_pool",
    "pool_best",
    "decodes",
    "valid_decodes",
)


@dataclass(frozen=True)
class BenchConfig:
    """What a bench runs; stored as ``bench.json`` beside the results."""

    benchmark: str
    tasks: tuple[str, ...]
    optimizers: tuple[str, ...]
    seeds: int
    budget: int
    master_seed: int = 0
    prune_top: float = 0.0
    max_params: float | None = None
    max_flops: float | None = None
    max_latency: float | None = None
    latency_table: str | None = None

    @property
    def constraints(self) -> Constraints:
        """The cost limits of every run (``--max-params``, ``--max-flops``, ``--max-latency`` with
        the latency table at the path ``latency_table``, read now)."""
        return Constraints.from_dict(asdict(self), self.latency_table)

    def runs(self) -> list[tuple[str, str, int]]:
        return [(t, o, s) for t in self.tasks for o in self.optimizers for s in range(self.seeds)]


def run_one(
    bench: TabularBenchmark,
    task: str,
    optimizer: str,
    seed: int,
    budget: int,
    master_seed: int = 0,
    prune_top: float = 0.0,
    cache: dict | None = None,
    constraints: Constraints | None = None,
) -> list[dict]:
    """One optimizer run of ``budget`` evaluations; returns its rows (see ``RESULT_COLUMNS``).

    ``seed`` is the run index; the optimizer's seed derives from it, the master seed and the
    task, so optimizers compared on one (task, seed) pair get the same seed. With
    ``prune_top`` the candidate pool lacks the task's best ``prune_top`` percent; regret is
    still measured against the task's true optimum, ``in_pool`` says whether a proposal was a
    pool member and ``pool_best`` is the best value left in the pool. ``decodes`` and
    ``valid_decodes`` count the graph-VAE decodes of GraB-NAS's local steps so far (empty for
    optimizers that do not decode). ``cache`` (a dict kept across the runs of one process)
    lets GraB-NAS runs share their VAE, latents and surrogates; results do not depend on it.
    With ``constraints`` the pool holds only the feasible cells and regret is measured against
    the constrained optimum, the best feasible cell of the task.
    """
    pool = pruned_pool(bench, task, prune_top)
    values = bench.values(task)
    optimum = bench.optimum(task)
    if constraints is not None and constraints.active:
        bound = constraints.with_costs(benchmark_cost_model(bench, task))
        pool = bound.filter(pool)
        optimum = constrained_optimum(bound, values)[1]
    opt = build_optimizer(
        optimizer, bench, task, child_seed(master_seed, task, seed), pool=pool, cache=cache, constraints=constraints
    )
    in_pool = set(pool)
    pool_best = max(values[a] for a in pool)
    rows: list[dict] = []
    best, best_test = -math.inf, math.nan
    for step in range(1, budget + 1):
        t0 = time.perf_counter()
        archs = opt.ask(1)
        if not archs:
            break
        values = [bench.value(a, task) for a in archs]
        opt.tell(archs, values)
        seconds = time.perf_counter() - t0
        arch, value = archs[0], values[0]
        if value is not None and value > best:
            best = value
            test = bench.report_value(arch, task)
            best_test = math.nan if test is None else test
        rows.append(
            dict(
                optimizer=optimizer,
                task=task,
                seed=seed,
                step=step,
                arch=str(arch),
                value="" if value is None else value,
                best=best,
                regret=optimum - best,
                best_test=best_test,
                seconds=round(seconds, 6),
                in_pool=int(arch in in_pool),
                pool_best=pool_best,
                **_decode_counts(opt),
            )
        )
    return rows


def _decode_counts(opt: object) -> dict:
    log = getattr(opt, "local_log", None)
    if log is None:
        return {"decodes": "", "valid_decodes": ""}
    return {"decodes": sum(e["tried"] for e in log), "valid_decodes": sum(e["valid"] for e in log)}


def _run_chunk(
    spec: str,
    data: str | None,
    runs: Sequence[tuple[str, str, int]],
    budget: int,
    master_seed: int,
    threads: int,
    prune_top: float,
    cache: dict,
    constraints: Constraints | None = None,
) -> list[list[dict]]:
    """Worker entry point: load the benchmark once, run several runs (``cache``: GraB-NAS's VAE,
    latents and surrogates, prepared once by the main process)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    bench = load_benchmark(spec, data)
    return [run_one(bench, t, o, s, budget, master_seed, prune_top, cache, constraints) for t, o, s in runs]


def _done_runs(results: Path) -> set[tuple[str, str, int]]:
    if not results.exists():
        return set()
    with results.open(newline="") as f:
        return {(r["task"], r["optimizer"], int(r["seed"])) for r in csv.DictReader(f)}


def _check_or_write_config(out: Path, config: BenchConfig) -> None:
    path = out / "bench.json"
    mine = asdict(config)
    mine["latency_fingerprint"] = config.constraints.to_dict().get("latency_table")
    if path.exists():
        theirs = json.loads(path.read_text())
        keys = ("benchmark", "budget", "master_seed", "prune_top", "max_params", "max_flops", "max_latency")
        keys += ("latency_fingerprint",)
        if {k: theirs.get(k, 0.0 if k == "prune_top" else None) for k in keys} != {k: mine[k] for k in keys}:
            raise GrabnasError(
                f"{out} holds a bench with another benchmark, budget, master seed or pruning, or other cost constraints "
                f"({path}); "
                "use a new --out folder"
            )
        merged = {
            **mine,
            "tasks": list(dict.fromkeys([*theirs["tasks"], *config.tasks])),
            "optimizers": list(dict.fromkeys([*theirs["optimizers"], *config.optimizers])),
            "seeds": max(theirs["seeds"], config.seeds),
        }
        path.write_text(json.dumps(merged, indent=2))
    else:
        path.write_text(json.dumps(mine, indent=2))


def run_bench(
    config: BenchConfig,
    out: str | os.PathLike,
    data: str | None = None,
    jobs: int = 1,
    threads: int = 1,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Run every missing (task, optimizer, seed) of ``config``; append rows to ``out/results.csv``.

    ``jobs`` worker processes run ``threads`` torch threads each. GraB-NAS's surrogates are loaded,
    or meta-trained where no shipped one fits, once in this process before the runs start, and
    every run reuses them; ``log`` receives one line per surrogate meta-trained, with its time.
    Returns the path of ``results.csv``; writes ``summary.md`` and ``regret.png`` at the end.
    """
    from grabnas.report import write_bench_report

    bench = load_benchmark(config.benchmark, data)  # fail fast on bad input, before any work
    constraints = config.constraints
    for task in config.tasks:
        bench.table(task)
        if constraints.active:  # an unsupported limit or an empty feasible set, before any work
            constraints.with_costs(benchmark_cost_model(bench, task)).filter(pruned_pool(bench, task, config.prune_top))
    from grabnas.search.registry import parse_optimizer_spec

    for o in config.optimizers:
        parse_optimizer_spec(o)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_or_write_config(out, config)
    results = out / "results.csv"
    todo = [r for r in config.runs() if r not in _done_runs(results)]
    cache: dict = {}  # GraB-NAS's VAE, latents and surrogates, shared by the runs (and sent to workers)
    for line in prepare_grabnas(bench, list(dict.fromkeys((t, o) for t, o, _ in todo)), cache):
        (log or (lambda _m: None))(line)
    new_file = not results.exists()
    bar = _progress_bar(len(todo), progress)
    columns = RESULT_COLUMNS
    if not new_file:  # keep the header of an existing file (written by an older grabnas, perhaps)
        with results.open(newline="") as f:
            columns = tuple(next(csv.reader(f), RESULT_COLUMNS))
    with results.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        if new_file:
            writer.writeheader()

        def save(rows: list[dict]) -> None:
            writer.writerows(rows)
            f.flush()
            if bar is not None:
                bar.set_postfix_str(f"{rows[0]['optimizer']} {rows[0]['task']} regret {rows[-1]['regret']:.3g}")
                bar.update(1)

        if jobs <= 1:
            for t, o, s in todo:
                save(run_one(bench, t, o, s, config.budget, config.master_seed, config.prune_top, cache, constraints))
        else:
            # one run per task: rows reach the file (and the bar) as each run ends
            with ProcessPoolExecutor(max_workers=jobs, initializer=exit_with_parent) as pool:
                futures = [
                    pool.submit(
                        _run_chunk,
                        config.benchmark,
                        data,
                        [r],
                        config.budget,
                        config.master_seed,
                        threads,
                        config.prune_top,
                        cache,
                        constraints,
                    )
                    for r in todo
                ]
                for fut in as_completed(futures):
                    for rows in fut.result():
                        save(rows)
    if bar is not None:
        bar.close()
    write_bench_report(out, bench, constraints)
    return results


def _progress_bar(total: int, progress: bool):
    if progress is False:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="bench runs", unit="run")
