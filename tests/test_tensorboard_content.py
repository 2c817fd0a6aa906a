"""What a run's TensorBoard holds: overlaid metric families, inputs, confusion, attention, config."""
import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import compose, tiny_vit_overrides
from vision_exp.experiment import run_experiment


def load(folder):
    accumulator = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator.Tags()


def test_vit_run_logs_curves_inputs_confusion_attention_and_config(tiny_folder, tmp_path):
    run = tmp_path / "run"
    cfg = compose(tiny_vit_overrides(tiny_folder, "experiment=cpu_vit", "trainer.train_samples=72"))
    run_experiment(cfg, run, [])
    root = load(run / "tb")
    assert {"inputs/train_augmented", "val/confusion_best", "val/attention_cls_token"} <= set(root["images"])
    assert "config" in {t.split("/")[0] for t in root["tensors"]}
    assert {"lr", "images_per_s", "data_wait_frac"} <= set(root["scalars"])
    for family in ("train", "train_running", "val"):
        tags = set(load(run / "tb" / family)["scalars"])
        assert {"loss", "acc"} <= tags, family
    accumulator = EventAccumulator(str(run / "tb" / "val"), size_guidance={"scalars": 0})
    accumulator.Reload()
    assert [e.step for e in accumulator.Scalars("acc")] == [36, 72]  # x-axis: training samples seen


def test_an_average_pooled_vit_shows_the_patch_tokens_attention_not_the_unread_class_token(tiny_folder, tmp_path):
    run = tmp_path / "run"
    run_experiment(compose(tiny_vit_overrides(tiny_folder, "experiment=cpu_vit", "model.pool=avg")), run, [])
    images = set(load(run / "tb")["images"])
    assert "val/attention_patch_mean" in images and "val/attention_cls_token" not in images


def scalars(folder, tag) -> list:
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    accumulator.Reload()
    return [(e.step, e.value) for e in accumulator.Scalars(tag)]


def test_each_family_charts_its_own_numbers(tiny_folder, tmp_path):
    """tb/train is the eval-mode pass over training images, tb/train_running the running average: a swap would
    show the misleading number under the honest name. final/* are metrics.json's."""
    run = tmp_path / "run"
    run_experiment(compose(tiny_vit_overrides(tiny_folder, "experiment=cpu_vit", "trainer.train_samples=72")), run, [])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for family in ("train", "train_running", "val"):
        for tag in ("acc", "loss"):
            expected = [(r["samples_seen"], r[f"{family}/{tag}"]) for r in records]
            assert scalars(run / "tb" / family, tag) == [(s, pytest.approx(v, rel=1e-6)) for s, v in expected], (family, tag)
    assert any(r["train/acc"] != r["train_running/acc"] for r in records)  # else a swap would go unseen
    final = json.loads((run / "metrics.json").read_text())
    for key in ("val_acc", "best_val_acc", "train_acc", "train_running_acc"):
        assert scalars(run / "tb", f"final/{key}") == [(final["samples_seen"], pytest.approx(final[key], rel=1e-6))], key


def test_the_confusion_figure_of_a_thousand_classes_stays_small():
    """At 0.45 inch a class, ImageNet's 1,000 drew a 452-inch square that needed more than 8 GB and failed the
    run at its first checkpoint: the figure stops growing and drops the names it has no room for."""
    import torch

    from vision_exp.reporting.figures import MAX_FIGURE_INCHES, confusion_figure

    confusion = torch.eye(1000, dtype=torch.long) * 3
    names = [f"class {i}" for i in range(1000)]
    figure = confusion_figure(confusion, names)
    assert max(figure.get_size_inches()) <= MAX_FIGURE_INCHES
    assert not {label.get_text() for label in figure.axes[0].get_xticklabels()} & set(names)
    named = confusion_figure(torch.eye(3, dtype=torch.long), ["a", "b", "c"])
    assert [t.get_text() for t in named.axes[0].get_yticklabels()] == ["a", "b", "c"]


def test_a_nan_metric_is_null_in_metrics_jsonl(tmp_path):
    """Diverged evaluation (NaN loss with finite training) must still leave lines any JSON reader accepts."""
    from vision_exp.reporting.run import RunReporter

    reporter = RunReporter(tmp_path, {"seed": 0})
    reporter.log_epoch({"epoch": 1, "epoch_progress": 1.0, "samples_seen": 8, "val/loss": float("nan"), "val/acc": 0.0})
    reporter.close()

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    line = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0], parse_constant=refuse)
    assert line["val/loss"] is None and line["val/acc"] == 0.0


def test_a_figure_that_cannot_be_written_raises_its_own_error(tmp_path, monkeypatch):
    """On a read-only folder the temporary file's clean-up failed too, and its error hid savefig's."""
    import errno
    import pathlib

    from vision_exp.reporting.files import pyplot, save_figure_atomic

    figure = pyplot().figure()
    monkeypatch.setattr(figure, "savefig", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EROFS, "read-only (savefig)")))
    monkeypatch.setattr(pathlib.Path, "unlink", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EROFS, "read-only (unlink)")))
    with pytest.raises(OSError, match=r"savefig") as raised:
        save_figure_atomic(figure, tmp_path / "plot.png")
    assert raised.value.__context__ is None


def test_curves_png_draws_each_family_under_its_own_name_against_epoch_progress(tmp_path, monkeypatch):
    """curves.png: the eval-mode train pass is labelled as such and the running average as the running one (a
    swap would show the misleading number under the honest name); x is epoch_progress, so that the points of
    a run stopped within an epoch stand where it stopped."""
    from vision_exp.reporting import curves

    drawn = {}
    monkeypatch.setattr(curves, "save_figure_atomic", lambda fig, path: drawn.update(fig=fig, path=path))
    records = [{"epoch": 1, "epoch_progress": 1.0, "train/acc": 50.0, "train_running/acc": 40.0, "val/acc": 45.0,
                "train/loss": 1.5, "train_running/loss": 1.9, "val/loss": 1.7},
               {"epoch": 2, "epoch_progress": 1.5, "train/acc": 60.0, "train_running/acc": 48.0, "val/acc": 52.0,
                "train/loss": 1.2, "train_running/loss": 1.6, "val/loss": 1.4}]
    curves.plot_curves(records, tmp_path / "curves.png")
    loss_axes, acc_axes = drawn["fig"].axes
    for ax, metric in ((loss_axes, "loss"), (acc_axes, "acc")):
        lines = {line.get_label(): line for line in ax.get_lines()}
        for family, label in (("train", "train (eval mode)"), ("train_running", "train (running, train mode)"),
                              ("val", "val")):
            assert list(lines[label].get_ydata()) == [r[f"{family}/{metric}"] for r in records], (metric, label)
            assert list(lines[label].get_xdata()) == [1.0, 1.5]
