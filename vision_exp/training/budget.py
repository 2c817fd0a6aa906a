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
        if train_samples is None:
            if epochs is None or epochs <= 0:
                raise ConfigError(f"trainer.epochs={epochs} must be positive (or set trainer.train_samples)")
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
