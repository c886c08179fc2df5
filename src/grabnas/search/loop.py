"""The search loop: an optimizer, an evaluator, a study, and (optionally) parallel workers.

``run_search`` keeps ``workers`` evaluations in flight: it asks for as many architectures as
there are free workers, records each ask in the study, evaluates through the executor and tells
every result (recorded first) as soon as it arrives. On a resumed study it first replays the
study's events into the fresh optimizer and re-submits the trials that were asked but never told.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from grabnas.errors import GrabnasError, one_line
from grabnas.search.base import Optimizer


class RecordedTrial(Protocol):
    """One trial as a study stores it (see :class:`grabnas.study.Trial`)."""

    @property
    def id(self) -> int: ...

    @property
    def arch(self) -> str: ...

    @property
    def value(self) -> float | None: ...

    @property
    def extra(self) -> dict: ...


class RecordedEvent(Protocol):
    """One ask or tell as a study stores it (see :class:`grabnas.study.Event`)."""

    @property
    def kind(self) -> str: ...  # "ask" or "tell"

    @property
    def trial_ids(self) -> Sequence[int]: ...

    @property
    def rng_state(self) -> str | None: ...


class Study(Protocol):
    """What the loop needs from a study: :class:`grabnas.study.Study` implements it.

    The search layer defines the interface and the study layer (above it) implements it, so the
    loop does not import the SQLite store.
    """

    path: Path

    def check_optimizer_settings(self, settings: dict) -> None: ...

    def trials(self, status: str | None = None) -> Sequence[RecordedTrial]: ...

    def count(self, status: str | None = None) -> int: ...

    def events(self) -> Iterable[RecordedEvent]: ...

    def record_ask(
        self, archs: Sequence[str], rng_state: str | None = None, extras: Sequence[dict | None] | None = None
    ) -> list[int]: ...

    def record_tell(self, trial_ids, values, test_values, costs, errors, extras) -> None: ...

    def record_retry(self, failed_ids: Sequence[int]) -> list[int]: ...

    def retried(self) -> list[int]: ...


@dataclass
class SearchOutcome:
    """What a search loop did in this process."""

    evaluated: int  # trials told in this process (not replayed)
    replayed: int  # trials told by replaying the study
    seconds: float


#: ``rng_state`` of an ask event that re-asks failed trials (``--retry-failed``) instead of
#: recording an ask of the optimizer: replay skips it, and tells the new trials' results.
RETRY_EVENT = "retry"


def rng_fingerprint(optimizer: Optimizer) -> str:
    """JSON of the optimizer's numpy RNG state (recorded with each ask to detect replay drift)."""
    return json.dumps(optimizer.rng.bit_generator.state, sort_keys=True)


def replay(optimizer: Optimizer, study: Study) -> int:
    """Feed the study's asks and tells to a fresh ``optimizer``; returns the number of tells.

    Raises a clear error when the optimizer asks something else than what was recorded (other
    settings, other code), since continuing would not be the same search.
    """
    trials = {t.id: t for t in study.trials()}
    told = 0
    for ev in study.events():
        recorded = [trials[i] for i in ev.trial_ids]
        if ev.kind == "ask" and ev.rng_state == RETRY_EVENT:
            continue  # failed trials asked again by --retry-failed: only their tells reach the optimizer
        if ev.kind == "ask":
            archs = optimizer.ask(len(recorded))
            got = [str(a) for a in archs]
            fidelities = [_ask_extra(a).get("fidelity") for a in archs]
            if (
                got != [t.arch for t in recorded]
                or fidelities != [t.extra.get("fidelity") for t in recorded]
                or (ev.rng_state and rng_fingerprint(optimizer) != ev.rng_state)
            ):
                raise GrabnasError(
                    f"resuming {study.path} diverged at trial {recorded[0].id}: the optimizer now asks {got[:1]} "
                    f"where the study recorded {[t.arch for t in recorded][:1]}; resume with the same grabnas "
                    "version and settings, or start a new study"
                )
        else:
            archs = [_parse(optimizer, t.arch) for t in recorded]
            optimizer.tell(archs, [t.value for t in recorded])
            told += len(recorded)
    return told


def _ask_extra(asked: object) -> dict:
    """What an ask says about its trial beyond the architecture: a multi-fidelity trial's fidelity
    (:class:`grabnas.search.multifidelity.FidelityTrial`); empty for an architecture."""
    return dict(getattr(asked, "extra", None) or {})


def _parse(optimizer: Optimizer, text: str):
    pending = {str(a): a for a in optimizer.history.pending}
    return pending[text] if text in pending else optimizer.space.parse(text)


def _fields(result: object) -> tuple[float | None, float | None, float | None, str | None, dict]:
    """(value, test value, cost, error, extra) of an evaluator's result (lookup or training)."""
    value = getattr(result, "value", None)
    test = getattr(result, "test_value", getattr(result, "test_acc", None))
    cost = getattr(result, "cost", getattr(result, "train_seconds", None))
    extra = dict(getattr(result, "extra", {}) or {})
    for k in ("params", "flops"):
        if getattr(result, k, None) is not None:
            extra[k] = getattr(result, k)
    return value, test, cost, getattr(result, "error", None), extra


def run_search(
    optimizer: Optimizer,
    evaluate: Callable[[object], object],
    study: Study,
    budget: int,
    workers: int = 1,
    executor: cf.Executor | None = None,
    on_result: Callable[[Study], None] | None = None,
    max_repeated_failures: int | None = 5,
    retry_failed: bool = False,
) -> SearchOutcome:
    """Run ``optimizer`` until the study holds ``budget`` finished (done or failed) trials.

    Args:
        optimizer: a fresh optimizer made with the study's settings and seed.
        evaluate: picklable ``arch -> result`` (a lookup or a training evaluator); a result with
            ``value`` None is a failure and is told as such. An exception inside ``evaluate`` is
            recorded as a failure with its message; the search goes on.
        study: where every ask and tell goes.
        workers: evaluations kept in flight at once.
        executor: runs ``evaluate`` (default: in this process, one at a time).
        on_result: called after each recorded result (progress bars, reports).
        max_repeated_failures: stop with a :class:`GrabnasError` when this many trials in a row
            failed with the same error (a broken set-up, not a bad architecture), instead of
            spending the budget; the failed trials stay recorded. ``None``: never stop.
        retry_failed: evaluate every failed trial of the study once more (new trials of the same
            architectures; the failed ones stay recorded but no longer count towards ``budget``).

    Bookkeeping per evaluation is constant time (the study is counted once, at the start).
    """
    t0 = time.perf_counter()
    study.check_optimizer_settings(optimizer.settings())
    replayed = replay(optimizer, study)
    by_text = {str(a): a for a in optimizer.history.pending}
    in_flight: dict[cf.Future, tuple[int, object]] = {}
    ex = executor or _InlineExecutor()

    def submit(tid: int, arch: object) -> None:
        in_flight[ex.submit(evaluate, arch)] = (tid, arch)

    if retry_failed:
        retried = set(study.retried())
        again = [t.id for t in study.trials("failed") if t.id not in retried]
        if again:
            study.record_retry(again)
    for t in study.trials("asked"):  # asked before a crash, never told: evaluate them now
        submit(t.id, by_text.get(t.arch) or optimizer.space.parse(t.arch))
    evaluated = 0
    finished = study.count("done") + study.count("failed") - len(study.retried())
    streak: list[str] = []  # the errors of the latest trials, while they all failed the same way

    def tell(fut: cf.Future) -> tuple[float | None, str | None]:
        tid, arch = in_flight.pop(fut)
        try:
            value, test, cost, error, extra = _fields(fut.result())
        except Exception as e:  # an evaluator bug or a crashed worker: a failed trial
            value, test, cost, error, extra = None, None, None, f"{type(e).__name__}: {e}", {}
        study.record_tell([tid], [value], [test], [cost], [error], [extra])
        optimizer.tell([arch], [value])
        return value, error

    try:
        while True:
            free = min(workers - len(in_flight), budget - finished - len(in_flight))
            if free > 0:
                archs = optimizer.ask(free)
                if archs:
                    extras = [_ask_extra(a) for a in archs]
                    ids = study.record_ask(
                        [str(a) for a in archs], rng_fingerprint(optimizer), extras if any(extras) else None
                    )
                    for tid, a in zip(ids, archs):
                        submit(tid, a)
            if not in_flight:
                break
            done, _ = cf.wait(list(in_flight), return_when=cf.FIRST_COMPLETED)
            for fut in done:
                value, error = tell(fut)
                evaluated += 1
                finished += 1
                if on_result is not None:
                    on_result(study)
                if value is None and error:
                    streak = [*streak, error] if streak[-1:] == [error] else [error]
                else:
                    streak = []
                if max_repeated_failures and len(streak) >= max_repeated_failures:
                    _cancel(in_flight)
                    raise GrabnasError(
                        f"{len(streak)} trials in a row failed with the same error, so the search stopped "
                        f"instead of spending its budget: {one_line(error)}; fix the cause and rerun (the study "
                        "resumes, its failed trials stay recorded)"
                    )
    except (KeyboardInterrupt, SystemExit):  # a signal: keep every result that has arrived
        for fut in [f for f in in_flight if f.done() and not f.cancelled() and f.exception() is None]:
            tell(fut)  # finished results only: a trial cut short stays 'asked' and reruns on resume
        _cancel(in_flight)
        raise
    return SearchOutcome(evaluated, replayed, time.perf_counter() - t0)


def _cancel(in_flight: dict) -> None:
    """Cancel what has not started; what runs finishes in its worker and is resubmitted on resume."""
    for fut in in_flight:
        fut.cancel()


class _InlineExecutor(cf.Executor):
    """Runs each call at submit time in this process (a finished future)."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        fut: cf.Future = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except Exception as e:  # delivered through the future, recorded as a failed trial
            fut.set_exception(e)
        return fut
