"""Executors give the same results; a search loop carries on past failed trials."""

from __future__ import annotations

import concurrent.futures as cf
import math

import pytest

from grabnas.data import TaskSpec
from grabnas.evaluation import InProcessExecutor, LocalPoolExecutor, RayExecutor, TrainingEvaluator, make_executor
from grabnas.search.base import Optimizer
from grabnas.train.recipe import TrainConfig, TrainResult

pytest.importorskip("sklearn", reason="the digits dataset needs scikit-learn (grabnas[data])")

CONFIG = TrainConfig(epochs=2, channels=4, cells=1, batch_size=32, device="cpu", num_threads=1, seed=3)
ARCHS = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
)


def _square(x):
    return x * x


@pytest.fixture(scope="module")
def evaluator():
    # an in-memory split travels with the evaluator, so workers need not import scikit-learn
    return TrainingEvaluator(TaskSpec("digits", (0, 1, 2), seed=0).split(), CONFIG)


@pytest.fixture(scope="module")
def reference(evaluator, nb201_space):
    archs = [nb201_space.parse(a) for a in ARCHS]
    with InProcessExecutor() as ex:
        results = ex.map(evaluator, archs)
    assert all(r.ok for r in results)
    return archs, [r.val_acc for r in results]


def test_in_process_executor_interface():
    with InProcessExecutor() as ex:
        f = ex.submit(_square, 3)
        assert f.done() and f.result() == 9
        assert ex.map(_square, [1, 2]) == [1, 4]
        bad = ex.submit(math.sqrt, -1)
        assert isinstance(bad.exception(), ValueError)
    assert isinstance(make_executor(), InProcessExecutor)


def test_process_pool_matches_in_process(evaluator, reference):
    archs, values = reference
    with LocalPoolExecutor(workers=2, threads_per_worker=1) as ex:
        futures = [ex.submit(evaluator, a) for a in archs]
        assert len(list(cf.as_completed(futures))) == 2
        assert [f.result().val_acc for f in futures] == values
        assert ex.map(_square, [3]) == [9]


def test_local_ray_matches_in_process(evaluator, reference):
    pytest.importorskip("ray")
    archs, values = reference
    with RayExecutor("local", num_cpus_per_trial=1, num_cpus=2) as ex:
        assert ex.max_workers >= 1
        assert [r.val_acc for r in ex.map(evaluator, archs)] == values


class _Flaky:
    """Every third call raises inside the evaluator's training; one call returns NaN."""

    def __init__(self):
        self.calls = 0

    def __call__(self, arch):
        self.calls += 1
        if self.calls % 3 == 0:
            raise RuntimeError("CUDA out of memory")
        if self.calls == 4:
            raise FloatingPointError("loss is NaN")
        return TrainResult(float(self.calls), float(self.calls), 0.1, 1, 1)


def test_search_loop_continues_after_failures(evaluator, nb201_space, monkeypatch):
    import grabnas.evaluation.training as training

    try:
        from grabnas.search.baselines import RandomSearch
    except ImportError:  # pragma: no cover - written in parallel
        RandomSearch = None
    if RandomSearch is None:  # pragma: no cover

        class RandomSearch(Optimizer):
            def _ask(self, n):
                return self.untried_pool()[:n]

    flaky = _Flaky()
    monkeypatch.setattr(training, "train_and_evaluate", lambda arch, split, config: flaky(arch))
    opt = RandomSearch(nb201_space, pool=nb201_space.members()[:50], seed=0)
    with InProcessExecutor() as ex:
        for _ in range(4):
            archs = opt.ask(2)
            results = ex.map(evaluator, archs)
            opt.tell(archs, [r.value for r in results])
    values = [o.value for o in opt.history.observations]
    assert len(values) == 8 and values.count(None) == 3  # calls 3, 4, 6 failed
    assert opt.best.value == 8.0


class _KillsItsWorkerOnce:
    """A lookup whose first call SIGKILLs the Ray worker running it (a node dying mid-trial)."""

    def __init__(self, lookup, marker):
        self.lookup, self.marker = lookup, marker

    def __call__(self, arch):
        import os
        import signal

        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return self.lookup(arch)


def test_a_killed_ray_worker_is_a_failed_trial_and_the_search_goes_on(nb201_bench, tmp_path):
    pytest.importorskip("ray")
    from grabnas.evaluation.lookup import LookupEvaluator
    from grabnas.search.loop import run_search
    from grabnas.search.registry import build_optimizer
    from grabnas.study import Study

    evaluate = _KillsItsWorkerOnce(LookupEvaluator(nb201_bench, "cifar10"), str(tmp_path / "killed"))
    opt = build_optimizer("random", nb201_bench, "cifar10", seed=0)
    with RayExecutor("local", num_cpus_per_trial=1, num_cpus=2) as ex, Study.open(tmp_path / "s.db", {}) as st:
        outcome = run_search(opt, evaluate, st, budget=6, workers=2, executor=ex)
        trials = st.trials()
    assert outcome.evaluated == 6 and [t.status for t in trials].count("done") == 5
    (failed,) = [t for t in trials if t.status == "failed"]
    assert "Worker" in failed.error or "died" in failed.error  # Ray's WorkerCrashedError, recorded


@pytest.mark.parametrize(
    "cause, expected",
    [
        (
            RuntimeError("Failed to connect to GCS. ... RPC error: InvalidAuthToken: Authentication token is missing"),
            "run with RAY_AUTH_MODE=token and the cluster's token in $RAY_AUTH_TOKEN or ~/.ray/auth_token",
        ),
        (TimeoutError("GCS did not answer"), "expected a running cluster address HOST:PORT or auto"),
    ],
)
def test_joining_a_cluster_that_refuses_says_why(monkeypatch, cause, expected):
    ray = pytest.importorskip("ray")
    from grabnas.errors import GrabnasError

    def refused(*args, **kwargs):  # as Ray 2.60's ray.init(address=...) fails
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379") from cause

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refused)
    with pytest.raises(GrabnasError) as info:
        RayExecutor("10.0.0.1:6379")
    message = str(info.value)
    assert message.startswith("cannot join the Ray cluster at '10.0.0.1:6379' (Failed to connect to Ray cluster")
    assert expected in message and "\n" not in message
