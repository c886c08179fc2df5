import numpy as np
import pytest
import torch

from grabnas.errors import GrabnasError
from grabnas.search.grabnas import GraBNAS, GraBNASConfig


class FixedGP:
    """A latent GP with fixed hyperparameters; zero-shot it is a known deterministic prior."""

    def __init__(self, prior_direction: torch.Tensor) -> None:
        self.w = prior_direction.double()

    def fit(self, z, y):
        from botorch.models import SingleTaskGP
        from botorch.models.deterministic import GenericDeterministicModel

        if len(y) == 0:
            return GenericDeterministicModel(lambda x: (x @ self.w).unsqueeze(-1))
        scale = float(y.std()) if len(y) > 1 else 1.0
        m = SingleTaskGP(z, ((y - y.mean()) / (scale if scale > 0 else 1.0)).unsqueeze(-1))
        return m.eval()


@pytest.fixture(scope="module")
def vae(nb201_space):
    from grabnas.meta.checkpoints import load_checkpoint

    return load_checkpoint("nb201", space=nb201_space)


@pytest.fixture(scope="module")
def small_pool(nb201_space):
    rng = np.random.default_rng(0)
    members = nb201_space.members()
    return [members[i] for i in rng.choice(len(members), 400, replace=False)]


def _objective(arch):
    return sum(op == "nor_conv_3x3" for op in arch.ops) - 0.5 * sum(op == "none" for op in arch.ops)


def _search(bench, spec: str, seed: int, steps: int):
    """``(optimizer, asked)`` after ``steps`` one-architecture asks of ``spec`` on NB201 cifar10."""
    from grabnas.search.registry import build_optimizer

    opt = build_optimizer(spec, bench, "cifar10", seed=seed)
    asked = []
    for _ in range(steps):
        archs = opt.ask(1)
        asked += archs
        opt.tell(archs, [bench.value(a, "cifar10") for a in archs])
    return opt, asked


def test_initial_design_is_the_zero_shot_top(nb201_space, vae, small_pool):
    w = torch.randn(vae.latent_dim, generator=torch.Generator().manual_seed(0))
    opt = GraBNAS(nb201_space, FixedGP(w), vae, pool=small_pool, seed=0, n_init=3)
    first = opt.ask(3)
    prior = (opt.z_pool @ w.double()).numpy()
    want = [small_pool[i] for i in np.argsort(-prior)[:3]]
    assert first == want


def test_initial_design_lasts_n_init_asks_whatever_is_observed(nb201_space, vae, small_pool):
    w = torch.randn(vae.latent_dim, generator=torch.Generator().manual_seed(1))
    prior = (vae.encode_archs(small_pool).double() @ w.double()).detach().numpy()
    top = [small_pool[i] for i in np.argsort(-prior)[:5]]

    def run(n_init: int) -> list:
        opt = GraBNAS(nb201_space, FixedGP(w), vae, pool=small_pool, seed=0, n_init=n_init)
        seen = []
        for step in range(5):
            archs = opt.ask(1)
            seen += archs
            opt.tell(archs, [-float(step)])  # each prior pick worse than the last: the data disagree
        return seen

    assert run(4)[:4] == top[:4]  # the observations do not reorder the initial design
    conditioned = run(1)
    assert conditioned[0] == top[0] and conditioned[1:4] != top[1:4]


def test_thompson_global_draw_makes_later_asks_depend_on_the_seed(nb201_space, vae, small_pool):
    """``global_draw="thompson"``: after the same start, a global step takes the argmax of one
    posterior draw over the acquisition's best candidates, so seeds diverge (reproducibly); the
    default argmax makes the same asks whatever the seed, and a draw never repeats a tried cell.
    With ``draw_start=3`` the first three asks are the default's."""
    torch.set_num_threads(1)
    w = torch.randn(vae.latent_dim, generator=torch.Generator().manual_seed(2))

    def run(seed: int, **kw) -> list:
        opt = GraBNAS(nb201_space, FixedGP(w), vae, pool=small_pool, seed=seed, init="top", mode="bo", **kw)
        seen = []
        for _ in range(5):
            archs = opt.ask(1)
            assert archs[0] not in seen
            seen += archs
            opt.tell(archs, [_objective(a) for a in archs])
        return seen

    assert len({tuple(run(s)) for s in range(3)}) == 1
    drawn = [run(s, global_draw="thompson") for s in range(4)]
    assert len({r[0] for r in drawn}) == 1  # the start is the zero-shot top in every seed
    assert len({tuple(r) for r in drawn}) >= 3
    assert run(1, global_draw="thompson") == drawn[1]
    default = run(0)
    late = [run(s, global_draw="thompson", draw_start=3) for s in range(4)]
    assert all(r[:3] == default[:3] for r in late)  # the draws start at ask 3
    assert len({tuple(r) for r in late}) >= 2


def test_hybrid_search_runs_proposes_new_archs_and_can_leave_the_pool(nb201_space, vae, small_pool):
    torch.set_num_threads(1)
    w = torch.zeros(vae.latent_dim)
    opt = GraBNAS(nb201_space, FixedGP(w), vae, pool=small_pool, seed=1, t_bo=4, local_every=1, eta=0.3)
    seen = []
    for _ in range(14):
        archs = opt.ask(1)
        assert archs and archs[0] not in seen
        seen += archs
        opt.tell(archs, [_objective(a) for a in archs])
    assert len(opt.local_log) >= 8
    assert all(log["valid"] <= log["tried"] for log in opt.local_log)
    pool = set(small_pool)
    assert any(a not in pool for a in seen), "local steps decode architectures outside a 400-cell pool"


def test_observation_noise_scores_the_predictive_of_a_new_evaluation(nb201_space, vae, small_pool):
    from botorch.acquisition.analytic import _log_ei_helper

    opt = GraBNAS(
        nb201_space,
        FixedGP(torch.zeros(vae.latent_dim)),
        vae,
        pool=small_pool,
        seed=4,
        observation_noise=True,
        t_bo=100,
    )
    for _ in range(5):
        archs = opt.ask(1)
        opt.tell(archs, [_objective(archs[0])])
    model, values = opt._model()
    acq = opt._acquisition(model, values, None)
    z = opt.z_pool[:50].unsqueeze(1)  # (50, 1, latent_dim)
    inner, best = model.model, opt._best_f(model, values)
    noisy = inner.posterior(z, observation_noise=True)
    sigma = noisy.variance.clamp_min(1e-12).sqrt().view(-1)
    want = _log_ei_helper((noisy.mean.view(-1) - best) / sigma) + sigma.log()
    got = acq(z).detach()
    assert torch.allclose(got, want, atol=1e-6)
    latent = inner.posterior(z)
    assert (noisy.variance - latent.variance).min() > 1e-3  # the noise is really added
    untried = [i for i, a in enumerate(opt.pool) if a not in opt.history.tried]
    scores = opt._score(acq, opt.z_pool[untried])
    assert opt.ask(1)[0] == opt.pool[untried[int(torch.argmax(scores))]]  # the global step maximises it


def test_lognei_scores_the_prefiltered_pool_jointly_with_the_observations(nb201_space, vae, small_pool):
    from botorch.acquisition import LogExpectedImprovement, qLogNoisyExpectedImprovement

    opt = GraBNAS(
        nb201_space,
        FixedGP(torch.zeros(vae.latent_dim)),
        vae,
        pool=small_pool,
        seed=5,
        acquisition="lognei",
        t_bo=100,
        q_candidates=50,
    )
    for _ in range(5):
        archs = opt.ask(1)
        opt.tell(archs, [_objective(archs[0])])
    model, values = opt._model()
    assert not hasattr(model, "model")  # the latent model: noisy EI handles the noise itself
    archs, _ = opt.history.successes()
    z_obs = opt.latent(archs)
    single = opt._acquisition(model, values, None, joint=False)
    assert isinstance(single, LogExpectedImprovement)
    plug_in = model.posterior(z_obs.unsqueeze(1)).mean.max()  # the best posterior mean observed
    assert float(single.best_f) == pytest.approx(float(plug_in), abs=1e-6)
    untried = np.array([i for i, a in enumerate(opt.pool) if a not in opt.history.tried])
    top = untried[torch.topk(opt._score(single, opt.z_pool[untried]), 50).indices.numpy()]
    state = opt.rng.bit_generator.state
    joint = opt._acquisition(model, values, None)  # draws its sampler's seed as the ask will
    assert isinstance(joint, qLogNoisyExpectedImprovement) and torch.equal(joint.X_baseline, z_obs)
    want = opt.pool[int(top[int(torch.argmax(opt._score(joint, opt.z_pool[top])))])]
    opt.rng.bit_generator.state = state
    assert opt.ask(1)[0] == want
    before = set(opt.history.tried)  # observed and pending
    batch = opt.ask(2)  # with pending points too
    assert len(set(batch)) == 2 and not set(batch) & before


def test_knn_never_leaves_the_pool_and_batches_are_distinct(nb201_space, vae, small_pool):
    opt = GraBNAS(
        nb201_space,
        FixedGP(torch.zeros(vae.latent_dim)),
        vae,
        pool=small_pool,
        seed=2,
        local="knn",
        t_bo=3,
        local_every=1,
    )
    seen = []
    for _ in range(6):
        archs = opt.ask(2)
        assert len(set(archs)) == 2 and not set(archs) & set(seen)
        seen += archs
        opt.tell(archs, [_objective(a) for a in archs])
    assert set(seen) <= set(small_pool)


def test_gated_local_steps_only_propose_decodes_that_beat_the_pool(nb201_space, vae, small_pool):
    def run(pool, **kw):
        opt = GraBNAS(
            nb201_space, FixedGP(torch.zeros(vae.latent_dim)), vae, pool=pool, seed=4, t_bo=2, local_every=1, **kw
        )
        proposals = []
        for _ in range(7):
            archs = opt.ask(1)
            opt.tell(archs, [_objective(a) for a in archs])
            proposals += archs
        return opt, proposals

    # on the whole space every decode is a pool member, which never beats the best global
    # candidate: the gated hybrid searches exactly like BO only
    opt, gated = run(None, local_gate=True)
    _, bo = run(None, mode="bo")
    assert gated == bo
    # so there the local steps, which could never win, are skipped
    assert opt.local_log == []
    assert len(set(gated)) == len(gated)
    # on a pool that lacks cells of the space they run (and may leave the pool)
    opt, _ = run(small_pool, local_gate=True)
    assert len(opt.local_log) == 5 and all(log["tried"] > 0 for log in opt.local_log)


def test_failures_are_not_fatal(nb201_space, vae, small_pool):
    opt = GraBNAS(nb201_space, FixedGP(torch.zeros(vae.latent_dim)), vae, pool=small_pool, seed=3, t_bo=2)
    for i in range(6):
        archs = opt.ask(1)
        opt.tell(archs, [None if i % 2 else _objective(archs[0])])
    assert len(opt.history.observations) == 6


class FailingGP(FixedGP):
    """A GP whose fit fails numerically: ``always``, or only without extra Cholesky jitter."""

    def __init__(self, prior_direction: torch.Tensor, always: bool) -> None:
        super().__init__(prior_direction)
        self.always = always

    def fit(self, z, y):
        import gpytorch
        from gpytorch.utils.errors import NotPSDError

        if len(y) >= 3 and (self.always or gpytorch.settings.cholesky_jitter.value(torch.float64) < 1e-6):
            raise NotPSDError("Matrix not positive definite after repeatedly adding jitter up to 1.0e-06.")
        return super().fit(z, y)


@pytest.mark.parametrize("always", [False, True])
def test_numerical_failures_fall_back_and_are_logged_not_raised(nb201_space, vae, small_pool, always):
    """A GP that is not positive definite (e.g. data with huge pixel values): refit with more
    jitter, else random untried pool members; the search goes on, the same way on a replay."""

    def run():
        opt = GraBNAS(nb201_space, FailingGP(torch.zeros(vae.latent_dim), always), vae, pool=small_pool, seed=3, t_bo=2)
        asked = []
        for _ in range(6):
            archs = opt.ask(1)
            assert len(archs) == 1 and archs[0] not in set(asked)
            asked += archs
            opt.tell(archs, [_objective(archs[0])])
        return opt, asked

    opt, asked = run()
    assert len(opt.numerical_log) == 3  # asks 4-6 fitted on 3+ observations
    kind = "random untried pool member" if always else "refitted with 100x jitter"
    assert all("NotPSDError: Matrix not positive definite" in m and kind in m for m in opt.numerical_log)
    assert run()[1] == asked  # deterministic: a resumed study replays it


@pytest.mark.parametrize(
    "kw, fragment",
    [
        ({"mode": "both"}, "mode 'both' is unknown"),
        ({"n_init": 0}, "n_init must be >= 1, got 0"),
        ({"eta": -0.5}, "eta must be >= 0, got -0.5"),
        ({"observation_noise": "no"}, "observation_noise must be true or false, got 'no'"),
        ({"local_gate": 1}, "local_gate must be true or false, got 1"),
        ({"t_bo": "abc"}, "t_bo must be an integer, got 'abc'"),
        ({"eta": "fast"}, "eta must be a number, got 'fast'"),
        ({"ucb_beta": -1.0}, "ucb_beta must be >= 0, got -1.0"),
        ({"global_draw": "sample"}, "global_draw 'sample' is unknown; expected one of argmax, thompson"),
        ({"draw_start": -1}, "draw_start must be >= 0, got -1"),
        ({"init_spread": "wide"}, "init_spread 'wide' is unknown; expected one of corpus, meta"),
        ({"hyper_draw": True, "integrate": 0}, "hyper_draw needs integrate >= 2"),
        ({"hyper_draw": "yes"}, "hyper_draw must be true or false, got 'yes'"),
        ({"prior_decay": -1}, "prior_decay must be >= 0, got -1"),
        ({"prior_decay": "strong"}, "prior_decay must be a number, got 'strong'"),
        ({"mean_weight": "half"}, "mean_weight 'half' is unknown; expected one of map, marginal, centred, none"),
        ({"finetune": -5}, "finetune must be 0 \\(off\\) or a number of Adam steps, got -5"),
        ({"finetune": 2.5}, "finetune must be an integer, got 2.5"),
        ({"finetune": 10, "adaptation": "meta"}, "finetune needs adaptation=target"),
        ({"finetune": 10, "finetune_start": 1}, "finetune_start must be >= 2, got 1"),
        ({"finetune": 10, "finetune_refit": "no"}, "finetune_refit must be true or false, got 'no'"),
        (
            {"finetune": 10, "finetune_refit": True, "finetune_select": True},
            "finetune_select needs finetune > 0 and finetune_refit=false",
        ),
        (
            {"finetune": 10, "finetune_refit": True, "finetune_every": 5},
            "finetune_every > 1 needs finetune > 0 and finetune_refit=false",
        ),
        (
            {"finetune": 10, "finetune_refit": False, "finetune_every": 0},
            "finetune_every must be >= 1 observations, got 0",
        ),
    ],
)
def test_bad_settings(kw, fragment):
    with pytest.raises(GrabnasError, match=fragment):
        GraBNASConfig(**kw)


def test_thompson_initial_design_makes_seeds_matter(nb201_space, vae, small_pool):
    """With the default initial design a search seed changes the first proposal (a draw from the
    zero-shot prior over its best candidates), reproducibly; ``init="top"`` ignores the seed."""
    from grabnas.models.latent_surrogate import MetaLatentSurrogate
    from grabnas.models.surrogate import MetaSurrogate
    from grabnas.models.surrogate_config import SurrogateConfig

    torch.manual_seed(0)
    sur = MetaSurrogate(SurrogateConfig(latent_dim=vae.latent_dim, task_dim=3, hidden_dim=16, feature_dim=5))
    with torch.no_grad():
        sur.covar_module.outputscale = 1.0

    def first(seed: int, **kw) -> object:
        latent = MetaLatentSurrogate(sur, sur.task_embedding(), adaptation="target", seed=seed)
        return GraBNAS(nb201_space, latent, vae, pool=small_pool, seed=seed, **kw).ask(1)[0]

    draws = [first(s) for s in range(8)]
    assert len(set(draws)) >= 3
    assert first(3) == draws[3]
    assert len({first(s, init="top") for s in range(4)}) == 1


def test_corpus_spread_widens_a_start_whose_prior_is_too_sure_of_its_ranking(nb201_space, vae, small_pool):
    """A prior with almost no within-task variance starts every seed at its top; with
    ``init_spread="corpus"``, told that the meta-training corpus leaves 90 % of a left-out dataset
    unexplained (``heldout_residual``), the Thompson start adds the missing variance and seeds
    start apart, reproducibly. Without a known share, or by default (``init_spread="meta"``), the
    draw is the prior's alone."""
    from grabnas.models.latent_surrogate import MetaLatentSurrogate
    from grabnas.models.surrogate import MetaSurrogate
    from grabnas.models.surrogate_config import SurrogateConfig

    torch.manual_seed(0)
    sur = MetaSurrogate(SurrogateConfig(latent_dim=vae.latent_dim, task_dim=3, hidden_dim=16, feature_dim=5))
    with torch.no_grad():
        sur.covar_module.outputscale = 1e-4

    def start(seed: int, residual, **kw):
        latent = MetaLatentSurrogate(sur, sur.task_embedding(), adaptation="target", seed=seed)
        opt = GraBNAS(nb201_space, latent, vae, pool=small_pool, seed=seed, heldout_residual=residual, **kw)
        return opt, opt.ask(1)[0]

    assert len({start(s, None)[1] for s in range(6)}) == 1
    assert len({start(s, 0.9)[1] for s in range(6)}) == 1
    assert len({start(s, None, init_spread="corpus")[1] for s in range(6)}) == 1
    opt, _ = start(0, 0.9, init_spread="corpus")
    cov = torch.full((4, 4), 2.0)  # a shared shift only: no within-task variance
    v = float(opt._prior_scores.var())
    assert opt._corpus_spread(cov) == pytest.approx(9 * v)  # r / (1 - r) = 9
    assert opt._corpus_spread(cov + torch.eye(4) * 100 * v) == 0.0  # the prior is unsure enough already
    draws = [start(s, 0.9, init_spread="corpus")[1] for s in range(6)]
    assert len(set(draws)) >= 3
    assert start(2, 0.9, init_spread="corpus")[1] == draws[2]


def test_probes_are_random_untried_pool_members_at_their_asks(nb201_bench, cifar10_asks):
    """With ``probe_every=2, probe_start=3`` asks 3, 5, 7 are drawn at random from the untried
    pool: another search seed draws others, the asks before the first probe are the model's, and
    a replay proposes the same."""
    from grabnas.search.registry import build_optimizer

    def run(spec, seed):
        return cifar10_asks(spec, seed, 8)[1]

    spec = "grabnas[probe_every=2,probe_start=3,init=top]"
    a, b = run(spec, 1), run(spec, 2)
    assert a == run(spec, 1)
    assert a[:3] == run("grabnas[init=top]", 1)[:3]  # no probe before ask 3
    assert a[3] != b[3]  # the first probe: a random draw of each seed
    with pytest.raises(GrabnasError, match="probe_every must be >= 0"):
        build_optimizer("grabnas[probe_every=-1]", nb201_bench, "cifar10", seed=0)


@pytest.mark.parametrize(
    "residual, t_bo, start, expected",
    [
        (0.76, 10, 1, [2, 3, 4, 6, 7, 8, 9]),  # NAS-Bench-Graph's share: 7 of the warm-up's 10 asks
        (0.5, 10, 1, [2, 4, 6, 8, 9]),
        (1.0, 10, 1, list(range(1, 10))),  # ask 0 stays the prior's
        (0.76, 10, 10, [11, 12, 13, 15, 16, 17, 18]),  # the block after the warm-up
        (0.085, 10, 1, []),  # NB201's share: floor(0.85) = 0
        (None, 10, 1, []),  # unknown: none
        (0.9, 1, 1, []),  # no warm-up
    ],
)
def test_warmup_probes_take_the_corpus_share_of_the_warmup(nb201_bench, residual, t_bo, start, expected):
    from grabnas.search.registry import build_optimizer

    spec = f"grabnas[warmup_random=corpus,t_bo={t_bo},warmup_start={start}]"
    opt = build_optimizer(spec, nb201_bench, "cifar10", seed=0)
    opt.heldout_residual = residual
    positions = []
    for i in range(2 * t_bo + 3):
        opt.asks = i
        if opt._is_warmup_probe():
            positions.append(i)
    assert positions == expected
    assert opt.warmup_probe_count() == len(expected)


def test_warmup_probes_are_random_asks_of_a_search_and_replay(nb201_bench, cifar10_asks):
    """With the corpus share set to 0.75 and ``t_bo=5``, asks 2-4 are random untried pool members
    (another seed draws others; a rerun the same), asks 0-1 are the default's; NB201's own share
    (0.04-0.09) leaves the default's search unchanged."""
    from grabnas.search.registry import build_optimizer

    def run(spec, seed, residual=0.75):
        return cifar10_asks(spec, seed, 6, residual)

    spec = "grabnas[warmup_random=corpus,t_bo=5,init=top]"
    opt, a = run(spec, 1)
    assert opt.probe_asks == [2, 3, 4]
    assert a == run(spec, 1)[1]
    assert a[2:5] != run(spec, 2)[1][2:5]
    assert a[:2] == run("grabnas[t_bo=5,init=top]", 1)[1][:2]
    shipped, b = run("grabnas[warmup_random=corpus,t_bo=5,init=top]", 1, residual=None)
    assert shipped.heldout_residual < 0.1 and shipped.probe_asks == []
    assert b == run("grabnas[t_bo=5,init=top]", 1, residual=None)[1]
    with pytest.raises(GrabnasError, match="warmup_random 'always' is unknown"):
        build_optimizer("grabnas[warmup_random=always]", nb201_bench, "cifar10", seed=0)
    with pytest.raises(GrabnasError, match="warmup_start must be >= 1"):
        build_optimizer("grabnas[warmup_start=0]", nb201_bench, "cifar10", seed=0)


def test_stall_probes_fire_only_while_the_best_value_stalls(nb201_bench):
    """``probe_stall=3``: an ask is a probe once the best value has not improved over the last 3
    observations, at most once per 4 asks; a search whose every observation improves never
    probes; ``probe_kind=gpbo`` builds GP-BO at its first probe only, so the asks before it are
    the default's."""
    from grabnas.search.registry import build_optimizer

    def run(spec, values):
        opt = build_optimizer(spec, nb201_bench, "cifar10", seed=3)
        asked = []
        for v in values:
            archs = opt.ask(1)
            assert archs[0] not in asked
            asked += archs
            opt.tell(archs, [v])
        return opt, asked

    stalled = [100.0] + [float(i) for i in range(1, 11)]
    opt, asked = run("grabnas[probe_stall=3,probe_start=2]", stalled)
    assert opt.probe_asks == [4, 8]
    assert run("grabnas[probe_stall=3,probe_start=2]", [float(i) for i in range(11)])[0].probe_asks == []
    assert run("grabnas[probe_stall=3,probe_start=6]", stalled)[0].probe_asks == [6, 10]
    gp, gp_asked = run("grabnas[probe_stall=3,probe_start=2,probe_kind=gpbo]", stalled[:5])
    default = run("grabnas", stalled[:4])[1]
    assert gp_asked[:4] == default and gp.probe_asks == [4] and gp._plain is not None
    assert GraBNAS._stalled_for(np.array([1.0, 3.0, 3.0, 2.0])) == 2
    with pytest.raises(GrabnasError, match="probe_stall must be >= 0"):
        build_optimizer("grabnas[probe_stall=-1]", nb201_bench, "cifar10", seed=0)


def test_integrate_searches_with_a_mixture_over_the_target_gps_hyperparameters(nb201_bench):
    """``integrate=4``: from two observations on the surrogate is a mixture of four samples of
    the target-adapted GP's scalar hyperparameters; the first two asks are the MAP fit's; a replay
    proposes the same; one sample or the meta-learned adaptation are refused."""
    from grabnas.models.hyper_mixture import HyperparameterMixture
    from grabnas.search.registry import build_optimizer

    def run(spec):
        return _search(nb201_bench, spec, seed=5, steps=4)

    opt, asked = run("grabnas[integrate=4]")
    assert isinstance(opt.surrogate._last_gp, HyperparameterMixture)
    map_opt, map_asked = run("grabnas[integrate=0]")
    assert asked[:2] == map_asked[:2] and not isinstance(map_opt.surrogate._last_gp, HyperparameterMixture)
    assert isinstance(run("grabnas")[0].surrogate._last_gp, HyperparameterMixture)  # the default integrates
    assert run("grabnas[integrate=4]")[1] == asked
    opt, asked = run("grabnas[integrate=4,target_kernel=hamming]")  # the mixture reads the one-hot columns
    assert isinstance(opt.surrogate._last_gp, HyperparameterMixture) and len(set(asked)) == 4
    with pytest.raises(GrabnasError, match="integrate must be 0 .* or >= 2 samples, got 1"):
        build_optimizer("grabnas[integrate=1]", nb201_bench, "cifar10", seed=0)
    with pytest.raises(GrabnasError, match="integrate needs adaptation=target"):
        build_optimizer("grabnas[integrate=4,adaptation=meta]", nb201_bench, "cifar10", seed=0)
    assert GraBNASConfig().integrate == 16 and GraBNASConfig(adaptation="meta").integrate == 0  # the defaults


def test_fit_start_keeps_the_meta_learned_hyperparameters_until_that_many_observations(nb201_bench):
    """``fit_start=4``: with one to three observations the surrogate is the meta-learned GP
    conditioned on them (no target-adapted fit), from four on the target-adapted GP; the first
    ask is the default's (no observation yet), and ``fit_start`` below 2 is refused."""
    from grabnas.models.target_gp import is_target_adapted
    from grabnas.search.registry import build_optimizer

    first = build_optimizer("grabnas", nb201_bench, "cifar10", seed=2).ask(1)
    opt = build_optimizer("grabnas[fit_start=4]", nb201_bench, "cifar10", seed=2)
    kinds = []
    for i in range(5):
        archs = opt.ask(1)
        assert i or archs == first
        opt.tell(archs, [nb201_bench.value(a, "cifar10") for a in archs])
        opt._model()
        kinds.append(is_target_adapted(opt.surrogate._last_gp))
    assert kinds == [False, False, False, True, True]  # after the 1st-3rd tell: meta; from the 4th: fitted
    assert opt.surrogate.adapted_hyperparameters
    with pytest.raises(GrabnasError, match="fit_start must be >= 2, got 1"):
        build_optimizer("grabnas[fit_start=1]", nb201_bench, "cifar10", seed=0)


def test_far_probes_take_the_acquisitions_best_in_the_far_half_of_the_pool(nb201_bench):
    """``probe_kind=far``: a probe is the single-point acquisition's best among the untried pool
    members whose nearest tried architecture is at least the median such distance away; a replay
    proposes the same."""
    from grabnas.search.registry import build_optimizer

    spec = "grabnas[probe_every=2,probe_start=3,probe_kind=far,init=top]"
    opt, asked = _search(nb201_bench, spec, seed=1, steps=3)
    model, values = opt._model()
    cand = np.array([i for i, a in enumerate(opt.pool) if a not in set(asked)])
    nearest = torch.cdist(opt.z_pool[cand], opt.latent(asked)).min(dim=1).values
    far = cand[(nearest >= nearest.median()).numpy()]
    scores = opt._score(opt._acquisition(model, values, None, joint=False), opt.z_pool[far])
    probe = opt.ask(1)[0]
    assert probe == opt.pool[int(far[int(torch.argmax(scores))])]
    assert float(torch.cdist(opt.latent([probe]), opt.latent(asked)).min()) >= float(nearest.median())
    again = build_optimizer(spec, nb201_bench, "cifar10", seed=1)
    for arch in asked:
        assert again.ask(1) == [arch]
        again.tell([arch], [nb201_bench.value(arch, "cifar10")])
    assert again.ask(1) == [probe]
    with pytest.raises(GrabnasError, match="probe_kind 'near' is unknown; expected one of random, far"):
        build_optimizer("grabnas[probe_kind=near]", nb201_bench, "cifar10", seed=0)


def test_onehot_target_kernel_reads_the_encoding_and_ascent_moves_the_latent_only(nb201_bench):
    """``target_kernel=onehot``: every model input is the latent with the one-hot encoding
    appended, the ascent leaves the encoding where it started, the search runs its local steps,
    and the option needs the target-adapted GP."""
    from grabnas.search.registry import build_optimizer

    opt = build_optimizer("grabnas[target_kernel=onehot,t_bo=3,local_every=1]", nb201_bench, "cifar10", seed=0)
    width = len(nb201_bench.space.encode_onehot(opt.pool[0]))
    assert opt.z_pool.shape[1] == opt.latent_dim + width
    assert torch.equal(opt.z_pool[:, opt.latent_dim :], torch.as_tensor(nb201_bench.space.onehot(opt.pool)).double())
    for _ in range(6):
        archs = opt.ask(1)
        opt.tell(archs, [nb201_bench.value(a, "cifar10") for a in archs])
    model, values = opt._model()
    z0 = opt.latent([opt.best.arch])
    z = opt.ascend(model, opt._acquisition(model, values, None), z0)
    assert torch.equal(z[:, opt.latent_dim :], z0[:, opt.latent_dim :])
    assert not torch.equal(z[:, : opt.latent_dim], z0[:, : opt.latent_dim])
    with pytest.raises(GrabnasError, match="target_kernel=onehot needs adaptation=target"):
        GraBNASConfig(target_kernel="onehot", adaptation="meta")


def test_hamming_target_kernel_keeps_the_latent_kernel_and_adds_one_on_the_encoding(nb201_bench):
    """``target_kernel=hamming``: inputs carry the one-hot encoding as with ``onehot``, the fitted
    model has both target kernels, and a replay proposes the same."""

    def run():
        return _search(nb201_bench, "grabnas[target_kernel=hamming]", seed=3, steps=5)

    opt, asked = run()
    assert opt.z_pool.shape[1] == opt.latent_dim + len(nb201_bench.space.encode_onehot(opt.pool[0]))
    hp = opt.surrogate.adapted_hyperparameters
    assert {"target_scale", "hamming_scale", "hamming_lengthscale"} <= set(hp)
    assert run()[1] == asked
    with pytest.raises(GrabnasError, match="target_kernel=hamming needs adaptation=target"):
        GraBNASConfig(target_kernel="hamming", adaptation="meta")


def test_untried_excludes_every_copy_of_a_tried_or_pending_architecture(nb201_space, vae, small_pool):
    w = torch.randn(vae.latent_dim, generator=torch.Generator().manual_seed(0))
    pool = small_pool[:50] + small_pool[:5]  # the first five twice
    opt = GraBNAS(nb201_space, FixedGP(w), vae, pool=pool, seed=0, n_init=2)
    asked = opt.ask(2)
    opt.tell(asked[:1], [_objective(asked[0])])  # one told, one still pending
    tried, cand = opt._untried(opt.history.pending + [small_pool[3]])
    left = {pool[i] for i in cand}
    assert tried == set(asked) | {small_pool[3]}
    assert left == set(pool) - tried
    assert len(cand) == len(pool) - sum(pool.count(a) for a in tried)
    assert list(cand) == sorted(cand)


def test_prior_decay_weights_global_steps_by_the_zero_shot_belief(nb201_bench):
    """``prior_decay`` (piBO): the belief is log Phi((mu_0 - max mu_0) / sigma_0) of the zero-shot
    prior (log 0.5 at the pool member it rates best, below elsewhere; the same for a latent given
    explicitly); with a huge ``beta`` every global step takes an untried member of the highest
    belief, and ``prior_decay=0`` is the default search ask for ask."""
    import math

    opt, asked = _search(nb201_bench, "grabnas[prior_decay=1e12,mean_weight=none,integrate=0]", seed=3, steps=5)
    belief = opt._log_prior_belief()
    assert belief.shape == (len(opt.pool),)
    assert float(belief.max()) == pytest.approx(math.log(0.5), abs=1e-9)
    assert int(belief.argmax()) == int(opt._prior_scores.argmax())
    some = torch.as_tensor([3, 700, 9000])
    assert torch.allclose(opt._log_prior_belief(opt.z_pool[some]), belief[some], atol=1e-9)
    rank = {a: float(b) for a, b in zip(opt.pool, belief)}
    for i in range(1, 5):  # asks 1-4 are global steps, each the best untried by belief
        untried = [rank[a] for a in opt.pool if a not in asked[:i]]
        assert rank[asked[i]] == pytest.approx(max(untried), abs=1e-9)
    batch = opt.ask(2)  # the second pick is pending-aware (prefiltered, then joint): weighted the same
    best_two = sorted((rank[a] for a in opt.pool if a not in asked), reverse=True)[:2]
    assert sorted((rank[a] for a in batch), reverse=True) == pytest.approx(best_two, abs=1e-9)
    assert (
        _search(nb201_bench, "grabnas[prior_decay=0]", seed=3, steps=4)[1]
        == _search(nb201_bench, "grabnas", seed=3, steps=4)[1]
    )


def test_mean_weight_none_keeps_a_constant_mean_and_the_meta_covariance(nb201_bench):
    """``mean_weight=none``: the target-adapted GP's prior-mean weight stays 0 through its fits (no
    prior on it to redraw it from), its offset is fitted, and its mean is that constant."""
    from grabnas.models.target_gp import MetaKernel

    opt, _ = _search(nb201_bench, "grabnas[mean_weight=none,integrate=0]", seed=1, steps=5)
    gp = opt.surrogate._last_gp
    mean = gp.mean_module
    assert float(mean.scale) == 0.0 and not mean.scale.requires_grad
    assert [name for name, *_ in gp.named_priors() if name.startswith("mean_module")] == ["mean_module.offset_prior"]
    with torch.no_grad():
        assert torch.allclose(mean(opt.surrogate.inputs(opt.z_pool[:50])), mean.offset.expand(50))
    assert any(isinstance(k, MetaKernel) for k in gp.covar_module.kernels)


def test_finetune_builds_each_fit_on_a_finetuned_feature_map_and_replays(nb201_bench):
    """``finetune=K``: every target-adapted fit stands on a copy of the feature map fine-tuned to
    the observations (the surrogate's own map untouched), and a replay proposes the same."""

    def run():
        return _search(
            nb201_bench, "grabnas[finetune=5,finetune_start=2,finetune_refit=true,integrate=0]", seed=2, steps=5
        )

    opt, asked = run()
    sur = opt.surrogate.surrogate
    gp = opt.surrogate._last_gp
    tuned = gp.mean_module._prior.module.feature_map
    assert tuned is not sur.feature_map
    assert any(not torch.equal(a, b) for a, b in zip(tuned.parameters(), sur.feature_map.parameters()))
    assert run()[1] == asked
    # from finetune_start observations on only: before, the fits (and asks) are the default's
    late, asked_late = _search(
        nb201_bench, "grabnas[finetune=5,finetune_start=4,finetune_refit=true,integrate=0]", seed=2, steps=5
    )
    plain = _search(nb201_bench, "grabnas[integrate=0,finetune=0]", seed=2, steps=5)[1]
    assert asked_late[:4] == plain[:4]
    assert late.surrogate._last_gp.mean_module._prior.module.feature_map is not late.surrogate.surrogate.feature_map


def test_finetune_without_refit_keeps_the_default_fits_scalars_on_the_finetuned_map(nb201_bench):
    """``finetune_refit=false``: a fit's hyperparameter samples, their weights and every kernel
    scalar and noise are the default's (fitted and integrated on the meta-learned map, from the
    same warm start); only the prior mean's weight and offset are refitted to the fine-tuned map
    under them. The first asks before ``finetune_start`` are the default's; a replay proposes the same."""
    spec = "grabnas[finetune=5,finetune_start=3,finetune_refit=false]"
    opt, asked = _search(nb201_bench, spec, seed=1, steps=5)
    assert asked[:3] == _search(nb201_bench, "grabnas", seed=1, steps=3)[1]
    assert _search(nb201_bench, spec, seed=1, steps=5)[1] == asked
    latent = opt.surrogate
    archs, values = opt.history.successes()
    z, y = opt.latent(archs), torch.as_tensor(values, dtype=torch.float64)
    start = dict(latent._warm_start)
    tuned = latent.fit(z, y).gp
    latent._warm_start, latent.finetune = start, 0
    plain = latent.fit(z, y).gp
    assert tuned.map_model.mean_module._prior.module.feature_map is not latent.surrogate.feature_map
    assert plain.map_model.mean_module._prior.module.feature_map is latent.surrogate.feature_map
    names = tuned._parts["form"].names
    kernel = [i for i, n in enumerate(names) if not n.startswith("mean_module.")]
    assert len(kernel) >= 3 and torch.equal(tuned.weights, plain.weights)
    assert torch.equal(tuned.thetas[:, kernel], plain.thetas[:, kernel])
    assert not torch.equal(tuned.thetas, plain.thetas)
    # finetuned=False (the portfolio's meta arm): the same fit, the meta-learned map kept
    latent._warm_start, latent.finetune = start, 5
    skipped = latent.fit(z, y, finetuned=False).gp
    assert skipped.map_model.mean_module._prior.module.feature_map is latent.surrogate.feature_map
    assert torch.equal(skipped.thetas, plain.thetas) and torch.equal(skipped.weights, plain.weights)


def test_default_finetuning_resolves_by_adaptation_and_refit():
    """The default fine-tunes the feature map (50 steps from the tenth observation, the scalars kept
    from the meta-learned map, once per 10 observations) where the warm-up holds random asks, and
    adds the corpus's random warm-up share; without a target-adapted GP there is nothing to
    fine-tune; an explicit ``finetune`` applies everywhere; a refit on the map is every fit."""
    from grabnas.search.grabnas import DEFAULT_FINETUNE, DEFAULT_FINETUNE_EVERY

    cfg = GraBNASConfig()
    assert (cfg.finetune, cfg.finetune_start, cfg.finetune_refit, cfg.finetune_every, cfg.warmup_random) == (
        None,
        10,
        False,
        DEFAULT_FINETUNE_EVERY,
        "corpus",
    )
    assert (cfg.finetune_steps(0), cfg.finetune_steps(7)) == (0, DEFAULT_FINETUNE)
    assert GraBNASConfig(finetune=20).finetune_steps(0) == 20
    meta = GraBNASConfig(adaptation="meta")
    assert (meta.finetune, meta.finetune_every, meta.finetune_steps(7)) == (0, 1, 0)
    assert GraBNASConfig(finetune_refit=True).finetune_every == 1
    assert GraBNASConfig(finetune=0).finetune_every == 1


def test_default_finetunes_only_where_the_warmup_holds_random_asks(nb201_bench, monkeypatch):
    """On NB201 (the corpus explains the held-out dataset: no random warm-up asks) the default's
    map stays the meta-learned one, so its search is the previous default's; with a corpus that
    leaves 76 % unexplained (NAS-Bench-Graph's share) 7 warm-up asks are random and the map is
    fine-tuned once per 10 observations."""
    import grabnas.search.registry as registry

    def finetune_of(spec: str) -> tuple[int, int]:
        opt = registry.build_optimizer(spec, nb201_bench, "cifar10", seed=0)
        return opt.warmup_probe_count(), opt.surrogate.finetune

    assert finetune_of("grabnas") == (0, 0)
    assert finetune_of("grabnas[finetune=50]") == (0, 50)
    monkeypatch.setattr(
        registry, "_fill_heldout_residual", lambda sur, bench, cache: sur.card.__setitem__("heldout_residual", 0.76)
    )
    assert finetune_of("grabnas") == (7, 50)
    assert registry.build_optimizer("grabnas", nb201_bench, "cifar10", seed=0).surrogate.finetune_every == 10
    assert finetune_of("grabnas[warmup_random=none]") == (0, 0)
