"""The end of a multirun (conf/hydra/default.yaml `callbacks:`): the sweep summarizes itself.

Every job has ended by then, in this process or in joblib/submitit workers, and left its
metrics.json; the summary reads those files (vision_exp.sweeps.summary). A sweep with a job that
did not complete still writes every results file, then exits with status 1, so that a script or
a chain of cluster jobs notices; so does a sweep whose summary cannot be written (a full disk), and one
run with debug=overfit where a job completed without memorising its batch (each job logged its own verdict,
in a log few read to the end).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from vision_exp.cli import is_rank_zero
from vision_exp.debug import OVERFIT_ADVICE, memorised
from vision_exp.sweeps.summary import RESULTS_MD, Job, display_key, fmt, split_override, summarize_sweep

log = logging.getLogger("vision_exp.sweeps")


class SummarizeSweep(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if not is_rank_zero():
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            summary = summarize_sweep(sweep_dir)
        except Exception as exc:  # Hydra would make it a warning, and the sweep would end with status 0
            log.error("the sweep's summary could not be written (%s: %s); rebuild it with: vx-summarize %s",
                      type(exc).__name__, exc, sweep_dir, exc_info=bool(config.hydra.get("verbose")))  # a bug's traceback
            sys.exit(1)
        log.info("sweep summary: %s (rebuild it with: vx-summarize %s)", sweep_dir / RESULTS_MD, sweep_dir)
        if summary.unsuccessful:
            log.error("%d of %d jobs did not complete: %s (errors in %s)", len(summary.unsuccessful),
                      len(summary.jobs), first_five(summary.unsuccessful, lambda job: job.status), sweep_dir / RESULTS_MD)
        not_memorised = [job for job in summary.jobs if job.completed and failed_overfit_check(job)]
        if not_memorised:
            checked = sum(debug_choice(job) == "overfit" for job in summary.jobs if job.completed)
            log.error("the overfit check failed in %d of %d completed jobs (their training images were not memorised): "
                      "%s; %s", len(not_memorised), checked,
                      first_five(not_memorised, lambda job: f"train top-1 {fmt(job.value('train_acc'))}%"), OVERFIT_ADVICE)
        if summary.unsuccessful or not_memorised:
            sys.exit(1)


def first_five(jobs: list, detail) -> str:
    """`job 3 (failed), job 7 (failed) and 2 more`: a line that stays short for a sweep of hundreds."""
    listed = ", ".join(f"job {job.name} ({detail(job)})" for job in jobs[:5])
    return listed + (f" and {len(jobs) - 5} more" if len(jobs) > 5 else "")


def debug_choice(job: Job) -> str:
    """The job's debug option, as its command line set it (the last one wins, as in Hydra)."""
    chosen = [value for key, value in map(split_override, job.overrides or []) if display_key(key) == "debug"]
    return chosen[-1] if chosen else ""


def failed_overfit_check(job: Job) -> bool:
    """A debug=overfit job whose eval-mode pass over its training images stayed below 100% (debug.debug_verdict)."""
    return debug_choice(job) == "overfit" and not memorised(job.metrics)
