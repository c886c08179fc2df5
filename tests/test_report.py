import gzip

import numpy as np

from grabnas.report import evals_to_optimum, load_results, regret_curves

CSV = """optimizer,task,seed,step,arch,value,best,regret,best_test,seconds
rea,t,0,1,a,1,1,2.0,1,0.1
rea,t,0,2,b,3,3,0.0,3,0.1
rea,t,1,1,c,2,2,1.0,2,0.1
"""


def test_load_results_reads_plain_and_gzip_files_alike(tmp_path):
    plain = tmp_path / "results.csv"
    plain.write_text(CSV)
    packed = tmp_path / "results.csv.gz"
    packed.write_bytes(gzip.compress(CSV.encode()))
    rows = load_results(plain)
    assert rows == load_results(packed)
    assert rows[1]["seed"] == 0 and rows[1]["step"] == 2 and rows[1]["regret"] == 0.0
    curves = regret_curves(rows)[("t", "rea")]  # a run that stopped early keeps its last regret
    np.testing.assert_array_equal(curves, [[2.0, 0.0], [1.0, 1.0]])
    np.testing.assert_array_equal(evals_to_optimum(curves), [2, np.inf])
    # a float32 tie with the optimum (61.32 vs 61.3199999) reaches it; a real gap does not
    tie = np.array([[0.5, 61.32 - 61.3199999, 0.0], [0.5, 0.01, 0.01]])
    np.testing.assert_array_equal(evals_to_optimum(tie, optimum=61.32), [2, np.inf])
    np.testing.assert_array_equal(evals_to_optimum(tie), [3, np.inf])  # no optimum given: exact


def test_summary_says_when_the_final_test_is_the_search_metric():
    from grabnas.report import summary_markdown

    rows = [
        {
            "optimizer": "rea",
            "task": t,
            "seed": 0,
            "step": 1,
            "arch": "a",
            "value": "1",
            "best": 1.0,
            "regret": 0.0,
            "best_test": test,
            "seconds": 0.1,
        }
        for t, test in (("same", 1.0), ("held-out", 0.9))
    ]
    text = summary_markdown(rows)
    same, held_out = text.split("## held-out")
    assert "final test (= search metric)" in same
    assert "final test (= search metric)" not in held_out and "final test" in held_out


def test_pareto_front_is_cheapest_for_its_value():
    from grabnas.report import pareto_front

    costs = np.array([1.0, 2.0, 2.0, 3.0, 0.5, np.nan, 4.0])
    values = np.array([5.0, 7.0, 6.0, 6.5, 5.0, 9.0, 8.0])
    # 0.5 -> 5 dominates 1.0 -> 5 (same value, cheaper); 3.0 -> 6.5 is beaten by 2.0 -> 7; NaN left out
    assert pareto_front(costs, values).tolist() == [4, 1, 6]
    assert pareto_front(np.array([]), np.array([])).tolist() == []


def test_plot_pareto_writes_a_figure(tmp_path):
    from grabnas.report import plot_pareto

    panel = dict(title="t", cost="params", limit=0.5, costs=[0.1, 0.4], values=[80.0, 90.0], background=None)
    path = plot_pareto(
        [panel, {**panel, "cost": "flops", "limit": 50, "background": ([10.0, 60.0], [70.0, 95.0])}], tmp_path / "p.png"
    )
    assert path.stat().st_size > 1000
