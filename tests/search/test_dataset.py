import pytest
import torch

from grabnas.data.tasks import TaskSpec
from grabnas.errors import GrabnasError
from grabnas.search.dataset import build_dataset_optimizer, dataset_task, resolve_surrogate, task_embedding


@pytest.fixture(scope="module")
def shipped():
    from grabnas.meta.checkpoints import load_surrogate

    return load_surrogate(resolve_surrogate())


def test_dataset_task_accepts_specs_and_task_names():
    assert dataset_task("digits") == TaskSpec("digits")
    assert dataset_task("mnist-subset[0,3,7]@12").classes == (0, 3, 7)
    t = dataset_task("mnist-subset[0,3,7]@12", image_size=14)
    assert t.name == "mnist-subset[0,3,7]@12~14px"


def test_default_surrogate_is_the_one_that_held_nothing_out(shipped):
    assert resolve_surrogate() == "nb201-all"
    assert shipped.card["held_out_groups"] == [] and shipped.task_encoder.has_dataset_encoder


def test_task_embedding_shape(shipped):
    d = task_embedding(shipped, TaskSpec("digits").split())
    assert d.shape == (shipped.config.task_dim,) and torch.isfinite(d).all()
    # an image task is not a task without data
    assert not torch.allclose(d, shipped.task_embedding(None, None).detach())


def test_task_embedding_reads_the_train_split_of_the_task():
    from grabnas.models.surrogate import MetaSurrogate
    from grabnas.models.surrogate_config import SurrogateConfig

    with torch.random.fork_rng():
        torch.manual_seed(0)
        sur = MetaSurrogate(SurrogateConfig(latent_dim=16, dataset_encoder=True)).eval()
    digits = TaskSpec("digits").split()
    a = task_embedding(sur, digits)
    assert a.shape == (sur.config.task_dim,)
    assert torch.equal(a, task_embedding(sur, digits))  # deterministic draws
    b = task_embedding(sur, TaskSpec("digits", (0, 1, 2), seed=5).split())
    assert (a - b).abs().max() > 1e-3
    # only the train split is read: changing val and test images leaves d unchanged
    from dataclasses import replace

    noisy = replace(digits, val=digits.val.subset(torch.arange(3)), test=digits.test.subset(torch.arange(3)))
    assert torch.equal(a, task_embedding(sur, noisy))


def test_build_dataset_optimizer():
    split = TaskSpec("digits", (0, 1, 2)).split()
    opt = build_dataset_optimizer("grabnas", split, seed=0)
    assert opt.surrogate_name == "nb201-all" and len(opt.pool) == 15625
    archs = opt.ask(2)
    assert len(set(archs)) == 2
    opt.tell(archs, [None, 50.0])  # a failure is told as None
    assert opt.ask(1)[0] not in archs
    assert build_dataset_optimizer("rea", split, seed=0).name == "rea"
    with pytest.raises(GrabnasError, match="transfer-rank"):
        build_dataset_optimizer("transfer-rank", split, seed=0)
    with pytest.raises(GrabnasError, match="unknown optimizer 'sgd'"):
        build_dataset_optimizer("sgd", split, seed=0)
    with pytest.raises(GrabnasError, match="with --dataset use --surrogate NAME"):
        build_dataset_optimizer("grabnas[surrogate=nb201-no-cifar10]", split, seed=0)


def test_dataset_search_reads_the_residual_of_the_surrogates_own_corpus():
    """nb201-all's card predates the field: its corpus (NB201 + the image corpus) leaves about two
    thirds of a held-out dataset unexplained, so a dataset search's warm-up holds 6 random asks and
    its map is fine-tuned once per 10 observations, as on NAS-Bench-Graph."""
    from grabnas.meta.corpus import load_corpus
    from grabnas.meta.transferability import heldout_residual_fraction

    opt = build_dataset_optimizer("grabnas", TaskSpec("digits", (0, 1, 2)).split(), seed=0)
    assert opt.heldout_residual == pytest.approx(heldout_residual_fraction(load_corpus("nb201+images-nb201")))
    assert 0.6 < opt.heldout_residual < 0.7
    assert opt.warmup_probe_count() == 6
    assert (opt.surrogate.finetune, opt.surrogate.finetune_every) == (50, 10)


def test_multifidelity_dataset_search_screens_the_same_share_of_random_cells():
    """grabnas-mf on a dataset follows the rule too: 6 of its first 10 asks screen random cells;
    ``pool`` restricts the candidates (a table's cells)."""
    from grabnas.search.dataset import build_dataset_multifidelity
    from grabnas.search.multifidelity import Fidelities
    from grabnas.spaces import get_space

    pool = get_space("nb201").members()[:300]
    split = TaskSpec("digits", (0, 1, 2)).split()
    opt = build_dataset_multifidelity("grabnas-mf", split, 0, Fidelities(("1ep", "5ep"), (1, 5)), pool=pool)
    assert 0.6 < opt.heldout_residual < 0.7 and opt.warmup_probe_count() == 6 and opt.pool == pool


def test_build_dataset_optimizer_with_constraints_keeps_to_feasible_cells():
    from grabnas.search.constraints import Constraints
    from grabnas.search.dataset import dataset_cost_model

    split = TaskSpec("digits", (0, 1, 2)).split()
    c = Constraints(max_flops=0.06).with_costs(dataset_cost_model(split, 4, 1))  # the network trained
    feasible = c.feasible_mask(c.cost_model.space.members())
    assert 0 < feasible.mean() < 1
    opt = build_dataset_optimizer("grabnas", split, seed=0, constraints=c)
    assert len(opt.pool) == feasible.sum() and all(c.feasible_mask(opt.pool))
    infeasible = c.cost_model.space.members()[int((~feasible).argmax())]
    assert opt.evaluable is not None and not opt.evaluable(infeasible)  # decodes must be feasible too
    assert all(c.feasible(a) for a in opt.ask(2))
    assert len(build_dataset_optimizer("rea", split, seed=0, constraints=c).pool) == feasible.sum()


def test_grabnas_mf_on_the_shipped_multifidelity_ground_truths(one_torch_thread):
    """csv:groundtruth-images-mf: each task at 1, 2 and 5 epochs; grabnas-mf over the table's cells
    with the dataset search's surrogate, from the task's images with ``data={task}`` (else the
    "no data" embedding), screening random cells as the corpus's residual says (6 of 10)."""
    from grabnas.benchmarks import load_benchmark
    from grabnas.evaluation.multifidelity import table_fidelities
    from grabnas.search.dataset import build_table_multifidelity

    bench = load_benchmark("csv:groundtruth-images-mf")
    task = "digits~train20"
    assert bench.main_tasks == ("digits~train20", "digits~noise0.5", "digits~4px")
    fids, columns = table_fidelities(bench, task, 5, low_epochs=[2])
    assert fids.names == ("2ep", "5ep") and columns == {"2ep": "digits~train20@2ep", "5ep": task}
    assert bench.optimum(task) == load_benchmark("csv:groundtruth-images").optimum(task)  # the same trainings
    blind = build_table_multifidelity("grabnas-mf", bench, task, 0, fids)
    seeing = build_table_multifidelity("grabnas-mf[data={task},n_init=1]", bench, task, 0, fids)
    assert blind.pool == seeing.pool == bench.pool(task) and len(blind.pool) == 200
    assert blind.warmup_probe_count() == seeing.warmup_probe_count() == 6
    assert not torch.allclose(blind.surrogate.embeddings[-1], seeing.surrogate.embeddings[-1])
    with pytest.raises(GrabnasError, match="unknown multi-fidelity optimizer"):
        build_table_multifidelity("grabnas[data={task}]", bench, task, 0, fids)


def test_table_multifidelity_on_another_space_runs_the_baselines_and_refuses_grabnas_mf(tmp_path):
    from grabnas.benchmarks import load_benchmark
    from grabnas.evaluation.multifidelity import table_fidelities
    from grabnas.search.dataset import build_table_multifidelity

    p = tmp_path / "g.csv"
    p.write_text("arch,g,g@1ep\ngcn~0|gat~1|sage~2|fc~2,80,40\ngat~0|gcn~1|sage~2|fc~2,70,50\n")
    bench = load_benchmark(f"csv:{p}")
    fids = table_fidelities(bench, "g", 5)[0]
    assert build_table_multifidelity("asha-random", bench, "g", 0, fids).ask(1)[0].fidelity == 0
    with pytest.raises(GrabnasError, match="grabnas-mf on a table needs an nb201 table"):
        build_table_multifidelity("grabnas-mf", bench, "g", 0, fids)
