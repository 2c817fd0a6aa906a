"""Augmentations beyond crop and flip, reused from timm and torchvision.

Two kinds, by where they can run:
- per image (RandAugment, TrivialAugment): PIL operations, run in DataLoader workers; on the
  cached path they act on the stored uint8 square before the batched crop;
- per batch on the device (random erasing, mixup/cutmix): applied by the trainer to the
  normalised batch, whichever loader produced it.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image

from vision_exp.recipe.config import AugmentConfig


def per_image_transform(aug: AugmentConfig, mean) -> Optional[Callable]:
    """PIL -> PIL policy (RandAugment and/or TrivialAugment), or None when neither is on."""
    ops = []
    if aug.randaugment:
        from timm.data.auto_augment import rand_augment_transform

        # The rand-* policies translate relative to the image size (timm's translate_pct), so only the fill
        # colour of uncovered pixels needs the dataset: its mean.
        hparams = {"img_mean": tuple(int(round(255 * m)) for m in mean)}
        ops.append(keep_a_bit_when_posterizing(rand_augment_transform(aug.randaugment, hparams)))
    if aug.trivialaugment:
        from torchvision.transforms import TrivialAugmentWide

        ops.append(TrivialAugmentWide())
    if not ops:
        return None
    from torchvision.transforms import Compose

    return Compose(ops)


def keep_a_bit_when_posterizing(policy):
    """timm's posterize levels reach 0 bits (magnitude 10 with inc1, as mstd noise gives DeiT's rand-m9-mstd0.5-inc1;
    below 2.5 without it), which Pillow 12 and later refuse in the middle of training ("bits must be between 1
    and 8") and older Pillow made a black image of: the op keeps at least 1 bit."""
    from timm.data.auto_augment import posterize

    for op in policy.ops:
        if op.aug_fn is posterize:
            op.level_fn = functools.partial(at_least_one_bit, op.level_fn)  # picklable, for spawned loader workers
    return policy


def at_least_one_bit(level_fn, magnitude, hparams) -> tuple:
    return (max(1, level_fn(magnitude, hparams)[0]),)


class ArrayAugment:
    """Applies a PIL policy to a uint8 HWC array (the cached path's stored images)."""

    def __init__(self, policy: Callable) -> None:
        self.policy = policy

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return np.array(self.policy(Image.fromarray(pixels)))


class BatchAugment:
    """Random erasing, then mixup/cutmix, on a normalised batch on the training device.

    Mixup pairs each image with the batch reversed, which needs an even count; the odd last
    image of a partial batch keeps its own (smoothed) label instead of being dropped, so the
    sample budget stays exact.
    """

    def __init__(self, aug: AugmentConfig, num_classes: int, label_smoothing: float, device: torch.device) -> None:
        from timm.data import Mixup
        from timm.data.random_erasing import RandomErasing

        self.num_classes, self.label_smoothing = num_classes, label_smoothing
        self.erasing = RandomErasing(aug.random_erasing, mode="pixel", device=str(device)) if aug.random_erasing > 0 else None
        self.mixup = None
        if aug.mixup_alpha > 0 or aug.cutmix_alpha > 0:
            self.mixup = Mixup(mixup_alpha=aug.mixup_alpha, cutmix_alpha=aug.cutmix_alpha, prob=aug.mix_prob,
                               switch_prob=aug.mix_switch_prob, mode=aug.mix_mode,
                               label_smoothing=label_smoothing, num_classes=num_classes)

    @classmethod
    def create(cls, aug: AugmentConfig, num_classes: int, label_smoothing: float, device) -> Optional["BatchAugment"]:
        if aug.random_erasing <= 0 and aug.mixup_alpha <= 0 and aug.cutmix_alpha <= 0:
            return None
        return cls(aug, num_classes, label_smoothing, device)

    @property
    def soft_targets(self) -> bool:
        return self.mixup is not None

    def __call__(self, images: torch.Tensor, labels: torch.Tensor):
        if self.erasing is not None:
            images = self.erasing(images)
        if self.mixup is None:
            return images, labels
        if len(images) % 2 == 0:
            return self.mixup(images, labels)
        from timm.data.mixup import mixup_target

        head, head_targets = self.mixup(images[:-1], labels[:-1])
        last_target = mixup_target(labels[-1:], self.num_classes, smoothing=self.label_smoothing)
        return torch.cat([head, images[-1:]]), torch.cat([head_targets, last_target])
