"""Skip or resume a sweep job from what its folder already holds.

Running a sweep command again with `hydra.sweep.dir=<its folder>` must not retrain finished jobs
and must continue interrupted ones, but only when the folder holds the same experiment: job
numbers follow the order of the swept values, so a changed command can point job 3 at another
configuration's folder. The comparison is on the resolved config (config.yaml), not only the
overrides, so an edited preset is caught too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf, open_dict

from vision_exp.errors import ConfigError
from vision_exp.reporting.files import last_checkpoint, write_json_atomic
from vision_exp.reporting.records import (MEMORY_SETTINGS, check_same_config, completed_record, has_earlier_attempt,
                                         write_overrides)

REFUSED_FILE = "refused.json"  # why the command that ran a job last refused it: the summary lists it


def check_sweep_job(run_dir: Path, current: dict, overrides: list) -> None:
    """check_same_config for a sweep job, on the record: a refusal is written to the job's refused.json (its
    results stay as they were) and cleared once a command of its own configuration runs it."""
    refusal = Path(run_dir) / REFUSED_FILE
    try:
        check_same_config(run_dir, current, MEMORY_SETTINGS, sweep_job=True)
    except ConfigError as exc:
        write_json_atomic(refusal, {"error": str(exc), "overrides": list(overrides)})
        raise
    refusal.unlink(missing_ok=True)


def prepare_job(cfg: DictConfig, run_dir: Path, overrides: list) -> Optional[dict]:
    """Make a sweep job rerunnable: returns the completed run's metrics.json to skip it, else None.

    A folder with an earlier attempt of the same config resumes from its checkpoint (trainer.resume
    becomes auto, also where it named another folder's checkpoint); another config there refuses the job
    (check_sweep_job), its files untouched.
    overrides.json is written once the job is accepted, before training, so that the summary knows
    the configuration of a job that fails early too."""
    earlier_attempt = has_earlier_attempt(run_dir)
    if earlier_attempt:
        check_sweep_job(run_dir, OmegaConf.to_container(cfg, resolve=True), overrides)
        finished = completed_record(run_dir)
        if finished is not None:
            return finished
    write_overrides(run_dir, overrides)
    with open_dict(cfg):  # a job continuing another folder's checkpoint goes on from its own once it has one
        if earlier_attempt and (cfg.trainer.resume == "never" or last_checkpoint(run_dir / "checkpoints") is not None):
            cfg.trainer.resume = "auto"
    return None
