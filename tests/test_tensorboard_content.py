"""What a run's TensorBoard holds: overlaid metric families, inputs, confusion, attention, config."""
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
