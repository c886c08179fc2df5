import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from grabnas.errors import GrabnasError
from grabnas.study import Study


def test_open_records_and_reads(tmp_path):
    st = Study.open(tmp_path / "s.db", {"task": "t", "seed": 1})
    ids = st.record_ask(["a", "b"], rng_state="r")
    st.record_tell([ids[1]], [2.0], [1.5], [3.0])
    st.record_tell([ids[0]], [None], errors=["boom"])
    trials = st.trials()
    assert [(t.arch, t.status, t.value) for t in trials] == [("a", "failed", None), ("b", "done", 2.0)]
    assert trials[0].error == "boom" and trials[1].test_value == 1.5
    assert [e.kind for e in st.events()] == ["ask", "tell", "tell"]
    assert st.best(1)[0].arch == "b"
    with pytest.raises(GrabnasError, match="not waiting for a result"):
        st.record_tell([ids[1]], [1.0])
    st.close()


def test_other_settings_refused(tmp_path):
    Study.open(tmp_path / "s.db", {"task": "t", "seed": 1}).close()
    with pytest.raises(GrabnasError, match="seed 1 there, 2 now"):
        Study.open(tmp_path / "s.db", {"task": "t", "seed": 2})


def test_not_a_study(tmp_path):
    p = tmp_path / "junk.db"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(GrabnasError, match="is not a grabnas study"):
        Study.open(p, {})
    with pytest.raises(GrabnasError, match="no study at"):
        Study.load(tmp_path / "missing.db")


def test_export_csv(tmp_path):
    st = Study.open(tmp_path / "s.db", {})
    st.record_tell(st.record_ask(["x"]), [1.0])
    text = st.export_csv(tmp_path / "t.csv").read_text().splitlines()
    assert text[0].startswith("trial,arch,status,value") and text[1].startswith("1,x,done,1.0")
    # the study itself is never overwritten (once a CLI user's data loss: --out S.db)
    before = (tmp_path / "s.db").read_bytes()
    with pytest.raises(GrabnasError, match="onto itself"):
        st.export_csv(tmp_path / "s.db")
    assert (tmp_path / "s.db").read_bytes() == before
    assert [t.arch for t in Study.load(tmp_path / "s.db").trials()] == ["x"]


SCRIPT = textwrap.dedent(
    """
    import sys, time
    from grabnas.benchmarks.nb201 import load_nb201
    from grabnas.evaluation.lookup import LookupEvaluator
    from grabnas.search.baselines import RegularizedEvolution
    from grabnas.search.loop import run_search
    from grabnas.study import Study

    table, db, budget, delay = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    bench = load_nb201(table)
    lookup = LookupEvaluator(bench, "cifar100")

    def slow(arch):
        time.sleep(delay)
        return lookup(arch)

    opt = RegularizedEvolution(bench.space, seed=7)
    run_search(opt, slow, Study.open(db, {"seed": 7}), budget)
    """
)


def test_killed_study_resumes_without_loss_or_repeat(tmp_path, nb201_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    budget = 30
    # the uninterrupted reference
    subprocess.run(
        [sys.executable, str(script), str(nb201_path), str(tmp_path / "ref.db"), str(budget), "0"], check=True
    )
    # a run killed with SIGKILL in the middle of an evaluation
    db = tmp_path / "killed.db"
    proc = subprocess.Popen([sys.executable, str(script), str(nb201_path), str(db), str(budget), "0.1"])
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            with Study.load(db) as st:  # a reader: the running search holds the writer lock
                if st.count("done") >= 12:
                    break
        except GrabnasError:  # not created yet, or created but its tables not yet written
            continue
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with Study.open(db, {"seed": 7}) as st:
        n_killed = len(st.trials("done"))
        assert 12 <= n_killed < budget
    # resume with the same command
    subprocess.run([sys.executable, str(script), str(nb201_path), str(db), str(budget), "0"], check=True)
    with Study.open(tmp_path / "ref.db", {"seed": 7}) as ref, Study.open(db, {"seed": 7}) as got:
        want = [(t.arch, t.value) for t in ref.trials()]
        have = [(t.arch, t.value) for t in got.trials()]
    assert len(have) == budget and have == want  # same evaluations, none lost, none repeated


def test_one_writer_at_a_time_and_the_holder_is_named(tmp_path):
    db = tmp_path / "s.db"
    first = Study.open(db, {"seed": 1})
    first.record_ask(["a"])
    # another process wants to write the same study: refused, naming the holder, nothing written
    code = (
        "import sys; from grabnas.study import Study; from grabnas.errors import GrabnasError\n"
        "try:\n    Study.open(sys.argv[1], {'seed': 1})\nexcept GrabnasError as e:\n    print(e); sys.exit(3)\n"
    )
    other = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True)
    assert other.returncode == 3, other.stderr
    assert f"is being written by pid {os.getpid()} on " in other.stdout and "one search per study" in other.stdout
    with Study.load(db) as reader:  # readers need no lock
        assert reader.count() == 1 and reader.count("asked") == 1
    first.close()
    with Study.open(db, {"seed": 1}) as again:  # released on close (and by the kernel on any exit)
        assert again.count("asked") == 1


def test_foreign_and_damaged_files_are_refused_untouched(tmp_path):
    import sqlite3

    foreign = tmp_path / "app.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    with pytest.raises(GrabnasError, match=r"is not a grabnas study \(tables users\).*left untouched"):
        Study.open(foreign, {"seed": 1})
    assert foreign.read_bytes() == before and not (tmp_path / "app.db-wal").exists()
    text = tmp_path / "notes.db"
    text.write_text("hello")
    with pytest.raises(GrabnasError, match="is not a grabnas study"):
        Study.load(text)
    assert text.read_text() == "hello"
    # hand-edited: bad JSON in a trial, an event naming a trial that does not exist
    db = tmp_path / "exp#3.db"  # '#' and '?' are part of the name, not a URI fragment
    with Study.open(db, {"seed": 1}) as st:
        (tid,) = st.record_ask(["a"])
        st.record_tell([tid], [1.0])
    assert not (tmp_path / "exp").exists()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE trials SET extra='{oops' WHERE id=?", (tid,))
    conn.execute("INSERT INTO events (kind, trial_ids) VALUES ('tell', '[99]')")
    conn.commit()
    conn.close()
    with Study.load(db) as st:
        with pytest.raises(GrabnasError, match=r"is damaged: trial 1 holds '\{oops'"):
            st.trials()
        with pytest.raises(GrabnasError, match=r"is damaged: event 3 names trials \[99\]"):
            list(st.events())
        assert st.count("done") == 1  # counting needs no damaged field


def test_retry_asks_failed_trials_again_once(tmp_path):
    with Study.open(tmp_path / "s.db", {"seed": 1}) as st:
        a, b = st.record_ask(["a", "b"])
        st.record_tell([a, b], [None, 2.0], errors=["boom", None])
        with pytest.raises(GrabnasError, match=f"trial {b} of .* is not a failed trial to retry"):
            st.record_retry([b])
        (again,) = st.record_retry([a])
        assert st.retried() == [a] and [t.status for t in st.trials()] == ["failed", "done", "asked"]
        assert st.trials("asked")[0].arch == "a" and st.trials("asked")[0].extra == {"retry_of": a}
        with pytest.raises(GrabnasError, match="not a failed trial to retry"):
            st.record_retry([a])  # once
        st.record_tell([again], [1.5], extras=[{"params": 3}])
        assert st.trials("done")[-1].extra == {"retry_of": a, "params": 3}
        assert [e.rng_state for e in st.events()][-2] == "retry"


def test_asks_record_extras_and_a_multifidelity_study_reports_its_target_fidelity(tmp_path):
    from grabnas.study import Study

    with Study.open(tmp_path / "mf.db", {"fidelities": {"names": ["12ep", "200ep"], "epochs": [12, 200]}}) as st:
        ids = st.record_ask(["a", "b", "a"], None, [{"fidelity": "12ep"}, {"fidelity": "12ep"}, {"fidelity": "200ep"}])
        st.record_tell(ids, [95.0, 90.0, 80.0], extras=[{"x": 1}, None, None])
        assert [t.extra.get("fidelity") for t in st.trials()] == ["12ep", "12ep", "200ep"]
        assert st.trials()[0].extra == {"fidelity": "12ep", "x": 1}
        assert st.target_fidelity() == "200ep"
        assert [t.id for t in st.best(2)] == [ids[2]]  # the 12-epoch values do not count
