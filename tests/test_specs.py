"""Comma lists and NAME[key=value,...] specs (grabnas.specs)."""

from grabnas.specs import split_top_level


def test_split_top_level_keeps_bracketed_commas():
    assert split_top_level("a[1,[2,3]],b") == ["a[1,[2,3]]", "b"]
