"""``grabnas bench`` (grabnas.cli.bench), and the one-line errors of a missing or bad table."""

import pytest

from grabnas.cli import main


def test_bench_cli_end_to_end(nb201_path, tmp_path, capsys):
    rc = main(
        [
            "bench",
            "--data",
            str(nb201_path),
            "--tasks",
            "cifar100",
            "--optimizers",
            "random,transfer-rank",
            "--seeds",
            "2",
            "--budget",
            "15",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "## cifar100 (2 seeds)" in out and "| transfer-rank |" in out
    assert (tmp_path / "results.csv").exists()


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["bench", "--benchmark", "nb999", "--out", "X"], "unknown benchmark 'nb999'"),
        (["bench", "--benchmark", "csv:/nonexistent.csv", "--out", "X"], "benchmark CSV not found"),
        (["bench", "--tasks", "mnist", "--out", "X"], "unknown task 'mnist'"),
        (["bench", "--optimizers", "sgd", "--tasks", "cifar10", "--out", "X"], "unknown optimizer 'sgd'"),
        (
            ["bench", "--optimizers", "grabnas,grabnas-mf[bar=none]", "--tasks", "cifar10", "--out", "X"],
            "grabnas-mf[bar=none] is a multi-fidelity optimizer, which grabnas bench",
        ),
    ],
)
def test_bad_input_is_one_line_and_nonzero(nb201_path, tmp_path, capsys, argv, fragment):
    argv = [a.replace("X", str(tmp_path / "o")) for a in argv] + ["--data", str(nb201_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("grabnas: error:") and fragment in err and "\n" not in err


def test_missing_table_message(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("GRABNAS_NB201", raising=False)
    assert main(["bench", "--data", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "NB201 table not found at" in capsys.readouterr().err
    monkeypatch.setenv("GRABNAS_NB201", str(tmp_path / "nowhere"))  # the env var overrides the shipped table too
    assert main(["search", "--task", "cifar10", "--budget", "2", "--study", str(tmp_path / "s.db")]) == 2
    assert "NB201 table not found at" in capsys.readouterr().err


def test_bench_cli_with_constraints(nb201_path, tmp_path, capsys):
    argv = ["bench", "--data", str(nb201_path), "--tasks", "cifar10", "--optimizers", "random", "--seeds", "1"]
    argv += ["--budget", "5", "--out", str(tmp_path), "--no-progress", "--max-flops", "50"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Regret = constrained optimum" in out and "- constraints: FLOPs <= 50 MFLOPs" in out
    assert f"and {tmp_path / 'pareto.png'}" in out
    for bad, fragment in (
        (["--max-flops", "0"], "--max-flops takes a positive number"),
        (["--max-params", "x"], "got 'x'"),
    ):
        assert main([*argv[:-2], *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("grabnas: error:") and fragment in err and "\n" not in err


def test_bench_cli_with_max_latency(nb201_path, tmp_path, capsys):
    import numpy as np

    from grabnas.train.cost import NB201_NETWORKS
    from grabnas.train.latency import sample_cells, table_from_measurements

    cells = sample_cells(40, 0)
    ms = 1.0 + np.array([0.0, 0.05, 0.6, 2.5, 0.4])[cells].sum(axis=1)
    info = {"kind": "cpu", "name": "test CPU", "torch": "0", "threads": 1}
    table = table_from_measurements(info, NB201_NETWORKS["cifar10"], 1, 0, 1, 0, 0.25, cells, ms)
    table.save(tmp_path / "lat.json")
    argv = ["bench", "--data", str(nb201_path), "--tasks", "cifar10", "--optimizers", "random", "--seeds", "1"]
    argv += ["--budget", "5", "--out", str(tmp_path / "b"), "--no-progress", "--max-flops", "100"]
    argv += ["--max-latency", "6", "--latency-table", str(tmp_path / "lat.json")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "- constraints: FLOPs <= 100 MFLOPs, latency <= 6 ms" in out
    with open(tmp_path / "b" / "results.csv") as f:
        import csv

        archs = [r["arch"] for r in csv.DictReader(f)]
    from grabnas.spaces import get_space

    assert (table.predict([get_space("nb201").parse(a) for a in archs]) <= 6).all()
    table_from_measurements({**info, "name": "other"}, NB201_NETWORKS["cifar10"], 1, 0, 1, 0, 0.25, cells, ms).save(
        tmp_path / "lat.json"
    )
    assert main(argv) == 2  # another table: the bench folder refuses it
    assert "other cost constraints" in capsys.readouterr().err
    assert main([*argv[:-4], "--max-latency", "6"]) == 2
    assert "--max-latency needs --latency-table" in capsys.readouterr().err
