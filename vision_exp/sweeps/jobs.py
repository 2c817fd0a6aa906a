"""Skip or resume a sweep job from what its folder already holds.

Running a sweep command again with `hydra.sweep.dir=<its folder>` must not retrain finished jobs
and must continue interrupted ones, but only when the folder holds the same experiment: job
numbers follow the order of the swept values, so a changed command can point job 3 at another
configuration's folder. The comparison is on the resolved config (config.yaml), not only the
overrides, so an edited preset is caught too.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf, open_dict

from vision_exp.errors import ConfigError
from vision_exp.reporting.files import read_json, write_json_atomic, write_text_atomic
from vision_exp.reporting.records import (CONFIG_FILE, INCIDENTAL_SETTINGS, METRICS_FILE, flatten, has_earlier_attempt,
                                         identity_value)

REFUSED_FILE = "refused.json"  # why the command that ran a job last refused it: the summary lists it

# What a run resumed by hand may change: a longer budget continues on the longer schedule.
BUDGET_SETTINGS = ("trainer.train_samples", "trainer.epochs")

# Null in the composed config and filled in from the dataset when the run starts.
FILLED_AT_START = ("data.num_classes", "model.num_classes")


def completed_record(run_dir: Path) -> Optional[dict]:
    """The folder's metrics.json if it records a completed run."""
    record = read_json(Path(run_dir) / METRICS_FILE, {})
    return record if record.get("status") == "completed" else None


def config_differences(saved: dict, current: dict) -> list:
    """'key: saved -> now' for every setting that changes the experiment (not INCIDENTAL_SETTINGS).

    A setting the saved config lacks was added to the project after the run started: the run
    cannot have chosen it, so an upgrade in the middle of a sweep does not strand the sweep."""
    old, new = flatten(saved), flatten(current)
    differences = []
    for key in sorted(set(old) | set(new)):
        if key.startswith(INCIDENTAL_SETTINGS) or (key in FILLED_AT_START and new.get(key) == "None") or key not in old:
            continue
        if identity_value(key, old[key]) != identity_value(key, new.get(key, "<unset>")):
            differences.append(f"{key}: {old[key]} -> {new.get(key, '<unset>')}")
    return differences


def check_same_config(run_dir: Path, current: dict, may_change: tuple = ()) -> None:
    """Refuse to skip or resume a folder whose config.yaml describes another experiment.

    A sweep job must match exactly (its folder was chosen by its position in the sweep); a single run
    resumed by hand may change the settings `may_change` names (its budget)."""
    saved = OmegaConf.to_container(OmegaConf.load(Path(run_dir) / CONFIG_FILE))
    differences = [d for d in config_differences(saved, current) if d.split(":")[0] not in may_change]
    if differences:
        shown = "; ".join(differences[:3]) + (f"; and {len(differences) - 3} more" if len(differences) > 3 else "")
        advice = ("resume it with its own settings (only trainer.train_samples or trainer.epochs may change), "
                  "or choose another hydra.run.dir") if may_change else (
                  "resume a sweep with the command that started it, or choose a new hydra.sweep.dir "
                  "(sweep_dir= in vision_exp.sweep)")
        raise ConfigError(f"{run_dir} holds a run of another configuration ({shown}): {advice}")


def check_sweep_job(run_dir: Path, current: dict, overrides: list) -> None:
    """check_same_config for a sweep job, on the record: a refusal is written to the job's refused.json (its
    results stay as they were) and cleared once a command of its own configuration runs it."""
    refusal = Path(run_dir) / REFUSED_FILE
    try:
        check_same_config(run_dir, current)
    except ConfigError as exc:
        write_json_atomic(refusal, {"error": str(exc), "overrides": list(overrides)})
        raise
    refusal.unlink(missing_ok=True)


def prepare_job(cfg: DictConfig, run_dir: Path, overrides: list) -> Optional[dict]:
    """Make a sweep job rerunnable: returns the completed run's metrics.json to skip it, else None.

    A folder with an earlier attempt of the same config resumes from its checkpoint (trainer.resume
    becomes auto); another config there refuses the job (check_sweep_job), its files untouched.
    overrides.json is written once the job is accepted, before training, so that the summary knows
    the configuration of a job that fails early too."""
    earlier_attempt = has_earlier_attempt(run_dir)
    if earlier_attempt:
        check_sweep_job(run_dir, OmegaConf.to_container(cfg, resolve=True), overrides)
        finished = completed_record(run_dir)
        if finished is not None:
            return finished
    write_text_atomic(Path(run_dir) / "overrides.json", json.dumps(list(overrides)))
    with open_dict(cfg):
        if earlier_attempt and cfg.trainer.resume == "never":
            cfg.trainer.resume = "auto"
    return None
