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
