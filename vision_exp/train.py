"""`python -m vision_exp.train [hydra overrides]`: compose conf/train.yaml and train one run.

A bad input ends with one clear message and exit status 2 (add hydra.verbose=true for the
traceback). In a multirun, a failing job is recorded in its metrics.json and the sweep goes on.
"""
from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from vision_exp.errors import UserError
from vision_exp.experiment import run_experiment
from vision_exp.reporting.run import record_failure

log = logging.getLogger("vision_exp.train")


def run_task(cfg: DictConfig) -> Optional[dict]:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    verbose = bool(hydra_cfg.verbose)
    try:
        return run_experiment(cfg, run_dir, list(hydra_cfg.overrides.task))
    except UserError as exc:
        log.error("%s", exc)
        record_failure(run_dir, str(exc))
        if verbose:
            raise
        if not multirun:
            sys.exit(2)
    except Exception as exc:  # a bug, out of memory, ...: recorded, and a sweep goes on
        record_failure(run_dir, f"{type(exc).__name__}: {exc}", {"traceback": traceback.format_exc()})
        if not multirun:
            raise
        log.exception("job failed; the sweep goes on")
    return None


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> Optional[dict]:
    return run_task(cfg)


if __name__ == "__main__":
    main()
