"""Shared behaviour of the command-line entry points: one clear message for bad input."""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from vision_exp.errors import ConfigError, UserError
from vision_exp.reporting.records import remove_unused_folders


def ignore_further_ctrl_c() -> None:
    """The process is stopping: Ctrl-C pressed again must not cut its last words short with a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def user_errors(log: logging.Logger, made_for_it: Sequence[Path] = ()):
    """A UserError ends the program with its message and exit status 2 (traceback with hydra.verbose=true), Ctrl-C
    with one line and status 130.
    A refused command is no result: the output folder made for it (`made_for_it`, see
    `CheckOutputFolder.folders_made_for`) goes again with its log, unless something else was written there."""
    try:
        yield
    except UserError as exc:
        log.error("%s", exc)
        remove_unused_folders(made_for_it)
        if HydraConfig.initialized() and HydraConfig.get().verbose:
            raise
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback
        ignore_further_ctrl_c()
        log.error("stopped by Ctrl-C")
        remove_unused_folders(made_for_it)
        sys.exit(130)


def beside(checkpoint: str, what: str) -> str:
    """A new output folder next to a checkpoint, `<stem>-<what>` (e.g. best-eval-imagenette/), or
    `<stem>-<what>-2`, -3, ... when that one holds an earlier result: evaluating or predicting again, on
    other images, never overwrites what an earlier command wrote."""
    base = Path(checkpoint).parent / f"{Path(checkpoint).stem}-{what}"
    candidates = itertools.chain([base], (base.with_name(f"{base.name}-{n}") for n in itertools.count(2)))
    return str(next(folder for folder in candidates if not folder.exists() or (folder.is_dir() and holds_no_result(folder))))


def holds_no_result(folder: Path) -> bool:
    """Empty, or only the log of a command that stopped on bad input."""
    return all(entry.suffix == ".log" for entry in folder.iterdir())


# ${vx.beside:<checkpoint>,<what>}; cached, so every place Hydra resolves the run folder gets the same one.
OmegaConf.register_new_resolver("vx.beside", beside, replace=True, use_cache=True)


class Refusal(Callback):
    """A check of the composed config before the command starts: `check` raises a ConfigError, which the command
    line prints as one line with exit status 2 (Hydra itself would show a traceback) and the notebook API
    (vision_exp.api) raises as it is."""

    def check(self, config: DictConfig) -> None:
        raise NotImplementedError

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        with refused_in_one_line():
            self.check(config)


def is_rank_zero() -> bool:
    """Under torchrun every rank composes the same config, refuses it alike and ends a sweep alike: rank 0 alone
    says so and writes the sweep's results, once. Read from torchrun's environment, before any process group."""
    return os.environ.get("RANK", "0") == "0"


# How long another rank waits for rank 0 to say what both refused; torchrun ends the wait (SIGTERM) once rank 0 exits.
RANK_ZERO_GRACE_S = 30


def leave_it_to_rank_zero() -> None:
    """Before another rank exits on what rank 0 refuses too: torchrun stops every rank when one exits, which could
    stop rank 0 before it has printed why, and the command would end without a word."""
    time.sleep(RANK_ZERO_GRACE_S)


@contextlib.contextmanager
def refused_in_one_line():
    """A ConfigError in the block ends the command with its message and exit status 2."""
    try:
        yield
    except ConfigError as exc:
        if is_rank_zero():
            print(f"error: {exc}", file=sys.stderr)
        else:
            leave_it_to_rank_zero()
        sys.exit(2)


def check_hydra_arguments(argv: Sequence[str]) -> None:
    """Flags that ask Hydra for two things at once (`-m --cfg job`, `-m --info`, `--run -m`) as a ConfigError that
    says which to keep: Hydra does one of --run, --multirun, --cfg, --info and --shell-completion, and stops with
    its traceback otherwise."""
    from hydra._internal.utils import get_args_parser

    flags, _ = get_args_parser().parse_known_args(list(argv))
    if flags.multirun and flags.cfg:
        raise ConfigError("-m runs a sweep and --cfg prints one run's config, not both: to preview a job's config, run "
                          "the same command without -m, with one value for each swept setting (seed=0,1 -> seed=0)")
    asked = [name for name, given in [("--run", flags.run), ("-m", flags.multirun), ("--cfg", flags.cfg),
                                      ("--info", flags.info is not None), ("--shell-completion", flags.shell_completion)]
             if given]
    if len(asked) > 1:
        raise ConfigError(f"{' and '.join(asked)} each choose what the command does; give one: --run (the default) "
                          f"runs one job, -m a sweep, --cfg prints the config, --info the config's sources and defaults")


def check_settings_exist(argv: Sequence[str], config_name: str) -> None:
    """A key conf/<config_name>.yaml lacks, set without + (`trainer.epoch=3`), or an option a group lacks
    (`model=vit_v9`), as one ConfigError naming the nearest (config_types.misspelt_override): Hydra's own message
    advises `+trainer.epoch=3`, which the run then refuses. Composes the config as Hydra will before the command
    starts (about 0.1 s; swept values are the jobs', which the sweep's pre-check composes); any other composition
    error is left for Hydra to report."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from vision_exp.conf_dir import CONF_DIR
    from vision_exp.config_types import misspelt_override

    flags, _ = get_args_parser().parse_known_args(list(argv))
    if flags.shell_completion or flags.config_path or flags.config_name or flags.config_dir or flags.experimental_rerun:
        return  # a completion query (query=bash), or another config than conf/<config_name>.yaml
    try:
        overrides = OverridesParser.create().parse_overrides(flags.overrides)
    except HydraException:
        return  # not Hydra's syntax: Hydra says where
    fixed = [override for override in overrides if not override.is_sweep_override()]
    if not fixed:
        return
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name=config_name):
            compose(config_name=config_name, overrides=[override.input_line for override in fixed])
    except HydraException as exc:
        misspelt = misspelt_override(exc, [override.key_or_group for override in fixed])
        if misspelt:
            raise (set_in_swept_group(exc, overrides) or misspelt) from None


def set_in_swept_group(composition_error: Exception, overrides: list) -> Optional[ConfigError]:
    """`-m model=vit_v1,vit_v2 model.depth=4`: Hydra composes a sweep's config once before it chooses the swept
    options, with the group's default (the ResNet, which has no depth), and refuses the key there; `++` sets it
    whether or not that config has it, there and in every job. A key no option of the group has is named with
    the nearest that one has. None unless the missing key is in a swept group."""
    from vision_exp.conf_dir import CONF_DIR
    from vision_exp.config_types import check_known_keys

    key = getattr(composition_error.__cause__, "full_key", "")
    for swept in overrides:
        group = swept.key_or_group
        if not (key.startswith(f"{group}.") and swept.is_sweep_override() and (CONF_DIR / group).is_dir()):
            continue
        name = key[len(group) + 1:].split(".")[0]
        known = {entry for path in (CONF_DIR / group).glob("*.yaml") for entry in OmegaConf.load(path) if entry != "defaults"}
        if name not in known:
            try:
                check_known_keys({name: None}, sorted(known), group, owner=f"any {group} option")
            except ConfigError as exc:
                return exc
        setting = next(override for override in overrides if override.key_or_group.startswith(key))
        return ConfigError(f"{setting.key_or_group} is not a setting of the default {group}, which Hydra composes "
                           f"before the sweep chooses {swept.input_line}: write ++{setting.input_line} "
                           f"to set it in every job")
    return None


def command(hydra_main: Callable[[], object], config_name: str) -> Callable[[], None]:
    """The console entry point of a @hydra.main function on conf/<config_name>.yaml: Hydra's, once its flags ask
    for one thing and every key set exists."""

    def main() -> None:
        with refused_in_one_line():
            check_hydra_arguments(sys.argv[1:])
            check_settings_exist(sys.argv[1:], config_name)
        hydra_main()

    return main


class RequireValues(Refusal):
    """A mandatory value (`???`) left unset is one line naming it, not Hydra's traceback from resolving the
    output folder that is named after it."""

    def check(self, config: DictConfig) -> None:
        unset = [key for key in config if key != "hydra" and OmegaConf.is_missing(config, key)]
        if unset:
            raise ConfigError(f"{', '.join(unset)} must be given, e.g. python -m vision_exp.{config.hydra.job.name} "
                              + " ".join(f"{key}=..." for key in unset))


class KnownSettings(Refusal):
    """A setting the command does not have (`+devic=cpu`, `+top_k=1`) is one line, not silently ignored; checked
    before RequireValues, so that `+ckp=...` hears "did you mean ckpt?" rather than "ckpt must be given"."""

    def check(self, config: DictConfig) -> None:
        from vision_exp.config_types import check_known_keys, declared_settings
        from vision_exp.settings import path_settings

        try:
            check_known_keys({key: None if OmegaConf.is_missing(config, key) else config[key]
                              for key in config if key != "hydra"}, declared_settings(config.hydra.job.config_name), "")
            check_known_keys(config.get("paths", {}), path_settings(), "paths")
        except ConfigError as exc:
            env = config.hydra.runtime.choices.get("env")
            from_env = env not in (None, "local") and str(exc).startswith("data is not a setting")
            hint = (f" (env={env} sets the data loader's workers, for training and evaluation; this command reads and "
                    f"writes only the paths it is given: leave env= out)" if from_env else "")
            raise ConfigError(f"{exc}{hint}") from None


class RequireCheckpoint(Refusal):
    """`ckpt` must name a checkpoint file: a typo is one line, before the output folder named after it is created."""

    def check(self, config: DictConfig) -> None:
        from vision_exp.reporting.files import missing_checkpoint

        problem = missing_checkpoint(Path(config.ckpt))
        if problem:
            raise ConfigError(problem)


class NoResultsReplaced(Refusal):
    """vx-evaluate / vx-predict told to write into a folder that holds results (a training run's, an earlier
    evaluation's): refused, as the folder they choose beside the checkpoint moves on to -2, -3 instead."""

    def check(self, config: DictConfig) -> None:
        folder = Path(config.hydra.run.dir)
        if folder.is_dir() and not holds_no_result(folder):
            held = sorted(entry.name for entry in folder.iterdir() if entry.suffix != ".log" and not entry.name.startswith("."))
            raise ConfigError(f"{folder} already holds results ({', '.join(held[:3])}{', ...' if len(held) > 3 else ''}), "
                              f"which this command would replace: name a new or empty folder (hydra.run.dir=..., out_dir= "
                              f"in Python), or leave it out for a new one beside the checkpoint")


class CheckOutputFolder(Refusal):
    """Refuse an output folder that cannot be written (Hydra itself would stop with a traceback), or that is a
    sweep's own folder, in one line, before Hydra creates it or writes its log there, and note which folders this
    launch creates for the run or the sweep (`folders_made_for`): a run or sweep refused before it starts removes
    them again."""

    made: dict[str, list[Path]] = {}  # the output folder (absolute) -> it and its missing parents, deepest first

    def check(self, config: DictConfig) -> None:
        from vision_exp.reporting.records import refuse_sweep_folder

        refuse_sweep_folder(Path(config.hydra.run.dir))  # before Hydra writes the command's log there
        self._check(Path(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if any(override.startswith("hydra.run.dir=") for override in config.hydra.overrides.hydra):
            print(f"warning: hydra.run.dir names a single run's folder and a sweep ignores it: its jobs go into "
                  f"hydra.sweep.dir={config.hydra.sweep.dir} (set that one to choose it)", file=sys.stderr)
        with refused_in_one_line():
            self._check(Path(config.hydra.sweep.dir))

    @staticmethod
    def folders_made_for(output_dir: Path) -> list[Path]:
        """The folders this process's Hydra launch created for `output_dir` (none if it was there before)."""
        return CheckOutputFolder.made.pop(os.path.abspath(output_dir), [])

    @staticmethod
    def _check(folder: Path) -> None:
        from vision_exp.reporting.files import check_writable, missing_folders

        CheckOutputFolder.made[os.path.abspath(folder)] = missing_folders(folder)  # before it is made
        try:
            check_writable(folder)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (choose another with hydra.run.dir / hydra.sweep.dir; training runs: or "
                              f"VISION_EXP_OUTPUT)") from None
