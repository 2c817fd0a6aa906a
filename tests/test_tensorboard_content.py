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
