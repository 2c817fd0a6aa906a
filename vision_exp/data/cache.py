"""Decode a split once into a uint8 array on disk; every later run reads it memory-mapped.

Small models at 32-64 px train faster than a machine decodes JPEGs, so decoding every epoch
bounds the whole run. A cache entry is a folder named after a hash of everything that decides
its pixels (the file list with sizes and modification times, the stored size, the decoder
version), holding `<split>.npy` (N, S, S, 3) uint8 plus `manifest.json`; a changed config or
changed files give another hash, hence a rebuild. Entries are built in a temporary folder and
renamed into place, so an interrupted build never leaves a half-written cache behind.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from vision_exp.data.images import open_rgb, resize_center_square
from vision_exp.data.index import Split
from vision_exp.errors import DataError

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the decoding or the layout changes
CHUNK = 64


@dataclass(frozen=True)
class CachedSplit:
    """Decoded images (N, S, S, 3) uint8, their labels, and the files that could not be read."""

    images: np.ndarray
    labels: np.ndarray
    paths: tuple
    skipped: tuple


def cache_key(split: Split, size: int) -> str:
    digest = hashlib.sha256(f"v{CACHE_FORMAT}|{size}".encode())
    for path, label in zip(split.paths, split.labels):
        stat = os.stat(path)
        digest.update(f"|{path}|{label}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


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


def _decode_all(array_path: Path, paths: tuple, size: int, workers: int, desc: str) -> list:
    from tqdm.auto import tqdm

    jobs = [(str(array_path), i, paths[i : i + CHUNK], size) for i in range(0, len(paths), CHUNK)]
    failed = []
    progress = tqdm(total=len(paths), desc=desc, unit="img", disable=not sys.stderr.isatty())
    if workers <= 1:
        results = map(_decode_chunk, jobs)
    else:
        pool = ProcessPoolExecutor(max_workers=workers)
        results = pool.map(_decode_chunk, jobs)
    for job, chunk_failed in zip(jobs, results):
        failed += chunk_failed
        progress.update(len(job[2]))
    progress.close()
    if workers > 1:
        pool.shutdown()
    return sorted(failed)


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


def build_split_cache(entry: Path, split: Split, size: int, workers: int, name: str, on_bad_image: str) -> None:
    """Decode `split` into `entry/` (a fresh folder, renamed into place when complete)."""
    tmp = entry.parent / f"{entry.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        array_path = tmp / "images.npy"
        np.lib.format.open_memmap(array_path, mode="w+", dtype=np.uint8, shape=(len(split), size, size, 3)).flush()
        failed = _decode_all(array_path, split.paths, size, workers, f"caching {name}")
        if failed and on_bad_image == "error":
            raise DataError(f"cannot read image {failed[0][1]} (data.on_bad_image=skip skips it)")
        keep = np.setdiff1d(np.arange(len(split)), [i for i, _ in failed])
        if failed:
            log.warning("skipped %d unreadable images in %s, e.g. %s", len(failed), name, failed[0][1])
            images = np.load(array_path, mmap_mode="r")[keep]
            np.save(tmp / "kept.npy", images)
            os.replace(tmp / "kept.npy", array_path)
        np.save(tmp / "labels.npy", np.asarray(split.labels, dtype=np.int64)[keep])
        _write_json(tmp / "manifest.json", {
            "format": CACHE_FORMAT,
            "size": size,
            "count": int(len(keep)),
            "paths": [split.paths[i] for i in keep],
            "skipped": [message for _, message in failed],
        })
        shutil.rmtree(entry, ignore_errors=True)
        os.replace(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_split_cache(entry: Path) -> Optional[CachedSplit]:
    """The cached split at `entry`, or None when it is absent or does not match its manifest."""
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
        images = np.load(entry / "images.npy", mmap_mode="r")
        labels = np.load(entry / "labels.npy")
    except (OSError, ValueError):
        return None
    size = manifest.get("size")
    if manifest.get("format") != CACHE_FORMAT or images.shape != (manifest.get("count"), size, size, 3) or len(labels) != len(images):
        log.warning("cache %s does not match its manifest: rebuilding it", entry)
        return None
    return CachedSplit(images, labels, tuple(manifest["paths"]), tuple(manifest["skipped"]))


def cached_split(cache_dir: str, name: str, split: Split, size: int, workers: int, on_bad_image: str) -> CachedSplit:
    """The split decoded at `size`: read from the cache, or built there first."""
    entry = Path(cache_dir) / f"{name}-{size}px-{cache_key(split, size)}"
    found = load_split_cache(entry)
    if found is None:
        log.info("decoding %d images of %s into %s", len(split), name, entry)
        try:
            build_split_cache(entry, split, size, workers, name, on_bad_image)
        except PermissionError as exc:
            raise DataError(f"cannot write the data cache at {entry.parent}: {exc.strerror} (set VISION_EXP_CACHE or data.cache_dir)") from None
        found = load_split_cache(entry)
    if found.skipped:
        log.warning("%s: %d unreadable images were skipped when the cache was built", name, len(found.skipped))
    return found
