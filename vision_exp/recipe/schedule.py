"""Learning-rate schedules stepped every iteration (timm schedulers with `t_in_epochs=False`).

The trainer calls `step_update(step)` after each optimizer step, and passes the run's total
number of steps, so a schedule always ends exactly where the sample budget ends.
"""
from __future__ import annotations

import logging
from typing import Optional

import torch
from timm.scheduler import CosineLRScheduler, PolyLRScheduler, StepLRScheduler

from vision_exp.errors import ConfigError

log = logging.getLogger(__name__)

SCHEDULES = ("cosine", "linear", "step", "constant")


def warmup_steps(total_steps: int, steps_per_epoch: int, warmup_fraction: Optional[float], warmup_epochs: Optional[float]) -> int:
    if warmup_fraction is not None and warmup_epochs is not None:  # the schedules and presets set warmup_epochs
        raise ConfigError(f"set scheduler.warmup_fraction or scheduler.warmup_epochs, not both (here "
                          f"{warmup_fraction} and {warmup_epochs}): add scheduler.warmup_epochs=null to warm up for "
                          f"a fraction of the run")
    if warmup_fraction is not None:
        if not 0 <= warmup_fraction < 1:
            raise ConfigError(f"scheduler.warmup_fraction={warmup_fraction} must lie in [0, 1)")
        # Rounding may not take the last step: a fraction below 1 promises a decay (to lr_min at the end).
        return min(int(round(warmup_fraction * total_steps)), total_steps - 1)
    if warmup_epochs is not None:
        if warmup_epochs < 0:
            raise ConfigError(f"scheduler.warmup_epochs={warmup_epochs} must not be negative")
        # A run shorter than two warm-ups (a quick look of one epoch) would end still warming up, at the peak
        # learning rate: it warms up for its first half instead.
        return min(int(round(warmup_epochs * steps_per_epoch)), total_steps // 2)
    return 0


def create_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int, name: str = "cosine",
                     warmup_fraction: Optional[float] = None, warmup_epochs: Optional[float] = None,
                     warmup_lr_init: float = 0.0, lr_min: float = 0.0, step_epochs: Optional[float] = None,
                     step_decay: float = 0.1):
    """cosine: linear warmup then cosine decay to `lr_min`; linear: warmup then linear decay to `lr_min`;
    step: x`step_decay` every `step_epochs`, by default every third of the run (the classic ResNet schedule, x0.1
    at epochs 30 and 60 of 90, at any length); constant: warmup then flat (neither of the last two has a floor)."""
    warmup = warmup_steps(total_steps, steps_per_epoch, warmup_fraction, warmup_epochs)
    # timm asserts on a negative lr_min, and takes the others as they come: a negative step_decay flips the
    # learning rate's sign, step_epochs=0 decays at every step.
    if lr_min < 0:
        raise ConfigError(f"scheduler.lr_min={lr_min} must not be negative")
    if warmup_lr_init < 0:
        raise ConfigError(f"scheduler.warmup_lr_init={warmup_lr_init} must not be negative")
    if not 0 < step_decay <= 1:
        raise ConfigError(f"scheduler.step_decay={step_decay} must lie in (0, 1]: the factor each decay multiplies "
                          f"the learning rate by")
    if step_epochs is not None and step_epochs <= 0:
        raise ConfigError(f"scheduler.step_epochs={step_epochs} must be positive (or null: every third of the run)")
    if lr_min and name in ("step", "constant"):
        raise ConfigError(f"scheduler.lr_min={lr_min} has no effect on the {name} schedule: set it to 0 or choose "
                          f"scheduler=cosine or linear")
    common = dict(warmup_t=warmup, warmup_lr_init=warmup_lr_init, t_in_epochs=False)
    if name == "cosine":
        return CosineLRScheduler(optimizer, t_initial=max(1, total_steps - warmup), lr_min=lr_min, warmup_prefix=True, **common)
    if name == "linear":
        return PolyLRScheduler(optimizer, t_initial=max(1, total_steps - warmup), power=1.0, lr_min=lr_min, warmup_prefix=True, **common)
    if name == "step":
        if step_epochs is None:  # a third rounded up: rounded down, a run of 100 steps decays a third time at step 99
            decay = max(1, -(-total_steps // 3))
        else:
            decay = max(1, int(round(step_epochs * steps_per_epoch)))
            if decay >= total_steps:  # a constant schedule under another name
                log.warning("scheduler.step_epochs=%g never decays in a run of %g epochs: the learning rate stays "
                            "constant (null: x%g every third of the run)", step_epochs, total_steps / steps_per_epoch,
                            step_decay)
        return StepLRScheduler(optimizer, decay_t=decay, decay_rate=step_decay, **common)
    if name == "constant":
        return StepLRScheduler(optimizer, decay_t=total_steps + 1, decay_rate=1.0, **common)
    raise ConfigError(f"scheduler.name={name!r}: choose one of {', '.join(SCHEDULES)}")
