"""Knowledge distillation from a trained run (DeiT, Touvron et al. 2021, section 5).

The student learns from the labels and from a teacher's predictions on the same augmented images. A
ConvNet teacher passes on what its convolutions know about images (locality, translation
equivariance) that a ViT trained on a small dataset cannot learn from the labels alone: DeiT's students
beat the same ViTs trained without a teacher, and a ConvNet teacher beat a transformer teacher.
The study's ViT keeps the paper's architecture, so the teacher speaks through the class token's
logits (DeiT's distillation without its distillation token), not through an added token. Its settings, `loss.distillation`, are `recipe.config.DistillConfig`.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


class Distillation(torch.nn.Module):
    """A frozen teacher and the loss that mixes its predictions into the student's."""

    def __init__(self, teacher: torch.nn.Module, kind: str = "hard", weight: float = 0.5, temperature: float = 1.0,
                 source_digest: Optional[str] = None) -> None:
        super().__init__()
        self.teacher = teacher.eval().requires_grad_(False)
        self.kind, self.weight, self.temperature = kind, weight, temperature
        self.source_digest = source_digest  # the SHA-256 of the teacher's checkpoint: a resumed student checks it

    @torch.no_grad()
    def teacher_logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.teacher(images)

    def forward(self, label_loss: torch.Tensor, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        if self.kind == "hard":
            teacher_loss = F.cross_entropy(student_logits, teacher_logits.argmax(dim=1))
        else:
            tau = self.temperature
            # tau**2 keeps the gradient's scale independent of the temperature (Hinton et al. 2015). The KL per
            # image (batchmean); DeiT's code divides by the classes too, so its teacher term is num_classes times weaker.
            teacher_loss = F.kl_div(F.log_softmax(student_logits / tau, dim=1), F.log_softmax(teacher_logits / tau, dim=1),
                                    reduction="batchmean", log_target=True) * tau * tau
        return (1 - self.weight) * label_loss + self.weight * teacher_loss
