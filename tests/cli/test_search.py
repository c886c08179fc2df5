"""``grabnas search`` (grabnas.cli.search) on benchmark tasks and on datasets, and ``grabnas study show``
on the study it writes."""

import numpy as np
import pytest

from grabnas.cli import main

# -- search --dataset (real training) -----------------------------------------------------------
TINY = ["--epochs", "1", "--channels", "4", "--cells", "1", "--no-progress"]


def _search(tmp_path, *extra, budget=2, dataset="digits[0,1,2]@3"):
    return main(
        [
            "search",
            "--dataset",
            dataset,
            "--budget",
            str(budget),
            "--study",
            str(tmp_path / "run.db"),
            "--out",
            str(tmp_path / "report"),
            *TINY,
            *extra,
        ]
    )


@pytest.fixture
def count_trainings(monkeypatch):
    import grabnas.evaluation.training as training

    calls = []
    real = training.train_and_evaluate

    def counting(arch, split, config):
        calls.append(str(arch))
        return real(arch, split, config)

    monkeypatch.setattr(training, "train_and_evaluate", counting)
    return calls


def test_search_dataset_end_to_end_and_resume(tmp_path, capsys, count_trainings):
    from grabnas.study import Study

    assert _search(tmp_path) == 0
    out = capsys.readouterr().out
    assert "using surrogate checkpoint nb201-all" in out
    assert "2 new evaluations (0 replayed" in out and "wall time" in out
    assert "validation accuracy: " in out and "test accuracy: " in out and "best architecture: |" in out
    report = (tmp_path / "report" / "report.md").read_text()
    assert (
        "surrogate checkpoint nb201-all" in report
        and "| trial | architecture | status | value | cost | error |" in report
    )
    with Study.load(tmp_path / "run.db") as st:
        assert st.settings()["dataset"] == "digits[0,1,2]@3" and st.settings()["epochs"] == 1
        assert st.settings()["optimizer"] == "grabnas" and st.settings()["surrogate"] == "nb201-all"
        assert st.info("surrogate")["checkpoint"] == "nb201-all"
        assert [t.status for t in st.trials()] == ["done", "done"]
    assert len(count_trainings) == 2
    # resume: the same command trains nothing again; a bigger budget trains only the new trials
    assert _search(tmp_path) == 0 and len(count_trainings) == 2
    assert "0 new evaluations (2 replayed" in capsys.readouterr().out
    assert _search(tmp_path, budget=3) == 0 and len(count_trainings) == 3
    assert "1 new evaluations (2 replayed" in capsys.readouterr().out
    # other settings are refused before any training
    assert _search(tmp_path, "--lr", "0.05", budget=4) == 2 and len(count_trainings) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("grabnas: error:") and "lr 0.1 there, 0.05 now" in err and "\n" not in err


def test_search_dataset_records_a_failed_trial_and_goes_on(tmp_path, capsys, monkeypatch):
    import grabnas.evaluation.training as training
    from grabnas.study import Study

    real = training.train_and_evaluate
    calls = []

    def faulty(arch, split, config):
        calls.append(arch)
        if len(calls) == 1:
            raise RuntimeError("simulated crash")
        return real(arch, split, config)

    monkeypatch.setattr(training, "train_and_evaluate", faulty)
    assert _search(tmp_path, budget=3) == 0
    assert "1 failed" in capsys.readouterr().out
    with Study.load(tmp_path / "run.db") as st:
        trials = st.trials()
    assert [t.status for t in trials] == ["failed", "done", "done"]
    assert "simulated crash" in trials[0].error and trials[0].value is None


def test_search_dataset_nan_training_is_a_failed_trial(tmp_path, capsys):
    from grabnas.study import Study

    assert _search(tmp_path, "--lr", "1e12", "--optimizer", "random") == 1  # nothing succeeded: non-zero
    err = capsys.readouterr().err.strip()
    assert err.startswith("grabnas: error: no evaluation succeeded (2 failed); the last error: ") and "\n" not in err
    with Study.load(tmp_path / "run.db") as st:
        assert {t.status for t in st.trials()} == {"failed"}


def test_search_dataset_same_error_in_a_row_stops_the_search(tmp_path, capsys, monkeypatch):
    """A broken set-up fails every trial the same way: the search stops after 5 instead of spending
    the budget, exits non-zero with the error, and a rerun after the fix resumes with the rest."""
    import grabnas.evaluation.training as training
    from grabnas.study import Study

    real = training.train_and_evaluate

    def broken(arch, split, config):
        raise RuntimeError("CUDA driver not found\n" + "x" * 5000)

    monkeypatch.setattr(training, "train_and_evaluate", broken)
    assert _search(tmp_path, "--optimizer", "random", budget=8) == 2
    err = capsys.readouterr().err.strip()
    assert "5 trials in a row failed with the same error" in err and "CUDA driver not found" in err
    assert "\n" not in err and len(err) < 1200  # one line, the 5,000-character error cut short
    with Study.load(tmp_path / "run.db") as st:
        assert st.count("failed") == 5 and st.count() == 5
    monkeypatch.setattr(training, "train_and_evaluate", real)
    assert _search(tmp_path, "--optimizer", "random", budget=8) == 0
    with Study.load(tmp_path / "run.db") as st:
        assert st.count("failed") == 5 and st.count("done") == 3
        failed = {t.arch for t in st.trials("failed")}
    # the cause is fixed: --retry-failed evaluates the five failed cells once more, within the budget
    capsys.readouterr()
    assert _search(tmp_path, "--optimizer", "random", "--retry-failed", budget=8) == 0
    assert "5 new evaluations (8 replayed" in capsys.readouterr().out
    with Study.load(tmp_path / "run.db") as st:
        assert st.count("failed") == 5 and st.count("done") == 8 and len(st.retried()) == 5
        retries = [t for t in st.trials("done") if "retry_of" in t.extra]
        assert {t.arch for t in retries} == failed
    # and a plain resume replays it all (the retries included) without evaluating anything
    assert _search(tmp_path, "--optimizer", "random", budget=8) == 0
    assert "0 new evaluations (13 replayed" in capsys.readouterr().out
    assert _search(tmp_path, "--optimizer", "random", "--retry-failed", budget=9) == 0  # nothing left to retry
    with Study.load(tmp_path / "run.db") as st:
        assert st.count("done") == 9 and len(st.retried()) == 5


@pytest.mark.parametrize(
    "device, fragment",
    [("cuda", "this PyTorch sees no CUDA GPU"), ("cdua", "unknown device 'cdua'"), ("meta:0", "cannot train networks")],
)
def test_search_dataset_bad_device_fails_before_any_trial(tmp_path, capsys, device, fragment):
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    assert _search(tmp_path, "--device", device) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("grabnas: error:") and fragment in err and "\n" not in err
    assert not (tmp_path / "run.db").exists()


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--dataset", "digits", "--task", "cifar10"], "--dataset and --task exclude each other"),
        (["--dataset", "digits", "--benchmark", "nb201"], "--dataset and --benchmark exclude each other"),
        ([], "nothing to search; pass --task NAME"),
        (["--task", "cifar10", "--image-size", "14"], "--image-size applies to --dataset searches"),
        (["--task", "cifar10", "--surrogate", "x.pt"], '--optimizer "grabnas[surrogate=PATH]"'),
        (["--dataset", "digits", "--optimizer", "transfer-rank"], "transfer-rank"),
        (["--dataset", "nosuchdataset"], "nosuchdataset"),
        (["--task", "cifar10", "--out", "{tmp}/file.txt"], "is a file; expected a folder for the report"),
    ],
)
def test_search_target_errors_are_one_line(tmp_path, capsys, argv, fragment):
    (tmp_path / "file.txt").write_text("not a folder")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["search", "--study", str(tmp_path / "s.db"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("grabnas: error:") and fragment in err and "\n" not in err
    assert not (tmp_path / "s.db").exists()


def test_search_benchmark_defaults_to_grabnas(nb201_path, tmp_path, capsys):
    from grabnas.study import Study

    db = tmp_path / "b.db"
    argv = [
        "search",
        "--data",
        str(nb201_path),
        "--task",
        "cifar10",
        "--budget",
        "3",
        "--study",
        str(db),
        "--no-progress",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "best value:" in out
    # the run says which surrogate it used, and that it never saw the target's dataset
    assert "surrogate checkpoint nb201-no-cifar10" in out and "never on 'cifar10'" in out
    # and how much the target's observations follow the meta-learned prior
    assert "the target's observations weight the meta-learned mean by " in out
    with Study.load(db) as st:
        assert st.settings() == {"benchmark": "nb201", "task": "cifar10", "optimizer": "grabnas", "seed": 0}
        assert len(st.trials("done")) == 3
        assert "cifar10" not in st.info("surrogate")["card"]["groups_seen"]
    assert "never on 'cifar10'" in (tmp_path / "b" / "report.md").read_text()
    # study show: the settings, the optimizer's own settings, the counts and the best trials in order
    assert main(["study", "show", str(db), "--top", "2"]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == f"{db}: {{'benchmark': 'nb201', 'task': 'cifar10', 'optimizer': 'grabnas', 'seed': 0}}"
    assert shown[1].startswith("optimizer settings: {'mode': 'hybrid'") and "'observation_noise': True" in shown[1]
    assert shown[2] == "3 done, 0 failed, 0 in flight" and len(shown) == 5
    first, second = (float(line.split()[1]) for line in shown[3:])
    assert shown[3].startswith("  1. ") and first >= second
    # the optimizer's own settings are recorded; a study searched under others is not resumed
    with Study.load(db) as st:
        recorded = st.info("optimizer_settings")
        assert recorded["observation_noise"] is True and recorded["acquisition"] == "logei"
        # and which surrogate: its adaptation options and a hash of its weights
        assert recorded["surrogate_options"] == {} and len(recorded["surrogate_weights"]) == 16
        st.set_info("optimizer_settings", {**recorded, "observation_noise": False})  # as an older default
    assert main([a if a != "3" else "4" for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("grabnas: error:") and "observation_noise False there, True now" in err and "\n" not in err
    with Study.load(db) as st:
        assert len(st.trials()) == 3  # nothing asked or lost
        # settings an older version did not record are recorded on resume, not refused
        st.set_info("optimizer_settings", {k: v for k, v in recorded.items() if not k.startswith("surrogate_")})
    assert main([a if a != "3" else "4" for a in argv]) == 0
    with Study.load(db) as st:
        assert st.info("optimizer_settings") == recorded and len(st.trials("done")) == 4


def test_multifidelity_search_on_a_csv_table_with_fidelity_columns(tmp_path, capsys):
    """A csv: table with TASK@Nep columns is searched at its fidelities (--epochs: the task
    column's); the study records each trial's fidelity, the best is at the target; a table
    without them, or a missing --low-epochs column, is refused in one line."""
    from grabnas.spaces import get_space
    from grabnas.study import Study

    cells = get_space("nb201").members()[:40]
    rng = np.random.default_rng(0)
    high = rng.normal(50, 10, len(cells))
    rows = [f"{a},{h:.3f},{h / 2 + rng.normal(0, 2):.3f},1.0,0.2" for a, h in zip(cells, high)]
    table = tmp_path / "mf.csv"
    table.write_text("arch,t,t@1ep,cost,cost@1ep\n" + "\n".join(rows) + "\n")
    db = tmp_path / "mf.db"
    argv = ["search", "--benchmark", f"csv:{table}", "--task", "t", "--optimizer", "asha-random", "--epochs", "5"]
    assert main([*argv, "--budget", "8", "--study", str(db), "--no-progress"]) == 0
    with Study.load(db) as st:
        assert st.settings()["fidelities"] == {"names": ["1ep", "5ep"], "epochs": [1, 5]}
        fids = [t.extra["fidelity"] for t in st.trials()]
        assert len(fids) == 8 and fids[0] == "1ep" and "5ep" in fids
        assert st.best(1)[0].extra["fidelity"] == "5ep"
    capsys.readouterr()
    assert main([*argv, "--low-epochs", "2", "--budget", "2", "--study", str(tmp_path / "x.db")]) == 2
    assert "has no 2-epoch fidelity; expected a column t@2ep" in capsys.readouterr().err
    plain = tmp_path / "plain.csv"
    plain.write_text("arch,t\n" + "\n".join(r.rsplit(",", 3)[0] for r in rows) + "\n")
    argv[2] = f"csv:{plain}"
    assert main([*argv, "--budget", "2", "--study", str(tmp_path / "y.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert "has no lower fidelity; expected a column t@Nep" in err and "\n" not in err


def test_transfer_line_reports_the_corpus_transferability_and_hints_where_it_is_low():
    from grabnas.cli.search import transfer_line

    assert transfer_line({"groups_seen": ["a"]}) is None  # an older card
    assert transfer_line({"heldout_residual": None}) is None
    high = transfer_line({"heldout_residual": 0.62})
    assert high.startswith("the meta-training datasets leave 62% of a left-out one's variance unexplained")
    assert "makes that share of its warm-up random" in high
    assert "expect little transfer" not in transfer_line({"heldout_residual": 0.09})


def test_meta_training_line_names_validation_datasets_apart():
    from grabnas.cli.search import meta_training_line

    card = {"groups_seen": ["a", "b", "c"], "train_groups": ["a", "b"], "meta_validation_groups": ["c"]}
    assert meta_training_line(card) == "meta-trained on datasets a, b (meta-validated on c)"
    assert meta_training_line({"groups_seen": ["a", "b"]}) == "meta-trained on datasets a, b"  # an older card
    many = {"train_groups": [f"d{i}" for i in range(20)]}
    assert meta_training_line(many) == "meta-trained on datasets d0, d1, d2, d3, d4, d5, ... (20 in all)"


def test_search_dataset_refuses_a_study_whose_data_files_changed(tmp_path, capsys):
    import numpy as np

    from grabnas.study import Study

    data = tmp_path / "data.npz"
    rng = np.random.default_rng(0)

    def write(classes: int) -> None:
        np.savez(data, images=rng.integers(0, 256, (60, 8, 8), dtype=np.uint8), labels=np.arange(60) % classes)

    write(3)
    argv = ("--optimizer", "random", "--image-size", "8")
    assert _search(tmp_path, *argv, budget=1, dataset=f"npz:{data}") == 0
    write(3)  # same spec, same shape, other pixels: a different dataset
    assert _search(tmp_path, *argv, budget=2, dataset=f"npz:{data}") == 2
    err = capsys.readouterr().err.strip()
    assert "was searched on other contents of" in err and "the files changed" in err and "\n" not in err
    with Study.load(tmp_path / "run.db") as st:
        assert st.count() == 1  # nothing asked on the other data


def test_search_dataset_ray_without_ray_leaves_no_study(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    assert _search(tmp_path, "--ray") == 2
    assert "--ray needs ray; install it with pip install 'grabnas[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "run.db").exists()


def test_search_dataset_on_a_cluster_that_refuses_us_leaves_no_study(tmp_path, capsys, monkeypatch):
    """The executor is built before the study is opened: a Ray cluster that cannot be joined
    (a wrong address, a token it refuses) costs no study file."""
    import grabnas.cli.search as cli_search
    from grabnas.errors import GrabnasError

    def refuse(args, workers):
        raise GrabnasError(f"cannot join the Ray cluster at {args.ray_address}: connection refused")

    monkeypatch.setattr(cli_search, "executor_from_args", refuse)
    assert _search(tmp_path, "--ray-address", "127.0.0.1:1") == 2
    assert "cannot join the Ray cluster at 127.0.0.1:1" in capsys.readouterr().err
    assert not (tmp_path / "run.db").exists() and not (tmp_path / "run.db.lock").exists()


# -- cost constraints ----------------------------------------------------------------------------
def _constrained(nb201_path, tmp_path, *extra, budget=4, task="cifar10"):
    return main(
        [
            "search",
            "--data",
            str(nb201_path),
            "--task",
            task,
            "--optimizer",
            "rea",
            "--budget",
            str(budget),
            "--study",
            str(tmp_path / "c.db"),
            "--no-progress",
            *extra,
        ]
    )


def test_constrained_search_reports_the_binding_limit_and_refuses_other_constraints(nb201_path, tmp_path, capsys):
    from grabnas.search.constraints import Constraints, benchmark_cost_model
    from grabnas.study import Study

    assert _constrained(nb201_path, tmp_path, "--max-params", "0.5", "--max-flops", "50") == 0
    out = capsys.readouterr().out
    assert "constraints params <= 0.5 M, FLOPs <= 50 MFLOPs (costs of the NB201 network with C=16, N=5" in out
    assert "of the 15,625 candidates are feasible" in out
    assert "the best cell found uses " in out and "so the constraints bind" in out  # the optimum needs 1.07 M
    report = tmp_path / "c"
    assert (report / "pareto.png").exists() and "pareto.png" in (report / "report.md").read_text()
    with Study.load(tmp_path / "c.db") as st:
        assert st.settings()["constraints"] == {"max_params": 0.5, "max_flops": 50.0}
        bench_costs = Constraints(0.5, 50).with_costs(benchmark_cost_model(_nb201(nb201_path), "cifar10"))
        assert all(bench_costs.feasible(_nb201(nb201_path).space.parse(t.arch)) for t in st.trials())
    # resuming under other constraints (or none) is refused like any other changed setting
    for extra in (["--max-params", "0.6", "--max-flops", "50"], ["--max-flops", "50"], []):
        assert _constrained(nb201_path, tmp_path, *extra, budget=5) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("grabnas: error:") and "other settings" in err and "constraints" in err
        assert "\n" not in err
    assert _constrained(nb201_path, tmp_path, "--max-flops", "50.0", "--max-params", "0.5", budget=5) == 0
    assert "1 new evaluations (4 replayed" in capsys.readouterr().out


def _nb201(path):
    from grabnas.benchmarks.nb201 import load_nb201

    return load_nb201(path)


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--max-params", "-1"], "--max-params takes a positive number (M params), got -1"),
        (["--max-flops", "abc"], "--max-flops takes a positive number (MFLOPs), got 'abc'"),
        (["--max-flops", "inf"], "--max-flops takes a positive number"),
        (["--max-params", "0.01"], "no candidate satisfies the constraints params <= 0.01 M"),
        (["--max-flops", "5", "--max-params", "1"], "loosen --max-params, --max-flops"),
    ],
)
def test_bad_constraints_are_one_line_errors_before_any_study(nb201_path, tmp_path, capsys, extra, fragment):
    assert _constrained(nb201_path, tmp_path, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("grabnas: error:") and fragment in err and "\n" not in err
    assert not (tmp_path / "c.db").exists()


def test_nasbench_graph_has_no_flops(tmp_path, capsys):
    argv = ["search", "--benchmark", "nasbench-graph", "--task", "cora", "--optimizer", "random"]
    assert main([*argv, "--study", str(tmp_path / "g.db"), "--max-flops", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--max-flops is not supported on nasbench-graph cora" in err and "--max-params" in err and "\n" not in err
    # its table records parameters: --max-params works
    assert main([*argv, "--study", str(tmp_path / "p.db"), "--max-params", "1", "--budget", "3", "--no-progress"]) == 0
    assert "nasbench-graph cora (its table's records)" in capsys.readouterr().out


def test_search_dataset_with_constraints_trains_only_feasible_cells(tmp_path, capsys, count_trainings):
    from grabnas.search.constraints import Constraints
    from grabnas.search.dataset import dataset_cost_model
    from grabnas.train.network import TinyNetwork, count_parameters

    assert _search(tmp_path, "--optimizer", "random", "--max-params", "0.01", budget=3) == 0
    out = capsys.readouterr().out
    assert "costs of the NB201 network with C=4, N=1, 3 classes, 1x8x8 inputs" in out
    assert len(count_trainings) == 3 and (tmp_path / "report" / "pareto.png").exists()
    for cell in count_trainings:
        assert count_parameters(TinyNetwork(_ops(cell), 4, 1, 3, 1)) <= 10_000
    from grabnas.data.tasks import TaskSpec

    split = TaskSpec.parse("digits[0,1,2]@3").split()
    c = Constraints(max_params=0.01).with_costs(dataset_cost_model(split, 4, 1))
    assert 0 < c.feasible_mask(c.cost_model.space.members()).mean() < 1


def _ops(cell: str) -> tuple:
    from grabnas.spaces import get_space

    return get_space("nb201").parse(cell).ops


# -- --final-train ---------------------------------------------------------------------------------
def test_final_train_trains_the_best_cell_records_it_and_resumes(tmp_path, capsys):
    from grabnas.study import Study

    assert _search(tmp_path, "--optimizer", "random", "--final-train", "proxy", "--threads", "1") == 0
    out = capsys.readouterr().out
    final = tmp_path / "report" / "final-train"
    assert f"final training of the best cell with the proxy recipe in {final}" in out
    for name in ("result.json", "weights.pt", "model.py", "history.csv", "curve.png"):
        assert (final / name).exists(), name
    with Study.load(tmp_path / "run.db") as st:
        best, info = st.best(1)[0], st.info("final_train")
    assert info["architecture"] == best.arch and info["status"] == "ok" and info["preset"] == "proxy"
    assert info["epochs_done"] == 5 and 0 <= info["val_acc"] <= 100 and info["dir"] == str(final)
    # the same command again: nothing new to search, the finished final training is reported as is
    assert _search(tmp_path, "--optimizer", "random", "--final-train", "proxy", "--threads", "1") == 0
    assert "0 new evaluations" in capsys.readouterr().out
    with Study.load(tmp_path / "run.db") as st:
        assert st.info("final_train") == info


def test_final_train_is_refused_where_it_cannot_apply(tmp_path, capsys):
    assert _search(tmp_path, "--final-train", "nb201-9000") == 2
    assert "unknown recipe preset 'nb201-9000'; expected one of nb201-200, proxy" in capsys.readouterr().err
    assert not (tmp_path / "run.db").exists()
    args = ["search", "--task", "cifar10", "--budget", "2", "--study", str(tmp_path / "b.db"), "--final-train"]
    assert main(args) == 2
    assert "--final-train applies to --dataset searches, not to benchmark tasks" in capsys.readouterr().err


def _latency_table(path, setting_kw=None, device="test CPU"):
    """A made-up additive latency table for NB201's CIFAR-10 network (or ``setting_kw``), saved at ``path``."""
    import numpy as np

    from grabnas.train.cost import NB201_NETWORKS, NetworkSetting
    from grabnas.train.latency import sample_cells, table_from_measurements

    setting = NetworkSetting(**setting_kw) if setting_kw else NB201_NETWORKS["cifar10"]
    cells = sample_cells(40, 0)
    ms = 1.0 + np.array([0.0, 0.05, 0.6, 2.5, 0.4])[cells].sum(axis=1)
    info = {"kind": "cpu", "name": device, "torch": "0", "threads": 1}
    table = table_from_measurements(info, setting, 1, 0, 1, 0, 0.25, cells, ms)
    table.save(path)
    return table


def test_search_with_max_latency_stores_the_table_fingerprint(nb201_path, tmp_path, capsys):
    from grabnas.study import Study

    table = _latency_table(tmp_path / "lat.json")
    limit = f"{float(np.median(table.predict_all())):.4f}"
    lat = ["--max-latency", limit, "--latency-table", str(tmp_path / "lat.json")]
    assert _constrained(nb201_path, tmp_path, *lat, "--max-params", "0.9") == 0
    out = capsys.readouterr().out
    assert f"constraints params <= 0.9 M, latency <= {float(limit):.4g} ms" in out
    assert "latency predicted from the table of cpu 'test CPU', batch 1" in out
    with Study.load(tmp_path / "c.db") as st:
        settings = st.settings()["constraints"]
        assert settings == {"max_params": 0.9, "max_latency": float(limit), "latency_table": table.fingerprint}
        archs = [_nb201(nb201_path).space.parse(t.arch) for t in st.trials()]
        assert (table.predict(archs) <= float(limit)).all()
    _latency_table(tmp_path / "lat.json", device="another CPU")  # the table changed: resuming is refused
    assert _constrained(nb201_path, tmp_path, *lat, "--max-params", "0.9", budget=5) == 2
    err = capsys.readouterr().err.strip()
    assert "other settings" in err and "\n" not in err


def test_max_latency_errors_are_one_line(nb201_path, tmp_path, capsys):
    _latency_table(tmp_path / "lat.json")
    table = ["--latency-table", str(tmp_path / "lat.json")]
    cases = [
        (["--max-latency", "3"], "--max-latency needs --latency-table TABLE"),
        (table, "--latency-table is read only with --max-latency MS"),
        (["--max-latency", "-1", *table], "--max-latency takes a positive number (ms), got -1"),
        (["--max-latency", "3", "--latency-table", str(tmp_path / "no.json")], "does not exist"),
        (["--max-latency", "0.5", *table], "no candidate satisfies the constraints latency <= 0.5 ms"),
    ]
    for extra, fragment in cases:
        assert _constrained(nb201_path, tmp_path, *extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("grabnas: error:") and fragment in err and "\n" not in err, err
    assert _constrained(nb201_path, tmp_path, "--max-latency", "3", *table, task="cifar100") == 2
    err = capsys.readouterr().err.strip()
    assert "the latency table was measured for the NB201 network with C=16, N=5, 10 classes" in err
    assert "100 classes" in err and "\n" not in err
    argv = ["search", "--benchmark", "nasbench-graph", "--task", "cora", "--optimizer", "random", "--no-progress"]
    assert main([*argv, "--study", str(tmp_path / "g.db"), "--max-latency", "3", *table]) == 2
    err = capsys.readouterr().err.strip()
    assert "--max-latency is not supported on nasbench-graph cora" in err and "there is no latency model" in err
    assert not (tmp_path / "c.db").exists() and not (tmp_path / "g.db").exists()
