"""Multi-fidelity optimizers: successive halving's promotion rule, grabnas-mf's screen rule, and
an exact resume of a multi-fidelity study killed mid-search."""

import numpy as np
import pytest
import torch

from grabnas.errors import GrabnasError
from grabnas.models.surrogate import MetaSurrogate
from grabnas.models.surrogate_config import SurrogateConfig
from grabnas.search.loop import run_search
from grabnas.search.multifidelity import (
    ASHARandom,
    Fidelities,
    FidelityTrial,
    build_multifidelity_optimizer,
    is_multifidelity,
    parse_multifidelity_spec,
)
from grabnas.study import Study

FID = Fidelities(("12ep", "200ep"), (12, 200))


@pytest.fixture(scope="module")
def pool(nb201_space):
    members = nb201_space.members()
    return [members[i] for i in np.random.default_rng(0).choice(len(members), 60, replace=False)]


def _values(pool):
    """A fixed value per (arch, fidelity): the low fidelity a noisy version of the high one."""
    rng = np.random.default_rng(1)
    high = {a: float(v) for a, v in zip(pool, rng.normal(90, 2, len(pool)))}
    low = {a: high[a] - 20 + float(rng.normal(0, 1)) for a in pool}
    return lambda t: (low if t.fidelity == 0 else high)[t.arch]


def _drive(opt, value, n):
    for _ in range(n):
        asked = opt.ask(1)
        if not asked:
            break
        opt.tell(asked, [value(asked[0])])


def test_asha_promotes_only_the_top_third_of_a_rung_and_never_twice(nb201_space, pool):
    opt, value = ASHARandom(nb201_space, pool, seed=0, fidelities=FID), _values(pool)
    seen: set = set()
    for _ in range(40):
        (t,) = opt.ask(1)
        assert (t.arch, t.fidelity) not in seen  # never the same evaluation twice
        seen.add((t.arch, t.fidelity))
        if t.fidelity == 1:
            low = opt.history.values(0)
            top = sorted(low, key=lambda a: -low[a])[: len(low) // 3]
            assert t.arch in top  # ASHA's bar: the top 1/eta of the rung below
        opt.tell([t], [value(t)])
    assert len(opt.history.values(1)) >= 1
    assert opt.best.value == max(opt.history.values(1).values())


def test_pending_and_failed_trials_are_never_promoted(nb201_space, pool):
    opt = ASHARandom(nb201_space, pool, seed=0, fidelities=FID)
    asked = opt.ask(6)
    assert all(t.fidelity == 0 for t in asked) and len({t.arch for t in asked}) == 6
    opt.tell(asked[:3], [None, 10.0, 5.0])  # one failure, 2 results: 2 // 3 = 0 promotable
    assert opt.ask(1)[0].fidelity == 0
    opt.tell([asked[3]], [20.0])  # 3 results: the best, asked[3], is promoted
    (t,) = opt.ask(1)
    assert t.arch == asked[3].arch and t.fidelity == 1
    opt.tell([asked[4]], [30.0])  # 4 results, top 1 = asked[4]; asked[3] is pending: not asked again
    (t,) = opt.ask(1)
    assert t == FidelityTrial(asked[4].arch, 1, "200ep", 200)
    assert str(t) == str(asked[4].arch) and t.extra == {"fidelity": "200ep", "epochs": 200}


def test_specs_and_options():
    assert is_multifidelity("grabnas-mf[bar=none]") and not is_multifidelity("grabnas")
    assert parse_multifidelity_spec("grabnas-mf[rule=asha,eta=4]") == ("grabnas-mf", {"rule": "asha", "eta": 4})
    with pytest.raises(GrabnasError, match="unknown multi-fidelity"):
        parse_multifidelity_spec("hyperband")
    with pytest.raises(GrabnasError, match="eta"):
        ASHARandom(None, [object()], fidelities=FID, eta=1)
    with pytest.raises(GrabnasError, match="increase"):
        Fidelities(("a", "b"), (200, 12))
    from grabnas.search.multifidelity import MultiFidelityConfig

    for bad in (
        {"rule": "hyperband"},
        {"bar": "x"},
        {"ei_after": 0},
        {"per_cost": 1},
        {"guard": "yes"},
        {"init_candidates": 0},
        {"n_init": 0},
        {"n_init": True},
        {"warmup_random": "all"},
        {"warmup": 0},
    ):
        with pytest.raises(GrabnasError, match="grabnas-mf"):
            MultiFidelityConfig(**bad)


def _tiny_grabnas_mf(space, pool, seed=0, residual=None, **options):
    torch.manual_seed(0)
    sur = MetaSurrogate(SurrogateConfig(latent_dim=4, task_dim=3, hidden_dim=16, feature_dim=5, fidelities=("12ep",)))
    z = torch.randn(len(pool), 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        emb = [sur.task_embedding(None, "12ep"), sur.task_embedding()]
    spec = "grabnas-mf" + ("[" + ",".join(f"{k}={v}" for k, v in options.items()) + "]" if options else "")
    return build_multifidelity_optimizer(
        spec, space, seed, FID, pool=pool, surrogate=sur, embeddings=emb, pool_latents=z, heldout_residual=residual
    )


def test_grabnas_mf_screens_before_every_target_fidelity_evaluation(nb201_space, pool, one_torch_thread):
    opt, value = _tiny_grabnas_mf(nb201_space, pool), _values(pool)
    for _ in range(14):
        (t,) = opt.ask(1)
        if t.fidelity == 1:
            low = opt.history.values(0)
            assert t.arch in low  # screened first ...
            assert t.arch in sorted(low, key=lambda a: -low[a])[: len(low) // 3]  # ... and past the bar
        opt.tell([t], [value(t)])
    assert opt.decisions[0] == "init" and "promote" in opt.decisions
    assert opt.settings()["bar"] == "asha"


def test_grabnas_mf_initial_design_of_n_init_prior_draws_depends_on_the_seed(nb201_space, pool, one_torch_thread):
    """``n_init=3``: the first three asks are screens of Thompson draws from the zero-shot prior
    (distinct cells), reproducible for a seed and different across seeds."""
    value = _values(pool)

    def first(seed):
        opt = _tiny_grabnas_mf(nb201_space, pool, seed=seed, n_init=3)
        asked = []
        for _ in range(4):
            (t,) = opt.ask(1)
            asked.append(t.arch)
            opt.tell([t], [value(t)])
        assert opt.decisions[:3] == ["init"] * 3 and opt.decisions[3] != "init"
        assert len(set(asked[:3])) == 3 and opt.settings()["n_init"] == 3
        return asked[:3]

    assert first(0) == first(0)
    assert len({tuple(first(s)) for s in range(4)}) > 1


def test_grabnas_mf_warmup_screens_the_corpus_share_of_random_cells(nb201_space, pool, one_torch_thread):
    """A surrogate whose corpus leaves 0.66 of a new dataset's variance unexplained: 6 of asks 1-9
    are screens of random untried cells (as single-fidelity GraB-NAS's warm-up), at the asks
    :func:`is_warmup_probe` spreads them to, different for different seeds; none for an
    unknown residual or ``warmup_random=none``."""
    from grabnas.search.grabnas import is_warmup_probe

    value = _values(pool)

    def run(seed, residual, **options):
        opt = _tiny_grabnas_mf(nb201_space, pool, seed=seed, residual=residual, **options)
        asked = []
        for _ in range(12):
            (t,) = opt.ask(1)
            asked.append(t)
            opt.tell([t], [value(t)])
        return opt, asked

    opt, asked = run(0, 0.66)
    assert opt.warmup_probe_count() == 6
    probes = [i for i, d in enumerate(opt.decisions) if d == "probe"]
    assert probes == [i for i in range(12) if is_warmup_probe(i, 6, 9)] and len(probes) == 6
    assert all(asked[i].fidelity == 0 and asked[i].arch not in {t.arch for t in asked[:i]} for i in probes)
    assert [asked[i].arch for i in probes] != [run(1, 0.66)[1][i].arch for i in probes]
    assert "probe" not in run(0, None)[0].decisions
    assert "probe" not in run(0, 0.66, warmup_random="none")[0].decisions


@pytest.mark.parametrize("residual", [None, 0.66])
def test_a_killed_multifidelity_study_resumes_exactly(tmp_path, nb201_space, pool, one_torch_thread, residual):
    """Killed after 7 evaluations and resumed: the same trials (architecture and fidelity) in the
    same order as an uninterrupted search, none evaluated twice, none lost (also with the warm-up's
    random screens)."""
    value = _values(pool)
    calls: list = []

    def evaluate(t):
        calls.append((str(t), t.fidelity))
        if len(calls) == 8 and crash[0]:
            raise SystemExit("killed")
        return type("R", (), {"value": value(t), "cost": 1.0, "extra": {}})()

    def run(path, budget):
        opt = _tiny_grabnas_mf(nb201_space, pool, residual=residual)
        with Study.open(path, {"fidelities": FID.to_dict()}) as st:
            run_search(opt, evaluate, st, budget)
            return [(t.arch, t.extra["fidelity"], t.value) for t in st.trials()]

    crash = [False]
    whole = run(tmp_path / "whole.db", 12)
    calls.clear()
    crash[0] = True
    with pytest.raises(SystemExit):
        run(tmp_path / "cut.db", 12)
    crash[0] = False
    resumed = run(tmp_path / "cut.db", 12)
    assert resumed == whole
    assert len(calls) == 12 + 1  # the trial cut short is evaluated again, nothing else
    assert len(set((a, f) for a, f, _ in whole)) == 12
    with Study.load(tmp_path / "cut.db") as st:
        assert st.best(1)[0].extra["fidelity"] == "200ep"


def test_optuna_tpe_hyperband_evaluates_the_target_only_after_the_low_fidelity(nb201_space, pool):
    pytest.importorskip("optuna")
    opt, value = build_multifidelity_optimizer("optuna-tpe-hyperband", nb201_space, 0, FID, pool=pool), _values(pool)
    for _ in range(30):
        asked = opt.ask(1)
        if not asked:
            break
        (t,) = asked
        if t.fidelity == 1:
            assert t.arch in opt.history.values(0)
        opt.tell([t], [value(t)])
    assert opt.history.values(0)


def test_augmented_ei_screens_each_cell_once_then_promotes(nb201_space, pool, one_torch_thread):
    """``bar=aei``: every ask after the first two is the (cell, fidelity) of largest augmented EI;
    nothing is evaluated twice, a screened cell's low-fidelity posterior variance drops below an
    unscreened one's (so it is never screened again), correlations between the two fidelities are
    at most 1, and once the screens run out (60 cells) the asks are promotions."""
    opt, value = _tiny_grabnas_mf(nb201_space, pool, bar="aei"), _values(pool)
    seen: set = set()
    for _ in range(64):
        (t,) = opt.ask(1)
        assert (t.arch, t.fidelity) not in seen
        seen.add((t.arch, t.fidelity))
        opt.tell([t], [value(t)])
        if len(seen) == 10:
            model = opt._model()  # fitted with gradients, then read without
            cand = opt._candidates(opt.history.tried(1))
            with torch.no_grad():
                _, var_T, cov, var_L = opt._joint(model, opt.z_pool[torch.as_tensor(cand)])
            screened = np.array([pool[int(i)] in opt.history.values(0) for i in cand])
            assert screened.any() and (~screened).any()
            assert float(var_L[torch.as_tensor(screened)].max()) < float(var_L[torch.as_tensor(~screened)].min())
            assert bool((cov.abs() <= (var_L * var_T).sqrt() + 1e-9).all())
    assert opt.decisions[0] == "init" and set(opt.decisions[1:]) <= {"screen", "promote"}
    assert opt.decisions[-4:] == ["promote"] * 4 and len(opt.history.values(0)) <= len(pool)


def test_grabnas_mf_integrates_its_hyperparameters_on_request(nb201_space, pool, one_torch_thread):
    """``adapt_integrate=K``: the joint GP's scalars integrated out, recorded in the study's
    settings (absent when off, so older studies resume), and seeds give different runs."""
    from grabnas.models.hyper_mixture import HyperparameterMixture

    value = _values(pool)
    runs = []
    for seed in (0, 1):
        opt = _tiny_grabnas_mf(nb201_space, pool, seed=seed, adapt_integrate=4)
        _drive(opt, value, 8)
        runs.append([(t.arch, t.fidelity) for t, _ in opt.history.observations])
    assert isinstance(opt.surrogate._last_gp, HyperparameterMixture)
    assert opt.settings()["surrogate_options"] == {"integrate": 4}
    assert "integrate" not in _tiny_grabnas_mf(nb201_space, pool).settings()["surrogate_options"]
    assert runs[0] != runs[1]
