"""What a run's folder says of it: why a run that did not complete stopped (`recorded_failures` writes
metrics.json), whether a run began there before (`has_earlier_attempt`) or completed (`completed_record`),
which settings describe what a run computes, and whether its config.yaml describes the same experiment
as a command that would resume it (`check_same_config`, for a run resumed by hand and a sweep job alike).

Kept apart from `run.RunReporter` (torch, TensorBoard, matplotlib) so that the sweep bookkeeping and the
entry points' error handling load in a blink: a bad override is reported before torch is imported.
"""
from __future__ import annotations

import json
import logging
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Optional, Sequence

from omegaconf import OmegaConf

from vision_exp.errors import ConfigError, Interrupted, RankZeroFailed, RunFolderBusy, UserError
from vision_exp.reporting.files import exclusive_lock, read_json, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
OVERRIDES_FILE = "overrides.json"
# What a run writes in its folder besides train.log (Hydra's): the files, and the folders.
RUN_FILES = (CONFIG_FILE, OVERRIDES_FILE, METRICS_FILE, "metrics.jsonl", "curves.png")
RUN_FOLDERS = ("checkpoints", "tb")
# Settings that say where a run reads and writes, on which device and how it reports, not what it
# computes: kept out of the HParams table, where a resumed or relocated job would look different.
INCIDENTAL_SETTINGS = ("paths.", "data.cache_dir", "data.num_workers", "data.persistent_workers", "data.on_device",
                       "data.download", "trainer.device", "trainer.resume", "trainer.progress", "trainer.log_every_steps",
                       "trainer.save_interval_s", "trainer.checkpoint_every_steps", "trainer.cudnn_benchmark")
# data.root says which dataset by its folder's name (imagenette2-160, imagewoof2-320); where that folder lies
# (a Kaggle input, a local copy) is incidental: a relocated job is the same, another dataset is not.
DATASET_FOLDER = "data.root"


def identity_value(key: str, value):
    """A setting's value as a run's identity sees it: data.root by its folder's name, the others as they are."""
    return Path(str(value)).name if key == DATASET_FOLDER and value not in (None, "None") else value


def flatten(tree: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists and None become strings (what HParams can show)."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def record_failure(run_dir: Path, error: str, extra: Optional[dict] = None, status: str = "failed") -> None:
    """metrics.json with status failed (or interrupted), unless the folder already holds a completed
    run's results, or a metrics.json that is no run's (an evaluation's, in a folder named as a run's), or a folder
    named metrics.json: a run refuses such folders (experiment.check_run_dir), and says so."""
    path = Path(run_dir) / METRICS_FILE
    if completed_record(run_dir):
        log.error("not overwriting the completed run's %s", path)
        return
    if holds_foreign_record(run_dir) or path.is_dir():
        return
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"status": status, "error": error, "stopped_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **(extra or {})})


def record_user_error(run_dir: Path, error: UserError, earlier_attempt: bool) -> None:
    """metrics.json says failed, unless the command was refused before it wrote anything in a folder holding an
    earlier attempt (whose status, interrupted and so resumable, or failed with its own reason, stands) or in a
    folder another process trains in (its files are that run's)."""
    if not (isinstance(error, RunFolderBusy) or (earlier_attempt and error.before_start)):
        record_failure(run_dir, str(error))


def misplaced_entry(run_dir: Path) -> Optional[str]:
    """Why the run folder cannot take the run's files, or None: a folder where a run writes a file, or a file where it
    makes a folder, fails the first write to it, which for curves.png or tb/ comes once training has begun."""
    for name in RUN_FILES:
        if (Path(run_dir) / name).is_dir():
            return f"{Path(run_dir) / name} is a folder, where the run writes its {name} file"
    for name in RUN_FOLDERS:
        path = Path(run_dir) / name
        if path.exists() and not path.is_dir():
            return f"{path} is a file, where the run makes its {name}/ folder"
    return None


def has_earlier_attempt(run_dir: Path) -> bool:
    """A run wrote its config.yaml in this folder: it trained, or began to."""
    return (Path(run_dir) / CONFIG_FILE).is_file()


LOCK_FILE = ".lock"
SWEEP_FILE = "multirun.yaml"  # Hydra's record of a sweep, in the sweep's own folder


def refuse_sweep_folder(folder: Path) -> None:
    """A sweep's own folder is no run's: a run's files would sit among the sweep's results and plots, where no tool
    looks for a run. Checked before anything is written there (Hydra's log, the run's lock)."""
    if (Path(folder) / SWEEP_FILE).is_file():
        raise ConfigError(f"{folder} is a sweep's folder (it holds {SWEEP_FILE}; its jobs are its numbered "
                          f"subfolders): choose another output folder (hydra.run.dir=...; in Python, run_dir= or "
                          f"out_dir=)")


def folder_busy(run_dir: Path) -> RunFolderBusy:
    return RunFolderBusy(f"another process is training in {run_dir}: give this run its own folder "
                         f"(hydra.run.dir=... or name=...)")


def check_not_busy(run_dir: Path) -> None:
    """A look at the run folder's lock before the slow imports, so that a second process stops at once. The
    lock that counts is taken by `experiment.hold_run_dir`; this one is released straight away."""
    if (Path(run_dir) / LOCK_FILE).is_file():
        with exclusive_lock(Path(run_dir) / LOCK_FILE) as held:
            if not held:
                raise folder_busy(run_dir)


@contextmanager
def before_start():
    """UserErrors raised inside stop the run before it wrote anything in its folder."""
    try:
        yield
    except UserError as exc:
        exc.before_start = True
        raise


@contextmanager
def recorded_failures(run_dir: Path, made_for_it: Sequence[Path] = ()):
    """A run that does not complete leaves metrics.json saying why (failed, or interrupted and resumable;
    a refusal as `record_user_error` rules; under torchrun, rank 0's reason, not the ranks' that stopped with
    it), then the error goes on to the entry point. A run refused before it started in a folder made for it
    (`made_for_it`: the run folder and the parents created with it, deepest first) leaves no folder instead:
    a mistyped command is not a run."""
    earlier_attempt = has_earlier_attempt(run_dir)
    try:
        yield
    except UserError as exc:
        if not (isinstance(exc, RankZeroFailed) or
                (made_for_it and exc.before_start and remove_unused_folders(made_for_it))):
            _record(record_user_error, run_dir, exc, earlier_attempt)
        raise
    except Interrupted as exc:
        if not exc.completed:
            _record(record_failure, run_dir, str(exc), status="interrupted")
        raise
    except Exception as exc:
        _record(record_failure, run_dir, f"{type(exc).__name__}: {exc}", {"traceback": traceback.format_exc()})
        raise


def remove_unused_folders(folders: Sequence[Path]) -> bool:
    """The run or sweep folder `folders[0]` if it holds nothing but log and lock files, then every folder of
    `folders` left empty, deepest first; whether the first is gone. Nothing is removed while another process
    holds the folder's lock (a run started in the same second under the same name shares it), and a folder
    holding anything else stays whole, with the log that says why the command was refused."""
    if not folders:
        return False
    run_dir = Path(folders[0])
    if run_dir.is_dir():
        with exclusive_lock(run_dir / LOCK_FILE) as held:
            entries = list(run_dir.iterdir())
            if not held or any(entry.suffix != ".log" and entry.name != LOCK_FILE for entry in entries):
                return False
            for entry in entries:
                entry.unlink(missing_ok=True)
    for folder in folders:
        try:
            Path(folder).rmdir()
        except OSError:
            break
    return not run_dir.exists()


def _record(write, *args, **kwargs) -> None:
    """A record that cannot be written (a full disk, an unwritable folder) must not hide the run's own error."""
    try:
        write(*args, **kwargs)
    except OSError:
        log.exception("could not record the run's failure in metrics.json")


# How much memory a training step or an evaluation takes, not what it computes (the same steps, samples and
# metrics): a run or sweep job that ran out of memory goes on with other values.
MEMORY_SETTINGS = ("trainer.grad_accum_steps", "data.eval_batch_size")
# What a run resumed by hand may change: besides those, a longer budget, which continues on the longer schedule,
# and how often it evaluates.
RESUMABLE_CHANGES = ("trainer.train_samples", "trainer.epochs", "trainer.eval_every_epochs", *MEMORY_SETTINGS)

# Null in the composed config and filled in from the dataset when the run starts.
FILLED_AT_START = ("data.num_classes", "model.num_classes")


def holds_foreign_record(run_dir: Path) -> bool:
    """The folder's metrics.json is no run's record (an evaluation's): a mapping without a run's status. A file
    cut short, or of another type, is not (a run's record a crash left unreadable)."""
    record = read_json(Path(run_dir) / METRICS_FILE, {})
    return bool(record) and record.get("status") not in ("completed", "failed", "interrupted")


def completed_record(run_dir: Path) -> Optional[dict]:
    """The folder's metrics.json if it records a completed run."""
    record = read_json(Path(run_dir) / METRICS_FILE, {})
    return record if record.get("status") == "completed" else None


def set_aside_completed_record(run_dir: Path) -> None:
    """A finished run extended to a larger budget: its metrics.json moves to metrics.completed-<samples>.json,
    so that while the extension trains the folder does not say completed with the shorter run's numbers (and an
    extension that fails or is stopped can say so); the moved file keeps them."""
    record = completed_record(run_dir)
    if record is not None:
        kept = Path(run_dir) / f"metrics.completed-{record.get('samples_seen')}.json"
        (Path(run_dir) / METRICS_FILE).replace(kept)
        log.info("extending the completed run: its results are kept in %s", kept)


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


def first_differences(differences: list) -> str:
    """config_differences' first three lines, and how many more: what a message about two configs shows."""
    return "; ".join(differences[:3]) + (f"; and {len(differences) - 3} more" if len(differences) > 3 else "")


def check_same_config(run_dir: Path, current: dict, may_change: tuple = (), sweep_job: bool = False) -> None:
    """Refuse to skip or resume a folder whose config.yaml describes another experiment, but for the settings
    `may_change` names: a single run resumed by hand its budget and memory settings, a sweep job (its folder
    chosen by its position in the sweep) its memory settings only."""
    saved = OmegaConf.to_container(OmegaConf.load(Path(run_dir) / CONFIG_FILE))
    differences = [d for d in config_differences(saved, current) if d.split(":")[0] not in may_change]
    if differences:
        shown = first_differences(differences)
        changeable = f" (only {' or '.join(may_change)} may change)" if may_change else ""
        advice = (f"resume a sweep with the command that started it{changeable}, or choose a new hydra.sweep.dir "
                  f"(sweep_dir= in vision_exp.sweep)" if sweep_job else
                  f"resume it with its own settings{changeable}, or choose another hydra.run.dir")
        raise ConfigError(f"{run_dir} holds a run of another configuration ({shown}): {advice}")


def write_overrides(run_dir: Path, overrides: list) -> None:
    """The command-line overrides of a run or sweep job: a sweep's summary reads its jobs' configurations from them."""
    write_text_atomic(Path(run_dir) / OVERRIDES_FILE, json.dumps(list(overrides)))
