"""Evaluation passes: eval mode, no gradients, the loader's fixed (un-augmented) images."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from vision_exp.data.loaders import batch_stream
from vision_exp.errors import DataError
from vision_exp.training.distributed import all_reduce_sum
from vision_exp.training.runtime import autocast


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches, device: torch.device, amp: Optional[torch.dtype] = None,
             num_classes: Optional[int] = None, memory_format=torch.contiguous_format) -> dict:
    """Mean cross-entropy, top-1 and top-5 accuracy (%), and with `num_classes` a confusion matrix
    (rows: true class, columns: predicted). Top-5 is None for a model of 5 classes or fewer: every label is
    among its 5 best, and a 100% line on the dashboard would say nothing."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    top1 = torch.zeros((), device=device, dtype=torch.long)
    top5 = torch.zeros((), device=device, dtype=torch.long)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device) if num_classes else None
    count, over_five_classes = 0, 0.0
    with batch_stream(batches) as stream:
        for images, labels in stream:
            with autocast(device, amp):
                logits = model(images.contiguous(memory_format=memory_format)).float()
            loss_sum += F.cross_entropy(logits, labels, reduction="sum")
            over_five_classes = float(logits.shape[1] > 5)
            best = logits.topk(min(5, logits.shape[1]), dim=1).indices
            top1 += (best[:, 0] == labels).sum()
            top5 += (best == labels[:, None]).any(1).sum()
            if confusion is not None:
                confusion += torch.bincount(labels * num_classes + best[:, 0], minlength=num_classes**2).view(num_classes, num_classes)
            count += len(labels)
    model.train(was_training)
    # Under torchrun each rank saw its shard: sum the counts over ranks.
    plain = torch.tensor([count, over_five_classes], device=device, dtype=torch.float64)  # a rank may have had no batch
    totals = all_reduce_sum(torch.cat([torch.stack([loss_sum, top1.double(), top5.double()]), plain]))
    loss_total, top1_total, top5_total, count_total, over_five_total = totals.tolist()
    if not count_total:  # after the sums, so that every rank stops here together
        raise DataError("no image left to evaluate: every one was unreadable (data.on_bad_image=skip leaves them out)")
    result = {"loss": loss_total / count_total, "acc": 100.0 * top1_total / count_total,
              "acc5": 100.0 * top5_total / count_total if over_five_total else None, "count": int(count_total)}
    if confusion is not None:
        result["confusion"] = all_reduce_sum(confusion).cpu()
    return result
