"""Checkpoints that survive crashes: written to a temp file and renamed, loaded weights-only.

Loading with `weights_only=True` means a checkpoint can hold tensors and plain containers but
never pickled code, so opening a file from someone else cannot run anything.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from vision_exp.errors import CheckpointError


def save_checkpoint(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing to load {path}: it holds more than weights (pickled code or objects), "
            f"and checkpoints are only ever loaded weights-only ({str(exc).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None


def load_model_weights(model: torch.nn.Module, state_dict: dict, source: str) -> None:
    """Load weights, naming the keys that do not match (e.g. a checkpoint of another model)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = sorted(k for k in set(own) & set(state_dict) if own[k].shape != state_dict[k].shape)
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if mismatched:
            shown = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}" for k in mismatched[:5]]
            parts.append(f"shape mismatches {shown}")
        raise CheckpointError(f"checkpoint {source} does not fit this model: " + "; ".join(parts))
    model.load_state_dict(state_dict)
