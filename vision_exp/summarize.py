"""Rebuild a sweep's results.csv, results.md and plots from its folder, as the end of a multirun does.

    vx-summarize <sweep dir> [--baseline 'model=resnet_v1'] [--metric val_acc]   (or python -m vision_exp.summarize)
    vx-summarize <sweep dir> <sweep dir> ... --output <folder>     several sweeps (more seeds) as one table

Useful for a sweep that was interrupted or is still running, with another baseline or metric,
or after jobs were added to the folder by a resumed sweep. Several sweep folders (a sweep and the
one that ran more seeds of it) are pooled into one table, written into --output; each sweep's own
results stay as they are. With one folder, --output writes its results elsewhere (a read-only folder).
"""
import argparse
import sys

from vision_exp.errors import UserError
from vision_exp.sweeps.summary import counted, load_sweeps, write_results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dirs", nargs="+", metavar="sweep_dir",
                        help="a multirun folder, e.g. outputs/ablation_resnet_blocks/multirun_...; several are pooled "
                             "into one table (needs --output)")
    parser.add_argument("--output", help="the folder for results.csv, results.md and the plots (needed with several "
                                         "sweep folders; default with one: the sweep folder)")
    parser.add_argument("--baseline", help="overrides naming the baseline configuration, e.g. 'model=resnet_v1' "
                                           "(default: the first value of each swept axis, or its 'none')")
    parser.add_argument("--metric", default="val_acc", help="the metrics.json key to compare (default: val_acc)")
    args = parser.parse_args(argv)
    try:
        summary = load_sweeps(args.sweep_dirs, args.output, baseline=args.baseline, metric=args.metric)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        write_results(summary)
    except OSError as exc:  # a read-only sweep folder (a Kaggle input), a full disk
        advice = ("choose another --output" if args.output else
                  f"vx-report {summary.sweep_dir} --output <file> reports the sweep from a folder you can write to, "
                  f"vx-summarize {summary.sweep_dir} --output <folder> writes its results there")
        print(f"error: cannot write the results into {summary.sweep_dir}: {exc.strerror or exc}; {advice}",
              file=sys.stderr)
        return 2
    for caution in summary.cautions:
        print(f"warning: {caution}", file=sys.stderr)
    completed = summary.completed_count
    jobs = f"{counted(len(summary.jobs), 'job')} ({completed} completed)"
    if summary.merged:
        jobs = f"{len(summary.sources)} sweeps, {jobs}"
    print(f"{summary.sweep_dir}: {jobs}, {counted(len(summary.configurations), 'configuration')}; "
          f"wrote results.csv, results.md and plots")
    return 0


def console() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console()
