"""One Markdown report of a study from its sweep folders, ready to paste into a write-up.

Each sweep gets its section: the command that produced it (from its multirun.yaml), its
results table, its jobs that did not complete, and its two plots, linked relative to the
report's own folder. The tables are computed from the job folders, like results.md, with each
sweep's default baseline; the plots are redrawn to match, as report_*.png beside results.md's own
(which may mark another baseline, chosen with vx-summarize --baseline), or beside the report when the sweep
folder is read-only. A sweep folder without
jobs yet (a sweep that stopped before its first job), or without the metric compared (`--metric`, val_acc by default),
gets a line saying so; a metric no sweep of the report has is refused. Sweeps of one name (a rerun, more
seeds) are told apart by their folders, in headings and in the plots beside the report.
"""
from __future__ import annotations

import time
from pathlib import Path

from vision_exp.sweeps.plots import plot_bars, plot_curves
from vision_exp.sweeps.summary import (CURVES_PNG, RESULTS_MD, SWEEP_FILE, EmptySweep, MetricMissing, SweepError,
                                      bars_png, counted, failures_table, folder_labels, load_sweep, relative_link,
                                      repeated_seeds_caution, results_table)


REPORT_PREFIX = "report_"


def draw_plots(summary, report_dir: Path, folder_name: str) -> tuple:
    """The section's two plots, in the sweep folder; one that cannot be written to (a Kaggle input, a shared
    results folder) gets them beside the report instead, named after its `folder_name`."""
    def draw(folder: Path, prefix: str) -> tuple:
        bars, curves = (folder / f"{prefix}{name}" for name in (bars_png(summary), CURVES_PNG))
        plot_bars(summary, bars)
        plot_curves(summary, curves)
        return bars, curves

    try:
        return draw(summary.sweep_dir, REPORT_PREFIX)
    except OSError:
        Path(report_dir).mkdir(parents=True, exist_ok=True)
        return draw(Path(report_dir), f"{REPORT_PREFIX}{folder_name.replace('/', '_')}_")


def read_sweep(folder: Path, metric: str):
    """The folder's SweepSummary, or the EmptySweep or MetricMissing that says why it has none."""
    try:
        return load_sweep(folder, metric=metric)
    except (EmptySweep, MetricMissing) as exc:
        return exc


def sweep_section(summary, folder_name: str, names: list, report_dir: Path) -> str:
    """The sweep's section; its heading is its name, with its folder's when another sweep of the report has the
    name too (a rerun, more seeds), so that each heading and its link anchor is its own."""
    if isinstance(summary, SweepError):
        return f"## {folder_name}\n\nSkipped: {summary}.\n"
    heading = summary.name if names.count(summary.name) == 1 else f"{summary.name} ({folder_name})"
    bars, curves = draw_plots(summary, report_dir, folder_name)
    completed = summary.completed_count
    parts = [
        f"## {heading}",
        "",
        f"Sweep folder `{relative_link(summary.sweep_dir, report_dir)}`: {counted(len(summary.jobs), 'job')}, "
        f"{completed} completed. {summary.baseline_sentence}",
        "",
    ]
    if summary.command:
        parts += ["```bash", summary.command, "```", ""]
    parts += [results_table(summary), "", *repeated_seeds_caution(summary)]
    if summary.unsuccessful:
        parts += ["Jobs that did not complete (left out of the means):", "", failures_table(summary), ""]
    parts += [
        f"![{heading}: {summary.metric} per configuration]({relative_link(bars, report_dir)})",
        f"![{heading}: validation accuracy during training]({relative_link(curves, report_dir)})",
        "",
    ]
    return "\n".join(parts)


# The first line of every report: what tells an earlier report, which may be written again, from other Markdown.
REPORT_TITLE = "# Study report"


def check_report_path(output: Path) -> None:
    """The report is Markdown, and replaces no sweep's own results.md and no Markdown it did not write: a name such
    as multirun.yaml or metrics.json would overwrite the record a sweep or a run is read from."""
    if output.is_dir():
        raise SweepError(f"--output {output} is a folder: name the report's file, e.g. {output / 'report.md'}")
    if output.suffix.lower() != ".md":
        raise SweepError(f"--output {output}: the report is Markdown, name it <name>.md")
    if output.name == RESULTS_MD and (output.parent / SWEEP_FILE).is_file():
        raise SweepError(f"--output {output} is the sweep's own {RESULTS_MD}, which vx-summarize writes: "
                         f"name the report otherwise, e.g. {output.with_name('report.md')}")
    if output.is_file() and not is_report(output):  # notes, a README: a report is written again, nothing else
        raise SweepError(f"--output {output} exists and is no report vx-report wrote (it does not start with "
                         f"{REPORT_TITLE!r}): name a new file, e.g. {output.with_name('report.md')}, or move it away first")


def is_report(path: Path) -> bool:
    """The file starts as build_report's reports do (an editor may have added a byte-order mark), or is empty."""
    try:
        with open(path, encoding="utf-8-sig") as file:
            first = file.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return first == "" or first.rstrip("\r\n") == REPORT_TITLE


def build_report(sweep_dirs: list, report_dir: Path, metric: str = "val_acc") -> str:
    """The report's Markdown, comparing `metric`; image links are relative to `report_dir`, where it will be saved."""
    unique = {}
    for folder in sweep_dirs:  # a folder named twice (overlapping globs) gets one section
        unique.setdefault(Path(folder).resolve(), Path(folder))
    folders = list(unique.values())
    summaries = [read_sweep(folder, metric) for folder in folders]
    missing = [summary for summary in summaries if isinstance(summary, MetricMissing)]
    if missing and all(isinstance(summary, SweepError) for summary in summaries):  # a mistyped --metric
        raise MetricMissing(metric, sorted({known for summary in missing for known in summary.known}))
    names = [summary.name for summary in summaries if not isinstance(summary, SweepError)]
    sections = [sweep_section(summary, folder_name, names, report_dir)
                for summary, folder_name in zip(summaries, folder_labels(folders))]
    header = [
        REPORT_TITLE,
        "",
        f"{len(folders)} sweep(s), summarized {time.strftime('%Y-%m-%d %H:%M')}. The tables compare `{metric}`: "
        "n is the number of completed seeds, mean ± std are over them, and Δ is the difference of a configuration's "
        "mean to the baseline's with a 95% t interval (paired by seed when both completed the same seeds, else "
        "Welch's, marked): an interval that includes 0 is a difference these seeds do not resolve.",
        "",
    ]
    return "\n".join(header + sections)
