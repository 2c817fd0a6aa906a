"""The end of a multirun (conf/hydra/default.yaml `callbacks:`): the sweep summarizes itself.

Every job has ended by then, in this process or in joblib/submitit workers, and left its
metrics.json; the summary reads those files (vision_exp.sweeps.summary). A sweep with a job that
did not complete still writes every results file, then exits with status 1, so that a script or
a chain of cluster jobs notices; so does a sweep whose summary cannot be written (a full disk).
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from vision_exp.sweeps.summary import RESULTS_MD, summarize_sweep

log = logging.getLogger("vision_exp.sweeps")


class SummarizeSweep(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 writes every result
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
            listed = ", ".join(f"job {job.name} ({job.status})" for job in summary.unsuccessful[:5])
            more = f" and {len(summary.unsuccessful) - 5} more" if len(summary.unsuccessful) > 5 else ""
            log.error("%d of %d jobs did not complete: %s%s (errors in %s)", len(summary.unsuccessful),
                      len(summary.jobs), listed, more, sweep_dir / RESULTS_MD)
            sys.exit(1)
