"""The one writer of a run's results: metrics.jsonl, metrics.json, curves.png and tb/.

The trainer says what happened (`log_epoch`, `finish`, `close`); this class decides how it is
stored (a run that does not complete is recorded by `records.record_failure`). TensorBoard gets one sub-run
per metric family (tb/train, tb/train_running, tb/val) with the same tags, so train and val overlay
in one chart, and the run itself (tb/) carries the hyper-parameters for the HParams dashboard. Within
epochs, the run charts train_step/loss and train_step/lr every few steps (`log_step`), under tags of
their own so that the per-epoch charts keep overlaying train and val. The x-axis is training samples
seen, so runs with other batch sizes or subsets line up.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Optional

import torch

from vision_exp.reporting.curves import FAMILIES, plot_curves
from vision_exp.reporting.figures import confusion_figure, image_grid
from vision_exp.reporting.hparams import session_end, session_start, table_hparams
from vision_exp.reporting.files import read_jsonl, write_json_atomic, write_text_atomic
from vision_exp.reporting.records import METRICS_FILE

SESSION_SUFFIX = ".session"
STEP_FAMILY = "train_step"  # per-step charts: tags of their own, apart from the epochs' loss/acc overlays
STEP_POINTS_EVERY = 50      # steps between two per-step points by default ...
STEP_POINTS_PER_EPOCH = 4   # ... or fewer, so that an epoch has at least this many


def step_interval(log_every_steps: Optional[int], steps_per_epoch: int) -> int:
    """Steps between two train_step/* points: trainer.log_every_steps, by default every 50 steps, or more
    often where an epoch has fewer than 200 (4 points an epoch, every step in epochs of under 8)."""
    return log_every_steps or max(1, min(STEP_POINTS_EVERY, steps_per_epoch // STEP_POINTS_PER_EPOCH))


class RunReporter:
    def __init__(self, run_dir: Path, hparams: dict, completed_epochs: int = 0, resume_samples: int = 0, title: str = "",
                 config_text: str = "", log_every_steps: Optional[int] = None, steps_per_epoch: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = Path(run_dir)
        self.hparams = table_hparams(hparams)
        self.step_every = step_interval(log_every_steps, steps_per_epoch)
        self._step_losses: list = []  # (mean loss on the device, samples) of each step since the last point
        self.title = title
        self.jsonl = self.run_dir / "metrics.jsonl"
        # A resumed run drops what was logged after its checkpoint: those epochs run again.
        self.records = [r for r in read_jsonl(self.jsonl) if r["epoch"] <= completed_epochs]
        write_text_atomic(self.jsonl, "".join(json.dumps(r) + "\n" for r in self.records))
        purge = resume_samples + 1 if resume_samples else None
        tb = self.run_dir / "tb"
        if not resume_samples and tb.exists():  # an attempt killed before its first checkpoint: its points would mix in
            shutil.rmtree(tb)
        self.writer = SummaryWriter(str(tb), purge_step=purge)
        self.family_writers = {f: SummaryWriter(str(tb / f), purge_step=purge) for f, _, _ in FAMILIES}
        self.config_text = config_text
        self._replace_session(ended=False)

    def _replace_session(self, ended: bool) -> None:
        """The HParams session (its start, and its end once the run completed) and the config, in an events file of
        their own that each attempt replaces: TensorBoard keeps the first session start and end it reads, and a
        resumed run may have changed its budget, or be the extension of a completed one."""
        from torch.utils.tensorboard import SummaryWriter

        tb = self.run_dir / "tb"
        earlier = list(tb.glob(f"events.out.tfevents.*{SESSION_SUFFIX}"))
        with SummaryWriter(str(tb), filename_suffix=SESSION_SUFFIX) as writer:
            writer.file_writer.add_summary(session_start(self.hparams, trial_id=str(self.run_dir)))
            if self.config_text:
                writer.add_text("config", "    " + self.config_text.replace("\n", "\n    "), 0)
            if ended:
                writer.file_writer.add_summary(session_end())
        for path in earlier:  # after the new one is written: a run killed in between still has a session
            path.unlink()

    def log_epoch(self, record: dict) -> None:
        """One epoch's metrics: keys like 'val/acc', 'train_running/loss', 'lr', 'samples_seen'."""
        self.records.append(record)
        with open(self.jsonl, "a") as handle:  # NaN is no JSON: a strict reader would reject the line
            handle.write(json.dumps({k: None if isinstance(v, float) and not math.isfinite(v) else v
                                     for k, v in record.items()}, allow_nan=False) + "\n")
        step = record["samples_seen"]
        for key, value in record.items():
            if value is None:  # val/acc5 of five classes or fewer
                continue
            family, _, tag = key.partition("/")
            if family in self.family_writers and tag:
                self.family_writers[family].add_scalar(tag, value, step)
            elif key not in ("epoch", "step", "samples_seen", "epoch_progress"):
                self.writer.add_scalar(key, value, step)
        for writer in (self.writer, *self.family_writers.values()):
            writer.flush()

    def log_step(self, step: int, samples_seen: int, loss: torch.Tensor, count: int, lr: float) -> None:
        """One optimizer step (counted from 1 over the whole run): its mean loss over its `count` samples, a
        tensor left on the device, and the learning rate it used. Every `step_every`-th step, the sample-weighted
        mean loss of the steps since the last point and that step's lr become train_step/loss and train_step/lr
        at `samples_seen`: the only wait for the device is there, none at the other steps. The points fall on the
        same steps in a resumed run (whose first window starts at its checkpoint), and a resumed run's purge_step
        drops the points an interrupted attempt logged after its checkpoint."""
        self._step_losses.append((loss.detach(), count))
        if step % self.step_every:
            if len(self._step_losses) >= 64:  # a long interval: one entry instead of a tensor a step (no wait either)
                self._step_losses = [self._window_mean()]
            return
        mean = self._window_mean()[0].item()
        self._step_losses = []
        self.writer.add_scalar(f"{STEP_FAMILY}/loss", mean, samples_seen)
        self.writer.add_scalar(f"{STEP_FAMILY}/lr", lr, samples_seen)

    def _window_mean(self) -> tuple:
        """(the sample-weighted mean loss of the steps since the last point, on the device; their samples)."""
        losses = torch.stack([value.double() for value, _ in self._step_losses])
        counts = [n for _, n in self._step_losses]
        weights = torch.tensor(counts, dtype=torch.float64).to(losses.device, non_blocking=True)
        return (losses * weights).sum() / sum(counts), sum(counts)

    def plot_curves(self) -> None:
        """curves.png from every epoch logged so far (a second of matplotlib: the trainer throttles it)."""
        plot_curves(self.records, self.run_dir / "curves.png", self.title)

    def log_inputs(self, images: torch.Tensor) -> None:
        """The first training batch as the model sees it (after all augmentation), in [0, 1]."""
        self.writer.add_image("inputs/train_augmented", image_grid(images), 0)
        self.writer.flush()

    def log_confusion(self, confusion: torch.Tensor, class_names, epoch: int, step: int) -> None:
        """The validation confusion matrix of the best epoch so far."""
        self.writer.add_figure("val/confusion_best", confusion_figure(confusion, class_names, f"val, epoch {epoch}"), step)

    def log_attention(self, overlays: torch.Tensor, step: int, pool: str) -> None:
        """The head's view of a fixed set of validation images (ViTs): class-token attention, or with
        average pooling the patch tokens' mean attention."""
        tag = "val/attention_cls_token" if pool == "cls" else "val/attention_patch_mean"
        self.writer.add_image(tag, image_grid(overlays), step)

    def close(self, completed: bool = False) -> None:
        """Close the TensorBoard run. Only a completed run ends its HParams session: TensorBoard keeps the first
        end it reads, and a failed or stopped run may yet be resumed to completion (metrics.json says why it stopped)."""
        if completed:
            self._replace_session(ended=True)
        for writer in (self.writer, *self.family_writers.values()):
            writer.close()

    def finish(self, summary: dict) -> None:
        """metrics.json with status completed, the final curves, and the closed TensorBoard run."""
        for key in ("val_acc", "best_val_acc", "train_acc", "train_running_acc"):
            if summary.get(key) is not None:
                self.writer.add_scalar(f"final/{key}", summary[key], summary["samples_seen"])
        write_json_atomic(self.run_dir / METRICS_FILE, {"status": "completed", **summary})
        self.close(completed=True)
