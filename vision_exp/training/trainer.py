"""The generic training loop: plain PyTorch, plain objects in, metrics and checkpoints out.

The trainer never sees a config file: it gets a model, the data loaders, factories for the
optimizer and the schedule, a loss (optionally a teacher to distil from), and a `TrainerConfig`.
It reports three families of metrics every epoch:

- train_running/*: averaged over the epoch's batches while training (train mode, augmented
  inputs, weights changing along the way): what a naive loop reports;
- train/*: an eval-mode pass after the epoch over a fixed subset of training images with the
  eval transforms: the honest training-set number;
- val/*: the same pass over the validation set.
"""
from __future__ import annotations

import logging
import math
import signal
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from vision_exp.data.loaders import batch_stream
from vision_exp.errors import CheckpointError, ConfigError, Interrupted, OutOfMemory, UserError
from vision_exp.recipe.distill import Distillation
from vision_exp.reporting.figures import attention_overlay, classifier_attention, denormalize
from vision_exp.reporting.files import last_checkpoint, missing_checkpoint
from vision_exp.reporting.run import RunReporter
from vision_exp.training.budget import Budget, check_every_rank_gets_samples, check_every_rank_runs_every_part, last_batch_size
from vision_exp.training.config import TrainerConfig
from vision_exp.training.checkpoint import load_latest, load_model_weights, save_checkpoint
from vision_exp.training.evaluation import evaluate
from vision_exp.training.distributed import DistEnv, all_reduce_max, all_reduce_sum
from vision_exp.training.runtime import amp_dtype, autocast, rng_state, set_rng_state

log = logging.getLogger(__name__)


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


class StopSignals:
    """Turns SIGTERM/SIGINT (a Kaggle session ending, SLURM preemption, Ctrl-C) into a flag the loop
    checks between steps; a second signal stops at once."""

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        log.warning("%s received: saving a checkpoint after this step (send it again to stop at once)",
                    signal.Signals(signum).name)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


@dataclass
class Position:
    """Where training stands: the next batch to run and what has been done so far."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    samples_seen: int = 0
    best_val_acc: float = -1.0
    best_epoch: int = -1
    elapsed_s: float = 0.0
    train_time_s: float = 0.0
    running: dict = field(default_factory=lambda: {"loss_sum": 0.0, "correct": 0.0, "count": 0, "wait_s": 0.0, "time_s": 0.0})


def check_sync_bn(sync_bn: bool, dist: DistEnv, device: torch.device) -> None:
    """SyncBatchNorm runs on CUDA only; checked as soon as the run knows its device (experiment.py), before
    any image is read."""
    if sync_bn and dist.enabled and device.type != "cuda":
        raise ConfigError("trainer.sync_bn=true needs CUDA devices (SyncBatchNorm does not run on the CPU)")


def time_left(session_s: float, session_samples: int, samples_left: int) -> str:
    """" | about 12 min left" at this session's pace, evaluations and checkpoints included: a log read on Kaggle or
    a cluster has no progress bar to say when the run ends. The pace is this session's, not the run's: a run
    resumed on a faster (or slower) machine would otherwise be timed by the one it left. "" once the budget is
    spent."""
    if session_samples <= 0 or samples_left <= 0:
        return ""
    minutes = round(session_s / session_samples * samples_left / 60)
    if minutes < 1:
        return " | under a minute left"
    if minutes < 90:
        return f" | about {minutes} min left"
    return f" | about {minutes // 60} h {minutes % 60:02d} min left"


def uses_convolutions(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


class Trainer:
    """Runs one training job in `run_dir`; `fit()` returns the content of metrics.json."""

    def __init__(
        self,
        model: torch.nn.Module,
        data,
        optimizer_factory: Callable,
        scheduler_factory: Callable,
        config: TrainerConfig,
        run_dir: Path,
        device: torch.device,
        dist_env: Optional[DistEnv] = None,
        train_loss: Optional[torch.nn.Module] = None,
        batch_augment: Optional[Callable] = None,
        distillation: Optional[Distillation] = None,
        hparams: Optional[dict] = None,
        title: str = "",
        config_text: str = "",
    ) -> None:
        self.cfg = config
        self.run_dir = Path(run_dir)
        self.data = data
        self.device, self.dist = device, dist_env or DistEnv()
        self.amp = amp_dtype(config.amp, self.device)
        self.batch_size = data.train.batch_size
        self.budget = Budget.create(data.train.num_samples, self.batch_size, config.epochs, config.train_samples)
        if self.dist.enabled:  # before any rank meets an empty shard
            check_every_rank_gets_samples(self.dist.world_size, {
                "training": self.budget.smallest_batch,
                **{name: last_batch_size(loader.num_samples, loader.batch_size)
                   for name, loader in (("validation", data.val), ("train-eval", data.train_eval))}})
            if config.sync_bn:
                check_every_rank_runs_every_part(self.dist.world_size, config.grad_accum_steps, self.budget.smallest_batch)
        self.model = model.to(self.device)
        channels_last = config.channels_last if config.channels_last != "auto" else (self.device.type == "cuda" and uses_convolutions(model))
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        self.num_params = sum(p.numel() for p in self.model.parameters())
        check_sync_bn(config.sync_bn, self.dist, self.device)
        if self.dist.enabled and config.sync_bn:
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.optimizer = optimizer_factory(self.model)
        self.scheduler = scheduler_factory(self.optimizer, total_steps=self.budget.total_steps,
                                           steps_per_epoch=self.budget.steps_per_full_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        self.train_loss = train_loss or torch.nn.CrossEntropyLoss()
        self.batch_augment = batch_augment
        self.distillation = distillation.to(self.device) if distillation is not None else None
        self.ema = None
        if config.ema_decay:
            from timm.utils import ModelEmaV3

            # Warmup: the decay grows with the step count, so short runs still average recent weights.
            self.ema = ModelEmaV3(self.model, decay=config.ema_decay, use_warmup=config.ema_warmup)
        replica = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            replica = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self._replica = replica
        self.forward = torch.compile(replica) if config.compile else replica
        self.hparams = hparams or {}
        self.title, self.config_text = title, config_text
        self.reporter: Optional[RunReporter] = None
        self._probe_images: Optional[torch.Tensor] = None
        self._best_unsaved: Optional[dict] = None
        self._best_confusion: Optional[tuple] = None
        self.position = Position()

    # ----------------------------------------------------------------------------- checkpoints
    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def state_dict(self) -> dict:
        position = self.position
        return {
            **self.class_info,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "budget": asdict(self.budget),
            "train_digest": self.data.train_digest,
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "position": {k: v for k, v in vars(position).items()},
            "rng": rng_state(),
            "teacher_digest": self.distillation.source_digest if self.distillation is not None else None,
        }

    def load_state_dict(self, state: dict, source: str) -> None:
        lacking = [key for key in ("model", "optimizer", "position", "rng") if key not in state]
        if lacking:
            raise CheckpointError(f"cannot resume from {source}: it holds no {', '.join(lacking)} state (best.pt keeps "
                                  f"the best weights for evaluation); resume from last.pt, e.g. with trainer.resume=auto")
        self._check_same_batches(state.get("budget", {}), state["position"], source)
        if "classes" in state and list(state["classes"]) != list(self.data.classes):  # its outputs would mean others
            there, here = (", ".join(map(str, list(classes)[:3])) for classes in (state["classes"], self.data.classes))
            raise ConfigError(f"cannot resume from {source}: it was trained on other classes ({there}...; here {here}...)")
        if state.get("train_digest", self.data.train_digest) != self.data.train_digest:  # absent: saved before 2026-12-06
            raise ConfigError(f"cannot resume from {source} ({state['position']['samples_seen']} samples in): it was "
                              f"trained on other images (as many, of the same classes, but other files or labels: "
                              f"another data.subset_seed, or a dataset folder whose files changed); resume with the "
                              f"images it trained on")
        taught_by, teacher = state.get("teacher_digest"), self.distillation.source_digest if self.distillation else None
        if None not in (taught_by, teacher) and taught_by != teacher:
            raise ConfigError(f"cannot resume from {source}: the teacher's checkpoint has changed since this run began "
                              f"(another SHA-256), so the rest of the run would be taught by other weights; resume "
                              f"with the teacher file it began with, or start a new run")
        load_model_weights(self.model, state["model"], source)
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):  # empty from a run without fp16 (bf16 or float32: another GPU, the CPU): a fresh scale
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            if state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
            else:  # EMA turned on at resume: average from the restored weights, not from the random initial ones
                log.info("%s holds no EMA weights: the EMA starts from its model weights", source)
                self.ema.module.load_state_dict(self.model.state_dict())
        self.position = Position(**state["position"])
        set_rng_state(state["rng"])
        # The schedule is a function of the step and this run's budget, not restored state: a run
        # resumed with a longer budget continues on the longer schedule instead of ending at lr_min.
        self.scheduler.step_update(num_updates=self.position.step)

    def _check_same_batches(self, saved_budget: dict, position: dict, source: str) -> None:
        """A checkpoint's position (epoch, batch, step) counts batches of its training set and batch size;
        with others it would point elsewhere and the budget would end off its mark."""
        changed = [f"{label} {saved_budget[key]} there, {getattr(self.budget, key)} here"
                   for key, label in (("samples_per_epoch", "training images"), ("batch_size", "batch size"))
                   if key in saved_budget and saved_budget[key] != getattr(self.budget, key)]
        if changed:
            raise ConfigError(f"cannot resume from {source} ({position['samples_seen']} samples in): its batches were "
                              f"of other data ({'; '.join(changed)}); resume with the data and data.batch_size it "
                              f"trained with")

    @property
    def class_info(self) -> dict:
        """Stored in every checkpoint, so evaluate/predict can name classes without the dataset, and build the
        model from a checkpoint shared alone (a Kaggle dataset), without its run folder's config.yaml."""
        return {"classes": list(self.data.classes), "class_names": list(self.data.class_names),
                **({"config": self.config_text} if self.config_text else {})}

    def resume_source(self) -> Optional[Path]:
        mode = self.cfg.resume
        if mode == "never":
            return None
        if mode == "auto":
            return last_checkpoint(self.checkpoint_dir)
        return Path(mode)

    def save(self, name: str) -> None:
        if self.dist.is_main:
            save_checkpoint(self.state_dict(), self.checkpoint_dir / name)

    # ------------------------------------------------------------------------------- training
    def restore(self) -> None:
        """Load the checkpoint trainer.resume names, if any. Called before the run writes into its folder, so a
        checkpoint that cannot be used stops it with the folder as it was, and before any word that it resumed."""
        source = self.resume_source()
        if source is not None and source.is_dir():  # what resumes is last.pt, not the best.pt evaluate names
            raise CheckpointError(missing_checkpoint(source, wanted="last.pt"))
        if source is not None:
            # On the CPU: the RNG states must be CPU tensors; weights and optimizer state move to the model's device.
            state, source = load_latest(source, map_location="cpu")
            self.load_state_dict(state, str(source))
        elif self.cfg.resume == "auto":
            log.info("no checkpoint in %s: starting from scratch", self.checkpoint_dir)
        if self.position.samples_seen > self.budget.train_samples:
            raise ConfigError(f"{source} has trained on {self.position.samples_seen} samples, more than this run's budget "
                              f"of {self.budget.train_samples}: resume with at least that many (trainer.train_samples)")
        position, cut_epoch = self.position, self._epoch_cut_by_the_budget()
        if cut_epoch and not self.finished:
            per_epoch = self.budget.samples_per_epoch
            raise ConfigError(
                f"{source} ended inside epoch {cut_epoch}, where its budget of {position.samples_seen} samples cut it "
                f"({position.samples_seen - (cut_epoch - 1) * per_epoch} of {per_epoch}): only a run that ended at the "
                f"end of an epoch can be extended exactly. Start a new run with trainer.train_samples="
                f"{self.budget.train_samples}")
        if source is not None and self.finished and source.parent.resolve() != self.checkpoint_dir.resolve():
            advice = "Evaluate it" if cut_epoch else "Raise trainer.train_samples to train it further, or evaluate it"
            raise ConfigError(f"{source} has trained on {position.samples_seen} samples, this run's whole budget: "
                              f"nothing is left to train in {self.run_dir}. {advice}: "
                              f"python -m vision_exp.evaluate ckpt={source}")
        if source is not None:
            log.info("resumed from %s %s (%d samples seen)", source,
                     f"in epoch {position.epoch + 1} after batch {position.batch}" if position.batch
                     else f"at the start of epoch {position.epoch + 1}", position.samples_seen)
            trained_toward = state.get("budget", {}).get("train_samples")
            if trained_toward not in (None, self.budget.train_samples):
                log.warning("%s was trained toward %d samples; this run's budget is %d: from step %d the learning "
                            "rate follows the schedule of %d steps", source, trained_toward, self.budget.train_samples,
                            position.step, self.budget.total_steps)

    def _epoch_cut_by_the_budget(self) -> int:
        """The epoch (from 1) in which the budget cut the restored run, 0 if it ended at an epoch's end. Whole
        batches since the last epoch end give these samples; fewer means the budget cut the last batch (the
        checkpoint came at the end of that cut epoch, or from a stop signal at its last step)."""
        position, per_epoch = self.position, self.budget.samples_per_epoch
        whole_batches = position.epoch * per_epoch + min(position.batch * self.budget.batch_size, per_epoch)
        return position.epoch + (1 if position.batch else 0) if position.samples_seen < whole_batches else 0

    @property
    def finished(self) -> bool:
        """The budget is spent (a resumed run that had already completed)."""
        return self.position.samples_seen >= self.budget.train_samples

    def fit(self) -> dict:
        """Train from the current position (see `restore`) to the end of the budget."""
        self.signals = StopSignals()
        reporter = None
        if self.dist.is_main:  # the other ranks train and evaluate their shards, and write nothing
            reporter = RunReporter(self.run_dir, self.hparams, self.position.epoch, self.position.samples_seen,
                                   self.title, self.config_text, self.cfg.log_every_steps, self.budget.steps_per_full_epoch)
        self.reporter = reporter
        try:
            with self.signals:
                summary = self._train(reporter)
                if reporter is not None:
                    reporter.finish(summary)
                late = self._signal_on_any_rank()  # after the last step, while the run evaluated or wrote its files
        except BaseException:
            if reporter is not None:
                reporter.close()
            raise
        if late:  # every rank stops: under torchrun the others would start a sweep's next job alone
            raise Interrupted(f"{signal.Signals(late).name} arrived as the run ended: it completed first "
                              f"({self.run_dir / 'metrics.json'})", late, completed=True)
        return {"status": "completed", **summary}

    def _signal_on_any_rank(self) -> int:
        """The stop signal this or any rank received (the largest number: a sum would name another signal when
        several ranks got one, SIGTERM twice as SIGPWR), 0 for none; every rank must call it at the same point."""
        received = self.signals.received or 0
        return int(all_reduce_max(torch.tensor(received, device=self.device)).item()) if self.dist.enabled else received

    def _train(self, reporter: Optional[RunReporter]) -> dict:
        budget = self.budget
        log.info("training %s (%s parameters): %d samples = %d steps of %d over %d epoch(s) on %s%s",
                 type(self.model).__name__, f"{self.num_params:,}", budget.train_samples, budget.total_steps,
                 self.batch_size, budget.num_epochs, self.device, f" with {self.amp} autocast" if self.amp else "")
        self._session_start, self._elapsed_before = time.perf_counter(), self.position.elapsed_s
        self._samples_before = self.position.samples_seen
        last = {}
        self._last_persist = time.perf_counter()
        while self.position.epoch < budget.num_epochs:
            try:
                self._train_epoch()
            except torch.cuda.OutOfMemoryError as exc:
                raise self._out_of_memory(evaluating=False) from exc
            try:
                last = self._end_epoch()
            except torch.cuda.OutOfMemoryError as exc:
                raise self._out_of_memory(evaluating=True) from exc
            if reporter is not None:
                reporter.log_epoch(last)
            self._check_evaluation_finite(last)
            finished = self.position.epoch >= budget.num_epochs
            every = self.cfg.checkpoint_every_steps  # a step checkpoint due at the epoch's last step is written here
            if (finished or (every and self.position.step % every == 0)
                    or time.perf_counter() - self._last_persist >= self.cfg.save_interval_s):
                self._persist()
        if reporter is not None and reporter.records:
            last = reporter.records[-1]
        return self._summary(last)

    def _share_batchnorm_statistics(self) -> None:
        """Rank 0's BatchNorm statistics on every rank, the live model's and the EMA's: DDP sends them only at the
        start of a forward, so after the last step each rank holds its own shard's, and the ranks would score
        different models, none of them the one the checkpoints save (timm's distribute_bn)."""
        from timm.utils import distribute_bn

        for model in (self.model, self.ema.module if self.ema is not None else None):
            if model is not None:
                distribute_bn(model, self.dist.world_size, reduce=False)

    def _out_of_memory(self, evaluating: bool) -> OutOfMemory:
        """One line naming the setting that fixes it: training, more parts per batch (each rank's share of the
        batch bounds them); evaluating, smaller batches (every rank still needs one)."""
        where = f"step {self.position.step} (epoch {self.position.epoch + 1})"
        world = self.dist.world_size
        if evaluating:
            size = self.data.val.batch_size
            what = f"evaluating at {where} with data.eval_batch_size={size}"
            fix = f"data.eval_batch_size={size // 2}" if size // 2 >= world else ""
            why = "the same metrics from smaller batches"
        else:
            parts, per_rank = self.cfg.grad_accum_steps, -(-self.batch_size // world)
            what = f"at {where} with data.batch_size={self.batch_size} and trainer.grad_accum_steps={parts}"
            fix = f"trainer.grad_accum_steps={min(2 * parts, per_rank)}" if parts < per_rank else ""
            why = "each batch in parts: the same steps and samples with a fraction of the activation memory"
        resume = (f" (its last checkpoint goes on with it: the same command with trainer.resume=auto "
                  f"hydra.run.dir={self.run_dir} {fix})" if fix and last_checkpoint(self.checkpoint_dir) else "")
        return OutOfMemory(f"{self.device} ran out of memory {what}: run again with {f'{fix} ({why}), ' if fix else ''}"
                           f"trainer.amp=bf16 or fp16 if it is off, or a smaller model or data.img_size{resume}")

    def _train_epoch(self) -> None:
        position, budget, running = self.position, self.budget, self.position.running
        epoch = position.epoch
        steps, samples_target = budget.steps_in_epoch(epoch), budget.samples_in_epoch(epoch)
        self.model.train()
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.float64)
        bar = self._progress_bar(epoch, steps, position.batch)
        log_every = self.cfg.log_every_steps or max(1, steps // 4)
        check_every = self._finite_check_interval(log_every)
        with batch_stream(self.data.train.epoch(epoch, start_batch=position.batch, limit=samples_target)) as batches:
            self._phase_start = time.perf_counter()
            while position.batch < steps:
                fetch_start = time.perf_counter()
                images, labels = next(batches)
                running["wait_s"] += time.perf_counter() - fetch_start
                take = min(self.batch_size, samples_target - position.batch * self.batch_size)  # global batch size
                loss, batch_correct = self._step(images, labels, take)
                loss_sum += loss.detach().double() * len(labels)
                correct += batch_correct
                position.batch += 1
                position.step += 1
                position.samples_seen += take
                running["count"] += take
                if self.reporter is not None:  # the lr this step used, before the schedule moves it on
                    self.reporter.log_step(position.step, position.samples_seen, loss, len(labels),
                                           self.optimizer.param_groups[0]["lr"])
                self.scheduler.step_update(num_updates=position.step)
                if position.batch % check_every == 0:
                    self._check_finite(loss_sum, position.step, check_every)
                    self._check_stop(loss_sum, correct, steps)
                if bar is not None:
                    bar.update(1)
                    if position.batch % 10 == 0:
                        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                elif self.cfg.progress != "none" and (position.batch % log_every == 0):
                    log.info("epoch %d [%d/%d] loss %.4f lr %.3g", epoch + 1, position.batch, steps,
                             loss.item(), self.optimizer.param_groups[0]["lr"])
                if (self.cfg.checkpoint_every_steps and position.step % self.cfg.checkpoint_every_steps == 0
                        and position.batch < steps):
                    self._check_finite(loss_sum, position.step, check_every)  # never keep diverged weights as last.pt
                    self._fold_running(loss_sum, correct)
                    self._save_checkpoints()
                    self._phase_start = time.perf_counter()  # the write is not training time
        if bar is not None:
            bar.close()
        self._check_finite(loss_sum, position.step, check_every)
        self._check_stop(loss_sum, correct, steps)  # a signal since the last check must not wait for the evaluation
        self._fold_running(loss_sum, correct)

    def _step(self, images: torch.Tensor, labels: torch.Tensor, global_count: int):
        """One optimizer step on a batch: its mean loss (detached) and its number of correct predictions."""
        images = images.contiguous(memory_format=self.memory_format)
        targets = labels
        if self.batch_augment is not None:  # on the whole batch: mixup pairs and draws as without accumulation
            images, targets = self.batch_augment(images, labels)
        if self.position.step == 0 and self.reporter is not None:
            # A one-off report (the first PNG encode takes ~1 s): off the training clock, like evaluation.
            report_start = time.perf_counter()
            self.reporter.log_inputs(denormalize(images[:32], self.data.mean, self.data.std))
            self._phase_start += time.perf_counter() - report_start
        self.optimizer.zero_grad(set_to_none=True)
        parts = [part for part in zip(*(x.tensor_split(self.cfg.grad_accum_steps) for x in (images, targets, labels)))
                 if len(part[2])]
        loss_sums, correct = [], 0
        for index, (part_images, part_targets, part_labels) in enumerate(parts):
            # Under DDP the gradients are averaged over the ranks once, after the batch's last part.
            with self._replica.no_sync() if self.dist.enabled and index < len(parts) - 1 else nullcontext():
                loss, logits = self._forward_backward(part_images, part_targets, len(part_labels) / global_count)
            loss_sums.append(loss * len(part_labels))
            correct = correct + (logits.argmax(1) == part_labels).sum()
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:  # timm's warmup counts the updates done, this one included
            self.ema.update(self.model, step=self.position.step + 1)
        return (loss if len(parts) == 1 else torch.stack(loss_sums).sum() / len(labels)), correct

    def _forward_backward(self, images: torch.Tensor, targets: torch.Tensor, share: float):
        """Forward and backward of (a part of) a batch holding `share` of the global batch's samples: the
        part's mean loss weighted by its share, and DDP's average over the ranks, make the accumulated
        gradient that of the global batch's mean loss, for uneven parts and last batches too."""
        with autocast(self.device, self.amp):
            logits = self.forward(images)
            teacher_logits = self.distillation.teacher_logits(images) if self.distillation is not None else None
        logits = logits.float()  # the losses in full precision
        loss = self.train_loss(logits, targets)
        if teacher_logits is not None:  # the teacher sees the student's inputs, mixed and augmented as they are
            loss = self.distillation(loss, logits, teacher_logits.float())
        weight = share * self.dist.world_size
        self.scaler.scale(loss * weight if weight != 1 else loss).backward()
        return loss.detach(), logits.detach()

    def _fold_running(self, loss_sum: torch.Tensor, correct: torch.Tensor) -> None:
        """Move the device-side running sums into the position (one sync), e.g. before a checkpoint."""
        running = self.position.running
        totals = all_reduce_sum(torch.stack([loss_sum, correct]))
        running["loss_sum"] += totals[0].item()
        running["correct"] += totals[1].item()
        loss_sum.zero_()
        correct.zero_()
        now = time.perf_counter()
        running["time_s"] += now - self._phase_start
        self.position.train_time_s += now - self._phase_start
        self._phase_start = now
        self.position.elapsed_s = self._elapsed_before + now - self._session_start

    def _check_stop(self, loss_sum: torch.Tensor, correct: torch.Tensor, steps: int) -> None:
        """After a stop signal: checkpoint this exact position and end the run (all ranks together)."""
        signum = self._signal_on_any_rank()
        if not signum:
            return
        self._fold_running(loss_sum, correct)
        self._persist()
        raise Interrupted(
            f"stopped by {signal.Signals(signum).name} at step {self.position.step} "
            f"(epoch {self.position.epoch + 1}, batch {self.position.batch}/{steps}); checkpoint saved to "
            f"{self.checkpoint_dir / 'last.pt'}",  # how to continue: the entry point knows (a run or a sweep)
            signum,
        )

    def _finite_check_interval(self, log_every: int) -> int:
        """Steps between NaN checks: every step on the CPU; on an accelerator a check waits for the device, so at
        most every 25 steps, and before every checkpoint."""
        return 1 if self.device.type == "cpu" else min(log_every, 25)

    def _check_finite(self, loss_sum: torch.Tensor, step: int, window: int) -> None:
        bad = all_reduce_sum((~torch.isfinite(loss_sum)).double())  # every rank stops together
        if bad.item() > 0:
            where = f"step {step}" if window == 1 else f"steps {max(1, step - window + 1)}-{step}"
            raise self._diverged(f"the training loss became NaN or infinite at {where} (epoch {self.position.epoch + 1})")

    def _check_evaluation_finite(self, record: dict) -> None:
        """A finite training loss can still end an epoch with weights that evaluate to NaN or infinity (its last
        update diverged, or a BatchNorm running statistic became NaN): stop before they are saved as last.pt."""
        bad = [key for key in ("val/loss", "train/loss") if key in record and not math.isfinite(record[key])]
        if bad:
            raise self._diverged(f"the evaluation loss ({' and '.join(bad)}) became NaN or infinite at step "
                                 f"{record['step']} (end of epoch {record['epoch']}), though the training loss was finite")

    def _diverged(self, what: str) -> TrainingDiverged:
        """`what` diverged, the checkpoint to go back to, and the settings that usually prevent it."""
        last = self.checkpoint_dir / "last.pt"
        return TrainingDiverged(f"{what}; last good checkpoint: {last if last.is_file() else 'none yet'}. Try a lower "
                                f"optimizer.lr or trainer.grad_clip" + (", or trainer.amp=bf16/off" if self.amp else ""))

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights that are evaluated and kept as best: the EMA when it is on."""
        return self.ema.module if self.ema is not None else self.model

    def _end_epoch(self) -> dict:
        position, running = self.position, self.position.running
        if self.dist.enabled and not self.cfg.sync_bn:
            self._share_batchnorm_statistics()
        model, fmt = self.eval_model, self.memory_format
        eval_start = time.perf_counter()
        evaluates = self._evaluates_after(position.epoch + 1)
        if evaluates:  # before the epoch counts as ended: running out of memory here names it
            val = evaluate(model, self.data.val.epoch(0), self.device, self.amp, self.data.num_classes, fmt)
            train = evaluate(model, self.data.train_eval.epoch(0), self.device, self.amp, memory_format=fmt)
        eval_time = time.perf_counter() - eval_start
        position.epoch += 1
        evaluated = {}
        if evaluates:
            if val["acc"] > position.best_val_acc:
                position.best_val_acc, position.best_epoch = val["acc"], position.epoch
                if self.dist.is_main:  # kept on the device until the next write: a copy is cheap, a file is not
                    self._best_unsaved = {**self.class_info, "epoch": position.epoch, "val_acc": val["acc"],
                                          "samples_seen": position.samples_seen,
                                          "model": {k: v.detach().clone() for k, v in model.state_dict().items()}}
                    self._best_confusion = (val["confusion"], position.epoch, position.samples_seen)
            evaluated = {"train/loss": train["loss"], "train/acc": train["acc"], "val/loss": val["loss"],
                         "val/acc": val["acc"], "val/acc5": val["acc5"], "val/acc_best": position.best_val_acc}
        count = max(running["count"], 1)
        record = {
            "epoch": position.epoch,
            "epoch_progress": position.samples_seen / self.budget.samples_per_epoch,
            "step": position.step,
            "samples_seen": position.samples_seen,
            "train_running/loss": running["loss_sum"] / count,
            "train_running/acc": 100.0 * running["correct"] / count,
            **evaluated,
            "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_s": running["count"] / max(running["time_s"], 1e-9),
            "data_wait_frac": running["wait_s"] / max(running["time_s"], 1e-9),
            "epoch_time_s": running["time_s"] + eval_time,
        }
        position.batch = 0
        position.running = Position().running
        session_s = time.perf_counter() - self._session_start
        position.elapsed_s = self._elapsed_before + session_s
        line = (f"epoch {position.epoch}/{self.budget.num_epochs}: train_running acc {record['train_running/acc']:.2f} "
                f"loss {record['train_running/loss']:.4f}")
        if evaluated:
            line += (f" | train acc {record['train/acc']:.2f} loss {record['train/loss']:.4f} | val acc "
                     f"{record['val/acc']:.2f} loss {record['val/loss']:.4f}")
        log.info("%s | %.0f img/s%s", line, record["images_per_s"],
                 time_left(session_s, position.samples_seen - self._samples_before,
                           self.budget.train_samples - position.samples_seen))
        return record

    def _evaluates_after(self, epoch: int) -> bool:
        """Whether the end of `epoch` (from 1) evaluates: every trainer.eval_every_epochs-th epoch, and the last,
        whose numbers are the run's. Evaluation draws no random number, so it changes no step of training."""
        return epoch % self.cfg.eval_every_epochs == 0 or epoch >= self.budget.num_epochs

    def _save_checkpoints(self) -> None:
        """best.pt when a better epoch came since the last write, then last.pt. In this order a kill between
        the two leaves best.pt ahead of last.pt, and the resumed run writes it again; the other way round,
        last.pt would hold the new best as saved, and best.pt would never be written."""
        if self._best_unsaved is not None:
            save_checkpoint(self._best_unsaved, self.checkpoint_dir / "best.pt")
            self._best_unsaved = None
        self.save("last.pt")

    def _persist(self) -> None:
        """The slow writes: the checkpoints and the figures. Called at the end, on a stop signal, and
        at epoch ends once trainer.save_interval_s seconds have passed, so that epochs of a second on
        a GPU are not spent writing files."""
        self._save_checkpoints()
        if self.reporter is not None:
            if self._best_confusion is not None:
                confusion, epoch, samples_seen = self._best_confusion
                self.reporter.log_confusion(confusion, self.data.class_names, epoch, samples_seen)
                self._best_confusion = None
            if hasattr(self.eval_model, "attention_maps"):
                self.reporter.log_attention(self._attention_overlays(self.eval_model), self.position.samples_seen,
                                            self.eval_model.pool)
            self.reporter.plot_curves()
        self._last_persist = time.perf_counter()

    def _attention_overlays(self, model: torch.nn.Module) -> torch.Tensor:
        """The head's attention over the same 8 validation images, at each write of the figures."""
        if self._probe_images is None:
            self._probe_images = next(iter(self.data.val.epoch(0)))[0][:8]
        attention = classifier_attention(model, self._probe_images)  # attention_maps draws them in eval mode
        return attention_overlay(denormalize(self._probe_images, self.data.mean, self.data.std), attention)

    def _summary(self, last: dict) -> dict:
        position = self.position
        return {
            "epochs": self.budget.num_epochs,
            "steps": position.step,
            "samples_seen": position.samples_seen,
            "val_acc": last.get("val/acc"),
            "val_acc5": last.get("val/acc5"),
            "val_loss": last.get("val/loss"),
            "best_val_acc": position.best_val_acc,
            "best_epoch": position.best_epoch,
            "train_acc": last.get("train/acc"),
            "train_loss": last.get("train/loss"),
            "train_running_acc": last.get("train_running/acc"),
            "train_running_loss": last.get("train_running/loss"),
            "wall_time_s": position.elapsed_s,
            "train_images_per_s": position.samples_seen / max(position.train_time_s, 1e-9),
            "params": self.num_params,
            "device": str(self.device),
        }

    def _progress_bar(self, epoch: int, steps: int, start: int):
        mode = self.cfg.progress
        if mode == "bar" or (mode == "auto" and sys.stderr.isatty()):
            from tqdm.auto import tqdm

            return tqdm(total=steps, initial=start, desc=f"epoch {epoch + 1}/{self.budget.num_epochs}",
                        unit="batch", leave=False, dynamic_ncols=True)
        return None
