"""Rebuild a sweep's results.csv, results.md and plots from its folder, as the end of a multirun does.

    vx-summarize <sweep dir> [--baseline 'model=resnet_v1'] [--metric val_acc]   (or python -m vision_exp.summarize)

Useful for a sweep that was interrupted or is still running, with another baseline or metric,
or after jobs were added to the folder by a resumed sweep.
"""
import argparse
import sys

from vision_exp.errors import UserError
from vision_exp.sweeps.summary import summarize_sweep


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", help="a multirun folder, e.g. outputs/ablation_resnet_blocks/multirun_...")
    parser.add_argument("--baseline", help="overrides naming the baseline configuration, e.g. 'model=resnet_v1' "
                                           "(default: the first value of each swept axis, or its 'none')")
    parser.add_argument("--metric", default="val_acc", help="the metrics.json key to compare (default: val_acc)")
    args = parser.parse_args(argv)
    try:
        summary = summarize_sweep(args.sweep_dir, baseline=args.baseline, metric=args.metric)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    completed = summary.completed_count
    print(f"{summary.sweep_dir}: {len(summary.jobs)} jobs ({completed} completed), "
          f"{len(summary.configurations)} configurations; wrote results.csv, results.md and plots")
    return 0


def console() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console()
