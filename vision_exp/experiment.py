"""From a composed config to a finished run: the only place a training run's config becomes objects.

Entry points (`vision_exp.train`, the notebook API) call `run_experiment`; everything it hands
on — model, loaders, optimizer and schedule factories, `TrainerConfig` — is a plain object.
Inputs are checked in order of cost (config values, the dataset listing, the model, then the
slow data cache), and nothing but its lock file is written into the run folder before all of them passed.
"""
from __future__ import annotations

import logging
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from typing import Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from vision_exp.builder import build, load_trained_model, run_dir_of
from vision_exp.config_types import plain
from vision_exp.data.config import DataConfig
from vision_exp.data.loaders import build_loaders, index_dataset, mix_seed
from vision_exp.errors import CheckpointError, ConfigError
from vision_exp.recipe.augment import BatchAugment
from vision_exp.recipe.config import DistillConfig
from vision_exp.recipe.distill import Distillation
from vision_exp.recipe.loss import create_train_loss
from vision_exp.reporting.files import (check_writable, exclusive_lock, last_checkpoint, loadable, missing_checkpoint,
                                       remove_leftover_temporaries, write_text_atomic)
from vision_exp.reporting.records import (CONFIG_FILE, LOCK_FILE, RESUMABLE_CHANGES, before_start, check_same_config,
                                         completed_record, config_differences, first_differences, folder_busy,
                                         has_earlier_attempt, holds_foreign_record, misplaced_entry,
                                         refuse_sweep_folder, set_aside_completed_record, write_overrides)
from vision_exp.settings import RunSettings, run_settings
from vision_exp.training import distributed
from vision_exp.training.budget import Budget
from vision_exp.training.checkpoint import file_digest
from vision_exp.training.runtime import seed_everything, set_deterministic
from vision_exp.training.trainer import Trainer, check_sync_bn

log = logging.getLogger(__name__)


def check_buildable(cfg: DictConfig, overrides: Sequence[str] = ()) -> RunSettings:
    """What a run checks before it reads any data: the torch-free sections (returned, typed), then that the
    model, the optimizer and the scheduler build from their settings (e.g. a ViT's patch size divides its image).
    A sweep checks every job with it before the first one trains (vision_exp/sweeps/precheck.py)."""
    settings = run_settings(cfg, overrides)
    check_teacher(settings.distillation)
    if cfg.data.num_classes:  # else known once the data is read
        check_model_outputs(cfg.model, cfg.data.num_classes)
    sized = OmegaConf.merge(cfg, {"data": {"num_classes": cfg.data.num_classes or 2}})
    # On the meta device: shapes and settings without weights, so the check neither allocates a large model
    # nor pays for its initialisation (a ViT-L, or mimetic init's SVDs: seconds per run and per sweep job).
    with torch.device("meta"):
        optimizer = build(cfg.optimizer, "optimizer")(build(sized.model, "model"))
        # The real sizes need the data: a run long enough that no schedule of realistic settings is judged too long.
        build(cfg.scheduler, "scheduler")(optimizer, total_steps=10**6, steps_per_epoch=100)
    return settings


def check_model_outputs(model_cfg: DictConfig, num_classes: int) -> None:
    """One output per class: with fewer the first step fails on a label past the head, with more the
    extra logits only take probability mass from the real classes."""
    outputs = model_cfg.get("num_classes")
    if outputs is not None and outputs != num_classes:
        raise ConfigError(f"model.num_classes={outputs} but the data has {num_classes} classes: leave "
                          f"model.num_classes out, it follows data.num_classes")


def check_run_dir(run_dir: Path, resume: str) -> None:
    """Never train over an earlier run's results unless asked to resume it: not with trainer.resume=never, nor
    from another folder's checkpoint into a folder with checkpoints of its own (an earlier attempt of that
    continuation has its progress there; starting again from the other folder would rotate it away), nor with
    trainer.resume=auto from scratch over a completed run whose last.pt was deleted to save space; and never start
    in a folder where a file of the run's is a folder, or the reverse."""
    misplaced = misplaced_entry(run_dir)
    if misplaced:
        raise ConfigError(f"{misplaced}: move it away, or choose another hydra.run.dir")
    if resume == "never" and any((run_dir / name).exists() for name in ("metrics.jsonl", "checkpoints")):
        raise ConfigError(
            f"{run_dir} already holds a run: continue it with trainer.resume=auto, or choose another hydra.run.dir"
        )
    if holds_foreign_record(run_dir):
        raise ConfigError(f"{run_dir} holds results that are not a run's (its metrics.json, e.g. an evaluation's), which "
                          f"this run would replace: choose another hydra.run.dir")
    if resume == "auto" and completed_record(run_dir) and last_checkpoint(run_dir / "checkpoints") is None:
        raise ConfigError(f"{run_dir} holds a completed run but no checkpoints/last.pt to continue it from: "
                          f"trainer.resume=auto would train from scratch over its results; choose another hydra.run.dir")
    if (resume not in ("never", "auto") and run_dir_of(Path(resume)).resolve() != run_dir.resolve()
            and loadable(Path(resume))  # else the trainer says it is not found
            and last_checkpoint(run_dir / "checkpoints") is not None):
        raise ConfigError(f"{run_dir} already holds checkpoints of its own: continue from them with trainer.resume=auto, "
                          f"or continue {resume} in another hydra.run.dir")


@contextmanager
def hold_run_dir(run_dir: Path, is_main: bool):
    """The run folder, writable and held by this process while it trains: a second process on it (two runs
    started in the same second with the same name share `<name>/<date>_<time>`) stops at once."""
    if not is_main:  # rank 0 holds it for the whole torchrun job
        yield
        return
    check_writable(run_dir)
    with exclusive_lock(run_dir / LOCK_FILE) as held:
        if not held:
            raise folder_busy(run_dir)
        remove_leftover_temporaries(run_dir)
        yield


def check_resumable(run_dir: Path, cfg: DictConfig, resume: str) -> None:
    """Resuming in a folder that holds an earlier attempt: the same experiment, but for its budget and parts."""
    if resume != "never" and has_earlier_attempt(run_dir):
        check_same_config(run_dir, plain(cfg), RESUMABLE_CHANGES)


# What a run resumed from another folder's checkpoint must share with the run that wrote it, besides the data and
# batch size the trainer checks: other weights of the same shapes (a block of another order) would load without an
# error, and an optimizer's state brings its hyper-parameters with it (or does not load at all, from another kind).
CONTINUED_SECTIONS = ("model", "optimizer")


def check_continued_run(run_dir: Path, cfg: DictConfig, resume: str) -> None:
    """trainer.resume=<another folder's last.pt> continues that run: its model and optimizer settings, or a refusal."""
    if resume in ("never", "auto"):
        return
    source_dir = run_dir_of(Path(resume))
    if source_dir.resolve() == run_dir.resolve() or not (source_dir / CONFIG_FILE).is_file():
        return
    saved = OmegaConf.to_container(OmegaConf.load(source_dir / CONFIG_FILE))
    current = plain(cfg)
    differences = [d for d in config_differences({key: saved.get(key, {}) for key in CONTINUED_SECTIONS},
                                                {key: current[key] for key in CONTINUED_SECTIONS})
                   if not d.startswith("optimizer.batch_size:")]  # data.batch_size's copy: the trainer names it
    if differences:
        raise ConfigError(f"cannot resume from {resume}: its run trained with other settings "
                          f"({first_differences(differences)}); resume with its model and optimizer settings")


def run_experiment(cfg: DictConfig, run_dir: Path, overrides: list, choices: Optional[dict] = None) -> dict:
    """Train the run described by `cfg` into `run_dir`; returns the content of metrics.json. `choices`, the
    config groups' options it was composed of (conf_dir.group_choices), join its hyper-parameters in TensorBoard."""
    with before_start():
        refuse_sweep_folder(run_dir)  # before the run's lock and its clean-up of temporary files in the folder
        settings = check_buildable(cfg, overrides)  # a value that cannot work is one line before the data is read (hours, at times)
        data_cfg, aug_cfg, trainer_cfg = settings.data, settings.augmentation, settings.trainer
        dist_env, device = distributed.setup(trainer_cfg.device)
        check_sync_bn(trainer_cfg.sync_bn, dist_env, device)
    run_dir = Path(distributed.same_on_all_ranks(str(run_dir)))
    if not dist_env.is_main:
        logging.getLogger().setLevel(logging.WARNING)  # one rank's log is enough
    with hold_run_dir(run_dir, dist_env.is_main), ExitStack() as run_end:
        with before_start():
            check_run_dir(run_dir, trainer_cfg.resume)
            check_resumable(run_dir, cfg, trainer_cfg.resume)
            check_continued_run(run_dir, cfg, trainer_cfg.resume)
            if (trainer_cfg.resume == "auto" and not has_earlier_attempt(run_dir)
                    and last_checkpoint(run_dir / "checkpoints") is None):  # a new dated folder: nothing to continue
                log.warning("trainer.resume=auto: %s holds no earlier run, so this one starts from scratch; to continue "
                            "a run, name its folder: hydra.run.dir=<its folder> trainer.resume=auto", run_dir)
            optimizer_factory = build(cfg.optimizer, "optimizer")
            scheduler_factory = build(cfg.scheduler, "scheduler")

            with distributed.main_first(dist_env):  # data.download=true: rank 0 fetches and extracts, the others then index
                index = index_dataset(data_cfg)
            Budget.create(len(index.train), data_cfg.batch_size, trainer_cfg.epochs, trainer_cfg.train_samples)  # fail early
            with open_dict(cfg):
                cfg.data.num_classes = index.num_classes
            check_model_outputs(cfg.model, index.num_classes)
            seed_everything(cfg.seed)
            set_deterministic(trainer_cfg.deterministic, trainer_cfg.cudnn_benchmark)
            model = build(cfg.model, "model")

            batch_augment = BatchAugment.create(aug_cfg, index.num_classes, settings.label_smoothing, device)
            train_loss = create_train_loss(settings.label_smoothing, soft_targets=bool(batch_augment and batch_augment.soft_targets))
            distillation = load_distillation(settings.distillation, index.classes, data_cfg)
            with distributed.main_first(dist_env):  # rank 0 builds the data cache, the others then read it
                data = run_end.enter_context(closing(build_loaders(index, data_cfg, aug_cfg, device, cfg.seed,
                                                                   trainer_cfg.train_eval_samples, dist_env.shard)))
            config_text = OmegaConf.to_yaml(cfg, resolve=True)
            hparams = {**plain(cfg), "choices": choices} if choices else plain(cfg)
            trainer = Trainer(
                model, data, optimizer_factory, scheduler_factory, trainer_cfg, run_dir, device, dist_env,
                train_loss=train_loss, batch_augment=batch_augment, distillation=distillation, hparams=hparams,
                title=f"{cfg.name}: {type(model).__name__}", config_text=config_text,
            )
            trainer.restore()
            seed_rank(cfg.seed, dist_env.rank, trainer.position.step)
        finished = completed_record(run_dir) if trainer.finished else None
        if finished is not None:  # resumed with the budget it completed: nothing to train, nothing to rewrite
            log.info("%s already completed its budget of %d samples (%s)", run_dir, trainer.budget.train_samples,
                     run_dir / "metrics.json")
            return finished
        if dist_env.is_main:
            set_aside_completed_record(run_dir)
            write_text_atomic(run_dir / CONFIG_FILE, config_text)
            write_overrides(run_dir, overrides)
        return trainer.fit()


def seed_rank(seed: int, rank: int, step: int) -> None:
    """Under torchrun, rank r > 0 draws its dropout, drop-path and random-erasing masks from a stream of its
    own (timm seeds seed + rank likewise): on rank 0's stream, sample i of every rank's shard would get the
    same masks. Called once the weights are built alike on every rank and a checkpoint (which holds rank 0's
    state) is restored; `step` gives a resumed rank a stream it has not used. Rank 0 keeps a single process's
    stream; the data order and crops are drawn per global batch (data/loaders.py), the same for any ranks."""
    if rank > 0:
        seed_everything(mix_seed(seed, rank, step))


# What the teacher must share with the student: it predicts on the student's inputs, as they are.
TEACHER_PREPROCESSING = ("img_size", "mean", "std")


def comparable(value):
    """A YAML list and a dataclass's tuple of the same numbers are the same setting."""
    return list(value) if isinstance(value, (list, tuple)) else value


def check_teacher(cfg: DistillConfig) -> None:
    """A distilled run names its teacher's checkpoint file: checked before any data is read (a sweep, before
    its first job)."""
    if not cfg.enabled:
        return
    if not cfg.teacher:
        raise ConfigError(f"loss.distillation.kind={cfg.kind} needs a teacher: loss.distillation.teacher=<a run's "
                          f"checkpoints/best.pt>, e.g. of a run of experiment=e2_resnet on the same data")
    problem = missing_checkpoint(Path(cfg.teacher))
    if problem:
        raise CheckpointError(f"loss.distillation.teacher: {problem}")


def load_distillation(cfg: DistillConfig, classes: tuple, data: DataConfig):
    """The teacher of `loss.distillation`, or None; a teacher trained on other classes, or on inputs of
    another size or normalisation, would teach something else than it measured, so it is refused."""
    if not cfg.enabled:
        if cfg.teacher:  # kept quiet it would look taught; allowed, as sweeps compare kind=none,soft with one teacher
            log.warning("loss.distillation.teacher is set but loss.distillation.kind=none: this run trains without "
                        "the teacher (kind=soft or hard uses it)")
        return None
    check_teacher(cfg)
    try:
        teacher, run_cfg, state = load_trained_model(Path(cfg.teacher))
    except CheckpointError as exc:
        raise CheckpointError(f"loss.distillation.teacher: {exc}") from None
    teacher_classes = list(state.get("classes", ()))
    if teacher_classes != list(classes):
        raise ConfigError(f"the teacher {cfg.teacher} was trained on {len(teacher_classes)} classes "
                          f"({', '.join(map(str, teacher_classes[:3]))}...), this run has {len(classes)} "
                          f"({', '.join(map(str, list(classes)[:3]))}...): train the teacher on the same data")
    teacher_data = plain(run_cfg.data)
    for key in TEACHER_PREPROCESSING:
        theirs, ours = comparable(teacher_data.get(key)), comparable(getattr(data, key))
        if theirs is not None and theirs != ours:
            raise ConfigError(f"the teacher {cfg.teacher} was trained with data.{key}={theirs}, this run has {ours}: "
                              f"the teacher must see inputs like those it learnt from")
    log.info("distilling from %s (%s, %s distillation, weight %g)", cfg.teacher, type(teacher).__name__, cfg.kind,
             cfg.weight)
    return Distillation(teacher, cfg.kind, cfg.weight, cfg.temperature, source_digest=file_digest(Path(cfg.teacher)))
