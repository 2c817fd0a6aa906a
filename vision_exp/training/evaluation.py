"""Evaluation passes: eval mode, no gradients, the loader's fixed (un-augmented) images."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from vision_exp.training.runtime import autocast


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches, device: torch.device, amp: Optional[torch.dtype] = None,
             num_classes: Optional[int] = None, memory_format=torch.contiguous_format) -> dict:
    """Mean cross-entropy, top-1 and top-5 accuracy (%), and with `num_classes` a confusion matrix
    (rows: true class, columns: predicted)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    top1 = torch.zeros((), device=device, dtype=torch.long)
    top5 = torch.zeros((), device=device, dtype=torch.long)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device) if num_classes else None
    count = 0
    for images, labels in batches:
        with autocast(device, amp):
            logits = model(images.contiguous(memory_format=memory_format)).float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum")
        k = min(5, logits.shape[1])
        best = logits.topk(k, dim=1).indices
        top1 += (best[:, 0] == labels).sum()
        top5 += (best == labels[:, None]).any(1).sum()
        if confusion is not None:
            confusion += torch.bincount(labels * num_classes + best[:, 0], minlength=num_classes**2).view(num_classes, num_classes)
        count += len(labels)
    model.train(was_training)
    result = {
        "loss": loss_sum.item() / max(count, 1),
        "acc": 100.0 * top1.item() / max(count, 1),
        "acc5": 100.0 * top5.item() / max(count, 1),
        "count": count,
    }
    if confusion is not None:
        result["confusion"] = confusion.cpu()
    return result
