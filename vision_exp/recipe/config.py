"""`augmentation` and `loss.distillation`: the recipe's typed settings, checked without importing torch."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from vision_exp.errors import ConfigError


@dataclass
class AugmentConfig:
    """Training-time augmentation; evaluation always uses resize + centre crop."""

    name: str = "basic"
    random_resized_crop: bool = True
    scale: tuple = (0.08, 1.0)
    ratio: tuple = (3 / 4, 4 / 3)
    hflip: float = 0.5
    randaugment: Optional[str] = None   # timm config string, e.g. "rand-m9-mstd0.5-inc1-mmax9"
    trivialaugment: bool = False
    random_erasing: float = 0.0         # probability per image
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0
    mix_switch_prob: float = 0.5
    mix_mode: str = "batch"
    repeats: int = 1                    # repeated augmentation: each drawn image this many times per batch

    def __post_init__(self) -> None:
        self.scale, self.ratio = tuple(self.scale), tuple(self.ratio)
        if self.randaugment and not str(self.randaugment).startswith("rand"):
            raise ConfigError(f"augmentation.randaugment={self.randaugment!r} is not a timm RandAugment string (e.g. rand-m9-mstd0.5-inc1-mmax9)")
        for key in ("random_erasing", "mix_prob", "mix_switch_prob"):
            if not 0 <= getattr(self, key) <= 1:
                raise ConfigError(f"augmentation.{key}={getattr(self, key)} is a probability in [0, 1]")
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise ConfigError("augmentation.mixup_alpha and cutmix_alpha must not be negative")
        if self.mix_mode not in ("batch", "pair", "elem"):
            raise ConfigError(f"augmentation.mix_mode={self.mix_mode!r}: choose batch, pair or elem")
        if self.repeats < 1:
            raise ConfigError(f"augmentation.repeats={self.repeats} must be at least 1")
        if not (0 < self.scale[0] <= self.scale[1] <= 1):
            raise ConfigError(f"augmentation.scale={list(self.scale)} must satisfy 0 < lo <= hi <= 1")
        if not (0 < self.ratio[0] <= self.ratio[1]):
            raise ConfigError(f"augmentation.ratio={list(self.ratio)} must satisfy 0 < lo <= hi")
        if not 0 <= self.hflip <= 1:
            raise ConfigError(f"augmentation.hflip={self.hflip} is a probability in [0, 1]")


KINDS = ("none", "hard", "soft")


@dataclass
class DistillConfig:
    """`loss.distillation`: which teacher, and how its predictions enter the loss."""

    kind: str = "none"  # none | hard (the teacher's top class as a second label: DeiT's) | soft (KL divergence)
    teacher: Optional[str] = None  # a trained run's checkpoint, e.g. outputs/e2_resnet/<run>/checkpoints/best.pt
    weight: float = 0.5  # the teacher's share of the loss; the labels keep 1 - weight
    temperature: float = 1.0  # soft only: softens both distributions (Hinton et al. 2015)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"loss.distillation.kind={self.kind!r} must be one of {', '.join(KINDS)}")
        if not 0 <= self.weight <= 1:
            raise ConfigError(f"loss.distillation.weight={self.weight} must lie in [0, 1]")
        if self.temperature <= 0:
            raise ConfigError(f"loss.distillation.temperature={self.temperature} must be positive")

    @property
    def enabled(self) -> bool:
        return self.kind != "none"
