"""Optimizers through timm's factory, with weight decay kept off norms, biases and embeddings."""
from __future__ import annotations

import math
from typing import Optional

import torch
from timm.optim import create_optimizer_v2

from vision_exp.errors import ConfigError

FUSED_CAPABLE = {"sgd", "momentum", "adam", "adamw"}


def scaled_lr(lr: float, batch_size: Optional[int], base_batch_size: Optional[int], rule: str) -> float:
    """Learning rate scaled with the batch size: lr x (batch / base) ("linear", Goyal et al. 2017)
    or lr x sqrt(batch / base) ("sqrt", common for Adam-style optimizers); unchanged without a base."""
    if rule not in ("linear", "sqrt"):
        raise ConfigError(f"optimizer.lr_scale_rule={rule!r}: choose linear or sqrt")
    if base_batch_size is not None and base_batch_size <= 0:  # a negative one: a negative lr, or sqrt's domain error
        raise ConfigError(f"optimizer.lr_base_batch_size={base_batch_size} must be positive (or null: no scaling)")
    if not base_batch_size or not batch_size:
        return lr
    ratio = batch_size / base_batch_size
    return lr * (ratio if rule == "linear" else math.sqrt(ratio))


def create_optimizer(model: torch.nn.Module, name: str = "sgd", lr: float = 0.1, weight_decay: float = 0.0,
                     momentum: float = 0.9, nesterov: bool = False, betas: Optional[list] = None,
                     eps: Optional[float] = None, batch_size: Optional[int] = None,
                     lr_base_batch_size: Optional[int] = None, lr_scale_rule: str = "linear",
                     fused: Optional[bool] = None) -> torch.optim.Optimizer:
    """Build the optimizer for `model`; no decay on 1-D parameters (norms, biases) or on the names
    the model lists in `no_weight_decay()` (position embedding, class token).

    `fused=None` picks PyTorch's fused kernels when the model is on a GPU and the optimizer has them.
    """
    if lr is None or lr <= 0:
        raise ConfigError(f"optimizer.lr={lr} must be positive")
    if weight_decay < 0:
        raise ConfigError(f"optimizer.weight_decay={weight_decay} must not be negative")
    if not 0 <= momentum < 1:  # torch accepts any: at 1 or more the updates never fade and grow without bound
        raise ConfigError(f"optimizer.momentum={momentum} must lie in [0, 1)")
    opt = name.lower()
    if opt == "sgd":  # timm's 'sgd' means Nesterov; 'momentum' is plain heavy-ball SGD
        opt = "sgd" if nesterov else "momentum"
    extra = {}
    if opt in ("sgd", "momentum") and (betas is not None or eps is not None):  # timm would drop them silently
        raise ConfigError(f"optimizer.betas and optimizer.eps are Adam-style settings: {name!r} has none (set them "
                          f"to null, or choose optimizer=adamw)")
    if betas is not None:
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
            raise ConfigError(f"optimizer.betas={list(betas)} must be two numbers in [0, 1), e.g. [0.9, 0.999]")
        extra["betas"] = tuple(betas)
    if eps is not None:
        extra["eps"] = eps
    on_gpu = next(model.parameters()).is_cuda
    if fused is None:
        fused = on_gpu and opt in FUSED_CAPABLE
    if fused and opt not in FUSED_CAPABLE:
        raise ConfigError(f"optimizer.fused=true: {name!r} has no fused implementation (sgd, adam and adamw have); "
                          f"leave optimizer.fused unset")
    if fused:
        extra["fused"] = True
        extra["foreach"] = None
    lr = scaled_lr(lr, batch_size, lr_base_batch_size, lr_scale_rule)
    try:
        return create_optimizer_v2(model, opt=opt, lr=lr, weight_decay=weight_decay, momentum=momentum, **extra)
    except (ValueError, AssertionError) as exc:
        raise ConfigError(f"optimizer {name!r}: {exc}") from None
