"""The sweep's two pictures: validation curves per configuration, and final accuracy bars.

Curves are the mean over seeds with a ±1 std band, against training samples seen (the x-axis of
every run's TensorBoard, so runs of other batch sizes line up); seeds are aligned epoch by epoch.
"""
from __future__ import annotations

from pathlib import Path

from vision_exp.reporting.files import pyplot, read_jsonl, save_figure_atomic
from vision_exp.sweeps.statistics import is_number, mean, sample_std


def mean_curve(histories: list) -> tuple:
    """(samples seen, mean, std) of val accuracy per evaluated epoch over the seeds' metrics.jsonl records."""
    histories = [[record for record in history
                  if is_number(record.get("val/acc")) and is_number(record.get("samples_seen"))] for history in histories]
    length = min(len(h) for h in histories)
    x = [mean([h[i]["samples_seen"] for h in histories]) for i in range(length)]
    values = [[h[i]["val/acc"] for h in histories] for i in range(length)]
    return x, [mean(v) for v in values], [sample_std(v) or 0.0 for v in values]


def plot_curves(summary, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for configuration in summary.configurations:
        histories = [h for h in (read_jsonl(job.run_dir / "metrics.jsonl") for job in configuration.completed) if h]
        if not histories:
            continue
        x, center, spread = mean_curve(histories)
        is_baseline = summary.is_marked_baseline(configuration)
        (line,) = ax.plot(x, center, marker="o", markersize=3, linewidth=2.5 if is_baseline else 1.5,
                          label=f"{configuration.label}{' (baseline)' if is_baseline else ''}, n={len(histories)}")
        if len(histories) > 1:
            ax.fill_between(x, [m - s for m, s in zip(center, spread)], [m + s for m, s in zip(center, spread)],
                            color=line.get_color(), alpha=0.15)
    ax.set_xlabel("training samples seen")
    ax.set_ylabel("val top-1 accuracy (%)")
    ax.set_title(f"{summary.name}: mean over seeds, band ±1 std")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    save_figure_atomic(fig, path, bbox_inches="tight")


def plot_bars(summary, path: Path) -> None:
    plt = pyplot()
    configurations = summary.configurations
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.4 * len(configurations)))
    rows = range(len(configurations))
    means = [c.mean(summary.metric) or 0.0 for c in configurations]
    stds = [c.std(summary.metric) or 0.0 for c in configurations]
    colors = ["tab:orange" if summary.is_marked_baseline(c) else "tab:blue" for c in configurations]
    ax.barh(rows, means, xerr=stds, color=colors, capsize=3)
    ax.set_yticks(list(rows), [f"{c.label} (n={len(c.values(summary.metric))})" for c in configurations], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"{summary.metric}: mean over seeds, error bar ±1 std{' (orange: baseline)' if summary.compares else ''}")
    ax.set_title(summary.name)
    ax.grid(axis="x", alpha=0.3)
    save_figure_atomic(fig, path, bbox_inches="tight")
