"""The typed sections of a composed train config: data, augmentation, trainer and loss.distillation.

Torch-free on purpose: `vision_exp.train` checks them before it imports torch and timm, so a bad value
among them (`data.batch_size=abc`, `trainer.epochs=0`) is reported in about a second, not ten.
"""
from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from vision_exp.config_types import typed
from vision_exp.data.config import DataConfig
from vision_exp.recipe.config import AugmentConfig, DistillConfig
from vision_exp.training.config import TrainerConfig


@dataclass(frozen=True)
class RunSettings:
    data: DataConfig
    augmentation: AugmentConfig
    trainer: TrainerConfig
    distillation: DistillConfig


def run_settings(cfg: DictConfig) -> RunSettings:
    """The sections as dataclasses; an unknown key or a value that cannot work is one ConfigError."""
    return RunSettings(
        data=typed(DataConfig, cfg.data, "data"),
        augmentation=typed(AugmentConfig, cfg.augmentation, "augmentation"),
        trainer=typed(TrainerConfig, cfg.trainer, "trainer"),
        distillation=typed(DistillConfig, cfg.loss.distillation, "loss.distillation"),
    )
