"""Joining an existing Ray cluster: ``ray start --head`` plus a second node on this machine (one CPU
each), then a real ``grabnas search --dataset ... --ray-address HOST:PORT`` as a subprocess.

Token authentication (Ray 2.52+): ``ray start --head`` with ``RAY_AUTH_MODE`` unset turns it on by
itself when a token file exists (``~/.ray/auth_token``, which any local ``ray.init()`` of Ray 2.59+
writes), while ``ray start --address=...`` and ``ray.init(address='HOST:PORT')`` do not, so they are
refused with ``InvalidAuthToken ... RAY_AUTH_MODE is currently 'disabled'``. As Ray's docs ask, every
process here gets ``RAY_AUTH_MODE=token`` and one token, this test's own (``RAY_AUTH_TOKEN``), so
``~/.ray/auth_token`` is neither read nor written.

Clean-up: ``ray stop --force`` cannot be scoped (it kills every Ray process of the machine by name,
other tests' and users' included), so it is not used. Every process of this cluster has the
cluster's temporary folder on its command line or descends from one that has (workers renamed
``ray::...`` are children of a raylet); they are SIGKILLed, and the test checks that none is left
after 10 s.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="joining a Ray cluster needs ray (grabnas[ray])")
pytest.importorskip("sklearn", reason="the digits dataset needs scikit-learn (grabnas[data])")

import grabnas  # noqa: E402

RAY = str(Path(sys.executable).with_name("ray"))
SRC = str(Path(grabnas.__file__).resolve().parents[1])  # the grabnas under test, for every Ray process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_ports() -> list[str]:
    """Free ports for what a node would otherwise put on fixed ports (two nodes share this machine)."""
    flags = ("dashboard-agent-listen", "dashboard-agent-grpc", "runtime-env-agent", "metrics-export")
    flags += ("node-manager", "object-manager")
    return [f"--{flag}-port={_free_port()}" for flag in flags]


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of the live (not zombie) processes, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                state, ppid = f.read().rsplit(")", 1)[1].split()[:2]
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if state != "Z":
            table[int(entry)] = (int(ppid), cmdline)
    return table


def _cluster_processes(marker: str) -> set[int]:
    """This cluster's processes: those naming ``marker`` (its temp folder) and their descendants."""
    table = _processes()
    found = {pid for pid, (_, cmdline) in table.items() if marker in cmdline and pid != os.getpid()}
    while True:
        children = {pid for pid, (ppid, _) in table.items() if ppid in found} - found
        if not children:
            return found
        found |= children


def _stop_cluster(marker: str, seconds: float = 10) -> set[int]:
    """SIGKILL this cluster's processes until none is left or ``seconds`` pass; what is left."""
    deadline = time.monotonic() + seconds
    while (left := _cluster_processes(marker)) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    return left


def _run(cmd: list[str], env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _tail(proc: subprocess.CompletedProcess, n: int = 1500) -> str:
    return (proc.stdout + proc.stderr)[-n:]


@pytest.fixture
def ray_cluster():
    """``(address, env)`` of a two-node Ray cluster on this machine; skipped if the head cannot start."""
    if not sys.platform.startswith("linux") or not os.path.exists(RAY):
        pytest.skip(f"needs Linux and the ray command beside {sys.executable}")
    # Ray's socket paths must stay under ~107 characters: a short folder, not pytest's tmp_path
    temp_dir = tempfile.mkdtemp(prefix="grn-", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=secrets.token_hex(32),
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p),
    )
    address = f"127.0.0.1:{_free_port()}"
    node = ["--num-cpus=1", "--object-store-memory=80000000", f"--temp-dir={temp_dir}", "--log-style=record"]
    node += ["--disable-usage-stats", "--node-ip-address=127.0.0.1"]
    try:
        head = _run(
            [RAY, "start", "--head", f"--port={address.split(':')[1]}", "--include-dashboard=false"]
            + [f"--dashboard-port={_free_port()}", *_node_ports(), *node],
            env,
        )
        if head.returncode != 0:
            pytest.skip(f"ray start --head failed on this machine: {_tail(head, 600)}")
        second = _run([RAY, "start", f"--address={address}", *_node_ports(), *node], env)
        assert second.returncode == 0, f"the second node could not join: {_tail(second)}"
        yield address, env
    finally:
        left = _stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"Ray processes left 10 s after the stop: {sorted(left)}"
        assert not any("raylet" in cmdline for _, cmdline in _processes().values() if temp_dir in cmdline)


NODES = (
    "import ray; ray.init(address={address!r}, log_to_driver=False); "
    "print(sum(n['Alive'] for n in ray.nodes()), int(ray.cluster_resources()['CPU']))"
)


def test_a_search_joins_a_two_node_cluster_with_ray_address(ray_cluster, tmp_path):
    from grabnas.study import Study

    address, env = ray_cluster
    nodes = _run([sys.executable, "-c", NODES.format(address=address)], env)
    assert nodes.returncode == 0, _tail(nodes)
    assert nodes.stdout.split() == ["2", "2"]  # two live nodes, one CPU each
    study = tmp_path / "run.db"
    cmd = [sys.executable, "-m", "grabnas.cli", "search", "--dataset", "digits[0,1,2]@3", "--optimizer", "random"]
    cmd += ["--budget", "4", "--epochs", "1", "--channels", "4", "--cells", "1", "--threads", "1"]
    cmd += ["--no-progress", "--study", str(study), "--ray-address", address]
    search = _run(cmd, env, timeout=300)  # about 20 s on an idle 2-core machine; generous under load
    assert search.returncode == 0, _tail(search)
    assert "4 new evaluations (0 replayed" in search.stdout
    with Study.load(study) as st:
        trials = st.trials()
    # --workers defaults to the cluster's CPUs / --threads = 2: with one CPU per node, two trials
    # in flight run on the two nodes
    assert len(trials) == 4 and [t.status for t in trials] == ["done"] * 4
    assert all(0 <= t.value <= 100 for t in trials)
