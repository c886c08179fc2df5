import numpy as np
import pytest

from grabnas.benchmarks import load_benchmark, nb201
from grabnas.benchmarks.nb201 import ENV_VAR, load_nb201
from grabnas.errors import BenchmarkFileError, UnknownTaskError

BEST_C10 = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"  # index 6111
)


def test_best_cifar10_cell_is_94_37(nb201_bench):
    arch = nb201_bench.space.parse(BEST_C10)
    assert nb201_bench.value(arch, "cifar10") == pytest.approx(94.3733, abs=1e-3)
    assert nb201_bench.optimum("cifar10") == pytest.approx(94.3733, abs=1e-3)
    assert nb201_bench.optimum("cifar100") == pytest.approx(73.5133, abs=1e-3)
    assert nb201_bench.optimum("imagenet16") == pytest.approx(47.3111, abs=1e-3)


def test_tasks_groups_and_pool(nb201_bench):
    assert nb201_bench.main_tasks == ("cifar10", "cifar100", "imagenet16")
    assert set(nb201_bench.tasks) - set(nb201_bench.main_tasks) == {"cifar10@12ep", "cifar100@12ep", "imagenet16@12ep"}
    assert nb201_bench.group("cifar10@12ep") == "cifar10"
    assert nb201_bench.other_tasks("cifar10") == ["cifar100", "imagenet16"]
    assert len(nb201_bench.pool("cifar10")) == 15625
    assert np.nanmax(nb201_bench.table("cifar10@12ep").report) == pytest.approx(89.16, abs=1e-2)


def test_env_var_and_folder_path(nb201_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(nb201_path.parent))
    b = load_benchmark("nb201")
    assert b.optimum("cifar100") == pytest.approx(73.5133, abs=1e-3)


def test_unknown_task(nb201_bench):
    with pytest.raises(UnknownTaskError, match="unknown task 'cifar1000'.*expected one of cifar10, cifar100"):
        nb201_bench.table("cifar1000")


def test_missing_table(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(BenchmarkFileError, match="NB201 table not found"):
        load_nb201(tmp_path / "nope.csv")
    # without a path or $GRABNAS_NB201 the shipped table is read; were it missing, say how to give one
    monkeypatch.setattr(nb201, "SHIPPED_TABLE", tmp_path / "gone.csv.xz")
    with pytest.raises(
        BenchmarkFileError, match="shipped with grabnas is missing.*pass --data PATH or set GRABNAS_NB201"
    ):
        load_nb201(None)


def test_malformed_tables(tmp_path, nb201_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(BenchmarkFileError, match="missing column"):
        load_nb201(bad)
    lines = nb201_path.read_text().splitlines()
    truncated = tmp_path / "trunc.csv"
    truncated.write_text("\n".join(lines[:100]) + "\n")
    with pytest.raises(BenchmarkFileError, match="has 99 of the 15625 NB201 cells"):
        load_nb201(truncated)
    garbled = tmp_path / "garbled.csv"
    garbled.write_text("\n".join([lines[0], lines[1].replace("avg_pool_3x3", "max_pool", 1)]) + "\n")
    with pytest.raises(BenchmarkFileError, match=r"line 2: unknown NB201 op 'max_pool'"):
        load_nb201(garbled)
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00\x01" * 10)
    with pytest.raises(BenchmarkFileError):
        load_nb201(binary)


def test_unknown_benchmark():
    from grabnas.errors import GrabnasError

    with pytest.raises(GrabnasError, match="expected nb201, nasbench-graph or csv:PATH"):
        load_benchmark("nb301")
