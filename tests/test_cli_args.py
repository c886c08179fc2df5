import argparse

import pytest

from grabnas.cli_args import csv_list, split_top_level


def test_csv_list_keeps_bracketed_commas():
    assert csv_list("rea, grabnas[t_bo=5,eta=0.1] ,digits[0,3,7]@12") == (
        "rea",
        "grabnas[t_bo=5,eta=0.1]",
        "digits[0,3,7]@12",
    )
    assert split_top_level("a[1,[2,3]],b") == ["a[1,[2,3]]", "b"]
    with pytest.raises(argparse.ArgumentTypeError, match="comma-separated list"):
        csv_list(" , ")
