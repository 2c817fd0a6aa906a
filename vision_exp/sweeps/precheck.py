"""What a sweep checks before its first job (conf/hydra/default.yaml `callbacks:`): the launcher can run
here, and every job's values can work.

A job's values are checked when that job starts, so a sweep whose last job had `model.patch_size=7`
on 64-px images would train every job before it, for hours, then fail there. Hydra's basic sweeper
composes each job's config before launching (an unknown key fails at once) but checks no value.
CheckSweepJobs expands the sweep as the basic sweeper will, composes each distinct job (seeds
aside: they compose alike) and runs the checks a run makes before it reads any data; a bad value
stops the sweep with one line per mistake, before any job starts.
"""
from __future__ import annotations

import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, NoReturn

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import InterpolationResolutionError

from vision_exp.conf_dir import overridden_key
from vision_exp.config_types import misspelt_override
from vision_exp.debug import apply_debug_last
from vision_exp.errors import UserError
from vision_exp.reporting.records import MEMORY_SETTINGS, check_same_config, has_earlier_attempt, remove_unused_folders

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def job_overrides(sweeper_params, arguments: list, config_loader=None) -> list[list[str]]:
    """The override lists of the jobs Hydra's basic sweeper launches for these command-line
    `arguments` and the preset's `hydra.sweeper.params`, in its order."""
    parser = OverridesParser.create(config_loader=config_loader)
    params = [f"{key}={value}" for key, value in (sweeper_params or {}).items()]
    return BasicSweeper.split_arguments(parser.parse_overrides(params + list(arguments)), max_batch_size=None)[0]


def seedless(job: list[str]) -> tuple:
    """A job's configuration: its overrides but the seed."""
    return tuple(o for o in job if overridden_key(o) != "seed")


def jobs_by_configuration(jobs: list[list[str]]) -> dict[tuple, list[int]]:
    """The job numbers of each configuration: jobs that differ only by their seed compose alike."""
    numbers: dict[tuple, list[int]] = {}
    for number, job in enumerate(jobs):
        numbers.setdefault(seedless(job), []).append(number)
    return numbers


def failing_jobs(jobs: list[list[str]], job_config: Callable[[int], DictConfig]) -> dict[str, list[int]]:
    """{why a run would stop before training: every job it stops}, checking the first job of each
    configuration (`job_config(number)`: its config without the hydra section), and every job's seed. A check
    that fails unexpectedly is a reason too: raised here, Hydra would only warn and let every job start."""
    from vision_exp.experiment import check_buildable
    from vision_exp.settings import check_seed

    failing: dict[str, list[int]] = {}  # the same mistake in many jobs is one line
    for numbers in jobs_by_configuration(jobs).values():
        try:
            check_buildable(job_config(numbers[0]), jobs[numbers[0]])
        except UserError as exc:
            failing.setdefault(str(exc), []).extend(numbers)
            continue
        except InterpolationResolutionError:  # a value only the job's own start resolves (its output folder)
            continue
        except Exception as exc:
            misspelt = misspelt_override(exc, [overridden_key(override) for override in jobs[numbers[0]]])
            failing.setdefault(str(misspelt or f"{type(exc).__name__}: {exc}"), []).extend(numbers)
            continue
        parser = OverridesParser.create()
        for number in numbers[1:]:  # composed alike but for the seed (as Hydra parses it: seed=abc is 'abc')
            for seed in (parser.parse_override(o).value() for o in jobs[number] if overridden_key(o) == "seed"):
                try:
                    check_seed(seed)
                except UserError as exc:
                    failing.setdefault(str(exc), []).append(number)
    return failing


def folder_conflicts(jobs: list[list[str]], job_config: Callable[[int], DictConfig], sweep_dir: Path) -> dict[str, list[int]]:
    """{why: [job]} for each job whose folder (`sweep_dir/<job number>`) holds a run of another configuration: a
    rerun whose swept values were changed or reordered. Refused before any job starts, so the folder's results
    and its multirun.yaml stay as they were, rather than each such job being refused when its turn comes."""
    conflicts: dict[str, list[int]] = {}
    for number in range(len(jobs)):
        folder = sweep_dir / str(number)
        if not has_earlier_attempt(folder):
            continue
        try:
            check_same_config(folder, OmegaConf.to_container(job_config(number), resolve=True), MEMORY_SETTINGS,
                              sweep_job=True)
        except UserError as exc:
            conflicts[str(exc)] = [number]
        except InterpolationResolutionError:  # compared when the job starts (sweeps/jobs.py)
            continue
    return conflicts


def sweep_job_config(config: DictConfig, overrides: list[str], config_loader, number: int = 0) -> DictConfig:
    """Job `number`'s config as the basic sweeper's launcher composes it, without its hydra section, which is
    made Hydra's current config, as the launcher makes it, so that `${hydra:job.num}` resolves as in the job
    (`hydra_config_kept` puts the one before back)."""
    job_config = config_loader.load_sweep_config(config, list(overrides))
    with open_dict(job_config):
        job_config.hydra.job.id = job_config.hydra.job.num = number
    apply_debug_last(job_config, job_config.hydra.runtime.choices.get("debug"), overrides, job_config.hydra.overrides.hydra)
    HydraConfig.instance().set_config(job_config)
    with open_dict(job_config):
        del job_config["hydra"]
    return job_config


@contextmanager
def hydra_config_kept():
    """Hydra's current config as it was before the block, whichever jobs' configs the block set."""
    previous = HydraConfig.instance().cfg
    try:
        yield
    finally:
        HydraConfig.instance().cfg = previous


def refuse_sweep(config: DictConfig, *lines: str) -> NoReturn:
    """Stop a sweep before its first job: the lines on stderr, status 2, and the folders this launch made
    for the sweep (CheckOutputFolder, vision_exp/cli.py, notes them) removed if still empty."""
    from vision_exp.cli import CheckOutputFolder

    for line in lines:
        print(line, file=sys.stderr)
    remove_unused_folders(CheckOutputFolder.folders_made_for(Path(config.hydra.sweep.dir)))
    sys.exit(2)


class CheckLauncher(Callback):
    """`hydra/launcher=slurm` off a SLURM cluster is one line, before submitit's traceback ("Could not detect srun")."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if config.hydra.launcher._target_.endswith("SlurmLauncher") and shutil.which("srun") is None:
            refuse_sweep(config, "error: hydra/launcher=slurm submits to a SLURM cluster, and srun is not on this "
                         "machine's PATH: run the sweep from the cluster's login node, or use "
                         "hydra/launcher=submitit_local or hydra/launcher=joblib here")


class CheckSweepJobs(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if config.hydra.sweeper._target_ != BASIC_SWEEPER:
            return  # another sweeper chooses its jobs as it goes
        loader = GlobalHydra.instance().config_loader()
        arguments = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
        jobs = job_overrides(config.hydra.sweeper.get("params"), arguments, loader)
        if not jobs:  # it would rewrite the sweep folder's multirun.yaml and summary for jobs that ran with others
            refuse_sweep(config, "error: the sweep has no jobs: a swept list of values is empty (e.g. seed=range(0)); "
                         "give each swept setting one value or more")

        def job_config(number: int) -> DictConfig:
            return sweep_job_config(config, jobs[number], loader, number)

        with hydra_config_kept():
            failing = failing_jobs(jobs, job_config)
            if OmegaConf.to_container(config.hydra.sweep, resolve=False)["subdir"] == "${hydra.job.num}":
                failing.update(folder_conflicts(jobs, job_config, Path(config.hydra.sweep.dir)))
        if failing:
            refuse_sweep(config, *refusals(jobs, failing))


def spans(numbers: list[int]) -> str:
    """Sorted job numbers as runs: [0, 1, 2, 5, 7, 8] -> "0-2, 5, 7-8"."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def refusals(jobs: list[list[str]], failing: dict[str, list[int]]) -> list[str]:
    """One line per mistake, naming the job and its overrides, or every job it is in."""
    lines = []
    for problem, numbers in failing.items():
        affected = sorted(numbers)
        if len(affected) == 1:
            lines.append(f"error: job {affected[0]} ({' '.join(jobs[affected[0]])}): {problem}")
        else:
            lines.append(f"error: {problem} ({'every job' if len(affected) == len(jobs) else 'jobs ' + spans(affected)})")
    return lines + [f"none of the sweep's {len(jobs)} jobs was started: fix the values above and run it again"]
