"""``grabnas train``: a SIGKILL mid-run and a rerun end with the uninterrupted run's weights; a
changed recipe is refused; the exported module scores as the run did; bad input is one line."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from grabnas.cli import main
from grabnas.data import TaskSpec
from grabnas.train.recipe import torch_threads

pytest.importorskip("sklearn", reason="the digits dataset needs scikit-learn (grabnas[data])")

ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
TASK = "digits[0,1,2,3]@1"
RECIPE = ["--preset", "proxy", "--epochs", "3", "--channels", "4", "--batch-size", "16", "--threads", "1"]
RECIPE += ["--device", "cpu", "--seed", "3"]


def _args(out) -> list[str]:
    return ["train", ARCH, "--dataset", TASK, *RECIPE, "--out", str(out)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "ref"
    assert main(_args(out)) == 0
    return out


def _weights(out):
    return torch.load(out / "weights.pt", weights_only=True)


def test_sigkill_mid_run_then_rerun_gives_identical_weights(uninterrupted, tmp_path, capsys):
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "grabnas.cli", *_args(out)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert (out / "checkpoint.pt").exists() and not (out / "result.json").exists()  # killed mid-run
    capsys.readouterr()
    assert main(_args(out)) == 0
    err = capsys.readouterr().err
    assert "resuming after epoch" in err and "epoch 1/3" not in err and "epoch 3/3" in err
    a, b = _weights(uninterrupted), _weights(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = (json.loads((d / "result.json").read_text()) for d in (uninterrupted, out))
    assert (ra["val_acc"], ra["test_acc"], ra["train_loss"]) == (rb["val_acc"], rb["test_acc"], rb["train_loss"])


def test_run_folder_files_and_a_finished_rerun(uninterrupted, capsys):
    for name in ("checkpoint.pt", "history.csv", "curve.png", "result.json", "weights.pt", "model.py", "run.json"):
        assert (uninterrupted / name).is_file(), name
    assert (uninterrupted / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((uninterrupted / "history.csv").read_text().splitlines()) == 4
    result = json.loads((uninterrupted / "result.json").read_text())
    assert {"architecture", "recipe", "val_acc", "test_acc", "params", "flops", "train_seconds"} <= set(result)
    assert main(_args(uninterrupted)) == 0  # finished: reports, trains nothing
    captured = capsys.readouterr()
    assert "epoch 1/3" not in captured.err and f"val acc {result['val_acc']:.2f} %" in captured.out


def test_changed_recipe_on_the_same_folder_is_refused(uninterrupted, capsys):
    args = _args(uninterrupted)
    args[args.index("--epochs") + 1] = "4"
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("grabnas: error: ") and "epochs=3, not epochs=4" in err


def _module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def test_exported_module_scores_as_the_run_did(uninterrupted):
    m = _module(uninterrupted / "model.py", "trained_model")
    result = json.loads((uninterrupted / "result.json").read_text())
    val = TaskSpec.parse(TASK).split().val
    with torch_threads(1), torch.no_grad():
        pred = m.load_model()(m.normalise(val.images)).argmax(1)
    assert 100.0 * int((pred == val.labels).sum()) / len(val.labels) == result["val_acc"]


def test_export_weights_reads_sizes_and_normalisation_from_the_run(uninterrupted, tmp_path, capsys):
    assert main(["export", ARCH, "--weights", str(uninterrupted / "weights.pt"), "--out", str(tmp_path)]) == 0
    assert "weights" in capsys.readouterr().out
    (module,) = tmp_path.glob("nb201_*.py")
    m, ref = _module(module, "exported_again"), _module(uninterrupted / "model.py", "trained_model_ref")
    assert (m.C, m.N, m.NUM_CLASSES, m.IN_CHANNELS, m.MEAN, m.STD) == (4, 1, 4, 1, ref.MEAN, ref.STD)
    assert module.with_suffix(".pt").is_file() and m.WEIGHTS == module.with_suffix(".pt").name
    x = torch.rand(3, 1, 8, 8)
    with torch_threads(1), torch.no_grad():
        assert torch.equal(m.load_model()(m.normalise(x)), ref.load_model()(ref.normalise(x)))
    bad = ["export", ARCH, "--weights", str(uninterrupted / "weights.pt"), "--channels", "8", "--out", str(tmp_path)]
    assert main(bad) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "do not fit the network C=8, N=1, 4 classes, 1 input channels" in err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"arch": "|conv~0|"}, "malformed NB201 cell string"),
        ({"--preset": "nb201"}, "unknown recipe preset 'nb201'"),
        ({"--out": "FILE"}, "is a file"),
        ({"--dataset": "nope-data"}, "nope-data"),
        ({"--device": "tpu"}, "device"),
    ],
)
def test_bad_input_is_one_line(change, message, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    args = _args(tmp_path / "out")
    for key, value in change.items():
        if key == "arch":
            args[1] = value
        else:
            args[args.index(key) + 1] = str(tmp_path / "file") if value == "FILE" else value
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("grabnas: error: ") and message in err
    assert not (tmp_path / "out").exists()
