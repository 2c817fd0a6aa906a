"""Rebuild a sweep's results.csv, results.md and plots from its folder, as the end of a multirun does.

    vx-summarize <sweep dir> [--baseline 'model=resnet_v1'] [--metric val_acc]   (or python -m vision_exp.summarize)

Useful for a sweep that was interrupted or is still running, with another baseline or metric,
or after jobs were added to the folder by a resumed sweep.
"""
import argparse
import sys

from vision_exp.errors import UserError
from vision_exp.sweeps.summary import load_sweep, write_results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", help="a multirun folder, e.g. outputs/ablation_resnet_blocks/multirun_...")
    parser.add_argument("--baseline", help="overrides naming the baseline configuration, e.g. 'model=resnet_v1' "
                                           "(default: the first value of each swept axis, or its 'none')")
    parser.add_argument("--metric", default="val_acc", help="the metrics.json key to compare (default: val_acc)")
    args = parser.parse_args(argv)
    try:
        summary = load_sweep(args.sweep_dir, baseline=args.baseline, metric=args.metric)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        write_results(summary)
    except OSError as exc:  # a read-only sweep folder (a Kaggle input), a full disk
        print(f"error: cannot write the results into {summary.sweep_dir}: {exc.strerror or exc}; "
              f"vx-report {summary.sweep_dir} --output <file> reports the sweep from a folder you can write to",
              file=sys.stderr)
        return 2
    completed = summary.completed_count
    print(f"{summary.sweep_dir}: {len(summary.jobs)} jobs ({completed} completed), "
          f"{len(summary.configurations)} configurations; wrote results.csv, results.md and plots")
    return 0


def console() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console()
