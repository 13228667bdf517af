import shutil
from dataclasses import replace

import pyro
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

from pyrovae import CheckpointError, SemiSupervisedConfig, fit_semisupervised, labelled_subset, load_dataset
from pyrovae.checkpoint import load_checkpoint, save_checkpoint
from pyrovae.cli import main
from pyrovae.infer.jit import JitTraceEnum_ELBO
from pyrovae.models.adgm import ADGM
from pyrovae.models.nets import mlp
from pyrovae.models.registry import model_from_config
from pyrovae.models.ssvae import SSVAE
from pyrovae.train.semisupervised import (
    SemiSupervisedTask,
    accuracy,
    kingma_alpha,
    labelled_metrics,
    semisupervised_loss,
    split_batch,
)
from tests.common import REPO, translations

pytestmark = pytest.mark.filterwarnings("ignore:TraceEnum_ELBO found no sample sites")


def test_labelled_subset_is_class_balanced_and_seeded():
    y = torch.arange(10).repeat(30)[torch.randperm(300)]
    idx = labelled_subset(y, 50, 10, seed=3)
    assert len(idx) == len(set(idx.tolist())) == 50
    assert torch.bincount(y[idx], minlength=10).tolist() == [5] * 10
    assert torch.equal(idx, labelled_subset(y, 50, 10, seed=3))
    assert not torch.equal(idx, labelled_subset(y, 50, 10, seed=4))
    with pytest.raises(ValueError, match="multiple of the 10 classes"):
        labelled_subset(y, 55, 10)
    with pytest.raises(ValueError, match="class 0 has 30 points"):
        labelled_subset(y, 400, 10)
    with pytest.raises(ValueError, match="outside 0..9"):
        labelled_subset(y + 1, 50, 10)


def test_split_batch():
    x, y = torch.arange(10.0).reshape(5, 2), torch.tensor([0, 1, 2, 1, 0])
    observed = torch.tensor([True, False, True, False, False])
    (x_l, y_l), x_u = split_batch(x, y, observed)
    assert torch.equal(x_l, x[[0, 2]]) and torch.equal(y_l, y[[0, 2]]) and torch.equal(x_u, x[[1, 3, 4]])
    assert split_batch(x, y, torch.ones(5, dtype=torch.bool))[1] is None
    assert split_batch(x, y, torch.zeros(5, dtype=torch.bool))[0] is None
    with pytest.raises(ValueError, match="boolean mask"):
        split_batch(x, y, torch.ones(5))


@pytest.mark.parametrize("kind", ["labelled", "unlabelled", "mixed"])
def test_labelled_unlabelled_and_mixed_batches_train(kind):
    ssvae = SSVAE(6, 3, z_dim=2, hidden=(8,))
    x = torch.bernoulli(torch.full((8, 6), 0.3), generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    observed = {"labelled": torch.ones(8), "unlabelled": torch.zeros(8), "mixed": torch.arange(8) % 3 == 0}[kind]
    labelled, unlabelled = split_batch(x, y, observed.bool())
    optim = torch.optim.Adam(ssvae.parameters(), lr=1e-2)
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    before = [p.detach().clone() for p in ssvae.parameters()]
    losses = []
    for _ in range(20):
        loss = semisupervised_loss(ssvae.model, ssvae.guide, elbo, labelled, unlabelled, 80, 80)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    changed = [not torch.equal(b, p) for b, p in zip(before, ssvae.parameters(), strict=True)]
    assert any(changed)
    with pytest.raises(ValueError, match="labelled batch, an unlabelled batch or both"):
        semisupervised_loss(ssvae.model, ssvae.guide, elbo, None, None)


def digits_run(tmp_path=None, epochs=2, resume=False, batch_size=256, a_dim=0, **config):
    data = load_dataset("digits")
    pyro.clear_param_store()
    pyro.set_rng_seed(0)  # the initial weights
    ssvae = ADGM(data.x_dim, z_dim=4, hidden=(32,), a_dim=a_dim) if a_dim else SSVAE(data.x_dim, z_dim=4, hidden=(32,))
    config = SemiSupervisedConfig(num_labels=50, epochs=epochs, batch_size=batch_size, device="cpu", **config)
    history = fit_semisupervised(ssvae, data, config, out_dir=tmp_path, resume=resume, verbose=False)
    return ssvae, history


def test_metrics_and_checkpoint_resume_exactly(tmp_path):
    straight, history = digits_run(epochs=2)
    assert [row["epoch"] for row in history] == [1, 2]
    for key in ("labelled_elbo", "unlabelled_elbo", "labelled_log_q", "valid_accuracy", "test_accuracy"):
        assert key in history[0]
    assert history[-1]["unlabelled_elbo"] < 0 and 0 <= history[-1]["test_accuracy"] <= 1
    digits_run(tmp_path, epochs=1)
    resumed, resumed_history = digits_run(tmp_path, epochs=2, resume=True)
    def untimed(rows):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]

    assert untimed(resumed_history) == untimed(history)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    with pytest.raises(CheckpointError, match="trained with lr=0.001, not 0.1: only epochs"):
        digits_run(tmp_path, epochs=3, resume=True, lr=0.1)


def test_lr_decays_per_epoch_and_resumes_on_schedule(tmp_path):
    """Epoch e trains with lr * lr_decay**e, also after a resume (whatever Adam's saved state says), and the
    decayed run differs from the constant one."""
    straight, history = digits_run(epochs=3, lr=0.01, lr_decay=0.5)
    assert [row["lr"] for row in history] == [0.01, 0.005, 0.0025]
    digits_run(tmp_path, epochs=1, lr=0.01, lr_decay=0.5)
    resumed, _ = digits_run(tmp_path, epochs=3, resume=True, lr=0.01, lr_decay=0.5)
    constant, constant_history = digits_run(epochs=3, lr=0.01)
    assert "lr" not in constant_history[0]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, c) for a, c in zip(straight.parameters(), constant.parameters(), strict=True))
    with pytest.raises(ValueError, match=r"lr_decay must be in \(0, 1\], got 1.5"):
        SemiSupervisedConfig(lr_decay=1.5)


def test_lr_milestones_step_the_rate_and_may_be_added_on_resume(tmp_path):
    """Milestones multiply the rate by gamma from their epoch on; a run resumed with a milestone added at the
    first epoch still to train is exactly the run that had it from the start, and one that would change an
    epoch already trained is refused."""
    straight, history = digits_run(epochs=4, lr=0.01, lr_milestones=(2, 3), lr_gamma=0.5)
    assert [row["lr"] for row in history] == [0.01, 0.01, 0.005, 0.0025]
    digits_run(tmp_path, epochs=2, lr=0.01)
    resumed, resumed_history = digits_run(tmp_path, epochs=4, resume=True, lr=0.01, lr_milestones=(2, 3),
                                          lr_gamma=0.5)  # fmt: skip
    assert [row.get("lr") for row in resumed_history] == [None, None, 0.005, 0.0025]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["config"]["lr_milestones"] == (2, 3)
    with pytest.raises(CheckpointError, match=r"epoch 2 with learning rate 0.01.*0.005"):
        digits_run(tmp_path, epochs=5, resume=True, lr=0.01, lr_milestones=(1, 2, 3), lr_gamma=0.5)
    with pytest.raises(CheckpointError, match="epoch 3 .* from 4 on"):
        digits_run(tmp_path, epochs=5, resume=True, lr=0.01, lr_milestones=(2, 3), lr_gamma=0.1)
    changeable = "only epochs, device, divergence, device_data_limit, lr_milestones, lr_gamma may change"
    with pytest.raises(CheckpointError, match=f"lr=0.01, not 0.02: {changeable}"):
        digits_run(tmp_path, epochs=5, resume=True, lr=0.02, lr_milestones=(2, 3), lr_gamma=0.5)
    for milestones in ((0,), (3, 2), (2, 2), (1.5,)):
        with pytest.raises(ValueError, match="lr milestones must be increasing epochs >= 1"):
            SemiSupervisedConfig(lr_milestones=milestones)
    with pytest.raises(ValueError, match=r"gamma\) must be in \(0, 1\], got 0"):
        SemiSupervisedConfig(lr_milestones=(1,), lr_gamma=0)


def test_resume_of_a_checkpoint_older_than_a_setting(tmp_path):
    """A checkpoint written before ``jit`` existed (no such key in its config) resumes with the default."""
    digits_run(tmp_path, epochs=1)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    del state["config"]["jit"]
    save_checkpoint(tmp_path / "checkpoint.pt", {k: v for k, v in state.items() if k != "format"})
    _, history = digits_run(tmp_path, epochs=2, resume=True)
    assert [row["epoch"] for row in history] == [1, 2]
    with pytest.raises(CheckpointError, match="trained with jit=False, not True"):
        digits_run(tmp_path, epochs=3, resume=True, jit=True)


def test_jit_losses_equal_the_eager_ones_and_a_jit_run_trains():
    """Compiled (JitTraceEnum_ELBO) losses estimate the eager ones: for an unlabelled and a labelled batch (two
    compiled functions) the means of 300 draws agree within 4 standard errors (the compiled step draws its noise
    in another order, so single draws differ); a JIT run learns (grey digits, 100 labels, 4 epochs: 84.3 %, the
    eager run 89.0 %)."""
    pyro.clear_param_store()
    ssvae = SSVAE(6, num_classes=3, z_dim=2, hidden=(8,))
    x, y = torch.bernoulli(torch.full((5, 6), 0.5)), torch.tensor([0, 1, 2, 0, 1])
    jit, eager = JitTraceEnum_ELBO(max_plate_nesting=1, ignore_jit_warnings=True), TraceEnum_ELBO(max_plate_nesting=1)
    for batch in [(x,), (x, y)]:
        draws = [torch.stack([elbo.differentiable_loss(ssvae.model, ssvae.guide, *batch).detach() for _ in range(300)])
                 for elbo in (jit, eager)]  # fmt: skip
        se = (draws[0].var() / 300 + draws[1].var() / 300).sqrt()
        assert (draws[0].mean() - draws[1].mean()).abs() < 4 * se
    data = load_dataset("digits", binarize="none")
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    ssvae = SSVAE(data.x_dim, z_dim=16, hidden=(256,), likelihood="normal")
    config = SemiSupervisedConfig(num_labels=100, epochs=4, batch_size=64, device="cpu", jit=True)
    assert fit_semisupervised(ssvae, data, config, verbose=False)[-1]["test_accuracy"] > 0.8  # chance: 0.1


@pytest.mark.parametrize("a_dim", [0, 3])
def test_a_labelled_step_takes_trace_enum_elbos_loss_and_gradient(a_dim):
    """The task steps labelled minibatches with Trace_ELBO (nothing to enumerate there, less Python per step): on
    the same draws its loss and gradient are TraceEnum_ELBO's, to float32 rounding (rel 1e-5), for M2 and the ADGM."""
    data = load_dataset("digits")
    model = ADGM(data.x_dim, z_dim=4, hidden=(16,), a_dim=a_dim) if a_dim else SSVAE(data.x_dim, z_dim=4, hidden=(16,))
    task = SemiSupervisedTask(model, data, SemiSupervisedConfig(num_labels=50, batch_size=32, device="cpu"), None)
    rows, params = task.labelled[:20], list(model.parameters())
    results = []
    for step in ("task", "TraceEnum_ELBO"):
        pyro.set_rng_seed(1)  # the same binarization of the rows and the same draws of the latents
        if step == "task":
            loss = task.loss(None, rows, 0.0, 1.0)
        else:
            batch = (task.view(rows, shift=True), task.labels(rows))
            loss = semisupervised_loss(task.model, task.guide, TraceEnum_ELBO(max_plate_nesting=1), batch, None)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        results.append([loss, *(torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True))])
    for ours, ref in zip(*results, strict=True):
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_joint_schedule_reports_per_point_elbos_like_the_alternate_one():
    """The joint schedule scales each part of its step's loss to its whole set, but reports per-point ELBOs:
    with the weights all but frozen (lr 1e-9) both schedules report the same per-point quantities of the
    same model, so they agree to Monte Carlo noise (a scaled unlabelled report would be off by the
    set-to-minibatch ratio, about 5x here; the labelled ones are computed on the whole labelled set at the
    end of the epoch, the same way for both); and a joint run learns."""
    (_, alternate), (_, joint) = (digits_run(epochs=1, lr=1e-9, labelled_batch_size=10, schedule=s)
                                  for s in ("alternate", "joint"))  # fmt: skip
    for key in ("labelled_elbo", "unlabelled_elbo", "labelled_log_q"):
        assert joint[0][key] == pytest.approx(alternate[0][key], rel=0.02), key
    _, history = digits_run(epochs=3, lr=3e-3, schedule="joint", batch_size=32)
    assert history[-1]["test_accuracy"] > 0.5  # it learns (chance 0.1)


def test_an_adgm_run_learns_and_reports_labelled_metrics_of_its_own_classifier():
    """With the auxiliary variable the classifier is q(y|a, x): a digits run learns (5 epochs: 69 %, plain M2
    74 %; chance 10 %), and the end-of-epoch labelled metrics are those of :func:`labelled_metrics`."""
    ssvae, history = digits_run(epochs=5, batch_size=64, a_dim=4)
    assert history[-1]["test_accuracy"] > 0.5
    assert history[-1]["labelled_log_q"] < 0 and history[-1]["labelled_elbo"] < 0
    data = load_dataset("digits")
    idx = labelled_subset(data.train.y, 50, 10)
    x, y = torch.bernoulli(data.train.x[idx]), data.train.y[idx]
    elbo, log_q = labelled_metrics(ssvae, x, y)
    assert log_q == pytest.approx(history[-1]["labelled_log_q"], abs=0.1)
    assert elbo == pytest.approx(history[-1]["labelled_elbo"], rel=0.05)


class Recorder(torch.nn.Module):
    """An identity feature map that keeps the batches it is given during training."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        if self.training:
            self.seen.append(x.clone())
        return x


@pytest.mark.parametrize("shift", [0, 1])
def test_shift_translates_the_labelled_minibatches_only(shift):
    """With ``shift``, the labelled steps' images (10 rows here) are translations of labelled images, the
    unlabelled ones (64 rows) and the whole-set labelled metrics (30 rows) the training images themselves."""
    data = load_dataset("digits", binarize="none")
    config = SemiSupervisedConfig(num_labels=30, labelled_batch_size=10, batch_size=64, epochs=1, device="cpu",
                                  shift=shift)  # fmt: skip
    assert (len(data.train) - 30) % 64 not in (10, 30)
    features = Recorder()
    pyro.set_rng_seed(0)
    fit_semisupervised(SSVAE(data.x_dim, z_dim=2, hidden=(8,), likelihood="normal"), data, config,
                       features=features, verbose=False)  # fmt: skip
    known = {tuple(row.tolist()) for row in data.train.x}
    share = {}  # rows per batch size -> share of them found among the training images
    for batch in features.seen:
        share.setdefault(len(batch), []).extend(tuple(row.tolist()) in known for row in batch)
    assert set(share) >= {10, 30, 64}
    assert all(share[30]) and all(share[64])
    if shift:  # 1 of the 9 offsets keeps an image in place (and some moves leave an image unchanged)
        assert 0.05 < sum(share[10]) / len(share[10]) < 0.25  # about 1/9 of 200 rows
    else:
        assert all(share[10])
    with pytest.raises(ValueError, match="max_shift must be in 0..7 pixels for 8x8 images, got 8"):
        fit_semisupervised(SSVAE(data.x_dim), data, SemiSupervisedConfig(epochs=1, shift=8))


def test_consistency_shows_the_classifier_each_unlabelled_minibatch_twice_the_second_time_shifted():
    """With ``consistency`` every unlabelled step feeds its 64 images through the feature map twice: the
    training images themselves (the view the ELBO sees), then each one translated by up to ``shift`` pixels."""
    data = load_dataset("digits", binarize="none")
    config = SemiSupervisedConfig(num_labels=30, labelled_batch_size=10, batch_size=64, epochs=1, device="cpu",
                                  shift=1, consistency=5.0)  # fmt: skip
    features = Recorder()
    pyro.set_rng_seed(0)
    fit_semisupervised(SSVAE(data.x_dim, z_dim=2, hidden=(8,), likelihood="normal"), data, config,
                       features=features, verbose=False)  # fmt: skip
    known = {tuple(row.tolist()) for row in data.train.x}
    unlabelled = [batch for batch in features.seen if len(batch) == 64]
    assert len(unlabelled) == 2 * ((len(data.train) - 30) // 64)
    moved = 0
    for view, other in zip(unlabelled[::2], unlabelled[1::2], strict=True):
        assert all(tuple(row.tolist()) in known for row in view)
        for a, b in zip(view, other, strict=True):
            assert any(torch.equal(t.reshape(-1), b) for t in translations(a.reshape(1, 8, 8), 1).values())
        moved += int((view != other).any(-1).sum())
    assert moved > 0.5 * 64 * len(unlabelled) / 2  # 8 of the 9 offsets move an image


def test_kingma_alpha():
    assert kingma_alpha(50_000, 100) == pytest.approx(50.0)  # Kingma et al.: 0.1 N per mean over the labels
    assert kingma_alpha(50_000, 3000, weight=1.0) == pytest.approx(50_000 / 3000)
    with pytest.raises(ValueError, match="num_labels <= num_data"):
        kingma_alpha(10, 20)


def test_training_errors():
    data = load_dataset("digits")
    with pytest.raises(ValueError, match="classes"):
        fit_semisupervised(SSVAE(data.x_dim, num_classes=3), data, SemiSupervisedConfig(epochs=1))
    with pytest.raises(ValueError, match="fewer than"):
        fit_semisupervised(SSVAE(data.x_dim), data, SemiSupervisedConfig(num_labels=2000, epochs=1))
    with pytest.raises(ValueError, match="num_labels must be a positive"):
        SemiSupervisedConfig(num_labels=0)
    with pytest.raises(ValueError, match="unknown schedule 'mixed'"):
        SemiSupervisedConfig(schedule="mixed")
    with pytest.raises(ValueError, match="labelled_every must be 1"):
        SemiSupervisedConfig(schedule="joint", labelled_every=2)
    with pytest.raises(ValueError, match="shift must be a number of pixels >= 0, got -1"):
        SemiSupervisedConfig(shift=-1)
    for weight in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="consistency must be a finite weight >= 0"):
            SemiSupervisedConfig(consistency=weight)


@pytest.mark.parametrize("split", ["valid", "test"])
def test_labels_outside_the_classes_are_refused_not_counted_as_wrong(split):
    """A test label 10 among classes 0..9 never equals a prediction: the accuracy came out 0.0, silently."""
    data = load_dataset("digits")
    labels = getattr(data, split).y.clone()
    labels[[4, 7]] = torch.tensor([10, -1])
    bad = replace(data, **{split: replace(getattr(data, split), y=labels)})
    with pytest.raises(ValueError, match=rf"data.{split}.y has 2 label\(s\) outside 0..9 \(e.g. 10\)"):
        fit_semisupervised(SSVAE(data.x_dim, hidden=(8,)), bad, SemiSupervisedConfig(num_labels=50, epochs=1))
    with pytest.raises(ValueError, match=r"outside 0..9"):
        accuracy(lambda x: torch.zeros(len(x), 10), getattr(bad, split))


def test_accuracy():
    split = load_dataset("digits").test
    perfect = accuracy(lambda x: torch.nn.functional.one_hot(split.y, 10).float(), split)
    assert perfect == 1.0
    assert accuracy(lambda x: torch.zeros(len(x), 10).index_fill_(1, torch.tensor([3]), 1.0), split) == pytest.approx(
        float((split.y == 3).float().mean())
    )



def supervised_only(data, idx, hidden, epochs=500):
    """The SSVAE's classifier architecture trained on the labelled points alone (cross-entropy, Adam)."""
    classifier = mlp([data.x_dim, hidden, data.num_classes], "softplus")
    optim = torch.optim.Adam(classifier.parameters(), lr=1e-3)
    for _ in range(epochs):
        loss = torch.nn.functional.cross_entropy(classifier(data.train.x[idx]), data.train.y[idx])
        optim.zero_grad()
        loss.backward()
        optim.step()
    return accuracy(classifier, data.test)


def test_digits_with_ten_labels_per_class():
    """Embedded digits (grey levels, Gaussian likelihood), 10 labels per class, 20 epochs: M2 reaches 91.7 %
    test accuracy, the same classifier trained on the 100 labelled digits alone 89.7 % (seed 0). With ~1,200
    unlabelled 8x8 images the gain is small and within seed-to-seed noise (other settings and seeds gave
    -1 to +2 points); on MNIST it is clear (tests/test_mnist.py, slow). Asserted: the run learns, does not
    fall behind the labelled examples alone by more than noise, and predict() reproduces the reported
    accuracy."""
    data = load_dataset("digits", binarize="none")
    pyro.set_rng_seed(0)
    ssvae = SSVAE(data.x_dim, z_dim=16, hidden=(256,), likelihood="normal")
    config = SemiSupervisedConfig(num_labels=100, epochs=20, batch_size=64, device="cpu")
    semi = fit_semisupervised(ssvae, data, config, verbose=False)[-1]["test_accuracy"]
    torch.manual_seed(0)
    alone = supervised_only(data, labelled_subset(data.train.y, 100, 10), hidden=256)
    print(f"digits, 100 labels: semi-supervised {semi:.3f}, labelled alone {alone:.3f}")
    assert semi > 0.85 and semi > alone - 0.02
    assert accuracy(ssvae.predict, data.test) == semi


def test_a_run_saved_by_pyrovae_0_1_resumes(tmp_path):
    """An M2 run of pyrovae 0.1 saved the SSVAE's state_dict and a torch Adam over ``ssvae.parameters()``: resuming
    restores each parameter and its Adam moments under its Pyro name, and the run goes on in the new layout."""
    legacy = REPO / "tests" / "data" / "legacy" / "ssvae.pt"
    state = load_checkpoint(legacy)
    data = load_dataset("digits")
    ssvae = model_from_config({"model": "ssvae", **state["extra"]["ssvae"]})
    task = SemiSupervisedTask(ssvae, data, SemiSupervisedConfig(**{**state["config"], "device": "cpu"}), None)
    task.restore(state, legacy)
    names = {id(p): name for name, p in ssvae.named_parameters()}
    moments = list(state["optim"]["state"].values())  # in the order of ssvae.parameters()
    by_param = {name: moments[i] for i, name in enumerate(names.values())}
    optim = task.stepper.optim.state
    for p in task.stepper.params.values():
        assert torch.equal(p, state["weights"][names[id(p)]])
        assert torch.equal(optim[p]["exp_avg"], by_param[names[id(p)]]["exp_avg"])
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(legacy, run / "checkpoint.pt")
    main(["train-ss", "--out", str(run), "--resume", "--epochs", "2", "--device", "cpu", "--quiet"])
    resumed = load_checkpoint(run / "checkpoint.pt")
    assert resumed["epoch"] == 2 and resumed["history"][0] == state["history"][0] and "params" in resumed


def test_missing_labels_train_on_the_labels_given_as_a_chosen_subset_does():
    """Labels -1 (missing) but for a subset: training uses exactly the given ones, so with the subset that
    labelled_subset would choose, the run is the one with every label known (the same steps on the same rows)."""
    data = load_dataset("digits", binarize="none")
    subset = labelled_subset(data.train.y, 50, 10, seed=0)
    y = torch.full_like(data.train.y, -1)
    y[subset] = data.train.y[subset]
    partial = replace(data, train=replace(data.train, y=y))
    config = SemiSupervisedConfig(num_labels=50, epochs=1, batch_size=200, device="cpu")
    runs = []
    for dataset in (data, partial):
        pyro.clear_param_store()
        history = fit_semisupervised(SSVAE(data.x_dim, z_dim=2, hidden=(16,), likelihood="normal", seed=0),
                                     dataset, config, verbose=False)  # fmt: skip
        runs.append([{k: v for k, v in row.items() if k != "seconds"} for row in history])
    assert runs[0] == runs[1]
    with pytest.raises(ValueError, match="gives 50 labels .* set num_labels=50"):
        fit_semisupervised(SSVAE(data.x_dim, hidden=(8,)), partial, replace(config, num_labels=60), verbose=False)


@pytest.mark.filterwarnings("error")
def test_a_jit_run_raises_no_warning():
    """fit_semisupervised(jit=True) traces with pyrovae's JitTraceEnum_ELBO: torch's deprecation of torch.jit.trace
    (or any other warning) does not reach the user."""
    _, history = digits_run(epochs=1, jit=True)
    assert len(history) == 1
