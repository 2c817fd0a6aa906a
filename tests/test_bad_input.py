"""The bad-input suite: each case is refused with one clear message naming what to fix.

The command line turns every such error (a UserError) into that message and exit status 2
without a traceback (tests/test_cli.py checks this path end to end); here each case is driven
through the same `run_experiment` the command line calls.
"""
import json
import re
import shutil

import pytest
import torch

from conftest import TINY_CLASSES, compose, run_cli, tiny_overrides, tiny_vit_overrides, write_image_folder
from vision_exp.errors import CheckpointError, ConfigError, DataError
from vision_exp.experiment import run_experiment
from vision_exp.training import checkpoint as checkpoint_mod
from vision_exp.training.trainer import TrainingDiverged


def train(folder, run, *extra, vit=False):
    overrides = (tiny_vit_overrides if vit else tiny_overrides)(folder, *extra)
    return run_experiment(compose(overrides), run, list(extra))


@pytest.fixture
def folder(tmp_path):
    return write_image_folder(tmp_path / "data", per_split={"train": 4, "val": 2})


def test_truncated_jpeg_and_non_image_file_are_skipped_and_counted(folder, tmp_path, caplog):
    victim = sorted((folder / "train" / TINY_CLASSES[2]).glob("*.JPEG"))[1]
    victim.write_bytes(victim.read_bytes()[:200])
    (folder / "train" / TINY_CLASSES[0] / "readme.txt").write_text("not an image")
    summary = train(folder, tmp_path / "run")
    assert summary["status"] == "completed" and summary["samples_seen"] == 12 - 1
    assert "ignored 1 non-image files" in caplog.text and "skipped 1 unreadable images" in caplog.text


@pytest.mark.parametrize("make_bad, phrase", [
    (lambda f: (f / "train" / TINY_CLASSES[0] / "readme.txt").write_text("x"), "not an image file: .*readme.txt"),
    (lambda f: (v := sorted((f / "train" / TINY_CLASSES[2]).glob("*.JPEG"))[1]).write_bytes(v.read_bytes()[:200]),
     "cannot read image .*n02979186_"),
])
def test_bad_files_are_errors_naming_the_file_with_on_bad_image_error(folder, tmp_path, make_bad, phrase):
    make_bad(folder)
    with pytest.raises(DataError, match=phrase):
        train(folder, tmp_path / "run", "data.on_bad_image=error")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_train_and_val_classes_that_differ(folder, tmp_path):
    shutil.rmtree(folder / "val" / TINY_CLASSES[1])
    with pytest.raises(DataError, match="train and val class folders differ"):
        train(folder, tmp_path / "run")


def test_more_classes_than_the_dataset_has(folder, tmp_path):
    with pytest.raises(ConfigError, match="data.num_classes=7 but .* has only 3 classes"):
        train(folder, tmp_path / "run", "data.num_classes=7")


def test_img_size_not_divisible_by_the_patch_size(folder, tmp_path):
    with pytest.raises(ConfigError, match="model: img_size 20 is not divisible by patch_size 8"):
        train(folder, tmp_path / "run", "experiment=cpu_vit", "data.img_size=20", vit=True)


@pytest.mark.parametrize("overrides, phrase", [
    (["model=vit_v1", "model.depth=2", "model.drop_path=1.5"], "model: drop_path=1.5 must lie in [0, 1]"),
    (["model=vit_v1", "model.drop_path=-0.2"], "model: drop_path=-0.2 must lie in [0, 1]"),  # unused at depth 1
    (["model=vit_v1", "model.embed_dim=16", "model.num_heads=2", "model.mlp_ratio=0.05"], "model: mlp_ratio=0.05 gives embed_dim 16 an MLP of 0 hidden units"),
    (["model.widths=[8,16.5,32,64]"], "model.widths=[8, 16.5, 32, 64] must be"),
    (["model.layers=[1,1.5,1,1]"], "model.layers=[1, 1.5, 1, 1] must be"),
])
def test_model_values_that_would_fail_in_training_or_do_nothing_stop_before_it(overrides, phrase):
    """A drop-path rate outside [0, 1] failed at the first training step (and never at depth 1), a small MLP
    ratio built a block that ignores its input, a float in a list of sizes failed inside torch."""
    from vision_exp.experiment import check_buildable

    with pytest.raises(ConfigError, match=re.escape(phrase)):
        check_buildable(compose(overrides))


def test_budget_smaller_than_one_batch(folder, tmp_path):
    with pytest.raises(ConfigError, match="smaller than one batch"):
        train(folder, tmp_path / "run", "trainer.train_samples=3")


def test_checkpoint_from_another_model_names_the_mismatching_keys(folder, tmp_path):
    train(folder, tmp_path / "resnet")
    with pytest.raises(CheckpointError, match=r"does not fit this model: \d+ missing keys \(e.g. blocks.0.attn.*\d+ unexpected keys \(e.g. bn1"):
        train(folder, tmp_path / "vit", "experiment=cpu_vit",
              f"trainer.resume={tmp_path / 'resnet' / 'checkpoints' / 'last.pt'}", vit=True)


def test_checkpoint_with_pickled_code_is_refused(folder, tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"model": {}, "hook": print}, evil)
    with pytest.raises(CheckpointError, match="refusing to load .*weights-only"):
        train(folder, tmp_path / "run", f"trainer.resume={evil}")


def test_full_disk_while_checkpointing_stops_with_a_message(folder, tmp_path, monkeypatch):
    calls = []

    def full_after_first(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        return original(obj, f, *args, **kwargs)

    original = torch.save
    monkeypatch.setattr(checkpoint_mod.torch, "save", full_after_first)
    with pytest.raises(CheckpointError, match="disk is full"):
        train(folder, tmp_path / "run", "trainer.epochs=2")


def test_nan_loss_stops_at_once_naming_the_step_and_the_last_checkpoint(folder, tmp_path):
    with pytest.raises(TrainingDiverged, match=r"NaN or infinite at step \d+ .*last good checkpoint"):
        train(folder, tmp_path / "run", "optimizer.lr=1e30", "trainer.epochs=3")


def test_diverged_weights_are_never_saved_as_a_checkpoint(folder, tmp_path, monkeypatch):
    """On a GPU the loss is checked every few steps only; a checkpoint inside an epoch is checked first, so
    last.pt never holds NaN weights that the error message would call the last good checkpoint."""
    from vision_exp.training.trainer import Trainer

    monkeypatch.setattr(Trainer, "_finite_check_interval", lambda self, log_every: 1000)  # as on a GPU, but rarer
    with pytest.raises(TrainingDiverged, match=r"NaN or infinite at steps 1-4 .*last good checkpoint: none yet"):
        train(folder, tmp_path / "run", "optimizer.lr=1e30", "data.batch_size=2", "trainer.checkpoint_every_steps=4")
    assert not list((tmp_path / "run" / "checkpoints").glob("*.pt"))


def test_nan_loss_from_the_command_line_is_recorded_as_failed(folder, tmp_path):
    result = run_cli(tiny_overrides(folder, "optimizer.lr=1e30", "trainer.epochs=3", f"hydra.run.dir={tmp_path / 'run'}"))
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "NaN" in metrics["error"]


@pytest.mark.parametrize("override", ["data.batch_size=-2", "optimizer.lr=0", "data.img_size=4",
                                      "trainer.grad_clip=-1", "trainer.ema_decay=1.5", "augmentation.mix_prob=2",
                                      "optimizer.betas=[0.9]", "optimizer.betas=[0.9,1.5]"])
def test_invalid_values_are_config_errors(folder, tmp_path, override):
    with pytest.raises(ConfigError, match=re.escape(override.split("=")[0])):
        train(folder, tmp_path / "run", override)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_missing_folder_dataset_points_at_data_root_not_the_environment(tmp_path):
    """data=folder takes its root from the command line only: VISION_EXP_DATA would not help."""
    with pytest.raises(DataError, match=r"dataset folder not found: .*nowhere\n  fix: data.root=<the folder that holds "
                                        r"train/ and val/>$"):
        train(tmp_path / "nowhere", tmp_path / "run")


@pytest.mark.parametrize("workers", [0, 2])
def test_folder_loader_skips_or_names_an_unreadable_image(folder, tmp_path, workers):
    victim = sorted((folder / "train" / TINY_CLASSES[2]).glob("*.JPEG"))[1]
    victim.write_bytes(victim.read_bytes()[:200])
    loader = ("data.loader=folder", f"data.num_workers={workers}")
    summary = train(folder, tmp_path / "skip", *loader)
    assert summary["status"] == "completed" and summary["samples_seen"] == 12
    with pytest.raises(DataError, match=rf"^cannot read image .*{victim.name}"):
        train(folder, tmp_path / "error", *loader, "data.on_bad_image=error")
