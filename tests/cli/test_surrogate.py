"""``grabnas surrogate``: file names of the surrogates ``eval --save-dir`` writes."""

from grabnas.cli.surrogate import _file_part


def test_saved_surrogate_names_are_plain_file_names():
    assert _file_part("nb201") == "nb201" and _file_part("cifar10") == "cifar10"  # shipped names unchanged
    assert _file_part("records:src/x/groundtruth-images-seeds.csv") == "records-groundtruth-images-seeds"
    assert _file_part("digits~noise0.5") == "digits~noise0-5"  # no dot that would read as a suffix


def test_target_scale_corpus_reads_the_card_else_the_corpus_without_the_target(nb201_bench):
    """``surrogate eval --target-scale corpus``: the checkpoint card's ``heldout_residual`` when it
    has one, else the share computed on the corpus without the held-out dataset; ``meta``: none."""
    from types import SimpleNamespace

    from grabnas.cli.surrogate import _target_scale
    from grabnas.meta.corpus import benchmark_corpus
    from grabnas.meta.transferability import heldout_residual_fraction

    corpus = benchmark_corpus(nb201_bench)
    old_card = SimpleNamespace(card={"groups_seen": ["cifar10", "imagenet16"]})
    assert _target_scale("meta", old_card, corpus, "cifar100") is None
    assert _target_scale("corpus", old_card, corpus, "cifar100") == heldout_residual_fraction(
        corpus.without_groups(["cifar100"])
    )
    assert _target_scale("corpus", SimpleNamespace(card={"heldout_residual": 0.25}), corpus, "cifar100") == 0.25


def test_integrate_takes_zero_or_at_least_two_samples(capsys):
    from grabnas.cli import main

    assert main(["surrogate", "eval", "--benchmark", "nb201", "--checkpoint", "auto", "--integrate", "1"]) == 2
    assert "--integrate must be 0 (the MAP fit) or at least 2 samples, got 1" in capsys.readouterr().err
    args = [
        "surrogate",
        "eval",
        "--benchmark",
        "nb201",
        "--checkpoint",
        "auto",
        "--adaptation",
        "meta",
        "--integrate",
        "4",
    ]
    assert main(args) == 2
    assert "--integrate needs --adaptation target" in capsys.readouterr().err


def test_finetune_features_needs_adapt_steps(capsys):
    from grabnas.cli import main

    assert main(["surrogate", "eval", "--benchmark", "nb201", "--checkpoint", "auto", "--finetune-features"]) == 2
    assert "--finetune-features needs --adapt-steps N > 0" in capsys.readouterr().err
    args = ["surrogate", "eval", "--benchmark", "nb201", "--checkpoint", "auto", "--adapt-steps", "5"]
    assert main([*args, "--finetune-features", "--finetune-start", "1"]) == 2
    assert "--finetune-start must be >= 2" in capsys.readouterr().err
