"""grabnas export: a standalone module (loads without grabnas) and a cell picture."""

from __future__ import annotations

import argparse
import importlib.util
import sys

import pytest
import torch

from grabnas.cli.export import add_export_command
from grabnas.errors import GrabnasError
from grabnas.export import export_architecture
from grabnas.train.network import TinyNetwork, count_parameters

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"


def _load_without_grabnas(path, monkeypatch):
    for name in list(sys.modules):
        if name == "grabnas" or name.startswith("grabnas."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "grabnas", None)  # any import of grabnas now fails
    spec = importlib.util.spec_from_file_location("exported_net", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_files_standalone(tmp_path, monkeypatch):
    files = export_architecture(ARCH, tmp_path, num_classes=7, channels=4, cells=1, in_channels=1, name="mynet")
    assert files.module.name == "mynet.py" and files.picture.name == "mynet_cell.png"
    assert files.picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    expected = count_parameters(TinyNetwork(files_ops(), 4, 1, 7, 1))
    assert files.params == expected
    m = _load_without_grabnas(files.module, monkeypatch)
    model = m.build_model()
    assert m.ARCH == ARCH and count_parameters(model) == expected
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 7)


def files_ops():
    from grabnas.spaces.nb201 import NB201Space

    return NB201Space().parse(ARCH).ops


def test_export_cli(tmp_path, capsys):
    p = argparse.ArgumentParser(prog="grabnas")
    add_export_command(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["export", "(2, 2, 0, 4, 2, 0)", "--classes", "10", "--out", str(tmp_path)])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "M parameters" in out and len(list(tmp_path.glob("nb201_*.py"))) == 1
    args = p.parse_args(["export", "|conv~0|", "--out", str(tmp_path)])
    with pytest.raises(GrabnasError, match="malformed NB201 cell string"):
        args.handler(args)
    args = p.parse_args(["export", ARCH, "--out", str(tmp_path), "--name", "1bad-name"])
    with pytest.raises(GrabnasError, match="module name"):
        args.handler(args)


def test_export_of_a_network_too_big_to_build_leaves_no_file(tmp_path, monkeypatch):
    import grabnas.train.network as network
    from grabnas.export import export_architecture

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory")

    monkeypatch.setattr(network, "TinyNetwork", out_of_memory)
    with pytest.raises(GrabnasError, match=r"cannot build the network with 100000 channels .*not enough memory"):
        export_architecture(ARCH, tmp_path / "out", channels=100000)
    assert not (tmp_path / "out").exists()
