"""The ``grabnas`` entry point (grabnas.cli.main, ``python -m grabnas.cli``)."""

import subprocess
import sys


def test_console_script_runs_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "grabnas.cli", "bench", "--benchmark", "nb999", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip() == "grabnas: error: unknown benchmark 'nb999'; expected nb201, nasbench-graph or csv:PATH"
    )


def test_an_error_quoting_a_huge_argument_stays_one_short_line(tmp_path, capsys):
    from grabnas.cli import main

    huge = "x" * 100_000
    assert main(["search", "--task", huge, "--study", str(tmp_path / "s.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("grabnas: error: unknown task 'xxx") and "\n" not in err and len(err) < 1_000 + 40
