"""One Markdown report of a study from its sweep folders, ready to paste into a write-up.

Each sweep gets its section: the command that produced it (from its multirun.yaml), its
results table, its jobs that did not complete, and its two plots, linked relative to the
report's own folder. The tables are computed from the job folders, like results.md, with each
sweep's default baseline; the plots are redrawn to match, as report_*.png beside results.md's own
(which may mark another baseline, chosen with vx-summarize --baseline), or beside the report when the sweep
folder is read-only. A sweep folder without
jobs yet (a sweep that stopped before its first job) gets a line saying so.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from vision_exp.sweeps.plots import plot_bars, plot_curves
from vision_exp.sweeps.summary import CURVES_PNG, EmptySweep, bars_png, failures_table, load_sweep, results_table


REPORT_PREFIX = "report_"


def relative_link(path: Path, report_dir: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), Path(report_dir).resolve())).as_posix()


def draw_plots(summary, report_dir: Path) -> tuple:
    """The section's two plots, in the sweep folder; one that cannot be written to (a Kaggle input, a shared
    results folder) gets them beside the report instead, named after it."""
    def draw(folder: Path, prefix: str) -> tuple:
        bars, curves = (folder / f"{prefix}{name}" for name in (bars_png(summary), CURVES_PNG))
        plot_bars(summary, bars)
        plot_curves(summary, curves)
        return bars, curves

    try:
        return draw(summary.sweep_dir, REPORT_PREFIX)
    except OSError:
        Path(report_dir).mkdir(parents=True, exist_ok=True)
        return draw(Path(report_dir), f"{REPORT_PREFIX}{summary.sweep_dir.name}_")


def sweep_section(sweep_dir: Path, report_dir: Path) -> str:
    try:
        summary = load_sweep(sweep_dir)
    except EmptySweep as exc:
        return f"## {Path(sweep_dir).name}\n\nSkipped: {exc}.\n"
    bars, curves = draw_plots(summary, report_dir)
    completed = summary.completed_count
    parts = [
        f"## {summary.name}",
        "",
        f"Sweep folder `{relative_link(summary.sweep_dir, report_dir)}`: {len(summary.jobs)} jobs, {completed} completed. "
        f"Baseline: **{summary.baseline.label}**.",
        "",
    ]
    if summary.command:
        parts += ["```bash", summary.command, "```", ""]
    parts += [results_table(summary), ""]
    if summary.unsuccessful:
        parts += ["Jobs that did not complete (left out of the means):", "", failures_table(summary), ""]
    parts += [
        f"![{summary.name}: {summary.metric} per configuration]({relative_link(bars, report_dir)})",
        f"![{summary.name}: validation accuracy during training]({relative_link(curves, report_dir)})",
        "",
    ]
    return "\n".join(parts)


def build_report(sweep_dirs: list, report_dir: Path) -> str:
    """The report's Markdown; image links are relative to `report_dir`, where it will be saved."""
    sections = [sweep_section(Path(d), report_dir) for d in sweep_dirs]
    header = [
        "# Study report",
        "",
        f"{len(sweep_dirs)} sweep(s), summarized {time.strftime('%Y-%m-%d %H:%M')}. In each table, n is the number "
        "of completed seeds, mean ± std are over them, and Δ is the difference of a configuration's mean to the "
        "baseline's with a 95% t interval (paired by seed when both completed the same seeds, else Welch's, marked): an interval that "
        "includes 0 is a difference these seeds do not resolve.",
        "",
    ]
    return "\n".join(header + sections)
