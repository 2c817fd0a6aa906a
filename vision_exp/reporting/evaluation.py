"""The files of an evaluation: metrics.json, per_class.csv, confusion.csv/.png and tb/."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import torch

from vision_exp.reporting.figures import confusion_figure
from vision_exp.reporting.files import save_figure_atomic, write_json_atomic, write_text_atomic


def per_class_accuracy(confusion: torch.Tensor) -> list:
    counts = confusion.sum(1)
    return [(100.0 * confusion[i, i].item() / counts[i].item()) if counts[i] else None for i in range(len(confusion))]


def write_evaluation(out_dir: Path, result: dict, class_names, meta: dict) -> dict:
    """Store an evaluation and return the metrics.json content."""
    out_dir.mkdir(parents=True, exist_ok=True)
    confusion = result["confusion"]
    accuracies = per_class_accuracy(confusion)
    summary = {
        **meta,
        "top1": result["acc"], "top5": result["acc5"], "loss": result["loss"], "images": result["count"],
        "per_class": {name: acc for name, acc in zip(class_names, accuracies)},
    }
    write_json_atomic(out_dir / "metrics.json", summary)
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["class", "images", "accuracy"])
    for name, count, acc in zip(class_names, confusion.sum(1).tolist(), accuracies):
        writer.writerow([name, count, "" if acc is None else f"{acc:.2f}"])
    write_text_atomic(out_dir / "per_class.csv", table.getvalue())
    matrix = io.StringIO()
    writer = csv.writer(matrix)
    writer.writerow(["true \\ predicted", *class_names])
    for name, row in zip(class_names, confusion.tolist()):
        writer.writerow([name, *row])
    write_text_atomic(out_dir / "confusion.csv", matrix.getvalue())

    figure = confusion_figure(confusion, class_names, f"{meta.get('checkpoint', '')}: top-1 {result['acc']:.2f}%")
    save_figure_atomic(figure, out_dir / "confusion.png")  # closed by pyplot, still drawable for TensorBoard
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(out_dir / "tb")) as tb:
        tb.add_scalar("eval/top1", result["acc"], 0)
        if result["acc5"] is not None:
            tb.add_scalar("eval/top5", result["acc5"], 0)
        tb.add_scalar("eval/loss", result["loss"], 0)
        tb.add_figure("eval/confusion", figure, 0)
    return summary
