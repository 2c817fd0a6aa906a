"""Tabulate the runs of one scripts/gpu_check.sh call: results.json, results.md and a text table.

    python scripts/gpu_results.py CALL_DIR OUT_DIR    # what gpu_check.sh runs at its end
    python scripts/gpu_results.py --json results.json  # results.md again from a kept results.json

A lease is short and its numbers go into the README by hand: the Markdown table (val top-1 at
chosen epochs, best, top-5, eval-mode train accuracy, running train accuracy) is written from the
runs' own metrics, so nothing is copied twice. A run stopped by its time limit shows its last
finished epoch.
"""
import argparse
import json
import sys
from pathlib import Path

from vision_exp.reporting.files import read_json, read_jsonl, write_json_atomic, write_text_atomic

MILESTONES = (10, 20, 30, 40, 50)


def collect(call: Path) -> dict:
    """Each step of the call, in the order the script started them: exit code, process wall time,
    and the run's metrics.json and per-epoch metrics where it trained."""
    times = call / "times.txt"  # absent when every step was skipped
    lines = [line.split() for line in (times.read_text().splitlines() if times.is_file() else [])]
    results = {}
    for name, rc, t0, t1, _ in sorted(lines, key=lambda fields: int(fields[4])):
        run = call / "runs" / name
        entry = {"exit_code": int(rc), "process_wall_s": float(t1) - float(t0)}
        if (run / "metrics.json").is_file():
            entry["metrics"] = read_json(run / "metrics.json", {})
        if (run / "metrics.jsonl").is_file():  # a run killed mid-write leaves its last line cut short
            entry["epochs"] = read_jsonl(run / "metrics.jsonl")
        results[name] = entry
    return results


def final(entry: dict) -> dict:
    """The run's last finished epoch (its final numbers when it completed)."""
    return entry["epochs"][-1] if entry.get("epochs") else {}


def speed(entry: dict):
    """Training images per second over the whole run, else over its last finished epoch."""
    return entry.get("metrics", {}).get("train_images_per_s") or final(entry).get("images_per_s")


def exit_status(code: int) -> str:
    """What a step without metrics.json did: "stopped" only for its time limit (timeout's 124, SIGKILL's 137 after
    it, SIGTERM's 143)."""
    return "completed" if code == 0 else "stopped" if code in (124, 137, 143) else f"failed, exit {code}"


def cell(value, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def markdown(results: dict, milestones=MILESTONES) -> str:
    header = " / ".join(str(m) for m in milestones)
    rows = [f"| run | exit | epochs | val top-1 at epoch {header} | val top-1 (last epoch) | best | top-5 | "
            "train (eval pass) | train_running | process wall s | train img/s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, entry in results.items():
        epochs, last = entry.get("epochs", []), final(entry)
        status = entry.get("metrics", {}).get("status", exit_status(entry["exit_code"]))
        by_epoch = {record.get("epoch"): record for record in epochs}  # a resumed run's records start past 1
        curve = " / ".join(cell(by_epoch[m]["val/acc"]) if m in by_epoch else "-" for m in milestones)
        done = f"{last.get('epoch', 0)}" + ("" if status == "completed" else f" ({status})")
        rows.append(f"| {name} | {entry['exit_code']} | {done} | {curve if epochs else '-'} | "
                    f"**{cell(last.get('val/acc'))}** | {cell(last.get('val/acc_best'))} | {cell(last.get('val/acc5'))} | {cell(last.get('train/acc'))} | "
                    f"{cell(last.get('train_running/acc'))} | {cell(entry['process_wall_s'], 1)} | "
                    f"{cell(speed(entry), 0)} |")
    return "\n".join(rows) + "\n"


def text_table(results: dict) -> str:
    width = max([26] + [len(name) + 2 for name in results])
    lines = [f"{'step':<{width}}{'exit':>5}{'wall s':>9}{'epochs':>8}{'val top-1':>11}{'best':>8}{'train img/s':>13}"]
    for name, entry in results.items():
        last = final(entry)
        lines.append(f"{name:<{width}}{entry['exit_code']:>5}{entry['process_wall_s']:>9.1f}"
                     f"{last.get('epoch', 0):>8}{cell(last.get('val/acc')):>11}"
                     f"{cell(last.get('val/acc_best')):>8}{cell(speed(entry), 0):>13}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("call_dir", nargs="?", type=Path, help="the call's folder under $WORK (times.txt, runs/)")
    parser.add_argument("out_dir", nargs="?", type=Path, help="where results.json and results.md go")
    parser.add_argument("--json", type=Path, help="a kept results.json: write results.md beside it")
    args = parser.parse_args(argv)
    if args.json is not None:
        if not args.json.is_file():
            print(f"error: {args.json} is not a file", file=sys.stderr)
            return 2
        results, out_dir = json.loads(args.json.read_text()), args.json.parent
    elif args.call_dir is not None and args.out_dir is not None:
        results, out_dir = collect(args.call_dir), args.out_dir
        write_json_atomic(out_dir / "results.json", results)
    else:
        parser.error("give CALL_DIR OUT_DIR, or --json results.json")
    write_text_atomic(out_dir / "results.md", markdown(results))
    print(text_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
