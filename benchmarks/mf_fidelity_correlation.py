"""What the multi-fidelity GP believes about a screen: the posterior correlation between a cell's
12- and 200-epoch values, along a `grabnas-mf[bar=aei]` search on NB201.

Prints, after each of the first asks, the decision, the fitted noise, the median target- and
low-fidelity posterior variance and the median (and smallest) cross-fidelity correlation over the
200 candidates with the highest predicted 200-epoch value, and the fitted cross-fidelity factor.

    .venv/bin/python benchmarks/mf_fidelity_correlation.py --task cifar100 --asks 8
    .venv/bin/python benchmarks/mf_fidelity_correlation.py --task cifar100 --shared   # one target kernel for both fidelities
"""

from __future__ import annotations

import argparse

import torch

from grabnas.benchmarks import load_benchmark
from grabnas.evaluation.multifidelity import MultiFidelityLookup
from grabnas.search.multifidelity import build_nb201_multifidelity


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="cifar100")
    p.add_argument("--asks", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shared", action="store_true", help="adapt_shared_residual=true")
    args = p.parse_args()
    bench = load_benchmark("nb201")
    spec = "grabnas-mf[bar=aei" + (",adapt_shared_residual=true]" if args.shared else "]")
    opt = build_nb201_multifidelity(spec, bench, args.task, args.seed, {})
    evaluate = MultiFidelityLookup(bench, args.task)
    print("| ask | decision | noise | var_200 | var_12 | correlation (median, min) | rho |")
    print("|---|---|---|---|---|---|---|")
    for ask in range(args.asks):
        (trial,) = opt.ask(1)
        opt.tell([trial], [evaluate(trial).value])
        if ask < 2:
            continue
        model = opt._model()  # the next ask's model (fitted with gradients)
        cand = opt._candidates(opt.history.tried(opt.fidelities.target))
        with torch.no_grad():
            mean, var_T, cov, var_L = opt._joint(model, opt.z_pool[torch.as_tensor(cand)])
            top = torch.argsort(mean, descending=True)[:200]
            corr = cov[top] / (var_L[top] * var_T[top]).sqrt()
        hp = opt.surrogate._last_gp.fitted_hyperparameters
        print(
            f"| {ask} | {opt.decisions[-1]} | {hp['noise']:.3f} | {float(var_T[top].median()):.3f} | "
            f"{float(var_L[top].median()):.3f} | {float(corr.median()):.3f}, {float(corr.min()):.3f} | "
            f"{hp.get('cross_fidelity_rho', 1.0):.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
