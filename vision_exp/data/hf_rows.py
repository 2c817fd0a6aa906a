"""Rows of a Hugging Face `datasets` dataset, named like files:
`hf://<dataset dir>?split=train&column=image&cache=<cache folder>&row=17`.

A Hugging Face dataset keeps its images as rows of memory-mapped Arrow tables, not as files. Naming
each row by a URI keeps the rest of the pipeline file-shaped: the index lists URIs where it lists
paths elsewhere, `open_rgb` opens a row's stored (still encoded) bytes exactly as it opens a file,
JPEG draft decoding included, and the cache identifies a row by split and row number plus the
dataset's fingerprint where it uses a file's relative path and size. Opened datasets are kept per
process: Arrow files are memory-mapped, so DataLoader workers (forked or spawned) open them cheaply.
The URI names the folder where `datasets.load_dataset` keeps the Arrow files it converts a folder into
(under the project's cache folder, not ~/.cache/huggingface): any process, spawned ones included, opens
the same conversion instead of converting again elsewhere.
"""
from __future__ import annotations

import io
import json
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote, unquote

from vision_exp.errors import ConfigError, DataError

SCHEME = "hf://"


def is_row_uri(path: str) -> bool:
    return path.startswith(SCHEME)


def row_uri(dataset_dir: str, split: str, column: str, cache_dir: str, row: int) -> str:
    return (f"{SCHEME}{quote(dataset_dir)}?split={quote(split)}&column={quote(column)}&cache={quote(cache_dir)}"
            f"&row={row}")


def parse_row_uri(uri: str) -> tuple:
    """(dataset dir, split, image column, datasets' cache folder, row) of a row URI."""
    location, _, query = uri[len(SCHEME):].partition("?")
    fields = dict(part.split("=", 1) for part in query.split("&"))
    return (unquote(location), unquote(fields["split"]), unquote(fields["column"]), unquote(fields["cache"]),
            int(fields["row"]))


def import_datasets():
    try:
        import datasets
    except ImportError:
        raise ConfigError("data.format=hf needs the `datasets` package: pip install 'vision-exp[hf]' "
                          "(or pip install 'datasets>=2.14')") from None
    return datasets


@lru_cache(maxsize=16)
def open_split(dataset_dir: str, split: str, cache_dir: str):
    """One split of a dataset saved with `save_to_disk` (a DatasetDict, or one Dataset per split
    folder), or else of a folder `datasets.load_dataset` reads (parquet, arrow, imagefolder ...),
    converted into `cache_dir`."""
    datasets = import_datasets()
    root = Path(dataset_dir)
    if (root / split / "state.json").is_file():
        return datasets.load_from_disk(str(root / split))
    if (root / "state.json").is_file():
        raise DataError(f"{root} holds one saved Dataset, not splits: save a DatasetDict with "
                        f"{split!r} and the other split there (or one saved Dataset per split folder)")
    if (root / "dataset_dict.json").is_file():
        splits = json.loads((root / "dataset_dict.json").read_text()).get("splits")
        raise DataError(f"no split {split!r} in {root}: it has {splits} (set data.train_split / data.val_split)")
    try:
        return datasets.load_dataset(str(root), split=split, cache_dir=cache_dir)
    except (ValueError, FileNotFoundError) as exc:  # an unknown split, a folder without data files
        raise DataError(f"cannot read split {split!r} of {root} with datasets.load_dataset: {exc}") from None
    except OSError as exc:  # the conversion's folder cannot be written
        raise DataError(f"cannot convert {root} into {cache_dir} with datasets.load_dataset: "
                        f"{exc.strerror or exc}; set a writable data.cache_dir (VISION_EXP_CACHE)") from None


@lru_cache(maxsize=16)
def encoded_images(dataset_dir: str, split: str, column: str, cache_dir: str):
    """The image column with decoding switched off: rows give {"bytes", "path"} without touching pixels."""
    datasets = import_datasets()
    columns = open_split(dataset_dir, split, cache_dir).select_columns([column])
    return columns.cast_column(column, datasets.Image(decode=False))


def row_image_file(uri: str):
    """What PIL opens for a row: its stored bytes, or the file the row points to."""
    dataset_dir, split, column, cache_dir, row = parse_row_uri(uri)
    stored = encoded_images(dataset_dir, split, column, cache_dir)[row][column]
    if stored is None or (stored["bytes"] is None and not stored["path"]):  # a null cell: skipped or named as unreadable
        raise ValueError(f"row {row} of split {split!r} has no image in column {column!r}")
    return io.BytesIO(stored["bytes"]) if stored["bytes"] is not None else stored["path"]


def row_name(uri: str) -> str:
    """A row's name without a path (`train/17`), as a file's is relative to its dataset folder: the same rows read
    from another copy, or converted into another cache folder, have the same names."""
    _, split, _, _, row = parse_row_uri(uri)
    return f"{split}/{row}"


def row_content_id(uri: str) -> tuple:
    """(name, stamp) of a row for the cache's file list: a re-saved or changed dataset gets a new
    fingerprint, so its cache is rebuilt; the name holds no path, so a copied cache still matches."""
    dataset_dir, split, column, cache_dir, _ = parse_row_uri(uri)
    return row_name(uri), f"{open_split(dataset_dir, split, cache_dir)._fingerprint}:{column}"
