"""Atomic writes, so a reader never sees a half-written results file or figure, the lock files that
keep two processes from writing the same thing, and the check that a path names a checkpoint file
(torch-free, so the entry points answer a typo in a second)."""
from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import math
import os
import sys
from pathlib import Path
from typing import Iterator, Optional

from vision_exp.errors import ConfigError


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_text_atomic(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, payload: dict) -> None:
    write_text_atomic(path, json.dumps(_json_safe(payload), indent=2) + "\n")


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display on servers, in workers, on CI).

    The first call imports it, and the import leaves reference cycles behind (pyparsing's exceptions, whose
    tracebacks hold every frame of the caller's stack): a run that first plots from inside its trainer would
    otherwise keep its model, optimizer and data (on the GPU too) until the next full garbage collection,
    alive while the next job of a one-process sweep trains. Collected at once, they are freed before the
    caller's frames end."""
    first = "matplotlib.pyplot" not in sys.modules
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if first:
        gc.collect()
    return plt


def save_figure_atomic(fig, path: Path, **savefig_args) -> None:
    """Write a figure through a temporary file, so a reader never sees half a PNG; the figure is closed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    try:
        fig.savefig(tmp, dpi=110, **savefig_args)
        tmp.replace(path)
    finally:
        pyplot().close(fig)
        with contextlib.suppress(OSError):  # e.g. a read-only folder: the error that matters is savefig's
            tmp.unlink(missing_ok=True)


def remove_leftover_temporaries(run_dir: Path) -> None:
    """The temporary files of writes a kill (SIGKILL, a lost machine) cut short in the run folder and its
    checkpoints/, where only the run writes: called by the process that holds the folder's lock, so no write
    of them can still be going on (evaluate and predict write in folders of their own, without the lock)."""
    for folder in (Path(run_dir), Path(run_dir) / "checkpoints"):
        for pattern in (".*.tmp-*", ".*.tmp.png"):
            for leftover in folder.glob(pattern):
                leftover.unlink(missing_ok=True)


def read_json(path: Path, default=None):
    """A JSON file's content, or `default` when it is missing, unreadable (e.g. cut short by a crash) or, given a
    default, of another type than it (a list or null where a record belongs would fail its reader's `.get`)."""
    try:
        content = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default
    return default if default is not None and not isinstance(content, type(default)) else content


def read_jsonl(path: Path) -> list:
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a crash
            break
        if not isinstance(record, dict):  # written by something else: nothing after it is the run's either
            break
        records.append(record)
    return records


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[bool]:
    """An flock on `path` held while the block runs (the OS drops it if the process dies): yields True, or
    False at once, holding nothing, when another process has it."""
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def previous_path(path: Path) -> Path:
    """Where a checkpoint's previous version is kept: `<name>.prev.pt`."""
    return path.with_name(path.stem + ".prev" + path.suffix)


def loadable(checkpoint: Path) -> bool:
    """The checkpoint or its previous version is there: a kill inside a checkpoint write can leave only the
    previous one, and the loader falls back to it."""
    return Path(checkpoint).is_file() or previous_path(Path(checkpoint)).is_file()


def last_checkpoint(checkpoint_dir: Path) -> Optional[Path]:
    """A run folder's `last.pt`, if it or its previous version is there, else None."""
    last = Path(checkpoint_dir) / "last.pt"
    return last if loadable(last) else None


def missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first: what creating it makes. Resolved
    first: in `new/../mine`, the folder is `mine`, which may be there already; when it is not, `new`, which mkdir
    makes on the way, follows it and its parents."""
    resolved = Path(os.path.realpath(folder))
    missing = []
    for candidate in (resolved, *resolved.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    if missing:
        lexical = Path(folder) if Path(folder).is_absolute() else Path.cwd() / folder  # not normalised: `..` stays
        detours = {Path(os.path.realpath(Path(*lexical.parts[:length]))) for length in range(1, len(lexical.parts))}
        missing += sorted((path for path in detours - set(missing) if not path.exists()),
                          key=lambda path: len(path.parts), reverse=True)
    return missing


def check_writable(folder: Path) -> None:
    """Create `folder` and prove it takes a file, or one ConfigError naming it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write to the output folder {folder}: {exc.strerror or exc}") from None


def missing_checkpoint(path: Path, wanted: str = "best.pt") -> Optional[str]:
    """Why `path` names no checkpoint file (a folder, nothing), or None; a folder's `wanted` checkpoint is offered."""
    path = Path(path)
    if path.is_dir():
        inside = next((p for p in (path / "checkpoints" / wanted, path / wanted) if p.is_file()), None)
        hint = f": name a file in it, e.g. {inside}" if inside else ": name a .pt file"
        return f"{path} is a folder, not a checkpoint{hint}"
    if not path.is_file():
        return f"checkpoint not found: {path}"
    return None
