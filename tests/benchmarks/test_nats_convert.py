"""convert_nats_topology on small benchmarks written in the real NATS-Bench topology format.

The files are built with nats_bench's own ArchResults / ResultsCount / pickle_save, in both
layouts the API reads: the single ``.pickle.pbz2`` file (full loader) and the fast-mode
directory (``meta.pickle.pbz2`` + ``NNNNNN.pickle.pbz2``).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

nats_bench = pytest.importorskip("nats_bench")
from nats_bench import ArchResults, ResultsCount, pickle_save  # noqa: E402

from grabnas.benchmarks.nats_convert import COLUMNS, convert_nats_topology  # noqa: E402
from grabnas.errors import BenchmarkFileError, GrabnasError  # noqa: E402
from grabnas.spaces.nb201 import NB201Space  # noqa: E402

# Indices 0-3 of the official benchmark (same strings as rows 0-3 of nb201_accuracies.csv).
ARCHS = [
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|",
    "|avg_pool_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|skip_connect~2|",
]
NASLIB = [(4, 3, 3, 0, 0, 0), (2, 2, 0, 4, 2, 0), (4, 2, 4, 2, 4, 4), (4, 0, 1, 1, 1, 0)]

#: the splits each dataset is evaluated on in NATS-Bench
SPLITS = {
    "cifar10-valid": ("x-valid", "ori-test"),
    "cifar10": ("ori-test",),
    "cifar100": ("x-valid", "x-test", "ori-test"),
    "ImageNet16-120": ("x-valid", "x-test", "ori-test"),
}
SEEDS = {"12": (111, 777), "200": (777, 888, 999)}
EPOCHS = {"12": 12, "200": 200}
_DS = {"cifar10-valid": 0, "cifar10": 1, "cifar100": 2, "ImageNet16-120": 3}
_SET = {"x-valid": 0, "ori-test": 1, "x-test": 2}


def acc(index: int, hp: str, dataset: str, split: str, seed: int) -> float:
    """A distinct, known final-epoch accuracy for every (index, hp, dataset, split, seed)."""
    return 20.0 + 10 * index + (30.0 if hp == "200" else 0.0) + 2.5 * _DS[dataset] + 0.75 * _SET[split] + seed / 1000


def expected(index: int, hp: str, dataset: str, split: str) -> float:
    values = [acc(index, hp, dataset, split, s) for s in SEEDS[hp]]
    return sum(values) / len(values)  # nats_bench's mean over seeds, same order


def trial(index: int, hp: str, dataset: str, seed: int) -> ResultsCount:
    epochs = EPOCHS[hp]
    r = ResultsCount(
        dataset,
        None,
        {e: 10.0 + e / epochs for e in range(epochs)},
        {e: 2.0 - e / epochs for e in range(epochs)},
        0.5,
        50.0,
        {"channel": 16, "num_cells": 5, "arch_str": ARCHS[index], "class_num": 10},
        seed,
        epochs,
        [0.01],
    )
    accs, losses, times = {}, {}, {}
    for split in SPLITS[dataset]:
        final = acc(index, hp, dataset, split, seed)
        for e in range(epochs):
            key = f"{split}@{e}"
            accs[key] = final if e == epochs - 1 else final - 5.0  # only the last epoch counts
            losses[key] = 1.0
            times[key] = 0.1
    r.update_eval(accs, losses, times)
    return r


def arch_record(index: int, hps=("12", "200")) -> dict:
    """{hp: ArchResults state dict}, the per-architecture record of NATS-Bench."""
    record = {}
    for hp in hps:
        res = ArchResults(index, ARCHS[index])
        for dataset in SPLITS:
            for seed in SEEDS[hp]:
                res.update(dataset, seed, trial(index, hp, dataset, seed))
        record[hp] = res.state_dict()
    return record


# index 3 has only the 200-epoch record: its 12-epoch cells must come out empty
RECORDS = {0: arch_record(0), 1: arch_record(1), 2: arch_record(2), 3: arch_record(3, hps=("200",))}


@pytest.fixture(scope="module")
def full_file(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("nats") / "NATS-tss-v1_0-3ffb9"
    data = {"meta_archs": ARCHS, "arch2infos": RECORDS, "evaluated_indexes": sorted(RECORDS)}
    pickle_save(data, str(base) + ".pickle")  # pickle_save appends .pbz2
    return Path(str(base) + ".pickle.pbz2")


@pytest.fixture(scope="module")
def fast_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("nats") / "NATS-tss-v1_0-3ffb9-simple"
    d.mkdir()
    pickle_save({"meta_archs": ARCHS, "avaliable_hps": ["12", "200"]}, str(d / "meta.pickle"))
    for i, record in RECORDS.items():
        if i != 2:  # index 2 has no file: an all-empty row
            pickle_save(record, str(d / f"{i:06d}.pickle"))
    return d


COLUMN_CALLS = {
    "cifar10_test_200ep": ("200", "cifar10", "ori-test"),
    "cifar100_test_200ep": ("200", "cifar100", "x-test"),
    "imagenet16_test_200ep": ("200", "ImageNet16-120", "x-test"),
    "cifar10_test_12ep": ("12", "cifar10", "ori-test"),
    "cifar10valid_val_12ep": ("12", "cifar10-valid", "x-valid"),
    "cifar100_test_12ep": ("12", "cifar100", "x-test"),
    "cifar100_val_12ep": ("12", "cifar100", "x-valid"),
    "imagenet16_test_12ep": ("12", "ImageNet16-120", "x-test"),
    "imagenet16_val_12ep": ("12", "ImageNet16-120", "x-valid"),
}


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def check_rows(rows: list[dict[str, str]], missing_index: int | None) -> None:
    space = NB201Space()
    assert [int(r["nb201_index"]) for r in rows] == list(range(len(ARCHS)))
    for i, row in enumerate(rows):
        assert row["arch_str"] == ARCHS[i]
        assert row["naslib_op_indices"] == str(NASLIB[i])
        assert row["naslib_op_indices"] == str(space.parse(row["arch_str"]).naslib_indices())
        for column, (hp, dataset, split) in COLUMN_CALLS.items():
            if i == missing_index or (i == 3 and hp == "12"):
                assert row[column] == "", (i, column)
            else:
                assert float(row[column]) == expected(i, hp, dataset, split), (i, column)


def test_full_file(full_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "nb201_accuracies.csv"
    with pytest.warns(UserWarning, match="empty accuracy cell"):
        n = convert_nats_topology(full_file, out, progress=False)
    assert n == len(ARCHS)
    header, rows = read_csv(out)
    assert header == list(COLUMNS)
    check_rows(rows, missing_index=None)
    # the metric calls the converter documents agree with the API on this file
    api = nats_bench.create(str(full_file), "tss", fast_mode=False, verbose=False)
    info = api.get_more_info(1, "cifar10-valid", hp="12", is_random=False)
    assert float(rows[1]["cifar10valid_val_12ep"]) == info["valid-accuracy"]
    assert out.read_text().splitlines()[1].endswith(rows[0]["imagenet16_val_12ep"])


def test_full_file_without_suffix(full_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "t.csv"
    with pytest.warns(UserWarning):
        convert_nats_topology(str(full_file)[: -len(".pickle.pbz2")], out, fast_mode=False, progress=True)
    check_rows(read_csv(out)[1], missing_index=None)


def test_fast_mode_directory(fast_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "fast.csv"
    with pytest.warns(UserWarning, match="1 of 4 architectures have no record"):
        n = convert_nats_topology(fast_dir, out, progress=False)  # fast_mode inferred
    assert n == len(ARCHS)
    header, rows = read_csv(out)
    assert header == list(COLUMNS)
    check_rows(rows, missing_index=2)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkFileError, match="not found") as err:
        convert_nats_topology(tmp_path / "nope", tmp_path / "o.csv", progress=False)
    assert "\n" not in str(err.value) and "NATS-tss-v1_0-3ffb9" in str(err.value)
    assert not (tmp_path / "o.csv").exists()


def test_unreadable_file(tmp_path: Path) -> None:
    bad = tmp_path / "NATS-tss-v1_0-3ffb9.pickle.pbz2"
    bad.write_bytes(b"this is not a bz2 pickle")
    with pytest.raises(BenchmarkFileError, match="cannot read") as err:
        convert_nats_topology(bad, tmp_path / "o.csv", progress=False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "o.csv.part").exists()


def test_wrong_mode_and_layout(full_file: Path, tmp_path: Path) -> None:
    with pytest.raises(BenchmarkFileError, match="fast_mode=True"):
        convert_nats_topology(full_file, tmp_path / "o.csv", fast_mode=True, progress=False)
    with pytest.raises(BenchmarkFileError, match="meta.pickle.pbz2"):
        convert_nats_topology(tmp_path, tmp_path / "o.csv", progress=False)


def test_not_a_topology_benchmark(tmp_path: Path) -> None:
    base = tmp_path / "sss"
    pickle_save({"meta_archs": ["8:8:8:8:8"], "arch2infos": {}, "evaluated_indexes": []}, str(base))
    with pytest.raises(BenchmarkFileError, match="not an NB201 cell string"):
        convert_nats_topology(str(base) + ".pbz2", tmp_path / "o.csv", progress=False)
    assert not (tmp_path / "o.csv").exists()


def test_nats_bench_not_installed(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "nats_bench", None)
    with pytest.raises(GrabnasError, match="pip install nats_bench"):
        convert_nats_topology(tmp_path, tmp_path / "o.csv", progress=False)


# --- crafted pickles: the allow-list unpickler refuses them before any code runs ---


class _Payload:
    """Unpickles to ``func(*args)``: what a crafted benchmark file would run under plain pickle."""

    def __init__(self, func, args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker: Path) -> dict[str, _Payload]:
    import os
    import subprocess

    return {
        "system": _Payload(os.system, (f"touch {marker}",)),
        "exec": _Payload(exec, (f"open({str(marker)!r}, 'w').close()",)),
        "subprocess": _Payload(subprocess.call, (["touch", str(marker)],)),
    }


def _check_refused(err: pytest.ExceptionInfo, path: Path, global_name: str, marker: Path) -> None:
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg and global_name in msg and "holds a pickle that calls" in msg
    assert "expected NATS-Bench data" in msg
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["system", "exec", "subprocess"])
def test_crafted_full_file_is_refused(kind: str, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    base = tmp_path / "NATS-tss-v1_0-3ffb9"
    bad_record = {"12": _payloads(marker)[kind]}
    pickle_save({"meta_archs": ARCHS, "arch2infos": {0: bad_record}, "evaluated_indexes": [0]}, str(base) + ".pickle")
    src = Path(str(base) + ".pickle.pbz2")
    with pytest.raises(BenchmarkFileError) as err:
        convert_nats_topology(src, tmp_path / "o.csv", progress=False)
    _check_refused(err, src, kind, marker)
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "o.csv.part").exists()


@pytest.mark.parametrize("kind", ["system", "exec", "subprocess"])
@pytest.mark.parametrize("where", ["meta", "arch"])
def test_crafted_fast_mode_file_is_refused(kind: str, where: str, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    d = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    d.mkdir()
    payload = _payloads(marker)[kind]
    meta = {"meta_archs": payload if where == "meta" else ARCHS, "avaliable_hps": ["12", "200"]}
    pickle_save(meta, str(d / "meta.pickle"))
    pickle_save(RECORDS[0], str(d / "000000.pickle"))
    pickle_save({"12": RECORDS[1]["12"], "200": payload}, str(d / "000001.pickle"))
    bad = d / ("meta.pickle.pbz2" if where == "meta" else "000001.pickle.pbz2")
    with pytest.raises(BenchmarkFileError) as err:
        convert_nats_topology(d, tmp_path / "o.csv", progress=False)
    _check_refused(err, bad, kind, marker)
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "o.csv.part").exists()


def test_crafted_file_through_cli(tmp_path: Path, capsys) -> None:
    from grabnas.cli import main

    marker = tmp_path / "MARKER"
    base = tmp_path / "NATS-tss-v1_0-3ffb9"
    pickle_save({"meta_archs": _payloads(marker)["system"]}, str(base) + ".pickle")
    src = Path(str(base) + ".pickle.pbz2")
    assert main(["nb201", "convert", str(src), "--out", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grabnas: error: ") and err.count("\n") == 1
    assert str(src) in err and "system" in err and "expected NATS-Bench data" in err
    assert not marker.exists() and not (tmp_path / "o.csv").exists()


def test_a_record_that_is_a_path_is_refused(tmp_path: Path) -> None:
    """nats_bench's ArchResults would load a str record as a file with plain pickle."""
    base = tmp_path / "NATS-tss-v1_0-3ffb9"
    pickle_save({"meta_archs": ARCHS, "arch2infos": {0: {"12": "/x/evil"}}, "evaluated_indexes": [0]}, str(base))
    with pytest.raises(BenchmarkFileError, match="not a dict of dicts"):
        convert_nats_topology(str(base) + ".pbz2", tmp_path / "o.csv", progress=False)


def _numpy_record(index: int) -> dict:
    """RECORDS[index] with numpy scalars / arrays and OrderedDicts where the release may hold them."""
    import collections

    import numpy as np

    record = {}
    for hp, state in RECORDS[index].items():
        state = dict(state)
        results = {}
        for key, r in state["all_results"].items():
            r = dict(r)
            r["eval_acc1es"] = collections.OrderedDict((k, np.float64(v)) for k, v in r["eval_acc1es"].items())
            r["latency"] = np.array([0.01, 0.02])
            r["flop"] = np.float32(50.0)
            results[key] = r
        state["all_results"] = results
        record[hp] = state
    return record


def test_numpy_and_ordered_dict_content_is_read(tmp_path: Path) -> None:
    d = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    d.mkdir()
    pickle_save({"meta_archs": ARCHS, "avaliable_hps": ["12", "200"]}, str(d / "meta.pickle"))
    for i in RECORDS:
        if i != 2:
            pickle_save(_numpy_record(i), str(d / f"{i:06d}.pickle"))
    out = tmp_path / "o.csv"
    with pytest.warns(UserWarning):
        convert_nats_topology(d, out, progress=False)
    check_rows(read_csv(out)[1], missing_index=2)


def test_trust_pickle_reads_a_foreign_global(tmp_path: Path, capsys) -> None:
    import datetime

    from grabnas.cli import main

    base = tmp_path / "NATS-tss-v1_0-3ffb9"
    record = {hp: dict(state, stamp=datetime.date(2021, 1, 1)) for hp, state in RECORDS[0].items()}
    pickle_save({"meta_archs": ARCHS, "arch2infos": {0: record}, "evaluated_indexes": [0]}, str(base) + ".pickle")
    src = Path(str(base) + ".pickle.pbz2")
    with pytest.raises(BenchmarkFileError, match="calls datetime.date"):
        convert_nats_topology(src, tmp_path / "o.csv", progress=False)
    out = tmp_path / "trusted.csv"
    with pytest.warns(UserWarning):
        assert main(["nb201", "convert", str(src), "--out", str(out), "--trust-pickle"]) == 0
    rows = read_csv(out)[1]
    assert float(rows[0]["cifar10_test_200ep"]) == expected(0, "200", "cifar10", "ori-test")
    assert rows[1]["cifar10_test_200ep"] == ""
