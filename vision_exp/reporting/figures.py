"""Pictures for TensorBoard and PNG files: input grids, confusion matrices, attention maps."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from vision_exp.reporting.files import pyplot


def denormalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """Normalised (B, 3, H, W) -> [0, 1] for display."""
    mean_t = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    return (images.float() * std_t + mean_t).clamp(0, 1)


def image_grid(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) images in [0, 1] as one picture for TensorBoard, eight to a row."""
    from torchvision.utils import make_grid

    return make_grid(images.detach().cpu(), nrow=8, padding=2)


# Beyond these the figure stops growing and drops the class names (per_class.csv names each row): at 0.45 inch
# a class, 1,000 ImageNet classes drew a 452-inch square that took more than 8 GB and failed the run.
MAX_FIGURE_INCHES = 16
MAX_NAMED_CLASSES = 50
MAX_COUNTED_CLASSES = 30  # counts written in the cells


def confusion_figure(confusion: torch.Tensor, class_names: Sequence[str], title: str = ""):
    """Row-normalised confusion matrix (true class down, predicted across), counts in the cells."""
    plt = pyplot()

    counts = confusion.double()
    rates = counts / counts.sum(1, keepdim=True).clamp(min=1)
    n = len(class_names)
    size = min(max(4.0, 0.45 * n + 2), MAX_FIGURE_INCHES)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    if n <= MAX_NAMED_CLASSES:
        ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= MAX_COUNTED_CLASSES:
        for i in range(n):
            for j in range(n):
                if counts[i, j] > 0:
                    ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rates[i, j] > 0.5 else "black")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def attention_overlay(images: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """Images [0, 1] (B, 3, H, W) tinted by an attention map over the patches (B, gh, gw), heat in red."""
    heat = F.interpolate(attention[:, None].float(), size=images.shape[-2:], mode="nearest")
    lo = heat.amin(dim=(2, 3), keepdim=True)
    hi = heat.amax(dim=(2, 3), keepdim=True)
    heat = (heat - lo) / (hi - lo).clamp(min=1e-8)
    red = torch.cat([torch.ones_like(heat), torch.zeros_like(heat), torch.zeros_like(heat)], 1)
    return (0.55 * images.cpu() + 0.45 * heat.cpu() * red.cpu()).clamp(0, 1)


def classifier_attention(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(B, gh, gw): where the tokens the head reads look in the last block, averaged over heads: the class
    token's attention to the patches (pool=cls), or with average pooling, the patch tokens' attention
    averaged over them (the class token is then never read, so its map would mislead)."""
    to_patches = model.attention_maps(images)[-1][:, :, :, 1:].mean(1)  # (B, queries, patches)
    rows = to_patches[:, 0] if model.pool == "cls" else to_patches[:, 1:].mean(1)
    grid = int(round(rows.shape[-1] ** 0.5))
    return rows.reshape(-1, grid, grid)
