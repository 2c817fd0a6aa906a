"""curves.png: loss and accuracy of the three metric families over training."""
from __future__ import annotations

from pathlib import Path

from vision_exp.reporting.files import pyplot, save_figure_atomic

FAMILIES = (
    ("train_running", "train (running, train mode)", ":"),
    ("train", "train (eval mode)", "-"),
    ("val", "val", "-"),
)


def plot_curves(records: list, path: Path, title: str = "") -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric, label in ((axes[0], "loss", "loss"), (axes[1], "acc", "top-1 accuracy (%)")):
        for family, name, style in FAMILIES:
            # the epochs that have the value: trainer.eval_every_epochs evaluates only some
            points = [(r["epoch_progress"], r[f"{family}/{metric}"]) for r in records if f"{family}/{metric}" in r]
            if any(value is not None for _, value in points):
                ax.plot(*zip(*points), style, marker="o", markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if records:  # a run stopped within its first epoch has no points yet: empty axes, no legend
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure_atomic(fig, path)
