"""Fetch fast.ai's Imagenette or Imagewoof, only when the user sets data.download=true.

Imagenette goes through torchvision's own downloader (`datasets.Imagenette`); Imagewoof, which
torchvision lacks, through torchvision's archive utility (download with a progress bar, extract).
Both work in a staging folder beside the dataset's, renamed into place once complete: the dataset's
folder exists only whole, so an interrupted download is never mistaken for the dataset.
"""
from __future__ import annotations

import logging
import shutil
import tarfile
from pathlib import Path

from vision_exp.errors import DataError

log = logging.getLogger(__name__)

IMAGENETTE_SIZES = {"imagenette2": "full", "imagenette2-320": "320px", "imagenette2-160": "160px"}
FASTAI_URL = "https://s3.amazonaws.com/fast-ai-imageclas/{name}.tgz"
IMAGEWOOF_FOLDERS = ("imagewoof2", "imagewoof2-320", "imagewoof2-160")


def download_dataset(root: Path) -> None:
    """Download and extract `root`, a folder named after one of fast.ai's archives (its name picks the size).

    Archive and extraction go to `<root>.partial`, removed whatever happens: a truncated archive is not
    extracted again by the next attempt (Imagewoof's has no checksum that would catch it)."""
    known = sorted(IMAGENETTE_SIZES) + list(IMAGEWOOF_FOLDERS)
    if root.name not in known:
        raise DataError(f"data.download=true fetches Imagenette or Imagewoof into a folder named one of {known}; got {root}")
    staging = root.with_name(f"{root.name}.partial")
    try:
        shutil.rmtree(staging, ignore_errors=True)  # left by an attempt that was killed
        staging.mkdir(parents=True)
        if root.name in IMAGENETTE_SIZES:
            from torchvision.datasets import Imagenette

            log.info("downloading Imagenette (%s) into %s", IMAGENETTE_SIZES[root.name], root.parent)
            Imagenette(str(staging), split="train", size=IMAGENETTE_SIZES[root.name], download=True)
        else:
            from torchvision.datasets.utils import download_and_extract_archive

            log.info("downloading Imagewoof (%s) into %s", root.name, root.parent)
            download_and_extract_archive(FASTAI_URL.format(name=root.name), str(staging))
        (staging / root.name).rename(root)
    # no network, a read-only folder, a corrupt or truncated archive
    except (OSError, RuntimeError, EOFError, tarfile.TarError) as exc:
        partial = staging.is_dir() and any(staging.iterdir())
        raise DataError(
            f"could not download {root.name} into {root.parent}: {exc}. "
            + (f"The partial download {staging} was removed, so the next data.download=true starts afresh. "
               if partial else "")
            + f"Connect to the internet (Kaggle: the notebook's Internet setting), or set VISION_EXP_DATA to a "
            f"writable folder, or fetch {FASTAI_URL.format(name=root.name)} yourself, extract it, and set "
            f"VISION_EXP_DATA to the folder that holds {root.name}/"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # after a success, only the archive is left in it
