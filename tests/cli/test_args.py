"""The shared argument types of the ``grabnas`` command (grabnas.cli.args)."""

import argparse

import pytest

from grabnas.cli.args import csv_list


def test_csv_list_keeps_bracketed_commas():
    assert csv_list("rea, grabnas[t_bo=5,eta=0.1] ,digits[0,3,7]@12") == (
        "rea",
        "grabnas[t_bo=5,eta=0.1]",
        "digits[0,3,7]@12",
    )
    with pytest.raises(argparse.ArgumentTypeError, match="comma-separated list"):
        csv_list(" , ")
