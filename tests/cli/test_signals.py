"""Signals to a running ``grabnas search --workers 2``: no worker outlives the search, finished
results are kept, the exit status says it did not finish, and the rerun completes the budget."""

import os
import signal
import subprocess
import sys
import time

import pytest

from grabnas.study import Study

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

# 8 epochs: ~0.5 s per training after the workers' start (~6 s), so the first finished trial leaves
# ~2 s of a 10-trial budget to signal into (at 2 epochs the last five of six finished within 0.4 s
# of the first, close to the 0.2 s polling)
ARGS = ["--dataset", "digits[0,1,2]@3", "--optimizer", "random", "--epochs", "8", "--channels", "4"]
ARGS += ["--cells", "1", "--workers", "2", "--threads", "1", "--no-progress"]


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.append(p)
        except OSError:
            pass
    return alive


def _start(tmp_path, budget: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "grabnas.cli", "search", *ARGS, "--budget", str(budget)]
    cmd += ["--study", str(tmp_path / "s.db"), "--out", str(tmp_path / "r")]
    # SIGINT caught here becomes SIGINT's default in the child (exec resets caught signals), as in a
    # terminal. A test run started in the background of a non-interactive shell (`pytest &`, some CI
    # runners) ignores SIGINT, an ignored signal stays ignored across exec, and Python then installs
    # no KeyboardInterrupt handler: the child would never see Ctrl-C.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)


def _wait_for_done(db, n: int, proc: subprocess.Popen, seconds: float = 240) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        try:
            with Study.load(db) as st:
                if st.count("done") >= n:
                    return
        except Exception:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no {n} finished trials in time; stderr: {proc.stderr.read() if proc.poll() else ''}")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_signal_leaves_no_worker_and_the_rerun_completes(tmp_path, sig):
    budget = 10
    proc = _start(tmp_path, budget)
    _wait_for_done(tmp_path / "s.db", 1, proc)
    workers = _children(proc.pid)
    assert len(workers) >= 2  # the pool's processes (and its resource tracker)
    assert proc.poll() is None, "the search ended before the signal; its trials are too fast for this test"
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    stderr = proc.stderr.read()
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and "terminated; rerun the same command" in stderr, (proc.returncode, stderr)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "interrupted; rerun the same command" in stderr, (proc.returncode, stderr)
    deadline = time.time() + 10
    while _alive(workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(workers), f"workers left after {sig!r}: {_alive(workers)}"
    with Study.load(tmp_path / "s.db") as st:
        done_before = [(t.id, t.arch, t.value) for t in st.trials("done")]
        assert st.count("failed") == 0  # a trial cut short is not a failure: it stays 'asked'
    rerun = _start(tmp_path, budget)
    assert rerun.wait(timeout=600) == 0, rerun.stderr.read()
    with Study.load(tmp_path / "s.db") as st:
        trials = st.trials()
    assert [t.status for t in trials] == ["done"] * budget
    assert [(t.id, t.arch, t.value) for t in trials if t.id in {d[0] for d in done_before}] == done_before
    assert len({t.arch for t in trials}) == budget  # nothing evaluated twice
