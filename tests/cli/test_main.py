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
