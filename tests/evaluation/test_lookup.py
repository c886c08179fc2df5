from grabnas.evaluation.lookup import LookupEvaluator


def test_lookup_evaluator(nb201_bench):
    ev = LookupEvaluator(nb201_bench, "cifar100")
    r = ev(nb201_bench.space.members()[0])
    assert r.value is not None and r.test_value == r.value and r.cost == 1.0 and r.error is None


def test_lookup_of_an_architecture_without_value_is_a_failure(tmp_path):
    from grabnas.benchmarks import load_benchmark

    p = tmp_path / "t.csv"
    p.write_text("arch,t\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,1\n")
    bench = load_benchmark(f"csv:{p}")
    other = bench.space.parse("|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    r = LookupEvaluator(bench, "t")(other)
    assert r.value is None and "has no t value" in r.error
