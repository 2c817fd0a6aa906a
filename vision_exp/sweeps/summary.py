"""A sweep folder read back as tables: a row per job (results.csv), a row per configuration (results.md).

A job is a folder under the sweep holding overrides.json (its task overrides, written when it
starts) and, once it ends, metrics.json (status completed with its metrics, or failed with the
error). A configuration is a job's overrides without `seed`: its jobs are repeats over seeds.
Only what the jobs wrote is read, so a summary can be rebuilt at any time, even mid-sweep.

Several sweep folders (a sweep and the one that added seeds to it) summarize as one (`load_sweeps`): their
jobs are pooled and grouped into configurations exactly as within one sweep, the results written to a folder
of their own.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from vision_exp.errors import UserError
from vision_exp.reporting.files import read_json, write_text_atomic
from vision_exp.reporting.records import (CONFIG_FILE, DATASET_FOLDER, INCIDENTAL_SETTINGS, MEMORY_SETTINGS, METRICS_FILE,
                                         OVERRIDES_FILE, SWEEP_FILE, config_differences, first_differences, identity_value)
from vision_exp.sweeps.jobs import REFUSED_FILE
from vision_exp.sweeps.statistics import Difference, is_number, mean, paired_difference, sample_std, welch_difference

NOTEBOOK_CALL = "vision_exp_sweep"  # where multirun.yaml of a vision_exp.sweep() folder records the call
RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
CURVES_PNG = "val_acc_curves.png"
# Hydra's reader of command-line overrides: a requested baseline matches the jobs' overrides by the values it reads.
HYDRA_OVERRIDES = OverridesParser.create()
# The option that means "no change" in a group (enhancement=none): the natural baseline of its axis.
NO_CHANGE = "none"
# Overrides that vary within one configuration: its seeds, and the platform (env=kaggle|colab|local sets only paths and
# data.num_workers).
NOT_CONFIGURATION = ("seed", "env")
# What the metrics a sweep is usually compared on mean, for results.md's "How to read it".
METRIC_MEANINGS = {
    "val_acc": "the top-1 accuracy (%) on the validation set after the last epoch",
    "best_val_acc": "the best epoch's validation top-1 accuracy (%), picked on the validation set itself and so "
                    "optimistic",
    "val_acc5": "the top-5 accuracy (%) on the validation set after the last epoch",
    "train_acc": "the top-1 accuracy (%) of an eval-mode pass over a fixed subset of training images after the last "
                 "epoch, the number to set against val_acc",
    "train_running_acc": "the accuracy (%) averaged over the last epoch's steps, in train mode on augmented (and mixed) "
                         "inputs while the weights changed: not comparable with val_acc",
    "val_loss": "the cross-entropy on the validation set after the last epoch",
    "train_loss": "the cross-entropy of the eval-mode pass over training images after the last epoch",
}

# metrics.json keys in the order a reader looks for them; any others follow alphabetically.
METRIC_ORDER = ("val_acc", "best_val_acc", "train_acc", "train_running_acc", "val_acc5", "val_loss", "train_loss",
                "train_running_loss", "samples_seen", "epochs", "steps", "best_epoch", "wall_time_s",
                "train_images_per_s", "params", "device")
NOT_METRICS = ("status", "error", "traceback", "stopped_at", "failed_at")  # failed_at: stopped_at in older run folders


class SweepError(UserError):
    """A folder that is not a sweep, or a request the sweep cannot answer."""


class EmptySweep(SweepError):
    """A sweep folder whose jobs have not started (Hydra writes multirun.yaml first), or never will."""


class MetricMissing(SweepError):
    """No completed job of the sweep recorded the metric asked for as a number; `known` are the ones they did."""

    def __init__(self, metric: str, known):
        super().__init__(f"metric {metric!r} has no numeric value in the jobs' {METRICS_FILE}; choose one of "
                         f"{', '.join(known)}")
        self.known = tuple(known)


# The configuration of jobs without a readable overrides.json (a job that failed before writing it).
UNKNOWN_CONFIGURATION = "(unknown: no overrides.json)"


def split_override(override: str) -> tuple:
    key, _, value = override.partition("=")
    return key, value


def display_key(key: str) -> str:
    """`+experiment@_global_` -> `experiment`: the group a reader knows."""
    return key.lstrip("+~").removesuffix("@_global_")


@dataclass
class Job:
    name: str
    run_dir: Path
    overrides: Optional[list]  # None: unknown (no readable overrides.json)
    metrics: dict
    refusal: Optional[str] = None  # why the command that ran it last refused it (its folder holds another configuration)

    @property
    def status(self) -> str:
        """completed, failed, interrupted (SIGTERM/SIGINT, resumable), unfinished (no metrics.json, or one without a
        run's record: running, or killed), or refused (the command that ran last asked for another configuration
        than the folder's)."""
        return "refused" if self.refusal else self.metrics.get("status", "unfinished")

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def seed(self) -> Optional[str]:
        """The seed override, else the seed in the job's config.yaml."""
        values = [value for key, value in map(split_override, self.overrides or []) if display_key(key) == "seed"]
        if values:
            return values[-1]
        try:
            config = OmegaConf.load(self.run_dir / CONFIG_FILE)
        except (OSError, yaml.YAMLError):  # none, or cut short or edited into something else: the seed is unknown
            return None
        return str(config.get("seed")) if isinstance(config, DictConfig) else None

    @property
    def config_overrides(self) -> tuple:
        """The overrides that define its configuration: all but the seed and where or how it ran (env, trainer.device,
        paths, memory settings, ...: a resumed job may change those), each setting's last (as Hydra applies them: a
        run's own value over `common`'s in vision_exp.sweep); data.root by its folder's name, the dataset."""
        last = {}
        for override in self.overrides or []:
            key, value = split_override(override)
            setting = display_key(key)
            if setting in NOT_CONFIGURATION or setting.startswith(INCIDENTAL_SETTINGS + MEMORY_SETTINGS):
                continue
            if setting == DATASET_FOLDER and isinstance(parsed_value(override), str):  # a quoted path: its folder's name
                value = identity_value(setting, parsed_value(override))
            last[setting] = f"{key.lstrip('+')}={value}"
        return tuple(last.values())

    @property
    def error(self) -> str:
        if self.refusal:
            return self.refusal
        if self.status == "unfinished":
            if (self.run_dir / METRICS_FILE).is_file():
                return f"{METRICS_FILE} holds no run's record (cut short, or written by something else): outcome unknown"
            return "no metrics.json: the job did not finish (interrupted, or still running)"
        return str(self.metrics.get("error") or "")

    def value(self, metric: str) -> Optional[float]:
        value = self.metrics.get(metric)
        return float(value) if self.completed and is_number(value) else None


@dataclass
class Configuration:
    label: str
    overrides: tuple
    jobs: list = field(default_factory=list)

    @property
    def completed(self) -> list:
        return [job for job in self.jobs if job.completed]

    def values(self, metric: str) -> list:
        return [v for v in (job.value(metric) for job in self.jobs) if v is not None]

    def by_seed(self, metric: str) -> Optional[dict]:
        """{seed: value} of the jobs with the metric; None when a seed is unknown or repeats (no pairs to form)."""
        pairs = [(job.seed, value) for job, value in ((job, job.value(metric)) for job in self.jobs) if value is not None]
        seeds = [seed for seed, _ in pairs]
        return dict(pairs) if None not in seeds and len(set(seeds)) == len(seeds) else None

    def mean(self, metric: str) -> Optional[float]:
        values = self.values(metric)
        return mean(values) if values else None

    def std(self, metric: str) -> Optional[float]:
        return sample_std(self.values(metric))


@dataclass
class SweepSource:
    """A sweep folder read into a summary: its name, the command that ran it and its jobs."""

    folder: Path
    name: str
    command: Optional[str]
    label: str  # what names it among the summary's sweeps: its folder's name, or as many path parts as tell it apart
    jobs: list = field(default_factory=list)


@dataclass
class SweepSummary:
    """Everything results.csv, results.md and the plots show, computed from the folders alone.

    `sweep_dir` is where the results go: the sweep's own folder, or the output folder of a summary of several
    sweeps (`sources`, one per sweep folder, in the order given)."""

    sweep_dir: Path
    name: str
    command: Optional[str]  # of several sweeps: their commands, one a line
    jobs: list
    configurations: list
    axes: dict
    common: list
    baseline: Configuration
    baseline_reason: str
    metric: str
    sources: list = field(default_factory=list)
    set_apart: list = field(default_factory=list)  # axes only because the sweeps differ in them (each sweep has one value)
    cautions: list = field(default_factory=list)  # configurations whose jobs ran with other settings in other sweeps

    @property
    def merged(self) -> bool:
        """A summary of several sweep folders."""
        return len(self.sources) > 1

    @property
    def compares(self) -> bool:
        """Whether there is a Δ to give: a sweep of seeds alone (one configuration) compares nothing, so nothing
        is marked as its baseline."""
        return len(self.configurations) > 1

    def is_marked_baseline(self, configuration: Configuration) -> bool:
        """The configuration the others are compared with."""
        return self.compares and configuration is self.baseline

    @property
    def baseline_sentence(self) -> str:
        if not self.compares:
            return "One configuration: nothing to compare it with; its seeds give the mean ± std."
        return f"Baseline: **{self.baseline.label}** ({self.baseline_reason})."

    @property
    def unsuccessful(self) -> list:
        return [job for job in self.jobs if not job.completed]

    @property
    def completed_count(self) -> int:
        return len(self.jobs) - len(self.unsuccessful)

    def difference(self, configuration: Configuration) -> Optional[Difference]:
        """Configuration minus baseline on the metric, with a 95% interval: paired seed by seed when both have
        the metric for the same seeds (the design of a sweep over seed=...), else Welch's."""
        if configuration is self.baseline:
            return None
        pairs, reference_pairs = configuration.by_seed(self.metric), self.baseline.by_seed(self.metric)
        if pairs and reference_pairs and pairs.keys() == reference_pairs.keys():
            seeds = sorted(pairs)
            return paired_difference([pairs[s] for s in seeds], [reference_pairs[s] for s in seeds])
        values, reference = configuration.values(self.metric), self.baseline.values(self.metric)
        return welch_difference(values, reference) if values and reference else None

    def metric_columns(self) -> list:
        keys = {key for job in self.jobs for key in job.metrics if key not in NOT_METRICS}
        return [k for k in METRIC_ORDER if k in keys] + sorted(keys - set(METRIC_ORDER))


# ------------------------------------------------------------------------------------ reading
def job_folders(sweep_dir: Path) -> list:
    """Job folders in job order (Hydra names them by job number): those with overrides.json, and numbered ones
    with only metrics.json (a job that failed before writing it); another run kept in the folder is no job."""
    folders = [p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
               and ((p / OVERRIDES_FILE).is_file() or (p.name.isdigit() and (p / METRICS_FILE).is_file()))]
    return sorted(folders, key=lambda p: (0, int(p.name), "") if p.name.isdigit() else (1, 0, p.name))


def read_job(folder: Path, name: Optional[str] = None) -> Job:
    """A job folder's files; one that is not what the run writes (cut short, edited) counts as missing."""
    overrides = read_json(folder / OVERRIDES_FILE)
    known = isinstance(overrides, list) and all(isinstance(override, str) for override in overrides)
    refusal = read_json(folder / REFUSED_FILE, {}).get("error")
    return Job(name or folder.name, folder, overrides if known else None, read_json(folder / METRICS_FILE, {}),
               None if refusal is None else str(refusal))


def sweep_command(sweep: dict) -> Optional[str]:
    """The command line that started the sweep, from what Hydra saved in multirun.yaml, or the notebook call
    (vision_exp.sweep records its runs and common overrides there)."""
    call = sweep.get(NOTEBOOK_CALL)
    if call:
        return f"vision_exp.sweep({call.get('runs')!r}, common={call.get('common')!r})"
    overrides = (sweep.get("hydra") or {}).get("overrides")
    if not overrides:
        return None
    hydra_args = [o for o in overrides.get("hydra") or [] if o != "hydra.mode=MULTIRUN"]
    task_args = list(overrides.get("task") or [])
    return " ".join(["python -m vision_exp.train -m", *map(shlex.quote, hydra_args + task_args)])


def swept_axes(jobs: list) -> dict:
    """Override keys whose value is not the same in every job, with their values in job order; a job of unknown
    overrides says nothing of them (counted, it would make every common override an axis)."""
    jobs = [job for job in jobs if job.overrides is not None]
    values, present = {}, {}  # key -> {the value's identity: its first spelling}
    for job in jobs:
        for override in job.config_overrides:
            key, value = split_override(override)
            values.setdefault(key, {}).setdefault(configuration_identity(override), value)  # another spelling: no new value
            present[key] = present.get(key, 0) + 1
    return {key: list(vals.values()) for key, vals in values.items() if len(vals) > 1 or present[key] < len(jobs)}


def group_configurations(jobs: list, axes: dict) -> list:
    """Jobs grouped by configuration in job order; the jobs of unknown overrides last, so that the default
    baseline is a configuration of known overrides."""
    configurations = {}
    for job in sorted(jobs, key=lambda job: job.overrides is None):
        # the same configuration, whatever the order and spelling of its overrides
        key = None if job.overrides is None else tuple(sorted(map(configuration_identity, job.config_overrides)))
        if key not in configurations:
            given = dict(map(split_override, job.config_overrides))
            swept = [f"{'~' if k.startswith('~') else ''}{display_key(k)}={given.get(k, '(default)')}" for k in axes]
            label = UNKNOWN_CONFIGURATION if key is None else " ".join(swept) or "all jobs"
            configurations[key] = Configuration(label, job.config_overrides)
        configurations[key].jobs.append(job)
    return list(configurations.values())


@functools.lru_cache(maxsize=None)  # a sweep's jobs share most overrides; Hydra's parser takes 0.2 ms a call
def parsed_value(override: str):
    """The override's value as Hydra reads it (quotes removed, `[8, 8]` a list); a recorded value Hydra cannot
    parse (a folder's name with parentheses) is the text itself."""
    try:
        return HYDRA_OVERRIDES.parse_override(override).value()
    except HydraException:
        return split_override(override)[1]


@functools.lru_cache(maxsize=None)
def override_identity(override: str) -> tuple:
    """(setting, value) of an override, the value as Hydra parses it and written one way (JSON), so that
    `model.patch_sizes=[8,8]` and `[8, 8]`, `model='resnet_v1'` and `resnet_v1`, `1e-3` and `0.001` are one value;
    `1` and `1.0`, `true` and `1` stay apart, as in the composed config. data.root is its folder's name
    (identity_value); a recorded value Hydra cannot parse (a folder's name with parentheses) is the text itself."""
    key = display_key(split_override(override)[0])
    return key, json.dumps(identity_value(key, parsed_value(override)), sort_keys=True, default=repr)


def configuration_identity(override: str) -> tuple:
    """override_identity, a deletion (`~key`) apart from setting the key."""
    return override.startswith("~"), *override_identity(override)


def matches(configuration: Configuration, wanted: list) -> bool:
    """Every override of `wanted` is the configuration's value of that setting (`+`/`@_global_` optional): its last
    override of it, as Hydra applies them (a run's own value over `common`'s in vision_exp.sweep), by value."""
    values = dict(override_identity(override) for override in configuration.overrides)
    return all(values.get(key) == value for key, value in map(override_identity, wanted))


def requested_overrides(requested: str) -> list:
    """The overrides of a requested baseline, split at spaces but not within brackets or quotes
    (`model.patch_sizes=[8, 8] model=vit_v2` is two), as a shell hands them to Hydra one by one."""
    overrides, piece = [], ""
    for word in re.findall(r"\S+\s*", requested):
        piece += word
        try:
            HYDRA_OVERRIDES.parse_override(piece.rstrip())
        except HydraException:
            continue  # an unclosed [ or quote: the next word may close it
        overrides.append(piece.rstrip())
        piece = ""
    if piece:
        raise SweepError(f"baseline {requested!r} is not overrides Hydra can read ({piece.rstrip()!r} does not parse): "
                         f"name the configuration as on the command line, e.g. 'model=resnet_v1'")
    return overrides


def choose_baseline(configurations: list, axes: dict, requested: Optional[str], metric: str) -> tuple:
    """The configuration the others are compared with, and why it was chosen."""
    chosen, reason = requested_or_default_baseline(configurations, axes, requested)
    if not chosen.values(metric):
        reason += f"; it has no completed job with {metric}, so no Δ can be computed (choose another with --baseline)"
    return chosen, reason


def requested_or_default_baseline(configurations: list, axes: dict, requested: Optional[str]) -> tuple:
    if requested:
        wanted = requested_overrides(requested)
        found = [c for c in configurations if matches(c, wanted)]
        if len(found) != 1:
            known = "; ".join(c.label for c in configurations)
            how = "matches no configuration" if not found else f"matches {len(found)} configurations (name more overrides)"
            raise SweepError(f"baseline {requested!r} {how}; the sweep's configurations are: {known}")
        return found[0], "chosen with --baseline"
    # By value, as the configurations were grouped: `[8,8]` is `[8, 8]`, `'none'` is `none`.
    first = dict(map(override_identity, configurations[0].overrides))  # the first job's; None where it sets no value
    unchanged = json.dumps(NO_CHANGE)
    wanted = {}
    for key, values in axes.items():
        identities = {override_identity(f"{key}={value}")[1] for value in values}
        wanted[display_key(key)] = unchanged if unchanged in identities else first.get(display_key(key))
    found = [c for c in configurations if all(dict(map(override_identity, c.overrides)).get(k) == v for k, v in wanted.items())]
    if found:
        return found[0], f"the first job's value of each swept axis, or its `{NO_CHANGE}`"
    return configurations[0], "the first job's: no job has every swept axis at its first value"


def check_baseline(planned: list, requested: str) -> None:
    """A requested baseline among the configurations of a sweep's planned jobs (override lists): checked before
    any job trains."""
    jobs = [Job(str(number), Path(str(number)), list(overrides), {}) for number, overrides in enumerate(planned)]
    axes = swept_axes(jobs)
    requested_or_default_baseline(group_configurations(jobs, axes), axes, requested)


def read_sweep_file(sweep_dir: Path) -> dict:
    """The folder's multirun.yaml, which makes it a sweep folder (Hydra writes it when a multirun starts)."""
    if not (sweep_dir / SWEEP_FILE).is_file():
        what = "it does not exist" if not sweep_dir.exists() else f"it has no {SWEEP_FILE}, which Hydra writes when a multirun starts"
        raise SweepError(f"{sweep_dir} is not a sweep folder: {what}")
    try:
        sweep = OmegaConf.to_container(OmegaConf.load(sweep_dir / SWEEP_FILE))
    except Exception as exc:  # YAML that does not parse
        raise SweepError(f"{sweep_dir / SWEEP_FILE} cannot be read ({type(exc).__name__}): is it a sweep folder?") from None
    if not isinstance(sweep, dict):
        raise SweepError(f"{sweep_dir / SWEEP_FILE} holds no sweep's config: is it a sweep folder?")
    return sweep


def folder_labels(folders: list) -> list:
    """Each folder's name, or as many of its last path parts as tell it from the others (`a/multirun` and
    `b/multirun`): what names a sweep, and prefixes its jobs, in a summary of several."""
    parts = [Path(folder).resolve().parts for folder in folders]
    labels = []
    for own in parts:
        depth = 1
        while depth < len(own) and any(other != own and other[-depth:] == own[-depth:] for other in parts):
            depth += 1
        labels.append(Path(*own[-depth:]).as_posix())
    return labels


def inside(path: Path, folder: Path) -> bool:
    """`path` is `folder` or lies in it (both resolved)."""
    return path == folder or folder in path.parents


def check_folders(folders: list, output_dir: Optional[Path]) -> None:
    """Each sweep once, and an output folder whose results overwrite no sweep's own."""
    resolved = [folder.resolve() for folder in folders]
    for index, folder in enumerate(resolved):
        if folder in resolved[:index]:
            earlier = folders[resolved.index(folder)]
            also = "" if str(earlier) == str(folders[index]) else f" (also as {earlier})"
            raise SweepError(f"{folders[index]} is given twice{also}: name each sweep folder once, or its jobs "
                             f"would count twice")
    if len(folders) > 1 and output_dir is None:
        raise SweepError(f"{len(folders)} sweep folders make one summary in a folder of its own: name it with "
                         f"--output <folder> (output_dir= in Python); each sweep keeps its own results.md")
    if output_dir is None:
        return
    output, example = output_dir.resolve(), folders[0].parent / "merged"
    if len(folders) == 1 and output == resolved[0]:
        return  # the sweep's own results, as without an output folder
    if output in resolved or (output / SWEEP_FILE).is_file():
        raise SweepError(f"the output folder {output_dir} is a sweep folder: its own results.md and results.csv "
                         f"would be replaced; choose a folder of its own, e.g. {example}")
    for folder in folders:
        for job in job_folders(folder):
            if inside(output, job.resolve()):
                raise SweepError(f"the output folder {output_dir} is in the job folder {job}: choose a folder of "
                                 f"its own, e.g. {example}")


def read_sources(folders: list, sweeps: list) -> list:
    """The sweep folders with their jobs; in a summary of several, a job is named `<sweep>/<job number>`. A job
    folder reached from two sweep folders (a link) is refused: it would count twice."""
    labels = folder_labels(folders) if len(folders) > 1 else [folders[0].name]
    sources, seen = [], {}
    for folder, sweep, label in zip(folders, sweeps, labels):
        source = SweepSource(folder, str(sweep.get("name") or folder.name), sweep_command(sweep), label)
        for job_dir in job_folders(folder):
            if job_dir.resolve() in seen:
                raise SweepError(f"the job folder {job_dir} is {seen[job_dir.resolve()]} too: name each sweep folder "
                                 f"once, or its jobs would count twice")
            seen[job_dir.resolve()] = job_dir
            source.jobs.append(read_job(job_dir, f"{label}/{job_dir.name}" if len(folders) > 1 else None))
        sources.append(source)
    return sources


def set_apart_axes(sources: list, axes: dict) -> list:
    """The axes that are no axis within any sweep: the sweeps differ in an override common to each one's jobs."""
    within = set()
    for source in sources:
        within |= set(swept_axes(source.jobs))
    return [key for key in axes if key not in within]


def resolved_settings(job: Job) -> Optional[dict]:
    """The job's config.yaml without its seed, or None when it has none that reads."""
    try:
        saved = OmegaConf.to_container(OmegaConf.load(job.run_dir / CONFIG_FILE))
    except Exception:  # missing (the job failed before it wrote one) or unreadable
        return None
    if not isinstance(saved, dict):
        return None
    saved.pop("seed", None)
    return saved


def cross_sweep_differences(configurations: list) -> list:
    """A line for each configuration whose jobs in different sweeps ran with other settings than the same
    overrides say: a preset or the project's defaults changed between the sweeps. Within one sweep the resume
    check keeps a configuration's jobs alike; across sweeps only their config.yaml can tell."""
    cautions = []
    for configuration in configurations:
        if configuration.label == UNKNOWN_CONFIGURATION:
            continue
        reference = None
        for job in configuration.jobs:
            settings = resolved_settings(job)
            if settings is None:
                continue
            if reference is None:
                reference = (job, settings)
                continue
            if job.run_dir.parent == reference[0].run_dir.parent:
                continue  # the same sweep
            differences = [d for d in config_differences(reference[1], settings)
                           if not d.split(":")[0].startswith(MEMORY_SETTINGS)]
            if differences:
                cautions.append(f"{configuration.label}: job {job.name} ran with other settings than job "
                                f"{reference[0].name} ({first_differences(differences)})")
                break
    return cautions


def load_sweeps(sweep_dirs, output_dir=None, baseline: Optional[str] = None, metric: str = "val_acc") -> SweepSummary:
    """Read one sweep folder, or several as one summary: their jobs pooled and grouped into configurations by
    their overrides, as within one sweep (seeds 0-2 of one sweep and 3-4 of another make one configuration of
    five seeds), an override in which the sweeps differ an axis of its own. Several need `output_dir`, where
    write_results puts the results (it must be no input's sweep or job folder); one writes into its own folder
    unless `output_dir` names another. `baseline` is e.g. 'model=resnet_v1' (default: each swept axis at its
    `none`, else at the first sweep's first job's value; see `requested_or_default_baseline`)."""
    if isinstance(sweep_dirs, (str, os.PathLike)):
        sweep_dirs = [sweep_dirs]
    folders = [Path(folder) for folder in sweep_dirs]
    if not folders:
        raise SweepError("no sweep folder given")
    if output_dir is not None and not str(output_dir).strip():  # Path("") is the current folder
        raise SweepError("--output is empty: name the folder for the summary, e.g. --output merged")
    output = Path(output_dir) if output_dir is not None else None
    sweeps = [read_sweep_file(folder) for folder in folders]  # every folder is a sweep before any other complaint
    check_folders(folders, output)
    sources = read_sources(folders, sweeps)
    jobs = [job for source in sources for job in source.jobs]
    if not jobs:
        where = folders[0] if len(folders) == 1 else f"none of {', '.join(map(str, folders))}"
        raise EmptySweep(f"{where} holds no job yet (no job folder with {OVERRIDES_FILE} or {METRICS_FILE})")
    numeric = {k for job in jobs if job.completed for k, v in job.metrics.items() if is_number(v)}
    if metric not in (numeric or METRIC_ORDER):  # before any job completes, the metrics every run records
        known = sorted(numeric) if numeric else METRIC_ORDER
        raise MetricMissing(metric, known)
    axes = swept_axes(jobs)
    configurations = group_configurations(jobs, axes)
    chosen, reason = choose_baseline(configurations, axes, baseline, metric)
    common = [o for o in configurations[0].overrides if split_override(o)[0] not in axes]
    merged = len(sources) > 1
    names = list(dict.fromkeys(source.name for source in sources))
    commands = [source.command for source in sources if source.command]
    return SweepSummary(output or folders[0], " + ".join(names), "\n".join(commands) or None,
                        jobs, configurations, axes, common, chosen, reason, metric, sources,
                        set_apart_axes(sources, axes) if merged else [],
                        cross_sweep_differences(configurations) if merged else [])


def load_sweep(sweep_dir, baseline: Optional[str] = None, metric: str = "val_acc") -> SweepSummary:
    """Read a sweep folder; `baseline` is e.g. 'model=resnet_v1' (default: each swept axis at its `none`, else at
    the first job's value; see `requested_or_default_baseline`). Several folders as one: `load_sweeps`."""
    return load_sweeps([sweep_dir], None, baseline, metric)


# ------------------------------------------------------------------------------------ writing
def fmt(value: Optional[float], digits: int = 2, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def mean_std(configuration: Configuration, metric: str) -> str:
    average, spread = configuration.mean(metric), configuration.std(metric)
    if average is None:
        return "—"
    return f"{average:.2f} ± {spread:.2f}" if spread is not None else f"{average:.2f}"


def difference_text(summary: SweepSummary, configuration: Configuration) -> str:
    if summary.is_marked_baseline(configuration):
        return "baseline"
    difference = summary.difference(configuration)
    if difference is None:
        return "—"
    if not difference.has_interval:
        return f"{fmt(difference.estimate, signed=True)} (no interval: n < 2)"
    interval = f"{fmt(difference.estimate, signed=True)} [{fmt(difference.low, signed=True)}, {fmt(difference.high, signed=True)}]"
    return interval if difference.paired else f"{interval} (Welch: other seeds)"


def cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def results_table(summary: SweepSummary) -> str:
    """The per-configuration Markdown table of results.md (and of vx-report)."""
    metric = summary.metric
    beside = [other for other in ("val_acc", "best_val_acc", "train_acc") if other != metric]  # all three, once
    lines = [
        f"| configuration | n | {metric} mean ± std | Δ {metric} vs baseline [95% CI] | {' | '.join(beside)} | samples seen | wall time (s) |",
        "|---|---:|---:|---:|" + "---:|" * len(beside) + "---:|---:|",
    ]
    for configuration in summary.configurations:
        label = f"**{configuration.label}** (baseline)" if summary.is_marked_baseline(configuration) else configuration.label
        n = len(configuration.values(metric))  # the values behind the mean
        missing = len(configuration.jobs) - len(configuration.completed)
        lacking = len(configuration.completed) - n  # completed before the metric existed, or it is null
        count = f"{n}" + (f" (+{missing} not completed)" if missing else "") + (f" (+{lacking} without {metric})" if lacking else "")
        samples = configuration.mean("samples_seen")
        lines.append("| " + " | ".join(cell(c) for c in (
            label, count, mean_std(configuration, metric),
            difference_text(summary, configuration), *(mean_std(configuration, other) for other in beside),
            "—" if samples is None else f"{samples:,.0f}",
            fmt(configuration.mean("wall_time_s"), 1),
        )) + " |")
    return "\n".join(lines)


def configuration_of(summary: SweepSummary) -> dict:
    """{id(job): its configuration}."""
    return {id(job): c for c in summary.configurations for job in c.jobs}


def relative_link(path: Path, folder: Path) -> str:
    """A path as seen from `folder`, as Markdown and CSV files there link it."""
    return Path(os.path.relpath(Path(path).resolve(), Path(folder).resolve())).as_posix()


def results_link(path: Path, summary: SweepSummary) -> str:
    """A path as seen from the results folder (a job's folder in results.csv, a sweep's in results.md)."""
    return relative_link(path, summary.sweep_dir)


def failures_table(summary: SweepSummary) -> str:
    lines = ["| job | configuration | seed | status | error |", "|---|---|---|---|---|"]
    by_job = configuration_of(summary)
    for job in summary.unsuccessful:
        error = job.error.strip().splitlines()[0][:300] if job.error.strip() else ""
        lines.append("| " + " | ".join(cell(c) for c in (job.name, by_job[id(job)].label, job.seed or "—", job.status, error)) + " |")
    return "\n".join(lines)


def counted(count: int, noun: str) -> str:
    """"1 job", "3 jobs": a one-job sweep (a long run launched with -m) is summarized too."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def bars_png(summary: SweepSummary) -> str:
    return f"{summary.metric}_bars.png"


def sources_section(summary: SweepSummary) -> list:
    """Of a summary of several sweeps: each sweep's folder and command, and what tells the sweeps apart."""
    parts = [f"The jobs of {len(summary.sources)} sweeps, pooled into configurations by their overrides; a job is "
             f"named `<sweep>/<job number>`, its folder (run_dir in {RESULTS_CSV}) relative to this folder:", ""]
    for source in summary.sources:
        parts += [f"- `{source.label}` (`{results_link(source.folder, summary)}`, {counted(len(source.jobs), 'job')})"
                  + (":" if source.command else ": its multirun.yaml records no command"), ""]
        if source.command:
            parts += ["  ```", f"  {source.command}", "  ```", ""]
    if summary.set_apart:
        parts += ["Each sweep ran one value of " + ", ".join(f"`{display_key(k)}`" for k in summary.set_apart)
                  + ", another in another sweep: a swept axis here, so those jobs are not averaged together.", ""]
    if summary.cautions:
        parts += ["**Caution**: jobs of one configuration ran with other settings in another sweep (a preset or the "
                  "project's defaults changed between the sweeps), so their seeds are not repeats of one experiment:",
                  "", *(f"- {cell(line)}" for line in summary.cautions), ""]
    return parts


def repeated_seeds_caution(summary: SweepSummary) -> list:
    """A caution naming each seed that completed more than once in a configuration (a sweep folder copied and merged
    with itself, one seed given twice), or nothing: each counts in n, though a repeat is no independent draw."""
    repeats = []
    for configuration in summary.configurations:
        seeds = [job.seed for job in configuration.completed if job.seed is not None]
        repeats += [f"- {cell(configuration.label)}: seed {seed} ×{seeds.count(seed)}" for seed in dict.fromkeys(seeds)
                    if seeds.count(seed) > 1]
    if not repeats:
        return []
    return ["**Caution**: these seeds completed more than once in one configuration, and each run counts in n, mean "
            "and std, though a repeat of a seed is no independent draw (a deterministic run repeats its numbers): n "
            "overstates the evidence and the intervals are too narrow.", "", *repeats, ""]


def results_markdown(summary: SweepSummary) -> str:
    completed = summary.completed_count
    title = (f"# Sweeps `{summary.name}`: {len(summary.sources)} sweep folders" if summary.merged
             else f"# Sweep `{summary.name}`: {summary.sources[0].folder.name if summary.sources else summary.sweep_dir.name}")
    parts = [
        title,
        "",
        f"{counted(len(summary.jobs), 'job')}: {completed} completed, {len(summary.unsuccessful)} not completed"
        + (" (listed below; they are left out of every mean)." if summary.unsuccessful else "."),
        "",
    ]
    if summary.merged:
        parts += sources_section(summary)
    elif summary.command:
        parts += ["Command:", "", "```", summary.command, "```", ""]
    if summary.common:
        parts += ["Overrides common to every job: " + " ".join(f"`{o}`" for o in summary.common), ""]
    parts += [
        summary.baseline_sentence,
        "",
        results_table(summary),
        "",
        f"How to read it: `{summary.metric}` is {METRIC_MEANINGS.get(summary.metric, 'the metrics.json value')}. "
        f"mean ± std are over the completed seeds (n; sample std with n − 1). Δ is the configuration's mean "
        f"`{summary.metric}` minus the baseline's, with a 95% t confidence interval of the per-seed differences when both "
        f"completed the same seeds (paired: n − 1 degrees of freedom), else Welch's, marked (none below two seeds on "
        f"either side). An interval that excludes 0 is a difference these seeds resolve; one that "
        f"includes 0 is not resolved at this number of seeds, which is not evidence that there is no difference. "
        f"Overlapping mean ± std ranges say little either way: read the interval of the difference.",
        "",
        *repeated_seeds_caution(summary),
        f"![{summary.metric} per configuration]({bars_png(summary)})",
        "",
        f"![validation accuracy during training]({CURVES_PNG})",
        "",
    ]
    if summary.unsuccessful:
        parts += ["## Jobs that did not complete", "", failures_table(summary), ""]
    return "\n".join(parts)


def results_csv(summary: SweepSummary) -> str:
    metric_columns = summary.metric_columns()
    by_job = configuration_of(summary)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["job", "status", "configuration", "seed", *metric_columns, "error", "overrides", "run_dir"])
    for job in summary.jobs:
        metrics = [job.metrics.get(k, "") if job.completed else "" for k in metric_columns]
        writer.writerow([job.name, job.status, by_job[id(job)].label, job.seed or "", *metrics,
                         job.error, " ".join(job.overrides or []), results_link(job.run_dir, summary)])
    return buffer.getvalue()


def write_results(summary: SweepSummary) -> list:
    """results.csv, results.md and the two plots in the results folder (the sweep's own, or the output folder of
    load_sweeps, made if need be); returns their paths."""
    from vision_exp.sweeps.plots import plot_bars, plot_curves

    folder = summary.sweep_dir
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / RESULTS_CSV, results_csv(summary))
    write_text_atomic(folder / RESULTS_MD, results_markdown(summary))
    plot_bars(summary, folder / bars_png(summary))
    plot_curves(summary, folder / CURVES_PNG)
    return [folder / RESULTS_CSV, folder / RESULTS_MD, folder / bars_png(summary), folder / CURVES_PNG]


def summarize_sweep(sweep_dir, baseline: Optional[str] = None, metric: str = "val_acc") -> SweepSummary:
    """Read a sweep folder and write its results files (what the end of a multirun does)."""
    summary = load_sweep(sweep_dir, baseline, metric)
    write_results(summary)
    return summary


def summarize_sweeps(sweep_dirs, output_dir=None, baseline: Optional[str] = None, metric: str = "val_acc") -> SweepSummary:
    """Read several sweep folders as one (`load_sweeps`) and write the results files into `output_dir`."""
    summary = load_sweeps(sweep_dirs, output_dir, baseline, metric)
    write_results(summary)
    return summary
