"""The bad-input suite: each case is refused with one clear message naming what to fix.

The command line turns every such error (a UserError) into that message and exit status 2
without a traceback (tests/test_cli.py checks this path end to end); here each case is driven
through the same `run_experiment` the command line calls.
"""
import json
import re
import shutil
import subprocess
import sys

import pytest
import torch
from omegaconf import open_dict

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
    assert "ignored 1 entries that are no image files" in caplog.text and "skipped 1 unreadable images" in caplog.text


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


@pytest.mark.parametrize("outputs", [2, 5])
def test_a_model_head_of_another_size_than_the_classes(folder, tmp_path, outputs):
    """Fewer outputs failed at the first step with torch's IndexError; more trained without a word."""
    with pytest.raises(ConfigError, match=f"model.num_classes={outputs} but the data has 3 classes"):
        train(folder, tmp_path / "run", f"model.num_classes={outputs}")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_img_size_not_divisible_by_the_patch_size(folder, tmp_path):
    with pytest.raises(ConfigError, match="model: img_size 20 is not divisible by patch_size 8"):
        train(folder, tmp_path / "run", "experiment=cpu_vit", "data.img_size=20", vit=True)


@pytest.mark.parametrize("overrides, phrase", [
    (["model=vit_v1", "model.depth=2", "model.drop_path=1.5"], "model: drop_path=1.5 must lie in [0, 1]"),
    (["model=vit_v1", "model.drop_path=-0.2"], "model: drop_path=-0.2 must lie in [0, 1]"),  # unused at depth 1
    (["model=vit_v1", "model.embed_dim=16", "model.num_heads=2", "model.mlp_ratio=0.05"], "model: mlp_ratio=0.05 gives embed_dim 16 an MLP of 0 hidden units"),
    (["model.widths=[8,16.5,32,64]"], "model.widths=[8, 16.5, 32, 64] must be"),
    (["model.layers=[1,1.5,1,1]"], "model.layers=[1, 1.5, 1, 1] must be"),
    (["model.num_classes=5"], "model.num_classes=5 but the data has 10 classes"),  # each job of a sweep, before any trains
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
    """Beside its run's config.yaml, the other settings are named first; a checkpoint copied without it, by its keys."""
    import shutil

    train(folder, tmp_path / "resnet")
    last = tmp_path / "resnet" / "checkpoints" / "last.pt"
    with pytest.raises(ConfigError, match=r"cannot resume from .*last.pt: its run trained with other settings \(model"):
        train(folder, tmp_path / "vit", "experiment=cpu_vit", f"trainer.resume={last}", vit=True)
    copied = tmp_path / "elsewhere" / "last.pt"
    copied.parent.mkdir()
    shutil.copy(last, copied)
    with pytest.raises(CheckpointError, match=r"does not fit this model: \d+ missing keys \(e.g. blocks.0.attn.*\d+ unexpected keys \(e.g. bn1"):
        train(folder, tmp_path / "vit", "experiment=cpu_vit", f"trainer.resume={copied}", vit=True)


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


@pytest.mark.parametrize("flags", [["-m", "--cfg", "job"], ["--multirun", "-cjob"]])
def test_a_sweep_asked_for_its_config_is_one_line_saying_how_to_preview_a_job(tmp_path, flags):
    """Hydra does one of -m and --cfg and says so with a traceback; the line names the command that previews."""
    result = run_cli([*flags, "seed=0,1"], cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output, output
    [line] = output.strip().splitlines()
    assert line.startswith("error: -m runs a sweep and --cfg prints one run's config") and "without -m" in line
    assert not list(tmp_path.iterdir()), "a refused command makes no folder"
    preview = run_cli(["--cfg", "job", "seed=0"], cwd=tmp_path)
    assert preview.returncode == 0 and "seed: 0" in preview.stdout.splitlines(), preview.stderr


@pytest.mark.parametrize("module, flags, named", [
    ("train", ["-m", "--info"], "-m and --info"), ("train", ["--run", "-m"], "--run and -m"),
    ("train", ["--cfg", "job", "-i"], "--cfg and --info"), ("evaluate", ["-m", "--run"], "--run and -m"),
    ("predict", ["--info", "defaults", "--multirun"], "-m and --info")])
def test_two_hydra_commands_at_once_are_one_line_naming_both(tmp_path, module, flags, named):
    """Every entry point refuses, before Hydra's traceback, flags that ask for two things; the line names them."""
    result = subprocess.run([sys.executable, "-m", f"vision_exp.{module}", *flags], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output, output
    [line] = output.strip().splitlines()
    assert line.startswith(f"error: {named} each choose what the command does; give one"), line
    assert not list(tmp_path.iterdir()), "a refused command makes no folder"


@pytest.mark.parametrize("override", [
    "data.batch_size=-2", "optimizer.lr=0", "data.img_size=4", "trainer.grad_clip=-1", "trainer.ema_decay=1.5",
    "augmentation.mix_prob=2", "optimizer.betas=[0.9]", "optimizer.betas=[0.9,1.5]",
    # Each of these failed deep inside torch, timm or a comparison (an IndexError, a TypeError, an AssertionError,
    # a shape or math domain error), or trained on nonsense (NaN from a zero std, a learning rate that flips sign).
    "augmentation.scale=[0.5]", "augmentation.ratio=[1]", "augmentation.scale=[a,b]",
    "data.mean=[0.5]", "data.std=[1,2]", "data.mean=[a,b,c]", "data.std=[0,0,0]",
    "augmentation.randaugment=rand_m9_mstd0.5", "augmentation.randaugment=rand-m9-xx5",
    "scheduler.lr_min=-1", "scheduler.warmup_lr_init=-1", "scheduler=step scheduler.step_decay=-1",
    "scheduler=step scheduler.step_epochs=0", "optimizer.lr_scale_rule=sqrt optimizer.lr_base_batch_size=-256",
    "optimizer.momentum=2",
])
def test_invalid_values_are_config_errors(folder, tmp_path, override):
    """`override` is one or more overrides, the last of them the value refused."""
    overrides = override.split()
    with pytest.raises(ConfigError, match=re.escape(overrides[-1].split("=")[0])):
        train(folder, tmp_path / "run", *overrides)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("overrides, phrase", [
    (["augmentation.scale=[0.5]"], "augmentation.scale=[0.5] must be two numbers with 0 < low <= high <= 1"),
    (["augmentation.scale=[0.9,0.1]"], "augmentation.scale=[0.9, 0.1] must be two numbers with 0 < low <= high <= 1"),
    (["augmentation.ratio=[1]"], "augmentation.ratio=[1] must be two numbers with 0 < low <= high"),
    (["data.std=[1,2]"], "data.std=[1, 2] must be three numbers above 0"),
    (["data.std=[0,0,0]"], "data.std=[0, 0, 0] must be three numbers above 0"),
    (["data.mean=[a,b,c]"], "data.mean=['a', 'b', 'c'] must be three numbers"),
    (["augmentation.randaugment=rand_m9_mstd0.5"], "augmentation.randaugment='rand_m9_mstd0.5': it begins with"),
    (["augmentation.randaugment=rand-m9-xx5"], "augmentation.randaugment='rand-m9-xx5': 'xx5' is not a section"),
    (["augmentation.randaugment=rand-m9.5"], "augmentation.randaugment='rand-m9.5': 'm9.5' needs a whole number"),
    (["augmentation.randaugment=rand-tfoo"], "augmentation.randaugment='rand-tfoo': 'tfoo' names no transform set"),
    (["augmentation.randaugment=rand-inc"], "augmentation.randaugment='rand-inc': 'inc' needs a whole number"),
    (["augmentation.randaugment=rand-m9-m8"], "augmentation.randaugment='rand-m9-m8': 'm' is given twice"),
    (["augmentation.randaugment=rand-p1.5"], "augmentation.randaugment='rand-p1.5': p1.5 is a probability"),
    (["augmentation.randaugment=rand-n16-tweights"], "augmentation.randaugment='rand-n16-tweights': n16: the weighted"),
    (["scheduler.lr_min=-1"], "scheduler.lr_min=-1 must not be negative"),
    (["scheduler.warmup_lr_init=-1"], "scheduler.warmup_lr_init=-1 must not be negative"),
    (["scheduler=step", "scheduler.step_decay=-1"], "scheduler.step_decay=-1 must lie in (0, 1]"),
    (["scheduler=step", "scheduler.step_epochs=0"], "scheduler.step_epochs=0 must be positive"),
    (["optimizer.lr_base_batch_size=-256", "optimizer.lr_scale_rule=sqrt"],
     "optimizer.lr_base_batch_size=-256 must be positive"),
    (["optimizer.momentum=2"], "optimizer.momentum=2 must lie in [0, 1)"),
    (["loss.label_smoothing=1.5"], "loss.label_smoothing=1.5 must be a number in [0, 1)"),
    # nan passed every `x <= 0` check (a NaN loss then blamed on the lr, or a run that completed); inf overflowed
    (["trainer.epochs=nan"], "trainer.epochs=nan must be a finite number or null"),
    (["trainer.epochs=inf"], "trainer.epochs=inf must be a finite number or null"),
    (["optimizer.lr=nan"], "optimizer.lr=nan must be a finite number"),
    (["optimizer.weight_decay=nan"], "optimizer.weight_decay=nan must be a finite number"),
    (["trainer.grad_clip=nan"], "trainer.grad_clip=nan must be a finite number or null"),
    (["augmentation=mixup_cutmix", "augmentation.mixup_alpha=nan"], "augmentation.mixup_alpha=nan must be a finite number"),
    (["loss.distillation.temperature=-inf"], "loss.distillation.temperature=-inf must be a finite number"),
])
def test_recipe_and_data_values_are_refused_by_the_sweep_precheck(overrides, phrase):
    """check_buildable is what a sweep checks for every job before the first trains: each of these failed in
    training, after earlier jobs had run, or trained on nonsense."""
    from vision_exp.experiment import check_buildable

    with pytest.raises(ConfigError, match=re.escape(phrase)):
        check_buildable(compose(["data=folder", "data.root=unused", *overrides]))


@pytest.mark.parametrize("setting", ["rand-m9-mstd0.5-inc1-mmax9", "rand-n2-m5-p0.7-mstd101-tweights",
                                     "rand-n15-tweights", "rand-n3-t3a", "rand"])
def test_randaugment_strings_timm_reads_are_accepted(setting):
    """The check parses as timm does: what it accepts, timm builds."""
    from timm.data.auto_augment import rand_augment_transform

    from vision_exp.recipe.config import AugmentConfig

    assert AugmentConfig(randaugment=setting).randaugment == setting
    rand_augment_transform(setting, {})


@pytest.mark.parametrize("size, error", [([3], "IndexError"), (["a", 2], "ValueError"), ([None, 2], "TypeError")])
def test_a_value_a_settings_class_does_not_check_is_still_one_message_naming_the_section(size, error):
    """typed(): a check someone forgot still ends in one line, not a traceback."""
    from dataclasses import dataclass

    from omegaconf import OmegaConf

    from vision_exp.config_types import typed

    @dataclass
    class Settings:
        size: list

        def __post_init__(self) -> None:
            self.area = int(self.size[0]) * int(self.size[1])

    with pytest.raises(ConfigError, match=rf"^demo: a value cannot be used \({error}: "):
        typed(Settings, OmegaConf.create({"size": size}), "demo")


def test_a_bad_value_given_on_resume_keeps_the_interrupted_record(folder, tmp_path):
    """From the command line: one line, exit 2, and the resumable run's metrics.json as it was (before, an
    IndexError's traceback relabelled it failed)."""
    run = tmp_path / "run"
    train(folder, run)
    interrupted = json.dumps({"status": "interrupted", "error": "stopped by SIGTERM"})
    (run / "metrics.json").write_text(interrupted)
    result = run_cli(tiny_overrides(folder, "augmentation.scale=[0.5]", "trainer.resume=auto", f"hydra.run.dir={run}"))
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output, output
    assert [line for line in output.splitlines() if line.strip()] == [
        next(line for line in output.splitlines() if "augmentation.scale=[0.5] must be two numbers" in line)]
    assert (run / "metrics.json").read_text() == interrupted


def test_a_missing_folder_dataset_points_at_data_root_not_the_environment(folder, tmp_path):
    """data=folder takes its root from the command line only: VISION_EXP_DATA would not help."""
    with pytest.raises(DataError, match=r"dataset folder not found: .*nowhere\n  fix: data.root=<the folder that holds "
                                        r"train/ and val/>$"):
        train(tmp_path / "nowhere", tmp_path / "run")
    with pytest.raises(DataError, match=rf"^data.root={folder / 'train'} is the train/ split folder: set "
                                        rf"data.root={folder}, the folder that holds train/ and val/$"):
        train(folder / "train", tmp_path / "run")
    (tmp_path / "a_file").write_text("")
    with pytest.raises(DataError, match=r"dataset folder not found: .*a_file is a file\n  fix: data.root="):
        train(tmp_path / "a_file", tmp_path / "run")


def test_a_dataset_root_that_is_a_file_is_named_without_advice_that_cannot_help(tmp_path):
    """data.root=imagenette2-160.tgz: neither VISION_EXP_DATA (data.root wins) nor data.download (given already,
    or not) makes a file a folder."""
    from vision_exp.data.config import DataConfig
    from vision_exp.data.index import index_image_folder

    archive = tmp_path / "imagenette2-160.tgz"
    archive.write_bytes(b"\x1f\x8b")
    with pytest.raises(DataError) as refused:
        index_image_folder(DataConfig(name="imagenette2-160", root=str(archive), download=True))
    assert str(refused.value) == (f"dataset folder not found: {archive} is a file\n  fix: data.root=<the folder that "
                                  "holds train/ and val/> (an archive: extract it first)")
    from vision_exp.data.formats import KAGGLE_ROOT_HINT
    from vision_exp.data.index import require_root

    with pytest.raises(DataError) as refused:  # Kaggle's ImageNet lies under ILSVRC/...: where to find it still helps
        require_root(DataConfig(format="imagenet_kaggle", root=str(archive)), KAGGLE_ROOT_HINT)
    assert str(refused.value) == (f"dataset folder not found: {archive} is a file\n  fix: data.root=<the folder that "
                                  f"holds the dataset> (an archive: extract it first)\n  or: {KAGGLE_ROOT_HINT}")


@pytest.mark.parametrize("unlisted", ["root", "split", "class"])
def test_a_dataset_folder_this_user_may_not_list_is_one_message(folder, tmp_path, monkeypatch, unlisted):
    """A shared dataset without read permission for others raised PermissionError from deep in the listing (chmod
    does not bite as root, so listing the folder is made to fail as it does for another user)."""
    from pathlib import Path

    locked = {"root": folder, "split": folder / "train", "class": folder / "val" / TINY_CLASSES[1]}[unlisted]
    iterdir, is_dir = Path.iterdir, Path.is_dir

    def denied(path):
        if path == locked:
            raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Path, "iterdir", lambda path: denied(path) or iterdir(path))
    monkeypatch.setattr(Path, "is_dir", lambda path: denied(path.parent) or is_dir(path))  # stat needs the parent's x bit
    with pytest.raises(DataError) as refused:
        train(folder, tmp_path / "run")
    assert str(refused.value) == (f"permission denied reading {locked}: the dataset's folders and files must be "
                                  f"readable by this user")


@pytest.mark.parametrize("workers", [0, 2])
def test_folder_loader_skips_or_names_an_unreadable_image(folder, tmp_path, workers):
    victim = sorted((folder / "train" / TINY_CLASSES[2]).glob("*.JPEG"))[1]
    victim.write_bytes(victim.read_bytes()[:200])
    loader = ("data.loader=folder", f"data.num_workers={workers}")
    summary = train(folder, tmp_path / "skip", *loader)
    assert summary["status"] == "completed" and summary["samples_seen"] == 12
    # from a worker too, the message alone: not the worker's traceback, nor the exception's name before it
    with pytest.raises(DataError, match=rf"^cannot read image \S*{victim.name}: .*\(data.on_bad_image=skip skips it\)$"):
        train(folder, tmp_path / "error", *loader, "data.on_bad_image=error")


def test_numbers_given_as_a_config_node_or_numpy_values_are_accepted(tmp_path):
    """A DataConfig built by hand from a config node (a notebook) or from numpy statistics."""
    import numpy as np
    from omegaconf import OmegaConf

    from vision_exp.data.config import DataConfig

    data = DataConfig(root=str(tmp_path), mean=OmegaConf.create([0.5, 0.5, 0.5]), std=list(np.full(3, 0.25, np.float32)))
    assert data.mean == (0.5, 0.5, 0.5) and data.std == (0.25, 0.25, 0.25)


def test_epochs_on_the_command_line_are_refused_where_a_presets_sample_budget_would_win(tmp_path):
    """experiment=cpu_vit trainer.epochs=5 trained the preset's 10 epochs without a word (train_samples takes
    precedence): refused, with both ways to say what was meant; debug=fast clears the preset's budget, so its
    epochs are the command line's."""
    from vision_exp.api import _compose_run
    from vision_exp.settings import run_settings

    message = ("trainer.epochs=5 would change nothing: the config sets the budget in samples, trainer.train_samples=94690, "
               "which takes precedence over epochs; give trainer.train_samples=<epochs x training images> instead, or "
               "add trainer.train_samples=null to count in epochs")
    with pytest.raises(ConfigError) as info:
        run_settings(compose(["experiment=cpu_vit", "trainer.epochs=5"]), ["experiment=cpu_vit", "trainer.epochs=5"])
    assert str(info.value) == message
    in_epochs = ["experiment=cpu_vit", "trainer.epochs=5", "trainer.train_samples=null"]
    assert (run_settings(compose(in_epochs), in_epochs).trainer.epochs, compose(in_epochs).trainer.train_samples) == (5, None)
    assert run_settings(compose(["trainer.epochs=5"]), ["trainer.epochs=5"]).trainer.epochs == 5  # no preset budget
    fast = ["experiment=cpu_vit", "debug=fast", "trainer.epochs=3"]
    debug_run = _compose_run(fast)
    with open_dict(debug_run):
        debug_run.pop("hydra")
    assert run_settings(debug_run, fast).trainer.epochs == 3

    run, sweep = tmp_path / "run", tmp_path / "sweep"
    result = run_cli(["experiment=cpu_vit", "trainer.epochs=5", f"hydra.run.dir={run}"])
    assert result.returncode == 2 and message in result.stdout + result.stderr and not run.exists()
    result = run_cli(["-m", "experiment=cpu_vit", "trainer.epochs=5,6", f"hydra.sweep.dir={sweep}"])
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output, output
    assert f"error: job 0 (experiment=cpu_vit trainer.epochs=5): {message}" in output
    assert "error: job 1 (experiment=cpu_vit trainer.epochs=6): trainer.epochs=6 would change nothing" in output and "none of the sweep's 2 jobs was started" in output
    assert not sweep.exists()


def test_resuming_from_a_run_folder_names_its_last_checkpoint(folder, tmp_path):
    """The hint was best.pt, as for evaluate, which resuming then refused for holding no optimizer state."""
    run = tmp_path / "run"
    train(folder, run)
    with pytest.raises(CheckpointError, match=re.escape(
            f"{run} is a folder, not a checkpoint: name a file in it, e.g. {run / 'checkpoints' / 'last.pt'}") + "$"):
        train(folder, tmp_path / "continued", f"trainer.resume={run}")


@pytest.mark.parametrize("entry", ["config.yaml", "overrides.json", "metrics.json", "metrics.jsonl", "curves.png",
                                   "checkpoints", "tb"])
def test_an_entry_of_the_other_kind_where_a_run_writes_is_refused_before_training(folder, tmp_path, entry):
    """A folder where the run writes a file, or a file where it makes a folder, failed the first write to it with a
    traceback: for curves.png once the whole run had trained, for tb/ after deleting nothing but failing at rmtree."""
    run = tmp_path / "run"
    makes_folder = entry in ("checkpoints", "tb")
    if makes_folder:
        run.mkdir()
        (run / entry).write_text("mine")
    else:
        (run / entry).mkdir(parents=True)
    kind, wanted = ("a file", f"makes its {entry}/ folder") if makes_folder else ("a folder", f"writes its {entry} file")
    for resume in ("never", "auto"):
        with pytest.raises(ConfigError) as refused:
            train(folder, run, f"trainer.resume={resume}")
        assert str(refused.value) == (f"{run / entry} is {kind}, where the run {wanted}: move it away, or choose "
                                      f"another hydra.run.dir")
    assert (run / entry).read_text() == "mine" if makes_folder else not any((run / entry).iterdir())
    assert sorted(path.name for path in run.iterdir()) == sorted({entry, ".lock"})


def test_a_sweeps_own_folder_is_refused_as_a_run_folder_and_nothing_is_written_there(folder, tmp_path):
    """hydra.run.dir=<a sweep folder> (a path pasted from a report) trained into it: the run's config.yaml, metrics.json
    and curves.png among the sweep's results.md and plots, where no tool looks for a run. Refused on the command line,
    in a notebook and by the experiment itself before Hydra's log, the lock or a failed run's metrics.json is written
    there, and before a run's clean-up of temporary files takes a summary's that is being written."""
    import vision_exp

    sweep = tmp_path / "multirun"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    (sweep / "results.md").write_text("the sweep's table")
    (sweep / ".results.md.tmp-4242").write_text("vx-summarize, writing")
    refusal = (f"{sweep} is a sweep's folder (it holds multirun.yaml; its jobs are its numbered subfolders): "
               f"choose another output folder (hydra.run.dir=...; in Python, run_dir= or out_dir=)")
    result = run_cli([*tiny_overrides(folder), f"hydra.run.dir={sweep}"])
    assert result.returncode == 2 and refusal in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(ConfigError, match=re.escape(refusal)):
        vision_exp.run(tiny_overrides(folder), run_dir=str(sweep))
    with pytest.raises(ConfigError, match=re.escape(refusal)):  # the experiment's own check, for its other callers
        train(folder, sweep)
    assert sorted(path.name for path in sweep.iterdir()) == [".results.md.tmp-4242", "multirun.yaml", "results.md"]
    assert (sweep / "results.md").read_text() == "the sweep's table"


def test_a_file_where_the_run_makes_its_tb_folder_is_one_line_on_the_command_line(tmp_path):
    """The command line's path: exit status 2 and one line, where rmtree's NotADirectoryError was a traceback."""
    folder = write_image_folder(tmp_path / "data", per_split={"train": 2, "val": 1})
    run = tmp_path / "run"
    run.mkdir()
    (run / "tb").write_text("mine")
    result = run_cli([*tiny_overrides(folder), f"hydra.run.dir={run}"])
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].endswith(f"[vision_exp.train][ERROR] - {run / 'tb'} is a file, where the run "
                                                   f"makes its tb/ folder: move it away, or choose another hydra.run.dir")
    assert (run / "tb").read_text() == "mine"
