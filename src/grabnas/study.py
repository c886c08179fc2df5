"""An SQLite-backed study: every ask and tell of a search, as it happens.

A study file holds the search's settings (including the seed), one row per trial (the
architecture asked, its value once told, its status) and an ordered event log of asks and
tells. Optimizers are deterministic given their seed and the sequence of asks and tells, so a
study resumes by *replaying* its event log into a fresh optimizer (without evaluating anything)
and then carries on; trials that were asked but never told (the process died while they were
being evaluated) are evaluated once, after the replay. Nothing evaluated is lost or repeated.

Each ask records the optimizer's RNG state after it, so a replay that drifts (other code, other
settings) is detected instead of silently producing a different search.

One writer at a time: :meth:`Study.open` takes an exclusive lock on ``<study>.lock`` (an OS file
lock, released by the kernel when the holder exits, however it dies, so it never goes stale) and a
second process is refused with the holder's pid, host and start time. Readers (:meth:`Study.load`,
``study show`` / ``export``) take no lock.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from grabnas.errors import GrabnasError

#: ``PRAGMA application_id`` of a grabnas study (ASCII "GRAB"); set when the file is created.
APPLICATION_ID = 0x47524142

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    arch TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('asked', 'done', 'failed')),
    value REAL,
    test_value REAL,
    cost REAL,
    error TEXT,
    extra TEXT,
    asked_at REAL NOT NULL,
    told_at REAL
);
CREATE INDEX IF NOT EXISTS trials_by_status_value ON trials (status, value);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('ask', 'tell')),
    trial_ids TEXT NOT NULL,
    rng_state TEXT
);
"""


@dataclass(frozen=True)
class Trial:
    """One row of the ``trials`` table."""

    id: int
    arch: str
    status: str
    value: float | None
    test_value: float | None
    cost: float | None
    error: str | None
    extra: dict
    asked_at: float
    told_at: float | None


@dataclass(frozen=True)
class Event:
    """An ask (of one batch of trials) or a tell (of one batch), in the order they happened."""

    seq: int
    kind: str
    trial_ids: tuple[int, ...]
    rng_state: str | None


class Study:
    """A search's persistent record in an SQLite file.

    Use :meth:`open` (like Optuna's ``create_study(storage=..., load_if_exists=True)``): it
    creates the file with ``settings`` or, when it exists, checks that ``settings`` match the
    stored ones (a different search in the same file is refused with a clear error).
    """

    def __init__(self, path: str | Path, conn: sqlite3.Connection, lock: StudyLock | None = None) -> None:
        self.path = Path(path)
        self._conn = conn
        self._lock = lock

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, settings: dict, *, lock: bool = True) -> Study:
        """Create or load the study at ``path`` for a search with ``settings`` (JSON-able).

        With ``lock`` (the default) this process becomes the study's only writer until
        :meth:`close`; a study another process writes is refused. A file that is not a grabnas
        study is refused before anything is written to it."""
        path = Path(path)
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        existing = path.is_file() and path.stat().st_size > 0
        if existing:
            cls._read_settings(path)  # read-only: a foreign or damaged file is refused untouched
        held = StudyLock.acquire(path) if lock else None
        try:
            try:
                conn = sqlite3.connect(str(path), isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(SCHEMA)
                if not existing:
                    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            except sqlite3.DatabaseError as e:
                raise GrabnasError(
                    f"{path} is not a grabnas study ({e}); expected an SQLite file made by grabnas"
                ) from None
            study = cls(path, conn, held)
            stored = study.settings()
            wanted = json.loads(json.dumps(settings))
            if stored is None:
                study._set_meta("settings", wanted)
                study._set_meta("created", time.time())
            elif stored != wanted:
                study.close()
                raise GrabnasError(
                    f"{path} holds a study with other settings ({_differences(stored, wanted)}); "
                    "use another --study file or the same settings"
                )
            return study
        except BaseException:
            if held is not None:
                held.release()
            raise

    @classmethod
    def load(cls, path: str | Path) -> Study:
        """Open an existing study without checking settings and without the writer's lock (for
        ``study show`` / ``export`` while a search runs; do not record asks or tells through it)."""
        path = Path(path)
        if not path.is_file():
            raise GrabnasError(f"no study at {path}; expected the SQLite file given to --study")
        return cls.open(path, cls._read_settings(path), lock=False)

    @staticmethod
    def _read_settings(path: Path) -> dict:
        try:
            conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)  # '#', '?' are literal
            try:
                app_id = conn.execute("PRAGMA application_id").fetchone()[0]
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                row = (
                    conn.execute("SELECT value FROM meta WHERE key='settings'").fetchone() if "meta" in tables else None
                )
            finally:
                conn.close()
        except sqlite3.DatabaseError as e:
            raise GrabnasError(
                f"{path} is not a grabnas study ({e}); expected an SQLite file made by grabnas"
            ) from None
        if app_id not in (0, APPLICATION_ID) or not {"meta", "trials", "events"} <= tables or row is None:
            raise GrabnasError(
                f"{path} is not a grabnas study (tables {', '.join(sorted(tables)) or 'none'}); "
                "expected a file made by grabnas (left untouched)"
            )
        return _json(row[0], path, "settings")

    def close(self) -> None:
        self._conn.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- meta -------------------------------------------------------------------------------
    def _set_meta(self, key: str, value: object) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def _get_meta(self, key: str) -> object | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else _json(row[0], self.path, f"meta {key!r}")

    def settings(self) -> dict | None:
        return self._get_meta("settings")  # type: ignore[return-value]

    def set_info(self, key: str, value: object) -> None:
        """Store extra JSON-able information (e.g. the checkpoint card a search used)."""
        self._set_meta(f"info:{key}", value)

    def info(self, key: str) -> object | None:
        return self._get_meta(f"info:{key}")

    def check_optimizer_settings(self, settings: dict) -> None:
        """Record the optimizer's own settings (:meth:`Optimizer.settings`) on first use; later,
        refuse other values of the recorded ones, so a resumed search continues the search it
        started (settings a study made by an older version did not record are recorded now)."""
        stored = self.info("optimizer_settings")
        wanted = json.loads(json.dumps(settings))
        if stored is None:
            self.set_info("optimizer_settings", wanted)
            return
        if any(k not in wanted or stored[k] != wanted[k] for k in stored):
            raise GrabnasError(
                f"{self.path} was searched with other optimizer settings ({_differences(stored, wanted)}); "
                "use another --study file or the settings it was made with"
            )
        if set(wanted) - set(stored):
            self.set_info("optimizer_settings", {**stored, **wanted})

    # -- recording ------------------------------------------------------------------------------
    def record_ask(
        self, archs: Sequence[str], rng_state: str | None = None, extras: Sequence[dict | None] | None = None
    ) -> list[int]:
        """Record one ask of ``archs``; returns their trial ids. ``extras``: per trial, what the
        ask itself says about it (e.g. the fidelity of a multi-fidelity trial), kept in the trial's
        ``extra`` (the tell's extra is merged into it). Atomic."""
        now = time.time()
        extras = extras or [None] * len(archs)
        with self._transaction() as c:
            ids = []
            for a, extra in zip(archs, extras):
                cur = c.execute(
                    "INSERT INTO trials (arch, status, extra, asked_at) VALUES (?, 'asked', ?, ?)",
                    (a, json.dumps(extra) if extra else None, now),
                )
                ids.append(int(cur.lastrowid))
            c.execute(
                "INSERT INTO events (kind, trial_ids, rng_state) VALUES ('ask', ?, ?)", (json.dumps(ids), rng_state)
            )
        return ids

    def record_tell(
        self,
        trial_ids: Sequence[int],
        values: Sequence[float | None],
        test_values: Sequence[float | None] | None = None,
        costs: Sequence[float | None] | None = None,
        errors: Sequence[str | None] | None = None,
        extras: Sequence[dict | None] | None = None,
    ) -> None:
        """Record the results of trials (``None`` value = failed). Atomic."""
        n = len(trial_ids)
        test_values = test_values or [None] * n
        costs = costs or [None] * n
        errors = errors or [None] * n
        extras = extras or [None] * n
        now = time.time()
        with self._transaction() as c:
            for tid, v, t, cost, err, extra in zip(trial_ids, values, test_values, costs, errors, extras):
                status = "failed" if v is None else "done"
                asked = c.execute("SELECT extra FROM trials WHERE id=?", (tid,)).fetchone()
                if asked and asked[0]:  # what the ask recorded (e.g. retry_of) stays
                    extra = {**json.loads(asked[0]), **(extra or {})}
                cur = c.execute(
                    "UPDATE trials SET status=?, value=?, test_value=?, cost=?, error=?, extra=?, told_at=? "
                    "WHERE id=? AND status='asked'",
                    (status, v, t, cost, err, json.dumps(extra or {}), now, tid),
                )
                if cur.rowcount != 1:
                    raise GrabnasError(f"trial {tid} of {self.path} is not waiting for a result")
            c.execute("INSERT INTO events (kind, trial_ids) VALUES ('tell', ?)", (json.dumps(list(trial_ids)),))

    def record_retry(self, failed_ids: Sequence[int]) -> list[int]:
        """Ask the failed trials ``failed_ids`` again: new ``asked`` trials of the same
        architectures, recorded as one ask event marked :data:`~grabnas.search.loop.RETRY_EVENT`
        (replay skips it). The failed trials stay, listed by :meth:`retried`. Atomic."""
        from grabnas.search.loop import RETRY_EVENT

        now = time.time()
        with self._transaction() as c:
            retried = set(self._get_meta("retried") or [])
            ids = []
            for tid in failed_ids:
                row = c.execute("SELECT arch, status FROM trials WHERE id=?", (tid,)).fetchone()
                if row is None or row[1] != "failed" or tid in retried:
                    raise GrabnasError(f"trial {tid} of {self.path} is not a failed trial to retry")
                cur = c.execute(
                    "INSERT INTO trials (arch, status, extra, asked_at) VALUES (?, 'asked', ?, ?)",
                    (row[0], json.dumps({"retry_of": tid}), now),
                )
                ids.append(int(cur.lastrowid))
                retried.add(tid)
            c.execute(
                "INSERT INTO events (kind, trial_ids, rng_state) VALUES ('ask', ?, ?)", (json.dumps(ids), RETRY_EVENT)
            )
            self._set_meta("retried", sorted(retried))
        return ids

    def retried(self) -> list[int]:
        """Failed trials asked again by :meth:`record_retry` (they no longer count as finished)."""
        return list(self._get_meta("retried") or [])

    class _Tx:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def __enter__(self) -> sqlite3.Connection:
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, exc_type, *_: object) -> None:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")

    def _transaction(self) -> Study._Tx:
        return Study._Tx(self._conn)

    # -- reading -------------------------------------------------------------------------------
    def trials(self, status: str | None = None) -> list[Trial]:
        q = f"SELECT {self._COLUMNS} FROM trials"
        rows = self._conn.execute(
            q + (" WHERE status=?" if status else "") + " ORDER BY id", (status,) if status else ()
        )
        return [self._trial(r) for r in rows]

    _COLUMNS = "id, arch, status, value, test_value, cost, error, extra, asked_at, told_at"

    def _trial(self, r: tuple) -> Trial:
        extra = _json(r[7] or "{}", self.path, f"trial {r[0]}")
        return Trial(r[0], r[1], r[2], r[3], r[4], r[5], r[6], extra if isinstance(extra, dict) else {}, r[8], r[9])

    def count(self, status: str | None = None) -> int:
        """How many trials (of ``status``: asked, done or failed) the study holds."""
        q = "SELECT COUNT(*) FROM trials" + (" WHERE status=?" if status else "")
        return int(self._conn.execute(q, (status,) if status else ()).fetchone()[0])

    def events(self) -> Iterator[Event]:
        known = {r[0] for r in self._conn.execute("SELECT id FROM trials")}
        for seq, kind, ids, rng in self._conn.execute(
            "SELECT seq, kind, trial_ids, rng_state FROM events ORDER BY seq"
        ):
            trial_ids = _json(ids, self.path, f"event {seq}")
            if not isinstance(trial_ids, list) or not set(trial_ids) <= known:
                raise GrabnasError(
                    f"{self.path} is damaged: event {seq} names trials {ids[:80]} it does not hold; "
                    "expected a study written by grabnas only"
                )
            yield Event(seq, kind, tuple(trial_ids), rng)

    def best(self, k: int = 1) -> list[Trial]:
        """The ``k`` best finished trials (highest value first; ties: the earlier trial); in a
        multi-fidelity study (settings with ``fidelities``) those of the target (last) fidelity."""
        target = self.target_fidelity()
        if target is None:
            rows = self._conn.execute(
                f"SELECT {self._COLUMNS} FROM trials WHERE status='done' ORDER BY value DESC, id LIMIT ?", (k,)
            )
            return [self._trial(r) for r in rows]
        rows = self._conn.execute(f"SELECT {self._COLUMNS} FROM trials WHERE status='done' ORDER BY value DESC, id")
        return [t for t in map(self._trial, rows) if t.extra.get("fidelity") == target][:k]

    def target_fidelity(self) -> str | None:
        """The target fidelity's name of a multi-fidelity study (its settings' ``fidelities``),
        None for a single-fidelity one."""
        fidelities = (self.settings() or {}).get("fidelities")
        names = fidelities.get("names") if isinstance(fidelities, dict) else None
        return str(names[-1]) if names else None

    def export_csv(self, path: str | Path) -> Path:
        """Write every trial as a CSV row (id, arch, status, value, test_value, cost, error, ...),
        through a temporary file renamed into place; refuses to write onto the study itself."""
        import os

        path = Path(path)
        if path.exists() and path.resolve() == Path(self.path).resolve():
            raise GrabnasError(
                f"refusing to export the study onto itself ({path}); give --out another file, e.g. trials.csv"
            )
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["trial", "arch", "status", "value", "test_value", "cost", "error", "asked_at", "told_at"])
            for t in self.trials():
                w.writerow(
                    [t.id, t.arch, t.status, t.value, t.test_value, t.cost, t.error or "", t.asked_at, t.told_at]
                )
        os.replace(tmp, path)
        return path


def _differences(stored: dict, wanted: dict) -> str:
    """``"key A there, B now, ..."`` for the keys whose values differ."""
    keys = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
    return ", ".join(f"{k} {stored.get(k)!r} there, {wanted.get(k)!r} now" for k in keys)


def _json(text: str, path: Path, where: str) -> object:
    """``json.loads(text)``, or a one-line error naming the study and the damaged record."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        raise GrabnasError(
            f"{path} is damaged: {where} holds {str(text)[:80]!r}, not JSON; expected a study written by grabnas only"
        ) from None


class StudyLock:
    """An exclusive OS lock on ``<study>.lock`` held by the study's one writer (see the module doc).

    The lock file names its holder (pid, host, time) for the error a second writer gets. Where
    ``fcntl`` is missing (Windows) no lock is taken."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd

    @classmethod
    def acquire(cls, study_path: Path) -> StudyLock | None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return None
        path = study_path.with_name(study_path.name + ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise GrabnasError(
                f"{study_path} is being written by {holder}; expected one search per study "
                "(wait for it, stop it, or use another --study file)"
            ) from None
        os.ftruncate(fd, 0)
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {started}".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd >= 0:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = -1
