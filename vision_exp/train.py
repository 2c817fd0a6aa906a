"""`python -m vision_exp.train [hydra overrides]`: compose conf/train.yaml and train one run.

A bad input ends with one clear message and exit status 2 (add hydra.verbose=true for the
traceback), and the run folder made for the command is removed again (one that was there before
stays, its files untouched). In a multirun, a failing job is recorded in its metrics.json and the sweep goes on;
a job whose folder already holds its completed run is skipped, an interrupted one resumes from
its last checkpoint (see `prepare_sweep_job`), and the sweep summarizes itself at the end
(vision_exp/sweeps/callback.py), exiting with status 1 if a job did not complete (or, under
debug=overfit, did not memorise its batch).

torch, timm and the trainer are imported once Hydra has composed the config and the torch-free sections
were checked (`vision_exp.settings`): `--help`, `--cfg job`, an override Hydra refuses and a bad data,
augmentation, trainer or distillation value answer in about a second, not after the 5-10 s those
imports take.
"""
from __future__ import annotations

import logging
import os
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from vision_exp.cli import CheckOutputFolder, command, ignore_further_ctrl_c, is_rank_zero, leave_it_to_rank_zero
from vision_exp.conf_dir import CONF_DIR, group_choices
from vision_exp.debug import apply_debug_last, debug_verdict
from vision_exp.errors import ConfigError, Interrupted, RankZeroFailed, UserError
from vision_exp.reporting.files import last_checkpoint
from vision_exp.reporting.records import before_start, check_not_busy, recorded_failures
from vision_exp.settings import run_settings
from vision_exp.sweeps.jobs import prepare_job
from vision_exp.sweeps.launch import claimed_gpu, register_resolvers, restore_default_start_method

log = logging.getLogger("vision_exp.train")
register_resolvers()  # conf/hydra/default.yaml names the sweep folder with it


def prepare_sweep_job(cfg: DictConfig, run_dir: Path, hydra_cfg) -> Optional[dict]:
    """sweeps.jobs.prepare_job (skip, resume or refuse the job), and under the joblib launcher the
    default start method back, as the job may start processes (data loading)."""
    finished = prepare_job(cfg, run_dir, list(hydra_cfg.overrides.task))
    if finished is not None:
        log.info("skipped: already completed (%s)", run_dir / "metrics.json")
        return finished
    if hydra_cfg.launcher._target_.endswith("JoblibLauncher"):
        restore_default_start_method()
    return None


@contextmanager
def parallel_job_device(cfg: DictConfig, run_dir: Path, hydra_cfg):
    """Under the joblib launcher on a machine with several GPUs, the job trains on a free one of its own."""
    if not hydra_cfg.launcher._target_.endswith("JoblibLauncher") or cfg.trainer.device != "auto":
        yield
        return
    import torch

    with claimed_gpu(run_dir.parent, hydra_cfg.job.num, torch.cuda.device_count()) as gpu:
        if gpu is not None:
            with open_dict(cfg):
                cfg.trainer.device = f"cuda:{gpu}"
        yield


def stopped_at_once(run_dir: Path, sweep_dir: Optional[Path]) -> str:
    """What a run stopped without its own checkpoint leaves, and how to go on."""
    again = (f"run the same command with hydra.sweep.dir={sweep_dir}" if sweep_dir is not None else
             f"run the same command with hydra.run.dir={run_dir} trainer.resume=auto")
    checkpoint_dir = run_dir / "checkpoints"
    if last_checkpoint(checkpoint_dir) is not None:
        return f"stopped at once; the last checkpoint in {checkpoint_dir} resumes: {again}"
    if sweep_dir is not None:  # the job starts over, and the jobs that completed are skipped
        return (f"stopped at once, before the job saved a checkpoint: nothing to resume in {run_dir}; {again} "
                f"(its completed jobs are skipped)")
    return f"stopped at once, before the run saved a checkpoint: nothing to resume in {run_dir}; run the command again"


def summarize_stopped_sweep(sweep_dir: Path) -> None:
    """The results of the jobs so far, which the end of the multirun would have written: a sweep stopped for the
    night is read the next morning, before it resumes. Under torchrun rank 0 writes them, as at a sweep's end;
    whatever goes wrong here is one line, and the stop keeps its exit status."""
    from vision_exp.sweeps.summary import RESULTS_MD, summarize_sweep

    if not is_rank_zero():
        return
    try:
        summary = summarize_sweep(sweep_dir)
    except Exception as exc:  # no job with results yet, a full disk, ...
        log.info("no summary of the jobs so far (%s); vx-summarize %s writes it once they have results", exc, sweep_dir)
        return
    log.info("the jobs so far (%d of %d completed) are summarized in %s", summary.completed_count, len(summary.jobs),
             sweep_dir / RESULTS_MD)


def printed_here(error: UserError) -> bool:
    """Whether this process prints `error`: under torchrun a refused config and a RankZeroFailed are rank 0's
    to say; any other error is this rank's own."""
    if isinstance(error, RankZeroFailed):
        return False
    return not isinstance(error, ConfigError) or is_rank_zero()


def where_it_ended(result: dict, run_dir: Path) -> str:
    """The run's last line: its numbers and the folder that holds them (the epoch lines name neither)."""
    def percent(key: str) -> str:
        return "n/a" if result.get(key) is None else f"{result[key]:.2f}%"

    return (f"done: val top-1 {percent('val_acc')} (best {percent('best_val_acc')} at epoch {result.get('best_epoch')}), "
            f"train top-1 in eval mode {percent('train_acc')}; results in {run_dir}")


def run_task(cfg: DictConfig) -> Optional[dict]:
    hydra_cfg = HydraConfig.get()
    apply_debug_last(cfg, hydra_cfg.runtime.choices.get("debug"), hydra_cfg.overrides.task, hydra_cfg.overrides.hydra)
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    verbose = bool(hydra_cfg.verbose)
    single_process = int(os.environ.get("WORLD_SIZE", "1")) == 1  # under torchrun rank 0 holds the folder for all
    made = CheckOutputFolder.folders_made_for(run_dir) if single_process and not multirun else []
    try:
        with recorded_failures(run_dir, made), ExitStack() as job:
            with before_start():
                if not multirun and hydra_cfg.sweeper.get("params"):
                    raise ConfigError(f"{cfg.name} is a sweep preset ({', '.join(hydra_cfg.sweeper.params)}): run it "
                                      f"with -m (python -m vision_exp.train -m experiment=...)")
                finished = prepare_sweep_job(cfg, run_dir, hydra_cfg) if multirun else None
                if finished is None:
                    run_settings(cfg, hydra_cfg.overrides.task)  # the torch-free sections, checked before the slow imports below
                    if single_process:
                        check_not_busy(run_dir)
            if finished is not None:
                return finished
            from vision_exp.experiment import run_experiment

            if multirun:
                job.enter_context(parallel_job_device(cfg, run_dir, hydra_cfg))
            result = run_experiment(cfg, run_dir, list(hydra_cfg.overrides.task), group_choices(hydra_cfg.runtime.choices))
            log.info("%s", where_it_ended(result, run_dir))
        verdict = debug_verdict(hydra_cfg.runtime.choices.get("debug"), result)  # a failed check keeps the run's record
        if verdict:
            log.info("%s", verdict)
        return result
    except UserError as exc:
        if printed_here(exc):
            log.error("%s", exc)
        elif isinstance(exc, ConfigError) and not multirun:  # this rank exits: not before rank 0 has said why
            leave_it_to_rank_zero()
        if verbose:
            raise
        if not multirun:
            sys.exit(2)
    except Interrupted as exc:  # SIGTERM/SIGINT: a checkpoint was written; the same command resumes
        if multirun and not hydra_cfg.launcher._target_.endswith("BasicLauncher"):
            log.error("%s", exc)  # a worker of a parallel launcher: this job only
            return None
        ignore_further_ctrl_c()
        if multirun:  # the process that runs every job got it: it was meant for the sweep
            log.error("%s\nThe sweep stops; run the same command with hydra.sweep.dir=%s to resume it.",
                      exc, run_dir.parent)
            summarize_stopped_sweep(run_dir.parent)
        elif exc.completed:
            log.error("%s", exc)
        else:
            log.error("%s. To continue, run the same command with hydra.run.dir=%s trainer.resume=auto.", exc, run_dir)
        raise SystemExit(128 + exc.signum) from None
    except KeyboardInterrupt:  # Ctrl-C before the trainer listens for signals, or a second signal: stopped at once
        ignore_further_ctrl_c()
        log.error("%s", stopped_at_once(run_dir, run_dir.parent if multirun else None))
        if multirun:
            summarize_stopped_sweep(run_dir.parent)
        raise SystemExit(130) from None
    except Exception:  # a bug, out of memory, ...: recorded, and a sweep goes on
        if not multirun:
            raise
        log.exception("job failed; the sweep goes on")
    return None


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def hydra_main(cfg: DictConfig) -> Optional[dict]:
    return run_task(cfg)


main = command(hydra_main, "train")


if __name__ == "__main__":
    main()
