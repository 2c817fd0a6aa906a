"""The typed sections of a composed train config: data, augmentation, trainer and loss.

Torch-free on purpose: `vision_exp.train` checks them before it imports torch and timm, so a bad value
among them (`data.batch_size=abc`, `trainer.epochs=0`) is reported in about a second, not ten.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from vision_exp.conf_dir import overridden_key
from vision_exp.config_types import check_known_keys, declared_settings, typed
from vision_exp.data.config import DataConfig
from vision_exp.errors import ConfigError
from vision_exp.recipe.config import AugmentConfig, DistillConfig, check_label_smoothing
from vision_exp.training.config import TrainerConfig


@dataclass(frozen=True)
class RunSettings:
    data: DataConfig
    augmentation: AugmentConfig
    trainer: TrainerConfig
    label_smoothing: float
    distillation: DistillConfig


LOSS_SETTINGS = ("label_smoothing", "distillation")
LARGEST_SEED = 2**63 - 1  # torch.manual_seed's limit


def check_seed(seed) -> None:
    if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= LARGEST_SEED):
        raise ConfigError(f"seed={seed!r} must be a whole number from 0 to {LARGEST_SEED}")


def path_settings() -> tuple:
    """The keys of conf/paths/default.yaml: `+paths.output=/big/disk` would otherwise go unread."""
    from vision_exp.conf_dir import CONF_DIR

    return tuple(OmegaConf.load(CONF_DIR / "paths" / "default.yaml"))


def check_epochs_not_ignored(train_samples, overrides: Sequence[str]) -> None:
    """`trainer.epochs=<n>` on the command line while the config (a preset) sets `trainer.train_samples`, which
    takes precedence: the run would train the preset's budget without a word."""
    given = {overridden_key(override): override for override in overrides}
    if "trainer.epochs" in given and "trainer.train_samples" not in given and train_samples is not None:
        raise ConfigError(f"{given['trainer.epochs']} would change nothing: the config sets the budget in samples, "
                          f"trainer.train_samples={train_samples}, which takes precedence over epochs; give "
                          f"trainer.train_samples=<epochs x training images> instead, or add trainer.train_samples=null "
                          f"to count in epochs")


def run_settings(cfg: DictConfig, overrides: Sequence[str] = ()) -> RunSettings:
    """The sections as dataclasses; an unknown key or a value that cannot work is one ConfigError. `overrides`,
    the command line's, tell a setting that would be ignored."""
    check_known_keys(cfg, declared_settings("train"), "")
    check_known_keys(cfg.loss, LOSS_SETTINGS, "loss")
    check_known_keys(cfg.paths, path_settings(), "paths")
    check_seed(cfg.seed)
    data = typed(DataConfig, cfg.data, "data")
    if data.val_split == data.train_split:  # evaluate.py reads a val-only folder this way, a run never
        raise ConfigError(f"data.val_split={data.val_split!r} is the training split: validation would measure the "
                          f"training images; name the held-out split")
    augmentation = typed(AugmentConfig, cfg.augmentation, "augmentation")
    if data.batch_size == 1 and (augmentation.mixup_alpha or augmentation.cutmix_alpha) and augmentation.mix_prob:
        raise ConfigError("augmentation mixes the images of a batch (mixup_alpha, cutmix_alpha): data.batch_size=1 "
                          "has none to mix; raise data.batch_size or choose an augmentation without mixup/cutmix")
    trainer = typed(TrainerConfig, cfg.trainer, "trainer")
    check_epochs_not_ignored(trainer.train_samples, overrides)
    if trainer.grad_accum_steps > data.batch_size:
        raise ConfigError(f"trainer.grad_accum_steps={trainer.grad_accum_steps} splits each batch of "
                          f"data.batch_size={data.batch_size} into that many parts: at most {data.batch_size}")
    return RunSettings(
        data=data,
        augmentation=augmentation,
        trainer=trainer,
        label_smoothing=check_label_smoothing(cfg.loss.label_smoothing),
        distillation=typed(DistillConfig, cfg.loss.distillation, "loss.distillation"),
    )
