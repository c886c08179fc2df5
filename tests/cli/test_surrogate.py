"""``grabnas surrogate``: file names of the surrogates ``eval --save-dir`` writes."""

from grabnas.cli.surrogate import _file_part


def test_saved_surrogate_names_are_plain_file_names():
    assert _file_part("nb201") == "nb201" and _file_part("cifar10") == "cifar10"  # shipped names unchanged
    assert _file_part("records:src/x/groundtruth-images-seeds.csv") == "records-groundtruth-images-seeds"
    assert _file_part("digits~noise0.5") == "digits~noise0-5"  # no dot that would read as a suffix
