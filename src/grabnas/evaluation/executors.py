"""Executors: where evaluations run, behind one small interface.

Every executor has ``submit(fn, *args) -> concurrent.futures.Future``, ``map(fn, iterable)``
(results in input order), ``shutdown()`` and is a context manager, so
``concurrent.futures.as_completed`` works on what any of them returns.

* :class:`InProcessExecutor` runs each call at once in the calling process.
* :class:`LocalPoolExecutor` runs calls in ``workers`` spawned processes
  (``concurrent.futures.ProcessPoolExecutor``), each limited to ``threads_per_worker`` torch threads.
* :class:`RayExecutor` runs calls as Ray tasks with ``num_cpus_per_trial`` / ``num_gpus_per_trial``
  resources, on a local Ray instance (``address=None`` or ``'local'``) or a cluster
  (``address='HOST:PORT'`` or ``'auto'``). Ray is optional (``pip install 'grabnas[ray]'``) and
  imported only here, when the executor is built.

Functions and arguments must be picklable (module-level functions, evaluator objects).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from collections.abc import Callable, Iterable
from typing import Any

from grabnas.errors import GrabnasError


class Executor:
    """Base class: ``submit``, ``map``, ``shutdown`` and the context-manager protocol."""

    #: how many calls can run at the same time
    max_workers: int = 1

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        raise NotImplementedError

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any]) -> list[Any]:
        """``[fn(*args) for args in zip(*iterables)]``, evaluated through :meth:`submit`."""
        futures = [self.submit(fn, *args) for args in zip(*iterables)]
        return [f.result() for f in futures]

    def shutdown(self) -> None:
        """Release workers (idempotent)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.shutdown()
        else:  # interrupted or failed: do not wait for running calls, whose results nobody takes
            self.abort()

    def abort(self) -> None:
        """Stop at once: cancel queued calls and stop running ones (default: :meth:`shutdown`)."""
        self.shutdown()


class InProcessExecutor(Executor):
    """Runs every call immediately in this process; the future is already done."""

    max_workers = 1

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        future: cf.Future = cf.Future()
        try:
            future.set_result(fn(*args))
        except KeyboardInterrupt:
            raise
        except BaseException as e:
            future.set_exception(e)
        return future


def exit_with_parent(poll_seconds: float = 1.0) -> None:
    """In a worker process: a daemon thread that ends this process as soon as its parent is gone
    (killed by any signal, SIGKILL included: the worker is then re-parented and its parent pid
    changes), so no orphaned worker trains on for nobody. Use as a pool initializer."""
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="grabnas-exit-with-parent", daemon=True).start()


def _init_worker(threads: int) -> None:
    import torch

    exit_with_parent()
    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


class LocalPoolExecutor(Executor):
    """A pool of ``workers`` spawned processes on this machine.

    Args:
        workers: number of processes.
        threads_per_worker: torch threads in each (default: CPU count // workers, at least 1).
    """

    def __init__(self, workers: int = 2, threads_per_worker: int | None = None) -> None:
        if workers < 1:
            raise GrabnasError(f"need at least one worker, got {workers}")
        self.max_workers = workers
        self.threads_per_worker = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
        self._pool = cf.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.threads_per_worker,),
        )

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        return self._pool.submit(fn, *args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:  # running trainings: their trials stay 'asked' and rerun on resume
            proc.terminate()
        for proc in processes:
            proc.join(timeout=10)


def _ray_call(threads: int, fn: Callable[..., Any], *args: Any) -> Any:
    import torch

    if threads >= 1 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return fn(*args)


_RAY_AUTH_HINT = (
    "the cluster uses Ray's token authentication and refused this process: run with RAY_AUTH_MODE=token "
    "and the cluster's token in $RAY_AUTH_TOKEN or ~/.ray/auth_token (`ray get-auth-token` on the head prints it)"
)


def _refused_token(error: BaseException) -> bool:
    """Whether Ray's connection error was its token check (InvalidAuthToken somewhere in the chain:
    Ray wraps the GCS client's AuthenticationError in a RuntimeError's text, then a ConnectionError)."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if type(e).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


class RayExecutor(Executor):
    """Ray tasks, one per call.

    Args:
        address: None or ``'local'`` starts a local Ray instance (shut down with this executor);
            ``'auto'`` or ``'HOST:PORT'`` joins a running cluster. If Ray is already initialised
            in this process, it is used as it is. Ray reads token authentication from the
            environment: a cluster started with it needs ``RAY_AUTH_MODE=token`` and its token here.
        num_cpus_per_trial: CPUs reserved per call (also its torch thread count).
        num_gpus_per_trial: GPUs reserved per call (fractions allowed).
        num_cpus: CPUs of a local instance (default: all).
        init_kwargs: more keyword arguments for ``ray.init``.
    """

    def __init__(
        self,
        address: str | None = None,
        num_cpus_per_trial: float = 1,
        num_gpus_per_trial: float = 0,
        num_cpus: int | None = None,
        **init_kwargs: Any,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise GrabnasError("the Ray executor needs ray; install it with pip install 'grabnas[ray]'") from None
        if num_cpus_per_trial <= 0 or num_gpus_per_trial < 0:
            raise GrabnasError(
                f"need num_cpus_per_trial > 0 and num_gpus_per_trial >= 0, got {num_cpus_per_trial}, {num_gpus_per_trial}"
            )
        self._ray = ray
        self._owns = False
        if not ray.is_initialized():
            kwargs = dict(init_kwargs)
            kwargs.setdefault("include_dashboard", False)
            kwargs.setdefault("log_to_driver", False)
            if address in (None, "local"):
                if num_cpus is not None:
                    kwargs["num_cpus"] = num_cpus
                # Ray runs workers at nice 15 by default; trials are the work here, so on a
                # busy machine they would starve. A local instance runs them at normal priority.
                system_config = dict(kwargs.pop("_system_config", None) or {})
                system_config.setdefault("worker_niceness", 0)
                ray.init(_system_config=system_config, **kwargs)
            else:
                try:
                    ray.init(address=address, **kwargs)
                except ConnectionError as e:
                    hint = (
                        _RAY_AUTH_HINT if _refused_token(e) else "expected a running cluster address HOST:PORT or auto"
                    )
                    raise GrabnasError(f"cannot join the Ray cluster at {address!r} ({e}); {hint}") from None
            self._owns = True
        self.num_cpus_per_trial = num_cpus_per_trial
        self.num_gpus_per_trial = num_gpus_per_trial
        self.max_workers = max(1, int(ray.available_resources().get("CPU", 1) // num_cpus_per_trial))
        self._remote = ray.remote(num_cpus=num_cpus_per_trial, num_gpus=num_gpus_per_trial, max_retries=0)(_ray_call)

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        threads = max(1, int(self.num_cpus_per_trial))
        return self._remote.remote(threads, fn, *args).future()

    def shutdown(self) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns = False


def make_executor(
    workers: int = 1,
    ray: bool = False,
    ray_address: str | None = None,
    num_cpus_per_trial: float = 1,
    num_gpus_per_trial: float = 0,
) -> Executor:
    """The executor of the CLI flags: ``--ray`` / ``--ray-address ADDR``, else ``--jobs N``."""
    if ray or ray_address:
        return RayExecutor(ray_address, num_cpus_per_trial=num_cpus_per_trial, num_gpus_per_trial=num_gpus_per_trial)
    if workers > 1:
        return LocalPoolExecutor(workers, threads_per_worker=max(1, int(num_cpus_per_trial)))
    return InProcessExecutor()
