"""Checkpoints that survive crashes: checksummed, written to a temp file and renamed, loaded weights-only.

`save_checkpoint` keeps the previous file as `<name>.prev.pt` and records each file's SHA-256 in
a sidecar `<file>.sha256`. A file that is truncated or corrupt (its digest differs) is detected
on load and the previous one is used instead, with a warning. Loading with `weights_only=True`
means a checkpoint may hold tensors and plain containers but never pickled code, so opening a
file from someone else cannot run anything.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import pickle
from pathlib import Path
from typing import Optional

import torch

from vision_exp.errors import CheckpointError
from vision_exp.reporting.files import missing_checkpoint, previous_path, write_text_atomic

log = logging.getLogger(__name__)


class _HashingWriter:
    """A file wrapper that computes the SHA-256 of what torch.save writes."""

    def __init__(self, handle) -> None:
        self.handle, self.digest = handle, hashlib.sha256()

    def write(self, data) -> int:
        self.digest.update(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(state: dict, path: Path) -> None:
    """Write `state` to `path` atomically; the file it replaces becomes `<name>.prev.pt`.

    A failure (e.g. a full disk) leaves the earlier checkpoints as they were and raises a
    CheckpointError that says so.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            writer = _HashingWriter(handle)
            torch.save(state, writer)
            handle.flush()
            os.fsync(handle.fileno())
        if path.is_file():
            # The digest first: a kill between the two renames leaves last.pt without one (still loadable),
            # never last.prev.pt with the digest of the checkpoint before it.
            if digest_path(path).is_file():
                os.replace(digest_path(path), digest_path(previous_path(path)))
            os.replace(path, previous_path(path))
        write_text_atomic(digest_path(path), writer.digest.hexdigest() + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        kept = next((earlier for earlier in (path, previous_path(path)) if earlier.is_file()), None)
        raise CheckpointError(
            f"could not write checkpoint {path}: {reason}; "
            + (f"the earlier checkpoint {kept} is kept" if kept else "there is no earlier checkpoint to keep")
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def verify(path: Path) -> Optional[str]:
    """Why `path` cannot be trusted (missing, or its digest differs), or None when it is sound."""
    if not path.is_file():
        return "missing"
    recorded = digest_path(path)
    if recorded.is_file() and recorded.read_text().strip() != file_digest(path):
        return "its SHA-256 does not match (truncated or corrupt)"
    return None


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    path = Path(path)
    problem = missing_checkpoint(path)
    if problem:
        raise CheckpointError(problem)
    problem = verify(path)
    if problem:
        raise CheckpointError(f"checkpoint {path} is unusable: {problem}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" in str(exc).lower():  # torch names the class or function it refused
            raise CheckpointError(
                f"refusing to load {path}: it holds more than weights (pickled code or objects), "
                f"and checkpoints are only ever loaded weights-only ({first_line(exc)})"
            ) from None
        raise CheckpointError(f"cannot read checkpoint {path}: not a PyTorch checkpoint, or a damaged one") from None
    except Exception as exc:  # garbage makes the unpickler fail in many ways (EOFError, KeyError, RuntimeError...)
        detail = f": {first_line(exc)}" if str(exc) else ""
        raise CheckpointError(f"cannot read checkpoint {path}: not a PyTorch checkpoint, or a damaged one "
                              f"({type(exc).__name__}{detail})") from None


def first_line(exc: BaseException) -> str:
    return next(iter(str(exc).splitlines()), "")


def load_latest(path: Path, map_location="cpu") -> tuple:
    """(state, file used): `path`, or its previous version when `path` is unusable."""
    try:
        return load_checkpoint(path, map_location), path
    except CheckpointError as exc:
        previous = previous_path(path)
        if not previous.is_file():
            raise
        log.warning("%s; resuming from the previous checkpoint %s instead", exc, previous)
        return load_checkpoint(previous, map_location), previous


def load_model_weights(model: torch.nn.Module, state_dict: dict, source: str, assign: bool = False) -> None:
    """Load weights, naming the keys that do not match (e.g. a checkpoint of another model). assign=True takes
    the checkpoint's tensors themselves, for a model built on the meta device, which has none to copy into."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = sorted(k for k in set(own) & set(state_dict) if own[k].shape != state_dict[k].shape)
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:4])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:4])})")
        if mismatched:
            shown = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}" for k in mismatched[:4]]
            parts.append(f"{len(mismatched)} shape mismatches (e.g. {', '.join(shown)})")
        raise CheckpointError(f"checkpoint {source} does not fit this model: " + "; ".join(parts))
    model.load_state_dict(state_dict, assign=assign)
