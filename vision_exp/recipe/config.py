"""`augmentation`, `loss.label_smoothing` and `loss.distillation`: the recipe's typed settings, checked without importing torch."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from vision_exp.config_types import fixed_numbers
from vision_exp.errors import ConfigError

# The presets' string (mmax9: see conf/enhancement/randaugment.yaml).
RANDAUGMENT_EXAMPLE = "rand-m9-mstd0.5-inc1-mmax9"
# The numeric sections of timm's rand_augment_transform (timm/data/auto_augment.py) and how it reads their values.
RANDAUGMENT_NUMBERS = {"m": int, "n": int, "p": float, "mstd": float, "mmax": int, "inc": int}
# Its `t<name>` transform sets; a weighted one draws its n ops without replacement, so n is at most its size.
RANDAUGMENT_SETS = {"weights": 15, "3aw": 14, "3a": None}


def check_randaugment(config: str) -> None:
    """Parse `config` as timm's rand_augment_transform will, in the data loader's workers: there a bad string
    is an AssertionError naming no key, a section it skips is silently ignored, and too many weighted ops
    fail only at the first image."""
    def refuse(problem: str):
        return ConfigError(f"augmentation.randaugment={config!r}: {problem} (a timm RandAugment string, e.g. "
                           f"{RANDAUGMENT_EXAMPLE}: 'rand', then dash-separated m<magnitude>, n<ops>, p<probability>, "
                           f"mstd<noise>, mmax<max magnitude>, inc<0|1>, t<weights|3aw|3a>)")

    first, *sections = config.split("-")
    if first != "rand":
        raise refuse(f"it begins with {first!r}, not 'rand'")
    values = {}
    for section in sections:
        if section.startswith("t"):
            key, value = "t", section[1:]
            if value not in RANDAUGMENT_SETS:
                raise refuse(f"{section!r} names no transform set")
        else:
            key, value, *_ = re.split(r"(\d.*)", section) + [""]
            if key not in RANDAUGMENT_NUMBERS:
                raise refuse(f"{section!r} is not a section timm knows")
            try:
                value = RANDAUGMENT_NUMBERS[key](value)
            except ValueError:
                raise refuse(f"{section!r} needs {'a whole number' if RANDAUGMENT_NUMBERS[key] is int else 'a number'} "
                             f"after {key!r}") from None
        if key in values:
            raise refuse(f"{key!r} is given twice")
        values[key] = value
    if not 0 <= values.get("p", 0) <= 1:
        raise refuse(f"p{values['p']:g} is a probability in [0, 1]")
    most = RANDAUGMENT_SETS.get(values.get("t"))
    if most is not None and values.get("n", 2) > most:
        raise refuse(f"n{values['n']}: the weighted set t{values['t']} has only {most} ops to draw without replacement")


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
        self.scale = fixed_numbers("augmentation.scale", self.scale, 2, " with 0 < low <= high <= 1 (fractions of the "
                                   "image's area), e.g. [0.08, 1]", lambda scale: 0 < scale[0] <= scale[1] <= 1)
        self.ratio = fixed_numbers("augmentation.ratio", self.ratio, 2, " with 0 < low <= high (aspect ratios), e.g. "
                                   "[0.75, 1.333]", lambda ratio: 0 < ratio[0] <= ratio[1])
        if self.randaugment:
            check_randaugment(self.randaugment)
        for key in ("random_erasing", "mix_prob", "mix_switch_prob"):
            if not 0 <= getattr(self, key) <= 1:
                raise ConfigError(f"augmentation.{key}={getattr(self, key)} is a probability in [0, 1]")
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise ConfigError("augmentation.mixup_alpha and cutmix_alpha must not be negative")
        if self.mix_mode not in ("batch", "pair", "elem"):
            raise ConfigError(f"augmentation.mix_mode={self.mix_mode!r}: choose batch, pair or elem")
        if self.repeats < 1:
            raise ConfigError(f"augmentation.repeats={self.repeats} must be at least 1")
        if not 0 <= self.hflip <= 1:
            raise ConfigError(f"augmentation.hflip={self.hflip} is a probability in [0, 1]")


def check_label_smoothing(value) -> float:
    """`loss.label_smoothing` as a float in [0, 1): 1 makes every target uniform, leaving nothing to learn."""
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1):
        raise ConfigError(f"loss.label_smoothing={value!r} must be a number in [0, 1)")
    return float(value)


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
