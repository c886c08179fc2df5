"""NAS-Bench-Graph from the ``nas_bench_graph`` package (its shipped ``light`` tables).

Each of the 9 datasets is a task (and its own group). Search on the validation accuracy
(``valid_perf``), report the test accuracy (``perf``), both in %; the simulated cost is the
table's measured latency; the table's parameter counts (``para``, millions) are the task's
``params`` model cost (what ``--max-params`` reads). ``proteins`` covers only the 2,021 architectures built from its
5-op subset; its pool is those.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from grabnas.benchmarks.base import TabularBenchmark, TaskTable
from grabnas.spaces.nasbench_graph import NASBenchGraphSpace

DATASETS: tuple[str, ...] = ("cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv", "proteins")


def _load_task(space: NASBenchGraphSpace, dataset: str) -> TaskTable:
    from nas_bench_graph import light_read

    bench = light_read(dataset)
    n = len(space)
    search, report, cost, params = (np.full(n, np.nan) for _ in range(4))
    for i, arch in enumerate(space.members()):
        rec = bench.get(arch.valid_hash())
        if rec is not None:
            search[i] = 100.0 * float(rec["valid_perf"])
            report[i] = 100.0 * float(rec["perf"])
            cost[i] = float(rec["latency"])
            params[i] = float(rec["para"])
    return TaskTable(
        dataset,
        dataset,
        search,
        report,
        cost,
        "search: valid_perf, report: perf (accuracy %)",
        model_costs={"params": params},
    )


def load_nasbench_graph() -> TabularBenchmark:
    """The NAS-Bench-Graph benchmark; task tables load on first use."""
    space = NASBenchGraphSpace()
    return TabularBenchmark("nasbench-graph", space, {d: partial(_load_task, space, d) for d in DATASETS})
