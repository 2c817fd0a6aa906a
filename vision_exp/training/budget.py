"""How long a run trains, counted in training samples.

A run's length is a number of samples, `train_samples` (or `epochs` x the training-set size).
Epochs and optimizer steps follow from it, so runs with other batch sizes, epoch counts or
subsets stay comparable: each sees exactly the same number of training images. Every epoch
ends with a partial batch when the set size is not a multiple of the batch size (each image
is seen once per epoch), and the final batch is cut so the run stops exactly at the budget.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from vision_exp.errors import ConfigError


@dataclass(frozen=True)
class Budget:
    samples_per_epoch: int
    batch_size: int
    train_samples: int

    @classmethod
    def create(cls, samples_per_epoch: int, batch_size: int, epochs: Optional[float], train_samples: Optional[int]) -> "Budget":
        if batch_size > samples_per_epoch:  # every step would take the whole set, a batch smaller than the one set
            raise ConfigError(f"data.batch_size={batch_size} is larger than the {samples_per_epoch} training images: "
                              f"choose at most {samples_per_epoch} (the learning rate and BatchNorm assume full batches)")
        if train_samples is None:  # TrainerConfig has checked that epochs is then positive
            train_samples = int(round(epochs * samples_per_epoch))
        if train_samples < batch_size:
            raise ConfigError(
                f"the training budget ({train_samples} samples) is smaller than one batch "
                f"(data.batch_size={batch_size}): raise trainer.train_samples or trainer.epochs"
            )
        return cls(samples_per_epoch, batch_size, int(train_samples))

    @property
    def steps_per_full_epoch(self) -> int:
        return -(-self.samples_per_epoch // self.batch_size)

    @property
    def num_epochs(self) -> int:
        """Epochs started, the last possibly partial."""
        return -(-self.train_samples // self.samples_per_epoch)

    def samples_in_epoch(self, epoch: int) -> int:
        return min(self.samples_per_epoch, self.train_samples - epoch * self.samples_per_epoch)

    def steps_in_epoch(self, epoch: int) -> int:
        return -(-self.samples_in_epoch(epoch) // self.batch_size)

    @property
    def total_steps(self) -> int:
        return sum(self.steps_in_epoch(epoch) for epoch in range(self.num_epochs))

    @property
    def smallest_batch(self) -> int:
        """The fewest samples any training step takes: an epoch's last partial batch, or the one cut at the budget."""
        return min(last_batch_size(self.samples_in_epoch(epoch), self.batch_size) for epoch in range(self.num_epochs))


def last_batch_size(num_samples: int, batch_size: int) -> int:
    """The size of the last batch of `num_samples` taken `batch_size` at a time (the smallest one)."""
    return num_samples - (-(-num_samples // batch_size) - 1) * batch_size


def check_every_rank_gets_samples(world_size: int, smallest: dict) -> None:
    """Ranks take every world_size-th sample of a global batch, so a batch smaller than the number of
    ranks leaves some with none: an empty batch's mean loss is NaN, and collating one fails."""
    for what, size in smallest.items():
        if size < world_size:
            raise ConfigError(
                f"the last {what} batch holds {size} sample(s), fewer than the {world_size} ranks: change "
                f"data.batch_size / data.eval_batch_size or trainer.train_samples so that every batch has {world_size} or more"
            )



def check_every_rank_runs_every_part(world_size: int, grad_accum_steps: int, smallest_batch: int) -> None:
    """SyncBatchNorm exchanges statistics in every part's forward and backward, so every rank must run all
    trainer.grad_accum_steps parts of every batch: a rank whose share is split into fewer would wait forever
    for the others (a rank takes every world_size-th sample of a batch, the fewest being batch // world_size)."""
    share = smallest_batch // world_size
    if share < grad_accum_steps:
        raise ConfigError(
            f"with trainer.sync_bn=true every rank runs all trainer.grad_accum_steps={grad_accum_steps} parts of each "
            f"batch, but the last training batch holds {smallest_batch} sample(s), {share} for some of the "
            f"{world_size} ranks: change data.batch_size or trainer.train_samples so that every batch has "
            f"{world_size * grad_accum_steps} or more, or lower trainer.grad_accum_steps"
        )
