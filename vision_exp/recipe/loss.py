"""Training losses: cross-entropy with optional label smoothing, or soft-target cross-entropy
when mixup/cutmix turn labels into mixed distributions (timm's Mixup folds the smoothing in)."""
from __future__ import annotations

import torch
from timm.loss import SoftTargetCrossEntropy

from vision_exp.errors import ConfigError


def create_train_loss(label_smoothing: float = 0.0, soft_targets: bool = False) -> torch.nn.Module:
    if not 0 <= label_smoothing < 1:
        raise ConfigError(f"loss.label_smoothing={label_smoothing} must lie in [0, 1)")
    if soft_targets:
        return SoftTargetCrossEntropy()
    return torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
