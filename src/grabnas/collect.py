"""Collect a meta-training corpus: train sampled NB201 cells on many image tasks.

Each task (a :class:`~grabnas.data.TaskSpec`: dataset, classes, split seed, optional resize)
gets ``n_archs`` architectures: ``shared_archs`` of them are the same in every task (so tasks
can be compared architecture by architecture) and the rest are drawn for that task alone.
Every (task, architecture) pair is one training with the trial seed
``child_seed(master_seed, task name, arch string) % 2**31``; a row of the CSV is reproduced by::

    train_and_evaluate(arch, TaskSpec.parse(row["task"]).split(), recipe.with_seed(row["seed"]))

Rows are appended to the CSV as they finish, so the collection is resumable: rerunning skips
the (task, arch) pairs already in the file (failed ones too, unless ``retry_failed``). A JSON
card next to the CSV records the recipe, the tasks, the seeds, the wall time of every run and
the machine.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import datetime as _dt
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grabnas.data.tasks import TaskSpec
from grabnas.errors import GrabnasError
from grabnas.evaluation.executors import Executor, InProcessExecutor
from grabnas.evaluation.training import TrainingEvaluator
from grabnas.seeding import child_seed
from grabnas.spaces.nb201 import EDGES, OPS, NB201Arch
from grabnas.train.recipe import TrainConfig, TrainResult

COLUMNS = (
    "task",
    "dataset",
    "classes",
    "n_classes",
    "image_size",
    "arch",
    "val_acc",
    "test_acc",
    "train_seconds",
    "params",
    "flops",
    "status",
    "error",
    "seed",
    "split_seed",
)
CARD_FORMAT = "grabnas-corpus/1"
#: the corpus shipped with the package
SHIPPED_CORPUS = Path(__file__).resolve().parent / "corpora" / "images-nb201.csv"


def card_path(csv_path: str | os.PathLike) -> Path:
    """The JSON card that goes with a corpus CSV (same name, ``.json``)."""
    return Path(csv_path).with_suffix(".json")


def arch_from_index(index: int) -> NB201Arch:
    """The ``index``-th NB201 cell (0..15624) in the order of ``NB201Space.enumerate``."""
    n = len(EDGES)
    digits = [(index // len(OPS) ** (n - 1 - k)) % len(OPS) for k in range(n)]
    return NB201Arch(tuple(OPS[d] for d in digits))


def plan_archs(tasks: Sequence[TaskSpec], n_archs: int, shared_archs: int, seed: int) -> dict[str, list[NB201Arch]]:
    """Architectures per task: ``shared_archs`` common to all, the rest drawn per task (all distinct)."""
    if n_archs < 1 or not 0 <= shared_archs <= n_archs:
        raise GrabnasError(f"need archs >= 1 and 0 <= shared archs <= archs, got {n_archs} and {shared_archs}")
    total = len(OPS) ** len(EDGES)
    shared_idx = np.random.default_rng(child_seed(seed, "shared-archs")).choice(total, size=shared_archs, replace=False)
    shared = [arch_from_index(int(i)) for i in shared_idx]
    plan = {}
    for task in tasks:
        rng = np.random.default_rng(child_seed(seed, "task-archs", task.name))
        own = rng.choice(total, size=n_archs, replace=False)
        extra = [int(i) for i in own if i not in set(shared_idx.tolist())][: n_archs - shared_archs]
        plan[task.name] = shared + [arch_from_index(i) for i in extra]
    return plan


def trial_seed(master_seed: int, task: TaskSpec, arch: NB201Arch) -> int:
    return child_seed(master_seed, task.name, arch.to_string()) % (2**31)


def read_rows(csv_path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a corpus CSV (empty if the file does not exist)."""
    path = Path(csv_path)
    if not path.exists():
        return []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"task", "arch", "status"} - set(reader.fieldnames or ())
        if missing:
            raise GrabnasError(
                f"{path}: not a corpus CSV (missing column {sorted(missing)[0]!r}); expected columns {', '.join(COLUMNS)}"
            )
        return list(reader)


def load_corpus(csv_path: str | os.PathLike | None = None):
    """A corpus as a list of dicts with typed values (default: the corpus shipped with grabnas).

    The last row of each (task, arch) pair wins; failed rows have ``val_acc = None``.
    """
    path = Path(csv_path) if csv_path is not None else SHIPPED_CORPUS
    if not path.exists():
        raise GrabnasError(f"{path}: no such corpus; expected a CSV written by grabnas collect")
    out: dict[tuple[str, str], dict] = {}
    for r in read_rows(path):
        row: dict = dict(r)
        for k in ("val_acc", "test_acc", "train_seconds"):
            row[k] = float(r[k]) if r.get(k) not in (None, "") else None
        for k in ("n_classes", "params", "flops", "seed", "split_seed", "image_size"):
            row[k] = int(r[k]) if r.get(k) not in (None, "") else None
        out[(r["task"], r["arch"])] = row
    return list(out.values())


def machine_info() -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


@dataclass
class CollectSummary:
    csv_path: Path
    card_path: Path
    rows_total: int
    rows_added: int
    failed: int
    wall_seconds: float


def _row(task: TaskSpec, arch: NB201Arch, result: TrainResult, seed: int, n_classes: int) -> dict:
    def num(x, digits=4):
        return "" if x is None else (round(float(x), digits) if isinstance(x, float) else x)

    return {
        "task": task.name,
        "dataset": task.dataset,
        "classes": "all" if task.classes is None else " ".join(str(c) for c in task.classes),
        "n_classes": n_classes,
        "image_size": "" if task.image_size is None else task.image_size,
        "arch": arch.to_string(),
        "val_acc": num(result.val_acc),
        "test_acc": num(result.test_acc),
        "train_seconds": num(result.train_seconds, 3),
        "params": num(result.params),
        "flops": num(result.flops),
        "status": result.status,
        "error": (result.error or "").replace("\n", " "),
        "seed": seed,
        "split_seed": task.seed,
    }


def collect(
    tasks: Sequence[TaskSpec],
    config: TrainConfig,
    csv_path: str | os.PathLike,
    n_archs: int = 30,
    shared_archs: int = 10,
    master_seed: int = 0,
    executor: Executor | None = None,
    progress: bool = True,
    retry_failed: bool = False,
    command: str | None = None,
) -> CollectSummary:
    """Train every planned (task, arch) pair not yet in ``csv_path``; append rows; write the card.

    All tasks are loaded (and validated) before anything is trained.
    """
    if not tasks:
        raise GrabnasError("no tasks to collect; expected at least one")
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise GrabnasError("the same task is listed twice; expected distinct tasks")
    csv_path = Path(csv_path)
    if csv_path.suffix.lower() != ".csv":
        raise GrabnasError(f"{csv_path}: the corpus file must end in .csv")
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    evaluators = {t.name: TrainingEvaluator(t, config, seed_per_arch=False) for t in tasks}  # validates all data
    plan = plan_archs(tasks, n_archs, shared_archs, master_seed)
    existing = read_rows(csv_path)
    done = {(r["task"], r["arch"]) for r in existing if r["status"] == "ok" or not retry_failed}
    todo = [(t, a) for t in tasks for a in plan[t.name] if (t.name, a.to_string()) not in done]

    card_file = card_path(csv_path)
    card = _read_card(card_file)
    if existing and card:
        _check_same_recipe(card, config, master_seed, csv_path)
    run_info = {
        "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "pending_at_start": len(todo),
        "executor": type(executor or InProcessExecutor()).__name__,
        "workers": getattr(executor, "max_workers", 1),
        "machine": machine_info(),
        "command": command,
    }
    card.update(_card_static(tasks, config, evaluators, n_archs, shared_archs, master_seed, csv_path))
    card.setdefault("runs", []).append(run_info)
    _write_card(card_file, card, existing)

    start = time.perf_counter()
    added = 0
    failed = 0
    own_executor = executor is None
    executor = executor or InProcessExecutor()
    bar = _progress_bar(len(todo), progress)
    new_file = not csv_path.exists() or csv_path.stat().st_size == 0
    try:
        with csv_path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            if new_file:
                writer.writeheader()
                f.flush()
            window = 1 if isinstance(executor, InProcessExecutor) else 2 * max(1, executor.max_workers)
            queue = list(reversed(todo))
            inflight: dict[cf.Future, tuple[TaskSpec, NB201Arch, int]] = {}
            best = None
            while queue or inflight:
                while queue and len(inflight) < window:
                    task, arch = queue.pop()
                    seed = trial_seed(master_seed, task, arch)
                    ev = evaluators[task.name].with_config(config.with_seed(seed))
                    inflight[executor.submit(ev, arch)] = (task, arch, seed)
                finished, _ = cf.wait(list(inflight), return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    task, arch, seed = inflight.pop(fut)
                    try:
                        result = fut.result()
                    except cf.BrokenExecutor:
                        raise GrabnasError(
                            "a worker process died (out of memory?); the rows so far are saved, rerun the same command to resume"
                        ) from None
                    except Exception as e:  # an error outside the evaluator (e.g. Ray): record it as a failure
                        result = TrainResult.failed(f"{type(e).__name__}: {' '.join(str(e).split())[:300]}")
                    writer.writerow(_row(task, arch, result, seed, evaluators[task.name].split.num_classes))
                    f.flush()
                    added += 1
                    failed += not result.ok
                    if result.ok and (best is None or result.val_acc > best):
                        best = result.val_acc
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix_str(
                            f"{task.name} val={f'{result.val_acc:.1f}' if result.ok else 'failed'} fails={failed}"
                        )
    finally:
        if bar is not None:
            bar.close()
        if own_executor:
            executor.shutdown()
        wall = time.perf_counter() - start
        run_info["finished"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        run_info["wall_seconds"] = round(wall, 1)
        run_info["rows_added"] = added
        rows = read_rows(csv_path)
        _write_card(card_file, card, rows)
    return CollectSummary(csv_path, card_file, len(rows), added, failed, wall)


#: recipe fields that only decide where and how fast a run goes, not what it computes
_EXECUTION_FIELDS = ("device", "num_threads", "eval_batch_size", "seed")


def _check_same_recipe(card: dict, config: TrainConfig, master_seed: int, csv_path: Path) -> None:
    old = {k: v for k, v in (card.get("recipe") or {}).items() if k not in _EXECUTION_FIELDS}
    new = {k: v for k, v in config.to_dict().items() if k not in _EXECUTION_FIELDS}
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if diff:
        k = diff[0]
        raise GrabnasError(
            f"{csv_path} was collected with {k}={old.get(k)!r}, not {new.get(k)!r}; use the same recipe to resume or another --out"
        )
    if card.get("master_seed", master_seed) != master_seed:
        raise GrabnasError(
            f"{csv_path} was collected with seed {card['master_seed']}, not {master_seed}; use the same seed to resume or another --out"
        )


def _progress_bar(total: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="collect", unit="trial", dynamic_ncols=True)


def _read_card(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise GrabnasError(f"{path}: the corpus card is not valid JSON; fix or delete it") from None


def _card_static(tasks, config, evaluators, n_archs, shared_archs, master_seed, csv_path) -> dict:
    plan = plan_archs(tasks, n_archs, shared_archs, master_seed)
    task_info = []
    for t in tasks:
        s = evaluators[t.name].split
        task_info.append(
            {
                "name": t.name,
                "dataset": t.dataset,
                "classes": None if t.classes is None else list(t.classes),
                "split_seed": t.seed,
                "image_size": t.image_size,
                "image_shape": list(s.image_shape),
                "n_train": len(s.train),
                "n_val": len(s.val),
                "n_test": len(s.test),
            }
        )
    return {
        "format": CARD_FORMAT,
        "space": "nb201",
        "csv": csv_path.name,
        "columns": list(COLUMNS),
        "metric": "val_acc (percent, search signal); test_acc (percent, for reports)",
        "recipe": config.to_dict(),
        "master_seed": master_seed,
        "trial_seed": "child_seed(master_seed, task, arch) % 2**31; reproduce a row with "
        "train_and_evaluate(arch, TaskSpec.parse(task).split(), TrainConfig(**recipe).with_seed(seed))",
        "archs_per_task": n_archs,
        "shared_archs": [a.to_string() for a in plan[tasks[0].name][:shared_archs]],
        "tasks": task_info,
    }


def _write_card(path: Path, card: dict, rows: list[dict]) -> None:
    ok = sum(r["status"] == "ok" for r in rows)
    card["rows"] = len(rows)
    card["ok"] = ok
    card["failed"] = len(rows) - ok
    card["wall_seconds_total"] = round(sum(r.get("wall_seconds", 0.0) for r in card.get("runs", [])), 1)
    card["train_seconds_total"] = round(sum(float(r["train_seconds"] or 0) for r in rows), 1)
    card["n_tasks_with_rows"] = len({r["task"] for r in rows})
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, path)
