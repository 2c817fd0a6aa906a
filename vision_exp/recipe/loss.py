"""Training losses: cross-entropy with optional label smoothing, or soft-target cross-entropy
when mixup/cutmix turn labels into mixed distributions (timm's Mixup folds the smoothing in)."""
from __future__ import annotations

import torch
from timm.loss import SoftTargetCrossEntropy

from vision_exp.recipe.config import check_label_smoothing


def create_train_loss(label_smoothing: float = 0.0, soft_targets: bool = False) -> torch.nn.Module:
    label_smoothing = check_label_smoothing(label_smoothing)
    if soft_targets:
        return SoftTargetCrossEntropy()
    return torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
