"""The training recipe and the trainer's building blocks, checked where mutation testing found behaviour no other
test pinned down.

Mutants of vision_exp/recipe/ (augment.py, config.py, distill.py, loss.py, optim.py, schedule.py) and of
vision_exp/training/ (budget.py, checkpoint.py, config.py, runtime.py, trainer.py): a flipped comparison, a dropped
check, another default or argument, that the suite let pass. Each test names the behaviour that would break. Most
call the functions directly on tiny tensors and models; the two trainer tests take a few steps on the tiny folder.
The whole file runs in seconds.
"""
from __future__ import annotations

import errno
import os
import random
import re

import numpy as np
import pytest
import torch

from conftest import lrs
from vision_exp.errors import CheckpointError, ConfigError
from vision_exp.recipe.augment import BatchAugment
from vision_exp.recipe.config import AugmentConfig
from vision_exp.recipe.optim import create_optimizer
from vision_exp.recipe.schedule import warmup_steps

CPU = torch.device("cpu")


# --- recipe/augment.py: mixing on the device ---------------------------------------------------------------------

def test_the_odd_image_of_a_mixed_batch_keeps_its_own_pixels_and_label():
    """Mixup pairs images with the batch reversed; the odd last one of a partial batch is neither dropped nor
    replaced by a copy of another image: it passes as it was, with its own one-hot label."""
    torch.manual_seed(0)
    np.random.seed(0)  # timm draws the mixing weight from numpy
    batch_augment = BatchAugment.create(AugmentConfig(mixup_alpha=0.8), 4, 0.0, CPU)
    images, labels = torch.randn(5, 3, 8, 8), torch.tensor([0, 1, 2, 3, 1])
    mixed, targets = batch_augment(images.clone(), labels)
    assert torch.equal(mixed[-1], images[-1])
    assert torch.equal(targets[-1], torch.tensor([0.0, 1.0, 0.0, 0.0]))
    assert not torch.equal(mixed[:-1], images[:-1])  # the even head is mixed


def test_mixing_without_random_erasing_draws_nothing_from_pythons_random():
    """At random_erasing=0 no erasing pass runs: timm's RandomErasing at probability 0 still draws a Python random
    number per image (and walks the batch), moving the global stream a run saves and restores for a setting that is
    off."""
    batch_augment = BatchAugment.create(AugmentConfig(mixup_alpha=0.8), 4, 0.0, CPU)
    random.seed(0)
    before = random.getstate()
    batch_augment(torch.randn(4, 3, 8, 8), torch.arange(4))
    assert random.getstate() == before


# --- recipe/config.py: augmentation settings ---------------------------------------------------------------------

def test_randaugment_p1_is_accepted_as_timm_accepts_it():
    """p is a probability in [0, 1] with both ends closed: every op applied (p1) is a valid policy for timm."""
    from timm.data.auto_augment import rand_augment_transform

    rand_augment_transform("rand-m9-p1", {})  # the reference: timm takes it
    assert AugmentConfig(randaugment="rand-m9-p1").randaugment == "rand-m9-p1"


def test_a_fractional_randaugment_mmax_is_refused_as_timm_would_fail_on_it():
    """timm reads mmax with int(): a fraction would raise a bare ValueError in the loader's workers."""
    from timm.data.auto_augment import rand_augment_transform

    with pytest.raises(ValueError):
        rand_augment_transform("rand-m9-mmax9.5", {})
    with pytest.raises(ConfigError, match=r"'mmax9.5' needs a whole number after 'mmax'"):
        AugmentConfig(randaugment="rand-m9-mmax9.5")


def test_a_crop_scale_starting_at_zero_is_refused():
    """A crop of 0% of the image's area is no image: the low end of augmentation.scale must be above 0."""
    with pytest.raises(ConfigError, match=r"augmentation.scale"):
        AugmentConfig(scale=[0.0, 1.0])


def test_a_single_aspect_ratio_is_accepted():
    """ratio [1, 1] (square crops only) satisfies 0 < low <= high."""
    assert AugmentConfig(ratio=[1, 1]).ratio == (1.0, 1.0)


# --- recipe/optim.py ---------------------------------------------------------------------------------------------

def test_a_base_batch_size_without_a_batch_size_leaves_the_lr_unscaled():
    """The rate is scaled only when both the base and the actual batch size are known."""
    optimizer = create_optimizer(torch.nn.Linear(2, 2), "sgd", lr=0.1, lr_base_batch_size=256)
    assert all(group["lr"] == pytest.approx(0.1) for group in optimizer.param_groups)


@pytest.mark.parametrize("betas", [[0.9], [0.9, 0.99, 0.999]])
def test_betas_of_another_length_are_refused(betas):
    """Adam takes exactly two betas: one or three must be a ConfigError naming the setting, not torch's error."""
    with pytest.raises(ConfigError, match=re.escape(f"optimizer.betas={betas} must be two numbers in [0, 1)")):
        create_optimizer(torch.nn.Linear(2, 2), "adamw", lr=1e-3, betas=betas)


# --- recipe/schedule.py ------------------------------------------------------------------------------------------

def test_warmup_epochs_zero_is_no_warmup():
    """warmup_epochs=0 is valid (only a negative one is refused): the first step trains at the peak rate."""
    assert warmup_steps(100, 10, None, 0) == 0
    assert lrs("cosine", warmup_epochs=0)[0] == pytest.approx(1.0)


@pytest.mark.parametrize("settings, phrase", [
    ({"lr_min": -0.1}, "scheduler.lr_min=-0.1 must not be negative"),
    ({"warmup_lr_init": -0.1}, "scheduler.warmup_lr_init=-0.1 must not be negative"),
    ({"name": "step", "step_epochs": 0}, "scheduler.step_epochs=0 must be positive"),
])
def test_schedule_values_below_their_range_are_refused(settings, phrase):
    """A negative floor or start, or a step schedule decaying every step, are ConfigErrors naming the setting."""
    with pytest.raises(ConfigError, match=re.escape(phrase)):
        lrs(**{"name": "cosine", **settings})


def test_step_epochs_round_to_the_nearest_step():
    """0.29 epoch of 100 steps is 28.999... in floats: the decay comes after 29 steps (rounded), not 28 (cut)."""
    used = lrs("step", total=100, per_epoch=100, step_epochs=0.29)
    assert used[28] == pytest.approx(1.0) and used[29] == pytest.approx(0.1)


# --- training/checkpoint.py --------------------------------------------------------------------------------------

def test_a_corrupt_checkpoint_without_a_previous_one_reports_its_own_problem(tmp_path):
    """load_latest falls back only to a file that exists: without last.prev.pt the error is about last.pt."""
    from vision_exp.training.checkpoint import load_latest, save_checkpoint

    path = tmp_path / "last.pt"
    save_checkpoint({"step": torch.tensor(1)}, path)
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(CheckpointError, match=r"last\.pt is unusable: its SHA-256 does not match"):
        load_latest(path)


def test_weights_with_missing_or_unexpected_keys_are_one_message_naming_them():
    """A checkpoint of another model: the CheckpointError counts and names the missing and the unexpected keys."""
    from vision_exp.training.checkpoint import load_model_weights

    model = torch.nn.Linear(4, 3)
    state = {"weight": torch.zeros(3, 4), "scale": torch.ones(3)}
    with pytest.raises(CheckpointError, match=r"^checkpoint other.pt does not fit this model: 1 missing keys \(e.g. bias\); "
                                              r"1 unexpected keys \(e.g. scale\)$"):
        load_model_weights(model, state, "other.pt")


def test_a_full_disk_names_the_newest_checkpoint_kept(tmp_path, monkeypatch):
    """torch.save fails on a full disk before anything was moved: the message names last.pt, the newest checkpoint
    (the one a resume loads), not last.prev.pt, which also exists."""
    from vision_exp.training import checkpoint as checkpoint_mod

    path = tmp_path / "last.pt"
    for step in (1, 2):
        checkpoint_mod.save_checkpoint({"step": torch.tensor(step)}, path)

    def full(state, handle):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_mod.torch, "save", full)
    with pytest.raises(CheckpointError, match=re.escape(f"the disk is full; the earlier checkpoint {path} is kept")):
        checkpoint_mod.save_checkpoint({"step": torch.tensor(3)}, path)
    monkeypatch.undo()
    assert checkpoint_mod.load_checkpoint(path)["step"] == 2


# --- training/runtime.py -----------------------------------------------------------------------------------------

def test_asking_for_cuda_without_it_is_a_config_error(monkeypatch):
    """trainer.device=cuda on a machine without CUDA is one line naming the setting, not a crash at the first .to()."""
    from vision_exp.training.runtime import select_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^trainer.device=cuda but no CUDA device is available"):
        select_device("cuda")
    assert select_device("cpu") == CPU


def test_a_device_torch_names_but_a_run_cannot_use_is_a_config_error(monkeypatch):
    """meta or xla passed torch.device() and failed in the run as a RuntimeError's traceback, and so did mps where
    this torch has no Apple GPU."""
    from vision_exp.training.runtime import select_device

    with pytest.raises(ConfigError, match=r"^device=meta: runs use cpu, cuda or mps \(or auto, the best of them available\)$"):
        select_device("meta", key="device")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^trainer.device=mps but this torch has no Apple GPU \(MPS\) to use"):
        select_device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert select_device("mps") == torch.device("mps")


def test_a_name_that_is_no_device_is_a_config_error_naming_the_key():
    """evaluate and predict pass their own key (device=...): torch's RuntimeError becomes one line naming it."""
    from vision_exp.training.runtime import select_device

    with pytest.raises(ConfigError, match=r"^device='gpu' is not a device \(use auto, cpu, cuda, cuda:1, mps\)"):
        select_device("gpu", key="device")


def test_an_unknown_precision_is_refused_naming_the_key():
    """evaluate calls amp_dtype with its own `amp` setting, which no TrainerConfig checks: amp_dtype checks it."""
    from vision_exp.training.runtime import amp_dtype

    with pytest.raises(ConfigError, match=r"^amp='bf32': choose one of auto, bf16, fp16, off"):
        amp_dtype("bf32", CPU, key="amp")


def test_bf16_asked_for_on_cuda_is_bf16():
    """trainer.amp=bf16 by name on a GPU computes in bfloat16 (no GradScaler), whatever the card."""
    from vision_exp.training.runtime import amp_dtype

    assert amp_dtype("bf16", torch.device("cuda")) is torch.bfloat16


def test_seed_everything_seeds_numpy_with_the_seed():
    """Each seed gives its own numpy stream (the one np.random.seed(seed) gives), seeds beyond 2**32 included."""
    from vision_exp.training.runtime import seed_everything

    for seed in (1, 2):
        np.random.seed(seed)
        expected = np.random.rand(3)
        seed_everything(seed)
        assert np.array_equal(np.random.rand(3), expected), seed
    np.random.seed(1)
    expected = np.random.rand(3)
    seed_everything(2**40 + 1)  # torch takes it; numpy's seeds end at 2**32, where it wraps around to 1
    assert np.array_equal(np.random.rand(3), expected)


def test_rng_states_survive_a_weights_only_checkpoint_and_restore_every_generator(tmp_path):
    """A resumed run draws the same python, numpy and torch random numbers as the run it continues, each generator
    from its own saved state (test_trainer.py's exact resume with augmentation=deit checks it end to end)."""
    from vision_exp.training.checkpoint import load_checkpoint, save_checkpoint
    from vision_exp.training.runtime import rng_state, set_rng_state

    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    save_checkpoint({"rng": rng_state()}, tmp_path / "last.pt")
    first = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(4), np.random.seed(4), torch.manual_seed(4)
    set_rng_state(load_checkpoint(tmp_path / "last.pt")["rng"])
    again = (random.random(), np.random.rand(), torch.rand(1))
    assert first[0] == again[0] and first[1] == again[1] and torch.equal(first[2], again[2])


def test_an_apple_gpus_generator_is_saved_and_restored_with_the_others(monkeypatch):
    """On MPS, dropout and drop-path draw from the device's own generator: a resumed run continues it."""
    from vision_exp.training import runtime

    device_generator = {"state": torch.tensor([7], dtype=torch.uint8)}
    monkeypatch.setattr(runtime, "mps_available", lambda: True)
    monkeypatch.setattr(torch.mps, "get_rng_state", lambda: device_generator["state"].clone())
    monkeypatch.setattr(torch.mps, "set_rng_state", lambda state: device_generator.update(state=state))
    saved = runtime.rng_state()
    device_generator["state"] = torch.tensor([9], dtype=torch.uint8)
    runtime.set_rng_state(saved)
    assert torch.equal(saved["mps"], torch.tensor([7], dtype=torch.uint8)) and device_generator["state"].item() == 7


# --- training/config.py ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [1.5, 2.0])
def test_a_fractional_number_of_accumulation_parts_is_refused(value):
    """trainer.grad_accum_steps splits each batch into that many parts: a float would fail inside tensor_split at
    the first step (even 2.0), so it is refused with the setting's name before anything starts."""
    from vision_exp.training.config import TrainerConfig

    with pytest.raises(ConfigError, match=re.escape(f"trainer.grad_accum_steps={value} must be a whole number")):
        TrainerConfig(grad_accum_steps=value)


# --- training/trainer.py: a few steps on the tiny folder ---------------------------------------------------------

def tiny_run(folder, run_dir, *extra):
    from conftest import compose, tiny_overrides
    from vision_exp.experiment import run_experiment

    return run_experiment(compose(tiny_overrides(folder, *extra)), run_dir, list(extra))


def test_a_first_epoch_at_zero_validation_accuracy_is_still_the_best_so_far(tiny_folder, tmp_path, monkeypatch):
    """Any first evaluation is the best so far, 0% included (a hard task, a broken model): best.pt is written and
    best_epoch is 1, not -1 with no best.pt for evaluate to load."""
    from vision_exp.training import trainer as trainer_mod

    evaluate = trainer_mod.evaluate

    def nothing_right(model, batches, device, amp, num_classes=None, memory_format=torch.contiguous_format):
        result = evaluate(model, batches, device, amp, num_classes, memory_format)
        return {**result, "acc": 0.0} if num_classes is not None else result

    monkeypatch.setattr(trainer_mod, "evaluate", nothing_right)
    summary = tiny_run(tiny_folder, tmp_path / "run", "trainer.train_samples=16")
    assert summary["best_epoch"] == 1 and summary["best_val_acc"] == 0.0
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()


def test_on_the_cpu_a_nan_loss_stops_the_run_at_its_step_whatever_the_log_interval(tiny_folder, tmp_path, monkeypatch):
    """The CPU checks the loss after every step (a check costs nothing there), not every log_every_steps: with lines
    every 4 steps a NaN at step 2 still stops the run at step 2, before more steps train on NaN weights."""
    from vision_exp.training import trainer as trainer_mod

    taken, step = [], trainer_mod.Trainer._step

    def diverging_at_step_2(self, images, labels, global_count):
        loss, correct = step(self, images, labels, global_count)
        taken.append(self.position.step + 1)
        return (loss + float("nan") if len(taken) == 2 else loss), correct

    monkeypatch.setattr(trainer_mod.Trainer, "_step", diverging_at_step_2)
    with pytest.raises(trainer_mod.TrainingDiverged, match=r"NaN or infinite at step 2 \(epoch 1\)"):
        tiny_run(tiny_folder, tmp_path / "run", "trainer.epochs=2", "trainer.log_every_steps=4")
    assert taken == [1, 2]


@pytest.mark.parametrize("sync_bn, world_size, device, refused", [
    (True, 2, "cpu", True), (True, 1, "cpu", False), (False, 2, "cpu", False), (True, 2, "cuda", False)])
def test_sync_bn_is_refused_only_for_several_ranks_off_cuda(sync_bn, world_size, device, refused):
    """One process has no batch statistics to share (sync_bn is then unused); on CUDA ranks SyncBatchNorm runs."""
    from vision_exp.training.distributed import DistEnv
    from vision_exp.training.trainer import check_sync_bn

    arguments = (sync_bn, DistEnv(world_size=world_size), torch.device(device))
    if refused:
        with pytest.raises(ConfigError, match="trainer.sync_bn=true needs CUDA devices"):
            check_sync_bn(*arguments)
    else:
        check_sync_bn(*arguments)
