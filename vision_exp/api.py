"""Notebook API: `vision_exp.run([...overrides])`, `vision_exp.sweep([[...], [...]])`,
`vision_exp.evaluate(ckpt, [...])` and `vision_exp.predict(ckpt, images, [...])`.

`@hydra.main` cannot run inside a notebook, so these compose the same conf/train.yaml (evaluate.yaml,
predict.yaml) with Hydra's compose API and call the same code as the command line: a run here and
`python -m vision_exp.train <overrides>` produce the same files, train.log included.
"""
from __future__ import annotations

import inspect
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

from omegaconf import OmegaConf, open_dict

from vision_exp.conf_dir import CONF_DIR, group_choices, overridden_key
from vision_exp.debug import NotMemorised, apply_debug_last, debug_verdict

log = logging.getLogger(__name__)


def compose_config(overrides: Iterable[str] = (), with_hydra: bool = False):
    """The config `python -m vision_exp.train <overrides>` would run (with the `hydra` node if asked)."""
    from hydra import compose, initialize_config_dir

    from vision_exp.sweeps.launch import register_resolvers

    register_resolvers()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name="train"):
        return compose(config_name="train", overrides=list(overrides), return_hydra_config=with_hydra)


LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's job-logging format


@contextmanager
def _log_file(path: Path, mode: str = "a"):
    """vision_exp's INFO lines also go to `path` while the block runs, as Hydra's job logging does for the CLI
    (appending to a run's train.log, which a resumed run continues; evaluate.yaml and predict.yaml ask for "w")."""
    logger = logging.getLogger("vision_exp")
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode=mode)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(level)


def _show_logs() -> None:
    """Outside Hydra nobody configures logging: print vision_exp's INFO lines in the notebook."""
    logger = logging.getLogger("vision_exp")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _override_list(overrides, argument: str = "overrides") -> list:
    """`overrides` as a list of strings: a string alone would be read character by character, as overrides
    's', 'e', ... that Hydra cannot parse."""
    from vision_exp.errors import ConfigError

    if isinstance(overrides, (str, bytes)) or not isinstance(overrides, Iterable):
        raise ConfigError(f"{argument} must be a list of overrides, e.g. ['seed=1']; got {overrides!r}")
    overrides = list(overrides)
    wrong = next((item for item in overrides if not isinstance(item, str)), None)
    if wrong is not None:
        raise ConfigError(f"{argument} must be a list of strings such as 'seed=1'; it holds {wrong!r}")
    return overrides


def run(overrides: Iterable[str] = (), run_dir: Optional[str] = None) -> dict:
    """Train one run; returns the content of its metrics.json (with `run_dir` added).

    The run folder is the one the command line would use (hydra.run.dir, by default
    outputs/<name>/<date>_<time>), unless `run_dir` is given. A run that fails or is interrupted
    raises, after recording why in its metrics.json as the command line does; one refused before it
    started (a bad value, no dataset) leaves no folder that it created. With debug=overfit, a run that did not
    memorise its batch raises NotMemorised, its completed metrics.json kept.
    """
    from vision_exp.errors import Interrupted
    from vision_exp.reporting.files import check_writable, missing_folders
    from vision_exp.reporting.records import recorded_failures, refuse_sweep_folder

    overrides = _override_list(overrides)
    cfg = _compose_run(overrides)
    folder, choices = Path(run_dir or cfg.hydra.run.dir), group_choices(cfg.hydra.runtime.choices)
    refuse_sweep_folder(folder)  # before its train.log and lock, as on the command line
    made = missing_folders(folder)
    check_writable(folder)  # a file there, or a read-only place: one ConfigError, as on the command line
    try:
        with recorded_failures(folder, made):
            result = _train(cfg, folder, overrides, choices)
    except Interrupted as exc:
        if exc.completed:
            raise
        again = [override for override in overrides if not override.startswith("trainer.resume=")]
        raise Interrupted(f"{exc}. To continue: vision_exp.run({again + ['trainer.resume=auto']!r}, "
                          f"run_dir={str(folder)!r})", exc.signum) from None
    with _log_file(folder / "train.log"):  # debug=overfit's verdict ends the run's log, as on the command line
        _log_debug_verdict(choices.get("debug"), result)
    return result


def _log_debug_verdict(choice: str, result: dict) -> None:
    try:
        verdict = debug_verdict(choice, result)
    except NotMemorised as exc:
        log.error("%s", exc)
        raise
    if verdict:
        log.info("%s", verdict)


def _compose_run(overrides: list):
    """The config of one run; an override Hydra cannot compose (`model=resnet_v9`, `trainer.epochz=3`) is a
    ConfigError with Hydra's message, and a sweep preset (its hydra.sweeper.params would be ignored here) is refused."""
    from hydra.errors import HydraException

    from vision_exp.errors import ConfigError

    try:
        cfg = compose_config(overrides, with_hydra=True)
    except HydraException as exc:
        raise _composition_error(exc, overrides) from None
    apply_debug_last(cfg, cfg.hydra.runtime.choices.get("debug"), overrides)
    swept = cfg.hydra.sweeper.get("params")
    if swept:
        raise ConfigError(f"{cfg.name} is a sweep preset ({', '.join(swept)}): give vision_exp.sweep its runs' overrides "
                          f"instead (e.g. [['model=resnet_v1'], ['model=resnet_v2']]), or run the preset on the command "
                          f"line: python -m vision_exp.train -m experiment={cfg.name}")
    return cfg


def _composition_error(exc: Exception, overrides: list):
    """Hydra's message as a ConfigError, without the search path it lists after it; a key the config lacks
    with the one meant, as the command line says it."""
    from vision_exp.config_types import misspelt_override
    from vision_exp.errors import ConfigError

    keys = [overridden_key(override) for override in overrides]
    return misspelt_override(exc, keys) or ConfigError(str(exc).split("\nConfig search path")[0].strip())


def _train(cfg, folder: Path, overrides: list, choices: dict) -> dict:
    from vision_exp.experiment import run_experiment

    with open_dict(cfg):
        cfg.pop("hydra", None)
    _show_logs()
    with _log_file(folder / "train.log"):
        result = run_experiment(cfg, folder, overrides, choices)
    return {**result, "run_dir": str(folder)}


def sweep(runs: Iterable[Iterable[str]], common: Iterable[str] = (), sweep_dir: Optional[str] = None,
          baseline: Optional[str] = None):
    """Train one run per override list (plus `common`) into one sweep folder, like a multirun, and
    summarize it; returns the SweepSummary (`.configurations`, `.baseline`, `.sweep_dir`), whose
    results.md / results.csv / plots are in the folder.

    Every list is composed and checked first, so an override Hydra cannot compose, or a value that cannot
    work in some run, stops the sweep before any run, as on the command line (one ConfigError naming the
    runs). A run that fails (bad input, a bug, out of memory) is recorded in its
    metrics.json and the others go on; an interrupted run (Ctrl-C, SIGTERM) is recorded and stops the
    sweep. Calling it again with the same runs and folder skips the completed runs and resumes the
    others; a call whose runs differ from those the folder holds (other values, another order) is refused
    before any run, the folder kept as it was.
    """
    from vision_exp.errors import ConfigError, Interrupted, UserError
    from vision_exp.reporting.files import check_writable, write_text_atomic
    from vision_exp.reporting.records import before_start, recorded_failures
    from vision_exp.sweeps import summarize_sweep
    from vision_exp.sweeps.summary import NOTEBOOK_CALL, SweepError, check_baseline
    from vision_exp.sweeps.jobs import prepare_job
    from vision_exp.sweeps.precheck import failing_jobs, folder_conflicts, refusals

    log = logging.getLogger("vision_exp.api")

    runs = runs if isinstance(runs, (str, bytes)) or not isinstance(runs, Iterable) else list(runs)
    if not isinstance(runs, list) or any(isinstance(r, (str, bytes)) for r in runs):  # ['seed=0', 'seed=1'] too
        raise ConfigError(f"runs must be a list of override lists, e.g. [['seed=0'], ['seed=1']]; got {runs!r}")
    runs = [_override_list(r, f"run {number}") for number, r in enumerate(runs)]
    common = _override_list(common, "common")
    if baseline is not None and not isinstance(baseline, str):
        raise ConfigError(f"baseline names one configuration by its overrides in one string, e.g. 'model=resnet_v1'; "
                          f"got {baseline!r}")
    jobs = [common + r for r in runs]
    if not jobs:
        raise ConfigError("sweep() needs at least one run: a list of override lists, e.g. [['seed=0'], ['seed=1']]")
    configs = []
    for number, overrides in enumerate(jobs):
        try:
            configs.append(_compose_run(overrides))
        except ConfigError as exc:
            raise ConfigError(f"run {number} ({' '.join(runs[number])}): {exc}") from None
    folder = Path(sweep_dir or configs[0].hydra.sweep.dir)
    choices = [group_choices(cfg.hydra.runtime.choices) for cfg in configs]
    for cfg in configs:  # the runs' configs, as run_experiment takes them
        with open_dict(cfg):
            del cfg["hydra"]
    failing = failing_jobs(jobs, configs.__getitem__)
    failing.update(folder_conflicts(jobs, configs.__getitem__, folder))
    if failing:
        raise ConfigError("\n".join(line.removeprefix("error: ") for line in refusals(jobs, failing)))
    if baseline:
        try:
            check_baseline(jobs, baseline)
        except SweepError as exc:
            raise ConfigError(str(exc)) from None
    check_writable(folder)
    taken = next((number for number in range(len(jobs)) if (folder / str(number)).exists()
                  and not (folder / str(number)).is_dir()), None)
    if taken is not None:  # found when the run's turn came, after the runs before it had trained
        raise ConfigError(f"{folder / str(taken)} is a file, where run {taken}'s folder goes: move it away, or choose "
                          f"another sweep_dir")
    # What marks a sweep folder; the call is kept where Hydra keeps a command line, for the summary and the report.
    marker = configs[0].copy()
    with open_dict(marker):
        marker[NOTEBOOK_CALL] = {"runs": runs, "common": common}
    write_text_atomic(folder / "multirun.yaml", OmegaConf.to_yaml(marker))
    _show_logs()
    for number, (overrides, cfg, groups) in enumerate(zip(jobs, configs, choices)):
        job_dir = folder / str(number)
        job_dir.mkdir(parents=True, exist_ok=True)
        try:
            with recorded_failures(job_dir):
                with before_start():
                    finished = prepare_job(cfg, job_dir, overrides)
                if finished is None:
                    _train(cfg, job_dir, overrides, groups)
                else:
                    log.info("run %d skipped: already completed (%s)", number, job_dir / "metrics.json")
        except UserError as exc:
            log.error("run %d failed: %s", number, exc)
        except Interrupted as exc:
            raise Interrupted(f"{exc}. The sweep stops; the same vision_exp.sweep call with sweep_dir={str(folder)!r} "
                              f"resumes it", exc.signum, exc.completed) from None
        except Exception:
            log.exception("run %d failed; the sweep goes on", number)
    return summarize_sweep(folder, baseline)


PathLike = Union[str, Path]


def evaluate(ckpt: PathLike, overrides: Iterable[str] = (), out_dir: Optional[PathLike] = None) -> dict:
    """`python -m vision_exp.evaluate ckpt=<ckpt> <overrides>` (e.g. ["data=folder", "data.root=..."]) in a
    notebook: the same checks, files and folder (<checkpoint>-eval-<data>/ beside it, unless `out_dir`).
    Returns its metrics.json content with `out_dir` added. Bad input raises one UserError (ConfigError,
    DataError, CheckpointError) and leaves no folder that the call created."""
    from vision_exp.evaluate import evaluate_checkpoint

    summary, folder = _command("evaluate", evaluate_checkpoint, {"ckpt": ckpt}, overrides, out_dir)
    return {**summary, "out_dir": str(folder)}


def predict(ckpt: PathLike, images: PathLike, overrides: Iterable[str] = (), out_dir: Optional[PathLike] = None) -> dict:
    """`python -m vision_exp.predict ckpt=<ckpt> images=<images> <overrides>` (e.g. ["topk=3"]) in a notebook:
    the same checks and predictions.csv in the same folder (<checkpoint>-predictions/, unless `out_dir`).
    Returns {"predictions": the CSV's rows as dicts (image, top1.., p1..; unrounded), "csv": its path,
    "out_dir"}; `pandas.DataFrame(result["predictions"])` is the table. Bad input as for `evaluate`."""
    from vision_exp.predict import PREDICTIONS_FILE, predict_images

    rows, folder = _command("predict", predict_images, {"ckpt": ckpt, "images": images}, overrides, out_dir)
    return {"predictions": rows, "csv": str(folder / PREDICTIONS_FILE), "out_dir": str(folder)}


def _command(name: str, work: Callable, given: dict, overrides: Iterable[str], out_dir: Optional[PathLike]):
    """(work(cfg, folder), folder) for conf/<name>.yaml, with <name>.log in the folder as Hydra writes it for the
    command line. A refusal (a UserError) or Ctrl-C removes the folders the call made for it, as `cli.user_errors` does."""
    from vision_exp.cli import CheckOutputFolder
    from vision_exp.errors import UserError
    from vision_exp.reporting.records import remove_unused_folders

    cfg = _compose_command(name, given, _override_list(overrides), out_dir)
    folder = Path(cfg.hydra.run.dir)
    made = CheckOutputFolder.folders_made_for(folder)
    with open_dict(cfg):
        del cfg["hydra"]  # what @hydra.main hands the command line's main
    _show_logs()
    try:
        with _log_file(folder / f"{name}.log", mode="w"):
            try:
                return work(cfg, folder), folder
            except UserError as exc:  # as the command line's log, for a folder that was there before and stays
                logging.getLogger(f"vision_exp.{name}").error("%s", exc)
                raise
    except (UserError, KeyboardInterrupt):
        remove_unused_folders(made)
        raise


def _compose_command(name: str, given: dict, overrides: list, out_dir: Optional[PathLike]):
    """conf/<name>.yaml composed with `given` (the values the call takes as arguments) and `overrides`, then
    checked by the command line's own Hydra callbacks, in its order (known settings, mandatory values, the
    checkpoint, the output folder): what they refuse is a ConfigError here, one line there.

    The arguments are set after composing, not as `ckpt=<path>` overrides, so that a path with a comma or a
    bracket is a path, not Hydra syntax."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from hydra.utils import instantiate

    from vision_exp.cli import Refusal
    from vision_exp.errors import ConfigError

    for override in overrides:
        key = overridden_key(override)
        if key in given:
            raise ConfigError(f"{override}: {key} is {name}()'s argument, not an override")
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name=name):
            cfg = compose(config_name=name, overrides=overrides, return_hydra_config=True)
    except HydraException as exc:
        raise _composition_error(exc, overrides) from None
    for key, value in given.items():
        cfg[key] = str(value)
    if out_dir is not None:
        cfg.hydra.run.dir = str(out_dir)
    for callback in map(instantiate, cfg.hydra.callbacks.values()):
        if isinstance(callback, Refusal):
            callback.check(cfg)  # a ConfigError, which the command line prints in one line
    return cfg


def make_module_callable(name: str, function: str) -> None:
    """Calling module `name` (vision_exp.evaluate, vision_exp.predict) calls this module's `function`.

    Importing a submodule sets the package's attribute of that name to it, so a function exported as
    `vision_exp.evaluate` would turn into the module once anything imported the command line's code (the call
    itself does). A callable module is both: `vision_exp.evaluate(ckpt)` and `vision_exp.evaluate.main`."""
    module = sys.modules[name]

    class NotebookCall(type(module)):
        def __call__(self, *args, **kwargs):
            return globals()[function](*args, **kwargs)

    module.__class__ = NotebookCall
    module.__signature__ = inspect.signature(globals()[function])  # what a notebook's `?` shows for the call
