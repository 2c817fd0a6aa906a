"""Device, precision and determinism: the few settings that differ between a laptop and a GPU."""
from __future__ import annotations

import contextlib
import logging
import os
import random
from typing import Optional

import numpy as np
import torch

from vision_exp.errors import ConfigError
from vision_exp.training.config import AMP_MODES

log = logging.getLogger(__name__)


def mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def select_device(name: str = "auto", key: str = "trainer.device") -> torch.device:
    """The torch device `name` names; `key` is the setting an error message names."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"{key}={name!r} is not a device (use auto, cpu, cuda, cuda:1, mps)") from None
    if device.type not in ("cpu", "cuda", "mps"):  # meta, xla, ...: torch names them, the runs do not use them
        raise ConfigError(f"{key}={name}: runs use cpu, cuda or mps (or auto, the best of them available)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}={name} but no CUDA device is available (use {key}=auto)")
    if device.type == "mps" and not mps_available():
        raise ConfigError(f"{key}={name} but this torch has no Apple GPU (MPS) to use (use {key}=auto)")
    return device


def amp_dtype(mode: str, device: torch.device, key: str = "trainer.amp") -> Optional[torch.dtype]:
    """The autocast dtype: bf16 where the GPU supports it, else fp16 (with a GradScaler); none on CPU."""
    if mode not in AMP_MODES:
        raise ConfigError(f"{key}={mode!r}: choose one of {', '.join(AMP_MODES)}")
    if mode == "off" or device.type not in ("cuda", "mps"):
        if mode in ("bf16", "fp16"):  # asked for by name: say that it is not used
            log.warning("%s=%s: mixed precision runs on a GPU only; on %s the run computes in float32", key, mode,
                        device.type)
        return None
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        return torch.float16
    # bf16 needs Ampere (compute capability 8.0) or newer; older cards (T4, P100, V100) would
    # only emulate it, slowly, so they get fp16 with a GradScaler.
    if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0):
        return torch.bfloat16
    return torch.float16


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(enabled: bool, cudnn_benchmark: bool = True) -> None:
    """Bitwise-reproducible kernels (slower); otherwise cudnn autotuning when `cudnn_benchmark`:
    faster steps once each input shape has been timed, which costs seconds in a run of a minute."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = cudnn_benchmark


def rng_state() -> dict:
    """Global RNG states as tensors and plain values (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if mps_available():  # dropout, drop-path and erasing draw from the Apple GPU's own generator
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state and mps_available():
        torch.mps.set_rng_state(state["mps"])
