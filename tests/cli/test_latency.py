"""``grabnas latency``: writes a table, reuses it, refuses another device's or setting's."""

import json

from grabnas.cli import main

TINY = ["--channels", "4", "--cells", "1", "--image-size", "8", "--sample", "12", "--repeats", "3", "--warmup", "1"]


def test_latency_cli_writes_reuses_and_refuses(tmp_path, capsys):
    out = tmp_path / "lat.json"
    argv = ["latency", "--device", "cpu", "--out", str(out), "--threads", "1", "--no-progress", *TINY]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "held-out MAPE" in text and "Spearman" in text and "batch 1" in text
    before = out.read_text()
    assert main(argv) == 0  # the cache: same device and settings
    assert f"reusing {out}" in capsys.readouterr().out and out.read_text() == before
    for extra, fragment in (
        (["--batch-size", "2"], "it holds batch size 1, not 2"),
        (["--channels", "5"], "it was measured for the NB201 network with C=4, N=1, 10 classes, 3x8x8 inputs"),
    ):
        assert main([*argv, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("grabnas: error:") and fragment in err and "\n" not in err
    d = json.loads(before)
    d["device"]["name"] = "another CPU"
    out.write_text(json.dumps(d))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "it was measured on cpu 'another CPU'" in err and "\n" not in err
