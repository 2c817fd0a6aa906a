"""Assemble one Markdown report of a study from its sweep folders, ready to paste into a write-up.

    vx-report <sweep dir> [<sweep dir> ...] [--output report.md] [--metric val_acc]   (or python -m vision_exp.report)

Each sweep's section holds the command that produced it, its results table and its plots
(image links relative to the report). Without --output the report goes to stdout, with links
relative to the current folder.
"""
import argparse
import sys
from pathlib import Path

from vision_exp.errors import UserError
from vision_exp.reporting.files import write_text_atomic
from vision_exp.sweeps.report import build_report, check_report_path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dirs", nargs="+", help="multirun folders, e.g. outputs/resnet_vs_vit/multirun_...")
    parser.add_argument("--output", "-o", type=Path, help="where to write the report (default: stdout)")
    parser.add_argument("--metric", default="val_acc", help="the metrics.json key to compare (default: val_acc)")
    args = parser.parse_args(argv)
    try:
        if args.output:
            check_report_path(args.output)
        report = build_report(args.sweep_dirs, args.output.parent if args.output else Path.cwd(), args.metric)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # neither the sweep folder nor the report's folder takes the plots
        print(f"error: cannot write the report's plots: {exc}; give --output a writable folder", file=sys.stderr)
        return 2
    if args.output:
        try:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(args.output, report)
        except OSError as exc:
            print(f"error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"wrote {args.output}")
    else:
        print(report)
    return 0


def console() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console()
