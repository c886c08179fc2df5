"""Build ``nb201_accuracies.csv`` from the official NATS-Bench topology (``tss``) benchmark files.

Accepted sources (the metrics are computed by the ``nats_bench`` package, the optional extra
``grabnas[nats]``):

* the fast-mode directory ``NATS-tss-v1_0-3ffb9-simple/`` (``meta.pickle.pbz2`` plus one
  ``NNNNNN.pickle.pbz2`` per architecture), ``fast_mode=True``;
* the single file ``NATS-tss-v1_0-3ffb9.pickle.pbz2`` (a path without the ``.pickle.pbz2``
  suffix is accepted too), ``fast_mode=False``.

The bz2-compressed pickles are read here, not by ``nats_bench`` (whose loader is the plain
``pickle`` module, which runs any code a crafted file holds), with :class:`NatsUnpickler`: an
allow-list unpickler that builds only builtin containers and scalars, ``collections.OrderedDict``
and numpy arrays / scalars (:data:`ALLOWED_GLOBALS`); any other global (``os.system``,
``builtins.exec``, ``subprocess.Popen``, a class) is refused with a :class:`BenchmarkFileError`
before it is called. ``trust_pickle=True`` (``grabnas nb201 convert --trust-pickle``) reads with the
plain unpickler instead, which runs code from the file: only for a file you trust that the
allow-list refuses. The records are then handed to the ``nats_bench`` API as plain state dicts.

Each accuracy column is the mean over the benchmark's seeds (``is_random=False``):

=========================  ===========================================================================
column                     call
=========================  ===========================================================================
``cifar10_test_200ep``     ``get_more_info(i, "cifar10", hp="200", is_random=False)["test-accuracy"]``
``cifar100_test_200ep``    ``get_more_info(i, "cifar100", hp="200", is_random=False)["test-accuracy"]``
``imagenet16_test_200ep``  ``get_more_info(i, "ImageNet16-120", hp="200", is_random=False)["test-accuracy"]``
``cifar10_test_12ep``      ``get_more_info(i, "cifar10", hp="12", is_random=False)["test-accuracy"]``
``cifar10valid_val_12ep``  ``get_more_info(i, "cifar10-valid", hp="12", is_random=False)["valid-accuracy"]``
``cifar100_test_12ep``     ``get_more_info(i, "cifar100", hp="12", is_random=False)["test-accuracy"]``
``cifar100_val_12ep``      ``get_more_info(i, "cifar100", hp="12", is_random=False)["valid-accuracy"]``
``imagenet16_test_12ep``   ``get_more_info(i, "ImageNet16-120", hp="12", is_random=False)["test-accuracy"]``
``imagenet16_val_12ep``    ``get_more_info(i, "ImageNet16-120", hp="12", is_random=False)["valid-accuracy"]``
=========================  ===========================================================================

That is: CIFAR-10 test = split ``ori-test`` of ``cifar10`` (trained on train+valid), CIFAR-10
validation = split ``x-valid`` of ``cifar10-valid`` (trained on train only), CIFAR-100 and
ImageNet16-120 test / validation = splits ``x-test`` / ``x-valid``. A metric the benchmark does
not hold for an index (no such hp, dataset or split, or no record at all) is an empty cell.
"""

from __future__ import annotations

import bz2
import collections
import csv
import math
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

from grabnas.errors import BenchmarkFileError, GrabnasError, InvalidArchitectureError
from grabnas.spaces.nb201 import NB201Space

COLUMNS: tuple[str, ...] = (
    "nb201_index",
    "arch_str",
    "naslib_op_indices",
    "cifar10_test_200ep",
    "cifar100_test_200ep",
    "imagenet16_test_200ep",
    "cifar10_test_12ep",
    "cifar10valid_val_12ep",
    "cifar100_test_12ep",
    "cifar100_val_12ep",
    "imagenet16_test_12ep",
    "imagenet16_val_12ep",
)

#: (hp, nats_bench dataset) -> [(get_more_info key, column)]
METRIC_CALLS: dict[tuple[str, str], list[tuple[str, str]]] = {
    ("200", "cifar10"): [("test-accuracy", "cifar10_test_200ep")],
    ("200", "cifar100"): [("test-accuracy", "cifar100_test_200ep")],
    ("200", "ImageNet16-120"): [("test-accuracy", "imagenet16_test_200ep")],
    ("12", "cifar10"): [("test-accuracy", "cifar10_test_12ep")],
    ("12", "cifar10-valid"): [("valid-accuracy", "cifar10valid_val_12ep")],
    ("12", "cifar100"): [("test-accuracy", "cifar100_test_12ep"), ("valid-accuracy", "cifar100_val_12ep")],
    ("12", "ImageNet16-120"): [
        ("test-accuracy", "imagenet16_test_12ep"),
        ("valid-accuracy", "imagenet16_val_12ep"),
    ],
}

PICKLE_EXT = ".pickle.pbz2"
_EXPECTED = (
    "expected the NATS-Bench topology benchmark: the fast-mode directory NATS-tss-v1_0-3ffb9-simple/ "
    "or the file NATS-tss-v1_0-3ffb9.pickle.pbz2"
)


#: (module, name) globals a NATS-Bench pickle may reference; everything else is refused.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool")}
    | {("builtins", n) for n in ("str", "bytes", "bytearray")}
    | {
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),  # bytes in protocol <= 2 pickles
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),  # numpy 1 pickles
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),  # numpy 2 pickles
        ("numpy._core.multiarray", "scalar"),
    }
)
_SAFE_CONTENT = "expected NATS-Bench data (dicts, lists, numbers, strings)"


def _allowed_global(module: str, name: str) -> Any:
    if module in ("builtins", "__builtin__"):
        import builtins

        return getattr(builtins, name)
    if module == "collections":
        return collections.OrderedDict
    if module == "_codecs":
        import codecs

        return codecs.encode
    import numpy

    if module == "numpy":
        return getattr(numpy, name)
    try:  # numpy 2 names it numpy._core; numpy 1 numpy.core (resolved without the deprecated alias)
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1
        from numpy.core import multiarray  # type: ignore[no-redef]
    return getattr(multiarray, name)


class NatsUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`ALLOWED_GLOBALS`; any other global raises
    :class:`BenchmarkFileError` naming ``path`` and the global, so no code from the file runs."""

    def __init__(self, file: Any, path: str | os.PathLike) -> None:
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        key = ("builtins" if module == "__builtin__" else module, name)
        if key in ALLOWED_GLOBALS:
            return _allowed_global(*key)
        shown = " ".join(f"{module}.{name}".split())[:120]
        raise BenchmarkFileError(
            f"{self.path} holds a pickle that calls {shown}; {_SAFE_CONTENT} "
            "(only for a file you trust: --trust-pickle / trust_pickle=True loads it with plain pickle, running its code)"
        )


def load_nats_pickle(path: str | os.PathLike, *, trust_pickle: bool = False) -> Any:
    """Read one bz2-compressed NATS-Bench pickle (``*.pickle.pbz2``) with :class:`NatsUnpickler`
    (or, with ``trust_pickle=True``, the plain unpickler, which runs code from the file).

    A refused global raises :class:`BenchmarkFileError`; any other failure (not bz2, not a pickle,
    truncated) propagates as the underlying exception.
    """
    with bz2.open(path, "rb") as f:
        if trust_pickle:
            return pickle.load(f)  # noqa: S301 - explicit opt-in
        return NatsUnpickler(f, path).load()


def _read(path: Path, what: str, trust_pickle: bool) -> Any:
    try:
        return load_nats_pickle(path, trust_pickle=trust_pickle)
    except BenchmarkFileError:
        raise
    except Exception as e:  # noqa: BLE001 - bz2 / pickle raise many kinds of error for a bad file
        raise BenchmarkFileError(f"cannot read {path} ({_one_line(e)}); {what}") from None


def _hp_records(data: object, path: Path, what: str) -> dict:
    """``{hp: ArchResults}`` from one architecture's ``{hp: state dict}``, as ``nats_bench`` builds it."""
    from nats_bench import ArchResults

    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        # a str would make ArchResults load it as a file path with plain pickle
        raise BenchmarkFileError(f"cannot read {path} (an architecture record is not a dict of dicts); {what}")
    try:
        return collections.OrderedDict((hp, ArchResults.create_from_state_dict(r)) for hp, r in data.items())
    except Exception as e:  # noqa: BLE001
        raise BenchmarkFileError(f"cannot read {path} ({_one_line(e)}); {what}") from None


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _resolve_source(source: str | os.PathLike, fast_mode: bool | None) -> tuple[Path, bool]:
    p = Path(source).expanduser()
    if not p.exists() and not p.name.endswith(PICKLE_EXT):
        alt = p.with_name(p.name + PICKLE_EXT)
        if alt.is_file():
            p = alt
    if not p.exists():
        raise BenchmarkFileError(f"NATS-Bench file not found at {p}; {_EXPECTED}")
    is_dir = p.is_dir()
    if fast_mode is None:
        fast_mode = is_dir
    if fast_mode and not is_dir:
        raise BenchmarkFileError(
            f"{p} is a file but fast_mode=True needs the directory NATS-tss-v1_0-3ffb9-simple/; "
            "pass fast_mode=False (or None) for the single .pickle.pbz2 file"
        )
    if not fast_mode and is_dir:
        raise BenchmarkFileError(
            f"{p} is a directory but fast_mode=False needs the file NATS-tss-v1_0-3ffb9.pickle.pbz2; "
            "pass fast_mode=True (or None) for the fast-mode directory"
        )
    if is_dir and not (p / ("meta" + PICKLE_EXT)).is_file():
        raise BenchmarkFileError(f"{p} has no meta{PICKLE_EXT}; {_EXPECTED}")
    return p, bool(fast_mode)


def _archive_file(archive_dir: Path, index: int) -> Path | None:
    for name in (f"{index:06d}{PICKLE_EXT}", f"{index:d}{PICKLE_EXT}"):
        f = archive_dir / name
        if f.is_file():
            return f
    return None


def _cell(value: object) -> object:
    if value is None:
        return ""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return x if math.isfinite(x) else ""


def convert_nats_topology(
    source: str | os.PathLike,
    out_csv: str | os.PathLike,
    *,
    fast_mode: bool | None = None,
    progress: bool = True,
    trust_pickle: bool = False,
) -> int:
    """Write the NB201 accuracy table (columns :data:`COLUMNS`, benchmark index order) to ``out_csv``
    from the NATS-Bench topology benchmark at ``source``; return the number of rows written.

    ``fast_mode=None`` picks fast mode for a directory and the full loader for a file. The files are
    read with the allow-list :class:`NatsUnpickler`; ``trust_pickle=True`` uses plain pickle, which
    runs code from the file.
    """
    try:
        import nats_bench
    except ImportError:
        raise GrabnasError(
            "converting NATS-Bench files needs the nats_bench package: pip install nats_bench "
            "(or pip install 'grabnas[nats]')"
        ) from None

    src, fast = _resolve_source(source, fast_mode)
    out = Path(out_csv).expanduser()
    if out.is_dir():
        raise BenchmarkFileError(f"output {out} is a directory; expected a CSV file path such as nb201_accuracies.csv")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GrabnasError(f"cannot create the output folder {out.parent} ({_one_line(e)})") from None

    # Read the pickles here (allow-list unpickler), never through nats_bench's plain-pickle loader:
    # the API is built from a dict without records, which are added one index at a time below.
    meta_file = src / ("meta" + PICKLE_EXT) if fast else src
    data = _read(meta_file, _EXPECTED, trust_pickle)
    keys = ("meta_archs",) if fast else ("meta_archs", "arch2infos", "evaluated_indexes")
    missing = [k for k in keys if not isinstance(data, dict) or k not in data]
    if missing:
        raise BenchmarkFileError(f"cannot read {meta_file} (no key {missing[0]!r}); {_EXPECTED}")
    arch2infos: dict = {} if fast else data["arch2infos"]
    try:
        if not isinstance(arch2infos, dict):
            raise ValueError(f"arch2infos is a {type(arch2infos).__name__}, not a dict")
        evaluated = [] if fast else list(data["evaluated_indexes"])
        api = nats_bench.create(
            {"meta_archs": data["meta_archs"], "arch2infos": {}, "evaluated_indexes": evaluated},
            "tss",
            fast_mode=False,
            verbose=False,
        )
        meta_archs = list(api.meta_archs)
    except Exception as e:  # noqa: BLE001 - the API raises many kinds of error for a bad file
        raise BenchmarkFileError(f"nats_bench cannot read {src} ({_one_line(e)}); {_EXPECTED}") from None
    del data

    space = NB201Space()
    n = len(meta_archs)
    if n == 0:
        raise BenchmarkFileError(f"{src} lists no architectures; {_EXPECTED}")

    from tqdm.auto import tqdm

    tmp = out.with_name(out.name + ".part")
    no_record = 0
    empty_cells = 0
    rows_with_data = 0
    try:
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(COLUMNS)
            for i in tqdm(range(n), desc="NATS-Bench -> CSV", unit="arch", disable=not progress):
                arch_str = meta_archs[i]
                try:
                    arch = space.parse(str(arch_str))
                    if arch.to_string() != arch_str:
                        raise InvalidArchitectureError(str(arch_str))
                    naslib = arch.naslib_indices()
                except InvalidArchitectureError:
                    raise BenchmarkFileError(
                        f"{src}: architecture {i} is {str(arch_str)[:80]!r}, not an NB201 cell string; {_EXPECTED}"
                    ) from None
                row: dict[str, object] = {c: "" for c in COLUMNS}
                row.update(nb201_index=i, arch_str=arch_str, naslib_op_indices=str(naslib))

                has_record = True
                if fast:
                    arch_file = _archive_file(src, i)
                    if arch_file is None:
                        has_record = False
                    else:
                        what = (
                            "expected the per-architecture file of the fast-mode directory NATS-tss-v1_0-3ffb9-simple/"
                        )
                        record = _read(arch_file, what, trust_pickle)
                        api.arch2infos_dict[i] = _hp_records(record, arch_file, what)
                        api.evaluated_indexes.add(i)
                        del record
                elif i in arch2infos:
                    api.arch2infos_dict[i] = _hp_records(arch2infos[i], src, _EXPECTED)
                else:
                    has_record = False

                if has_record:
                    for (hp, dataset), wanted in METRIC_CALLS.items():
                        try:
                            info = api.get_more_info(i, dataset, hp=hp, is_random=False)
                        except Exception:  # noqa: BLE001 - hp/dataset/split not held for this index
                            continue
                        for key, column in wanted:
                            row[column] = _cell(info.get(key))
                else:
                    no_record += 1
                # keep memory flat: each record is built once
                api.arch2infos_dict.pop(i, None)
                if fast:
                    api.evaluated_indexes.discard(i)

                cells = [row[c] for c in COLUMNS[3:]]
                n_empty = sum(1 for c in cells if c == "")
                empty_cells += n_empty
                rows_with_data += n_empty < len(cells)
                writer.writerow([row[c] for c in COLUMNS])
        if rows_with_data == 0:
            raise BenchmarkFileError(f"{src} holds no accuracy for any of its {n} architectures; {_EXPECTED}")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

    if empty_cells:
        warnings.warn(
            f"{out}: {empty_cells} empty accuracy cell(s); {no_record} of {n} architectures have no record in {src}",
            stacklevel=2,
        )
    return n


__all__ = ["ALLOWED_GLOBALS", "COLUMNS", "METRIC_CALLS", "NatsUnpickler", "convert_nats_topology", "load_nats_pickle"]
