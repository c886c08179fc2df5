"""Bench reports: the Markdown summary table and the regret plot.

Both read ``results.csv`` (columns of :data:`grabnas.bench.RESULT_COLUMNS`). Also the search
report (:func:`write_search_report`), a training run's curve (:func:`plot_training_curve`) and,
for constrained searches and benches, the Pareto plot of value against cost
(:func:`plot_pareto`).
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from grabnas.benchmarks.base import TabularBenchmark

#: budgets at which the summary reports regret
REPORT_BUDGETS = (10, 25, 50, 100, 200, 500)


def load_results(path: str | Path) -> list[dict]:
    """Rows of ``results.csv`` (or a gzip-compressed ``results.csv.gz``) with numbers parsed."""
    path = Path(path)
    if path.suffix == ".gz":
        import gzip

        with gzip.open(path, "rt", newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    for r in rows:
        r["seed"], r["step"] = int(r["seed"]), int(r["step"])
        for k in ("best", "regret", "best_test", "seconds"):
            r[k] = float(r[k])
    return rows


def regret_curves(rows: list[dict]) -> dict[tuple[str, str], np.ndarray]:
    """``(task, optimizer) -> (n_seeds, max_steps)`` regret after each evaluation, in the order
    the pairs first appear in ``rows``.

    A run that stopped early (pool exhausted) keeps its last regret.
    """
    by_run: dict[tuple[str, str, int], list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        by_run[(r["task"], r["optimizer"], r["seed"])].append((r["step"], r["regret"]))
    grouped: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)  # keeps first-seen order
    for (task, opt, _seed), pts in sorted(by_run.items(), key=lambda kv: kv[0][2]):
        pts.sort()
        grouped[(task, opt)].append(np.array([v for _, v in pts]))
    curves = {}
    for key, runs in grouped.items():
        n = max(len(r) for r in runs)
        curves[key] = np.stack([np.concatenate([r, np.full(n - len(r), r[-1])]) for r in runs])
    return curves


def _mean_se(x: np.ndarray) -> str:
    se = x.std(ddof=1) / math.sqrt(len(x)) if len(x) > 1 else 0.0
    return f"{x.mean():.3f} ± {se:.3f}"


def evals_to_optimum(curve: np.ndarray, optimum: float = 0.0, tol: float | None = None) -> np.ndarray:
    """``(n_seeds,)`` number of evaluations until regret 0 (inf when never reached) for regret
    curves ``(n_seeds, n_evals)``. A value within float32 precision of the ``optimum`` ties with it
    (tolerance ``1e-6 * |optimum|``, at least 1e-9): tables store float32 accuracies. ``tol``
    replaces that tolerance (e.g. "within 0.1 of the optimum")."""
    hit = curve <= (max(1e-9, 1e-6 * abs(optimum)) if tol is None else tol)
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, np.inf)


def summary_markdown(
    rows: list[dict],
    bench_name: str = "",
    constraint_lines: Mapping[str, Sequence[str]] | None = None,
    binding_runs: Mapping[tuple[str, str, int], bool] | None = None,
) -> str:
    """Per task: regret mean ± standard error at fixed budgets, median evaluations to the
    optimum (with how many seeds reached it), test metric of the final choice, and the
    optimizer's median overhead per iteration.

    A constrained bench passes ``constraint_lines`` (task -> lines on the constrained optimum,
    the regret's reference, and which limit binds) and ``binding_runs`` ((task, optimizer, seed)
    -> whether the run's best cell uses more than 95 % of a limit, a column of the table)."""
    curves = regret_curves(rows)
    seconds: dict[tuple[str, str], list[float]] = defaultdict(list)
    final_test: dict[tuple[str, str, int], float] = {}
    # pruned-pool benches: did a run find something better than the best left in the pool?
    beat_pool: dict[tuple[str, str, int], bool] = {}
    outside: dict[tuple[str, str], list[int]] = defaultdict(list)
    decodes: dict[tuple[str, str, int], tuple[int, int]] = {}  # last (tried, valid) per run
    for r in rows:
        if r.get("decodes") not in (None, ""):
            decodes[(r["task"], r["optimizer"], r["seed"])] = (int(r["decodes"]), int(r["valid_decodes"]))
        seconds[(r["task"], r["optimizer"])].append(r["seconds"])
        final_test[(r["task"], r["optimizer"], r["seed"])] = r["best_test"]
        if r.get("pool_best") not in (None, ""):
            key = (r["task"], r["optimizer"], r["seed"])
            beat_pool[key] = beat_pool.get(key, False) or r["best"] > float(r["pool_best"]) + 1e-9
            outside[(r["task"], r["optimizer"])].append(1 - int(r["in_pool"]))
    pruned = any(v == 1 for vs in outside.values() for v in vs) or any(
        float(r["pool_best"]) < r["best"] + r["regret"] - 1e-9 for r in rows if r.get("pool_best") not in (None, "")
    )
    tasks = list(dict.fromkeys(t for t, _ in curves))
    optimum = {r["task"]: r["best"] + r["regret"] for r in rows if math.isfinite(r["best"])}
    lines = [f"# Bench summary{' — ' + bench_name if bench_name else ''}", ""]
    if constraint_lines:
        lines.append(
            "Regret = constrained optimum (the task's best feasible cell) − best value found (search metric); "
            "mean ± standard error over seeds. Every optimizer searched the feasible cells only."
        )
    else:
        lines.append("Regret = task optimum − best value found (search metric); mean ± standard error over seeds.")
    lines.append("")
    for task in tasks:
        opts = [o for t, o in curves if t == task]
        steps = max(curves[(task, o)].shape[1] for o in opts)
        budgets = [b for b in REPORT_BUDGETS if b <= steps]
        if steps not in budgets:
            budgets.append(steps)
        n_seeds = max(curves[(task, o)].shape[0] for o in opts)
        lines.append(f"## {task} ({n_seeds} seeds)")
        lines.append("")
        for line in (constraint_lines or {}).get(task, ()):
            lines += [f"- {line}"]
        if (constraint_lines or {}).get(task):
            lines.append("")
        # a task without a separate report metric (a user table without TASK:test, NB201's
        # 200-epoch columns) reports the search metric again: say so in the header
        same = all(
            r["best_test"] == r["best"] or (np.isnan(r["best_test"]) and np.isnan(r["best"]))
            for r in rows
            if r["task"] == task
        )
        test_head = "final test (= search metric)" if same else "final test"
        head = ["optimizer", "seeds", *(f"regret@{b}" for b in budgets), "median evals to optimum", test_head, "s/iter"]
        if pruned:
            head += ["seeds beating the pool's best", "proposals outside the pool"]
        with_decodes = any(t == task and tried for (t, _o, _s), (tried, _v) in decodes.items())
        if with_decodes:
            head.append("valid decodes")
        if binding_runs:
            head.append("seeds whose best cell binds a limit (> 95 %)")
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for o in opts:
            c = curves[(task, o)]
            reach = evals_to_optimum(c, optimum.get(task, 0.0))
            med = np.median(reach)
            med_s = f"{med:.0f}" if np.isfinite(med) else f"> {c.shape[1]}"
            reached = int(np.isfinite(reach).sum())
            tests = np.array([v for (t, oo, _s), v in final_test.items() if t == task and oo == o])
            cells = [
                o,
                str(c.shape[0]),
                *(_mean_se(c[:, min(b, c.shape[1]) - 1]) for b in budgets),
                f"{med_s} ({reached}/{len(reach)} reached)",
                _mean_se(tests[~np.isnan(tests)]) if (~np.isnan(tests)).any() else "n/a",
                f"{np.median(seconds[(task, o)]):.4f}",
            ]
            if pruned:
                wins = [v for (t, oo, _s), v in beat_pool.items() if t == task and oo == o]
                out = outside[(task, o)]
                cells += [f"{sum(wins)}/{len(wins)}", f"{sum(out)}/{len(out)}"]
            if with_decodes:
                tv = [tv for (t, oo, _s), tv in decodes.items() if t == task and oo == o]
                tried, valid = sum(x for x, _ in tv), sum(v for _, v in tv)
                cells.append(f"{valid / tried:.1%} of {tried}" if tried else "-")
            if binding_runs:
                binds = [v for (t, oo, _s), v in binding_runs.items() if t == task and oo == o]
                cells.append(f"{sum(binds)}/{len(binds)}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_regret(rows: list[dict], path: str | Path) -> None:
    """Mean regret versus evaluations with standard-error bands, one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = regret_curves(rows)
    tasks = list(dict.fromkeys(t for t, _ in curves))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for (t, o), c in curves.items():
            if t != task:
                continue
            x = np.arange(1, c.shape[1] + 1)
            mean = c.mean(axis=0)
            se = c.std(axis=0, ddof=1) / math.sqrt(len(c)) if len(c) > 1 else np.zeros_like(mean)
            (line,) = ax.plot(x, mean, label=o if len(o) <= 48 else o[:45] + "...")  # long specs
            ax.fill_between(x, np.maximum(mean - se, 0), mean + se, color=line.get_color(), alpha=0.2)
        ax.set_title(task)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("regret")
        ax.set_yscale("symlog", linthresh=0.1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_bench_report(out: str | Path, bench: TabularBenchmark | None = None, constraints=None) -> None:
    """Write ``summary.md`` and ``regret.png`` into ``out`` from its ``results.csv``; with active
    ``constraints`` (:class:`grabnas.search.constraints.Constraints`; default: those of
    ``out/bench.json``) and ``bench``, also which limit binds and ``pareto.png``."""
    out = Path(out)
    rows = load_results(out / "results.csv")
    if not rows:
        return
    if constraints is None and (out / "bench.json").exists():
        import json

        from grabnas.search.constraints import Constraints

        stored = json.loads((out / "bench.json").read_text())
        constraints = Constraints.from_dict(stored, stored.get("latency_table"))
    lines, binding = None, None
    if constraints is not None and constraints.active and bench is not None:
        lines, binding = _bench_constraints(rows, bench, constraints, out / "pareto.png")
    (out / "summary.md").write_text(summary_markdown(rows, bench.name if bench else "", lines, binding))
    plot_regret(rows, out / "regret.png")


def _bench_constraints(rows: list[dict], bench: TabularBenchmark, constraints, pareto_path: Path):
    """``(task -> lines, (task, optimizer, seed) -> binds)`` of a constrained bench, and its Pareto
    plot (every cell of the table in grey, the cells the runs evaluated, their front)."""
    from grabnas.search.constraints import benchmark_cost_model, constrained_optimum

    lines: dict[str, list[str]] = {}
    binding: dict[tuple[str, str, int], bool] = {}
    panels = []
    best_arch: dict[tuple[str, str, int], tuple[float, str]] = {}
    for r in rows:
        if r.get("value") not in (None, ""):
            key = (r["task"], r["optimizer"], r["seed"])
            v = float(r["value"])
            if key not in best_arch or v > best_arch[key][0]:
                best_arch[key] = (v, r["arch"])
    for task in dict.fromkeys(r["task"] for r in rows):
        bound = constraints.with_costs(benchmark_cost_model(bench, task))
        values = bench.values(task)
        found = constrained_optimum(bound, values)
        unconstrained = max(values, key=values.get)
        if found is None:
            lines[task] = [f"no cell satisfies {bound.describe()}"]
            continue
        best, best_value = found
        lines[task] = bound.report_lines(
            best,
            unconstrained,
            what=f"the constrained optimum {best} (value {best_value:.4g}, the regret's reference)",
        )
        for key, (_v, arch) in best_arch.items():
            if key[0] == task:
                binding[key] = bool(bound.binding(bench.space.parse(arch)))
        evaluated: dict[str, float] = {}
        for r in rows:
            if r["task"] == task and r.get("value") not in (None, ""):
                evaluated[r["arch"]] = float(r["value"])
        archs = [bench.space.parse(a) for a in evaluated]
        table_archs = list(values)
        for cost, limit in bound.limits().items():
            panels.append(
                dict(
                    title=f"{task}: {len(archs)} cells evaluated (all runs)",
                    cost=cost,
                    limit=limit,
                    costs=bound.cost_model.costs(archs, cost),
                    values=np.array(list(evaluated.values())),
                    background=(bound.cost_model.costs(table_archs, cost), np.array([values[a] for a in table_archs])),
                )
            )
    if panels:
        plot_pareto(panels, pareto_path)
    return lines, binding


# -- Pareto plots ------------------------------------------------------------------------------------
def pareto_front(costs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Indices of the points no other point dominates (lower or equal cost and higher value, or
    lower cost and equal value), by increasing cost; NaNs are left out."""
    costs, values = np.asarray(costs, dtype=float), np.asarray(values, dtype=float)
    ok = np.flatnonzero(~np.isnan(costs) & ~np.isnan(values))
    order = ok[np.lexsort((-values[ok], costs[ok]))]  # by cost, then best value first
    front, best = [], -math.inf
    for i in order:
        if values[i] > best:
            front.append(int(i))
            best = values[i]
    return np.array(front, dtype=np.int64)


_COST_AXIS = {"params": "parameters (M)", "flops": "FLOPs (M)", "latency": "predicted latency (ms)"}


def plot_pareto(panels: Sequence[dict], path: str | Path) -> Path:
    """Value against cost, one panel each: ``dict(title, cost, limit, costs, values,
    background=None)``. The evaluated cells are dots, their Pareto front (cheapest for its
    value) a highlighted line, the limit a dashed vertical line; ``background`` ``(costs,
    values)``, e.g. every cell of a table, is drawn faintly behind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(len(panels), 2)
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4 * rows), squeeze=False)
    try:
        for ax, p in zip(axes.flat, panels):
            if p.get("background") is not None:
                bc, bv = p["background"]
                ax.scatter(bc, bv, s=2, color="0.8", alpha=0.5, label="all cells", rasterized=True)
            c, v = np.asarray(p["costs"], dtype=float), np.asarray(p["values"], dtype=float)
            ax.scatter(c, v, s=14, color="C0", alpha=0.7, label="evaluated")
            front = pareto_front(c, v)
            if front.size:
                ax.step(c[front], v[front], where="post", color="C3", lw=1.5)
                ax.scatter(c[front], v[front], s=30, color="C3", zorder=3, label="Pareto front")
            ax.axvline(p["limit"], color="k", ls="--", lw=1, label=f"limit {p['limit']:.4g}")
            ax.set_xlabel(_COST_AXIS.get(p["cost"], p["cost"]))
            ax.set_ylabel("value")
            ax.set_title(p.get("title", ""), fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
        for ax in list(axes.flat)[len(panels) :]:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    return Path(path)


# -- search reports -----------------------------------------------------------------------------
def plot_best_so_far(values: list[float | None], path: str | Path, title: str = "") -> None:
    """Each trial's value (dots; failures left out) and the best value so far (line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(1, len(values) + 1)
    v = np.array([np.nan if a is None else a for a in values], dtype=float)
    best = np.fmax.accumulate(v)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(x, v, s=12, alpha=0.6, label="trial")
    ax.step(x, best, where="post", color="C3", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("value")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- training runs --------------------------------------------------------------------------------
def plot_training_curve(history: Sequence, path: str | Path, title: str = "") -> Path:
    """A training run's curve: mean train loss (left axis) and validation accuracy in percent
    (right axis) per epoch; ``history`` holds records with ``epoch``, ``train_loss``, ``val_acc``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r.epoch for r in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    try:
        ax.plot(epochs, [r.train_loss for r in history], color="C0", marker="." if len(epochs) < 50 else None)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("train loss", color="C0")
        ax.grid(alpha=0.3)
        acc = ax.twinx()
        acc.plot(epochs, [r.val_acc for r in history], color="C3", marker="." if len(epochs) < 50 else None)
        acc.set_ylabel("validation accuracy (%)", color="C3")
        ax.set_title(title, fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    return Path(path)


def draw_dag(space, arch, path: str | Path, title: str = "") -> None:
    """Draw the DAG view of ``arch`` (nodes laid out by depth, labelled with their type)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dag = space.to_dag(arch)
    depth = [0] * dag.num_nodes
    for s, d in dag.edges:
        depth[d] = max(depth[d], depth[s] + 1)
    depth[-1] = max(depth) if dag.num_nodes > 1 else 0
    layers: dict[int, list[int]] = defaultdict(list)
    for v, k in enumerate(depth):
        layers[k].append(v)
    pos = {v: (k, i - (len(vs) - 1) / 2) for k, vs in layers.items() for i, v in enumerate(vs)}
    fig, ax = plt.subplots(figsize=(1.8 * (max(depth) + 1) + 1, 1.2 * max(len(v) for v in layers.values()) + 1.5))
    for s, d in dag.edges:
        (x0, y0), (x1, y1) = pos[s], pos[d]
        ax.annotate(
            "", xy=(x1, y1), xytext=(x0, y0), arrowprops=dict(arrowstyle="->", color="0.4", shrinkA=18, shrinkB=18)
        )
    for v, (x, y) in pos.items():
        name = space.node_type_names[dag.node_types[v]]
        color = "#cde" if name in ("input", "output") else "#fed"
        ax.text(x, y, name, ha="center", va="center", fontsize=8, bbox=dict(boxstyle="round", fc=color, ec="0.3"))
    ax.set_xlim(-0.7, max(depth) + 0.7)
    ys = [y for _, y in pos.values()]
    ax.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
    ax.axis("off")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_search_report(
    study,
    space,
    out: str | Path,
    title: str = "",
    notes: Sequence[str] = (),
    test_for_best_only: bool = False,
    constraints=None,
    background: Mapping | None = None,
) -> Path:
    """Write ``out/report.md`` with the best-so-far plot, the best architecture drawn as a
    picture and the table of evaluations (also ``out/trials.csv``). Returns the report path.

    ``notes`` are paragraphs put under the title (the dataset, the surrogate checkpoint, ...).
    With ``test_for_best_only`` the test metric appears for the chosen architecture only, not
    in the table (searches with real training: the test split is for the final report).
    With active ``constraints`` (bound to a cost model) it also draws ``out/pareto.png``: the
    evaluated cells' value against each limited cost, their Pareto front highlighted, and
    ``background`` (architecture -> value, e.g. a benchmark task's table) faintly behind."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trials = [t for t in study.trials() if t.status != "asked"]
    study.export_csv(out / "trials.csv")
    target = study.target_fidelity() if hasattr(study, "target_fidelity") else None
    # a multi-fidelity study: the best so far at the target fidelity (other fidelities' values carry it)
    plot_best_so_far(
        [t.value if target is None or t.extra.get("fidelity") == target else None for t in trials],
        out / "best_so_far.png",
        title,
    )
    lines = [f"# grabnas search report{': ' + title if title else ''}", ""]
    for note in notes:
        lines += [note, ""]
    done = [t for t in trials if t.status == "done" and t.value is not None]
    if constraints is not None and constraints.active and done:
        archs = [space.parse(t.arch) for t in done]
        back = list(background) if background else []
        panels = [
            dict(
                title=f"{len(archs)} cells evaluated",
                cost=cost,
                limit=limit,
                costs=constraints.cost_model.costs(archs, cost),
                values=np.array([t.value for t in done]),
                background=(constraints.cost_model.costs(back, cost), np.array([background[a] for a in back]))
                if back
                else None,
            )
            for cost, limit in constraints.limits().items()
        ]
        plot_pareto(panels, out / "pareto.png")
        lines += ["![value against cost, Pareto front](pareto.png)", ""]
    best = study.best(1)
    if best:
        b = best[0]
        arch = space.parse(b.arch)
        if space.name == "nb201":
            from grabnas.export import draw_cell

            draw_cell(arch, out / "best_cell.png", title=b.arch)
        else:
            draw_dag(space, arch, out / "best_cell.png", title=b.arch)
        test = "" if b.test_value is None else f", test {b.test_value:.4g}"
        lines += [f"Best of {len(trials)} trials: `{b.arch}` — value {b.value:.4g}{test} (trial {b.id}).", ""]
        lines += ["![best architecture](best_cell.png)", "", "![best so far](best_so_far.png)", ""]
    fmt = lambda x: "" if x is None else f"{x:.4g}"  # noqa: E731
    if test_for_best_only:
        lines += ["| trial | architecture | status | value | cost | error |", "|---|---|---|---|---|---|"]
        for t in trials:
            lines.append(
                f"| {t.id} | `{_md_escape(t.arch)}` | {_status(t)} | {fmt(t.value)} | {fmt(t.cost)} | {_md_escape(' '.join((t.error or '').split()))} |"
            )
    else:
        lines += ["| trial | architecture | status | value | test | cost | error |", "|---|---|---|---|---|---|---|"]
        for t in trials:
            lines.append(
                f"| {t.id} | `{_md_escape(t.arch)}` | {_status(t)} | {fmt(t.value)} | {fmt(t.test_value)} | {fmt(t.cost)} | {t.error or ''} |"
            )
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _status(trial) -> str:
    """A trial's status, with its fidelity in a multi-fidelity study (``done @12ep``)."""
    fidelity = trial.extra.get("fidelity") if isinstance(trial.extra, dict) else None
    return f"{trial.status} @{fidelity}" if fidelity else trial.status


def _md_escape(text: str) -> str:
    """Escape ``|`` so that NB201 strings stay in one Markdown table cell."""
    return text.replace("|", "\\|")
