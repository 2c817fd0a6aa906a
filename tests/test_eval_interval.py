"""trainer.eval_every_epochs: a long run evaluates every k-th epoch and at the last, and trains the same steps."""

import pytest
import torch

from conftest import compose, tiny_overrides, tiny_vit_overrides
from vision_exp.errors import ConfigError
from vision_exp.experiment import run_experiment
from vision_exp.reporting.files import read_jsonl
from vision_exp.sweeps.plots import mean_curve
from vision_exp.training.checkpoint import load_checkpoint
from vision_exp.training.config import TrainerConfig

EVALUATED = {"train/loss", "train/acc", "val/loss", "val/acc", "val/acc5", "val/acc_best"}


def run(overrides, run_dir, every: int) -> dict:
    extra = [*overrides, f"trainer.eval_every_epochs={every}"]
    return run_experiment(compose(extra), run_dir, extra)


@pytest.mark.parametrize("make_overrides, model", [
    (tiny_overrides, ()), (tiny_vit_overrides, ("model=vit_v1", "model.dropout=0.1", "model.drop_path=0.1"))],
    ids=["resnet", "vit"])
def test_evaluating_less_often_trains_the_same_weights_to_the_same_numbers(tiny_folder, tmp_path, make_overrides,
                                                                           model):
    """Epochs 2 and 4 of 5 evaluate, and the last; the others record training only. Evaluation draws no random
    number, so the crops and the ViT's dropout masks after a skipped evaluation are those of an every-epoch run."""
    overrides = make_overrides(tiny_folder, *model, "augmentation=basic", "trainer.train_samples=null",
                               "trainer.epochs=5", "trainer.deterministic=true")
    every_epoch, sparse = run(overrides, tmp_path / "every", 1), run(overrides, tmp_path / "sparse", 2)
    sparse_records = read_jsonl(tmp_path / "sparse" / "metrics.jsonl")
    assert [r["epoch"] for r in sparse_records] == [1, 2, 3, 4, 5]
    assert [EVALUATED <= r.keys() for r in sparse_records] == [False, True, False, True, True]
    assert not EVALUATED & sparse_records[0].keys() and not EVALUATED & sparse_records[2].keys()
    dense_records = read_jsonl(tmp_path / "every" / "metrics.jsonl")
    for dense, thin in zip(dense_records, sparse_records):
        assert {key: thin[key] for key in thin if key.startswith("train_running/")} == pytest.approx(
            {key: dense[key] for key in thin if key.startswith("train_running/")}, abs=1e-6)
        for key in EVALUATED & thin.keys() - {"val/acc_best"}:
            assert thin[key] == pytest.approx(dense[key], abs=1e-6), (thin["epoch"], key)
    for key in ("val_acc", "val_loss", "train_acc", "train_loss", "samples_seen"):
        assert sparse[key] == pytest.approx(every_epoch[key], abs=1e-6), key
    a = load_checkpoint(tmp_path / "every" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "sparse" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[key], b[key]) for key in a)
    best = max((r for r in sparse_records if "val/acc" in r), key=lambda r: r["val/acc"])
    assert sparse["best_epoch"] in (2, 4, 5) and sparse["best_val_acc"] == best["val/acc"]
    assert load_checkpoint(tmp_path / "sparse" / "checkpoints" / "best.pt")["epoch"] == sparse["best_epoch"]
    assert (tmp_path / "sparse" / "curves.png").stat().st_size > 0


def test_the_skipped_epochs_spend_no_time_evaluating(tiny_folder, tmp_path, monkeypatch):
    """Every 3rd of 7 epochs, and the last: the two passes (val, and the eval-mode train pass) run 3 times."""
    import vision_exp.training.trainer as trainer_module

    passes, evaluate = [], trainer_module.evaluate
    monkeypatch.setattr(trainer_module, "evaluate", lambda *args, **kwargs: passes.append(1) or evaluate(*args, **kwargs))
    run(tiny_overrides(tiny_folder, "trainer.epochs=7"), tmp_path / "run", 3)
    assert len(passes) == 2 * 3
    assert [r["epoch"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "val/acc" in r] == [3, 6, 7]


def test_a_sweeps_curves_average_the_evaluated_epochs():
    """Seeds evaluated every other epoch: the mean curve has a point per evaluation, at its samples seen."""
    histories = [[{"samples_seen": 10, "epoch": 1}, {"samples_seen": 20, "epoch": 2, "val/acc": acc},
                  {"samples_seen": 30, "epoch": 3, "val/acc": acc + 10}] for acc in (40.0, 50.0)]
    x, center, spread = mean_curve(histories)
    assert x == [20, 30] and center == [45.0, 55.0]
    assert spread == pytest.approx([7.0710678, 7.0710678])


def test_a_resumed_run_may_evaluate_at_another_interval(tiny_folder, tmp_path):
    """Like the budget, the interval changes no step: a run resumed by hand may change it."""
    overrides = tiny_overrides(tiny_folder, "trainer.epochs=2")
    first = run(overrides, tmp_path / "run", 1)
    summary = run([*overrides, "trainer.epochs=4", "trainer.resume=auto"], tmp_path / "run", 2)
    assert summary["status"] == "completed" and summary["samples_seen"] == 2 * first["samples_seen"]
    assert [EVALUATED <= r.keys() for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [True, True, False, True]


@pytest.mark.parametrize("value", [0, -1, 1.5])
def test_an_interval_below_one_epoch_is_refused(value):
    with pytest.raises(ConfigError, match=f"trainer.eval_every_epochs={value} must be a whole number, at least 1"):
        TrainerConfig(eval_every_epochs=value)
