"""Decode a split once into a uint8 array on disk; every later run reads it memory-mapped.

Small models at 32-64 px train faster than a machine decodes JPEGs, so decoding every epoch
bounds the whole run. A cache entry is a folder named after a hash of the data settings that
select its images (dataset, classes, per-class limits, seed, stored size), holding
`images.npy` (N, S, S, 3) uint8, `labels.npy` and `manifest.json` (the files with their sizes
and labels, the classes). A changed config gives another entry; changed files (another list, another
size, or in the folder it was built from another modification time) rebuild the entry. Because the manifest names everything a run needs, a cache
copied to another machine works there without the original images. Entries are built in a
temporary folder and renamed into place, so an interrupted build leaves no half-written cache.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from vision_exp.data.hf_rows import is_row_uri, row_content_id
from vision_exp.data.images import open_rgb, resize_center_square
from vision_exp.data.index import Split
from vision_exp.errors import DataError
from vision_exp.reporting.files import exclusive_lock, read_json, write_json_atomic

log = logging.getLogger(__name__)

CACHE_FORMAT = 2  # bump when the decoding or the layout changes
CHUNK = 64


@dataclass(frozen=True)
class CachedSplit:
    """Decoded images (N, S, S, 3) uint8, their labels, and the files that could not be read."""

    images: np.ndarray
    labels: np.ndarray
    skipped: tuple


def content_id(path: str, base: Path) -> tuple:
    """(name, stamp, modification time) of an image: a file's path relative to the dataset root, its size in
    bytes and its modification time in ns (one stat), or a dataset row's split/row, the dataset's fingerprint
    (see hf_rows) and None."""
    if is_row_uri(path):
        return (*row_content_id(path), None)
    stat = os.stat(path)
    return str(Path(path).relative_to(base)), stat.st_size, stat.st_mtime_ns


def file_records(split: Split, root: str) -> tuple:
    """([name, stamp, label] of every image: what identifies a split's content; each image's modification time:
    with the size, what tells an image rewritten in place, same size as uncompressed formats keep, from the
    cached one)."""
    base, files, mtimes = Path(root), [], []
    for path, label in zip(split.paths, split.labels):
        name, stamp, mtime = content_id(path, base)
        files.append([name, stamp, int(label)])
        mtimes.append(mtime)
    return files, mtimes


def is_current(manifest: Optional[dict], files: list, mtimes: list) -> bool:
    """The entry holds these files: the same names, sizes and labels, and the same modification times while the
    folder it was built from is there (that one, or another dataset of the same names and sizes beside it, as
    uncompressed images of one size are). A cache copied to another machine, or kept after its dataset moved,
    is matched on names and sizes alone."""
    if manifest is None or manifest.get("files") != files:
        return False
    recorded, built_from = manifest.get("mtimes"), Path(str(manifest.get("root")))
    return recorded is None or recorded == mtimes or not built_from.exists()


def _decode_chunk(args) -> list:
    """Worker: decode paths into rows [start, start+len) of the memory-mapped array."""
    array_path, start, paths, size = args
    out = np.load(array_path, mmap_mode="r+")
    failed = []
    for offset, path in enumerate(paths):
        try:
            out[start + offset] = np.asarray(resize_center_square(open_rgb(path, size), size))
        except Exception as exc:  # any undecodable file is reported by name, never fatal here
            failed.append((start + offset, f"{path}: {exc}"))
    out.flush()
    return failed


def _leave_sigint_to_the_main_process() -> None:
    """Pool initializer: Ctrl-C signals the whole process group, and a worker that took it would print its own
    traceback, hand a KeyboardInterrupt back as a chunk's result, or leave the pool waiting forever; the main
    process alone stops the build (and the run, with one line)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _sigint_held():
    """A SIGINT during the block is delivered when it ends. Starting the pool: a KeyboardInterrupt between a
    worker's start and its registration would leave that worker behind, waiting for work forever, and workers
    forked here keep the holding handler until their initializer ignores SIGINT. Stopping it: a second Ctrl-C
    would cut short the clean-up that keeps no worker or half-written folder behind."""
    if threading.current_thread() is not threading.main_thread():  # signals are handled in the main thread only
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            signal.raise_signal(signal.SIGINT)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Kill the workers, then wait for the pool's end: a pool shut down or left to the interpreter's exit would
    first decode every chunk already queued (all of them, at exit), so a Ctrl-C would not stop at once."""
    with _sigint_held():
        for process in list(pool._processes.values()):  # no public way before Python 3.14's terminate_workers()
            process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)


def _decode_all(array_path: Path, paths: tuple, size: int, workers: int, desc: str) -> list:
    from tqdm.auto import tqdm

    jobs = [(str(array_path), i, paths[i : i + CHUNK], size) for i in range(0, len(paths), CHUNK)]
    failed = []
    progress = tqdm(total=len(paths), desc=desc, unit="img", disable=not sys.stderr.isatty())
    pool = ProcessPoolExecutor(workers, initializer=_leave_sigint_to_the_main_process) if workers > 1 else None
    try:
        if pool is None:
            results = map(_decode_chunk, jobs)
        else:
            with _sigint_held():  # the workers start on the first submit
                results = pool.map(_decode_chunk, jobs)
        for job, chunk_failed in zip(jobs, results):
            failed += chunk_failed
            progress.update(len(job[2]))
    except BaseException:  # Ctrl-C, a broken pool, a full disk: no worker goes on decoding
        if pool is not None:
            _stop_workers(pool)
        raise
    finally:
        progress.close()
    if pool is not None:
        pool.shutdown()
    return sorted(failed)


def copy_rows(source: Path, rows: np.ndarray, target: Path) -> None:
    """The given rows of an array file into a new one, a chunk at a time: an ImageNet-sized split (tens of GB)
    never has to fit in memory, as indexing the memory map with all rows at once would make it."""
    images = np.load(source, mmap_mode="r")
    out = np.lib.format.open_memmap(target, mode="w+", dtype=images.dtype, shape=(len(rows), *images.shape[1:]))
    for start in range(0, len(rows), CHUNK):
        out[start:start + CHUNK] = images[rows[start:start + CHUNK]]
    out.flush()


def build_lock(tmp: Path) -> Path:
    """Held by the process building into `tmp` for as long as the build runs: beside it, not in it, so that the
    finished entry holds no lock file."""
    return tmp.with_name(tmp.name + ".lock")


def remove_abandoned_builds(entry: Path) -> None:
    """The temporary folders of builds of `entry` that a kill (SIGKILL, a session's time limit) cut short: gigabytes
    each for a large split, which no later build would reuse. One whose lock no process holds is abandoned; a build
    in progress, here or on another machine sharing the folder, holds its lock."""
    for leftover in entry.parent.glob(f"{entry.name}.tmp-*"):
        if not leftover.is_dir():
            continue
        lock = build_lock(leftover)
        with exclusive_lock(lock) as held:
            if held:
                shutil.rmtree(leftover, ignore_errors=True)
                lock.unlink(missing_ok=True)


def build_split_cache(entry: Path, split: Split, files: list, dataset_info: dict, size: int, workers: int,
                      on_bad_image: str) -> None:
    """Decode `split` into `entry/` (a fresh folder, renamed into place when complete)."""
    tmp = entry.parent / f"{entry.name}.tmp-{os.getpid()}"
    entry.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_builds(entry)
    with exclusive_lock(build_lock(tmp)):  # taken before the folder exists: a cleaner never sees it unheld
        try:
            _build_into(tmp, entry, split, files, dataset_info, size, workers, on_bad_image)
        finally:
            build_lock(tmp).unlink(missing_ok=True)


def _build_into(tmp: Path, entry: Path, split: Split, files: list, dataset_info: dict, size: int, workers: int,
                on_bad_image: str) -> None:
    tmp.mkdir()  # a leftover of this name (another process's, long gone) went with remove_abandoned_builds
    try:
        array_path = tmp / "images.npy"
        np.lib.format.open_memmap(array_path, mode="w+", dtype=np.uint8, shape=(len(split), size, size, 3)).flush()
        failed = _decode_all(array_path, split.paths, size, workers, f"caching {entry.name}")
        if failed and on_bad_image == "error":
            raise DataError(f"cannot read image {failed[0][1]} (data.on_bad_image=skip skips it)")
        keep = np.setdiff1d(np.arange(len(split)), [i for i, _ in failed])
        if failed:
            log.warning("skipped %d unreadable images in %s, e.g. %s", len(failed), entry.name, failed[0][1])
            copy_rows(array_path, keep, tmp / "kept.npy")
            os.replace(tmp / "kept.npy", array_path)
        np.save(tmp / "labels.npy", np.asarray(split.labels, dtype=np.int64)[keep])
        write_json_atomic(tmp / "manifest.json", {
            "format": CACHE_FORMAT,
            "size": size,
            "count": int(len(keep)),
            "files": files,
            "kept": keep.tolist(),
            "skipped": [message for _, message in failed],
            **dataset_info,
        })
        _move_into_place(tmp, entry)
    except BaseException:
        with _sigint_held():
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def _move_into_place(tmp: Path, entry: Path) -> None:
    """Rename the finished build to `entry`. When parallel jobs build the same entry, the first
    rename wins and a later builder keeps that entry (same files, sizes and times) instead of replacing it
    under readers' feet; a stale entry (other files) is replaced, and when another job's build takes its
    place between its removal and this rename, that build is kept."""
    for _ in range(3):
        try:
            os.rename(tmp, entry)  # atomic; fails when entry exists and holds files
            return
        except OSError:
            built, existing = read_manifest(tmp), read_manifest(entry)
            same = existing is not None and all(existing.get(k) == built.get(k) for k in ("files", "mtimes"))
            if same and load_split_cache(entry) is not None:
                shutil.rmtree(tmp, ignore_errors=True)
                return
            shutil.rmtree(entry, ignore_errors=True)
    os.rename(tmp, entry)  # still in the way after three tries: the error says why


def read_manifest(entry: Path) -> Optional[dict]:
    """The entry's manifest, or None when it is missing or holds no record (cut short, edited)."""
    return read_json(entry / "manifest.json", {}) or None


def load_split_cache(entry: Path) -> Optional[CachedSplit]:
    """The cached split at `entry`, or None when it is absent or does not match its manifest."""
    manifest = read_manifest(entry)
    if manifest is None:
        return None
    try:
        # Copy-on-write: torch.from_numpy takes it without a read-only warning; the file is never written.
        images = np.load(entry / "images.npy", mmap_mode="c")
        labels = np.load(entry / "labels.npy")
    except (OSError, ValueError, EOFError):  # EOFError: an empty .npy, as an interrupted copy of the cache leaves
        images = labels = None
    size = manifest.get("size")
    if (manifest.get("format") != CACHE_FORMAT or images is None or len(labels) != len(images)
            or not isinstance(manifest.get("skipped"), list)
            or images.shape != (manifest.get("count"), size, size, 3)):
        log.warning("cache %s does not match its manifest: rebuilding it", entry)
        return None
    return CachedSplit(images, labels, tuple(manifest["skipped"]))


def cached_split(entry: Path, split: Split, root: str, dataset_info: dict, size: int, workers: int,
                 on_bad_image: str) -> CachedSplit:
    """The split decoded at `size`: read from `entry`, or (re)built there first when its file list changed.
    `dataset_info` (root, classes, class names) goes into the manifest, so a run can start from the cache alone."""
    files, mtimes = file_records(split, root)
    found = load_split_cache(entry) if is_current(read_manifest(entry), files, mtimes) else None
    if found is None:
        log.info("decoding %d images into %s", len(split), entry)
        try:
            build_split_cache(entry, split, files, {**dataset_info, "mtimes": mtimes}, size, workers, on_bad_image)
        except OSError as exc:  # no permission, a read-only file system (Kaggle's /kaggle/input), a file in the way
            raise DataError(f"cannot write the data cache at {entry.parent}: {exc.strerror or exc} "
                            f"(set VISION_EXP_CACHE or data.cache_dir)") from None
        found = load_split_cache(entry)
    return checked_skips(found, entry, on_bad_image)


def checked_skips(found: CachedSplit, entry: Path, on_bad_image: str) -> CachedSplit:
    """A cache built under `skip` (the setting is not part of the cache key): refused with data.on_bad_image=error,
    its skipped images counted in a warning otherwise."""
    if found.skipped and on_bad_image == "error":
        raise DataError(f"{found.skipped[0]}: the cache {entry} skipped {len(found.skipped)} unreadable image(s) "
                        f"and data.on_bad_image=error refuses them")
    if found.skipped:
        log.warning("%s: %d unreadable images were skipped when the cache was built", entry.name, len(found.skipped))
    return found
