"""Fetch fast.ai's Imagenette or Imagewoof, only when the user sets data.download=true.

Imagenette goes through torchvision's own downloader (`datasets.Imagenette`); Imagewoof, which
torchvision lacks, through torchvision's archive utility (download with a progress bar, extract).
"""
from __future__ import annotations

import logging
from pathlib import Path

from vision_exp.errors import DataError

log = logging.getLogger(__name__)

IMAGENETTE_SIZES = {"imagenette2": "full", "imagenette2-320": "320px", "imagenette2-160": "160px"}
FASTAI_URL = "https://s3.amazonaws.com/fast-ai-imageclas/{name}.tgz"
IMAGEWOOF_FOLDERS = ("imagewoof2", "imagewoof2-320", "imagewoof2-160")


def download_dataset(root: Path) -> None:
    """Download and extract `root`, a folder named after one of fast.ai's archives (its name picks the size)."""
    known = sorted(IMAGENETTE_SIZES) + list(IMAGEWOOF_FOLDERS)
    if root.name not in known:
        raise DataError(f"data.download=true fetches Imagenette or Imagewoof into a folder named one of {known}; got {root}")
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        if root.name in IMAGENETTE_SIZES:
            from torchvision.datasets import Imagenette

            log.info("downloading Imagenette (%s) into %s", IMAGENETTE_SIZES[root.name], root.parent)
            Imagenette(str(root.parent), split="train", size=IMAGENETTE_SIZES[root.name], download=True)
        else:
            from torchvision.datasets.utils import download_and_extract_archive

            log.info("downloading Imagewoof (%s) into %s", root.name, root.parent)
            download_and_extract_archive(FASTAI_URL.format(name=root.name), str(root.parent))
    except (OSError, RuntimeError) as exc:  # no network, a read-only folder, a corrupt archive
        raise DataError(
            f"could not download {root.name} into {root.parent}: {exc}. Connect to the internet (Kaggle: the "
            f"notebook's Internet setting), or set VISION_EXP_DATA to a writable folder, or fetch "
            f"{FASTAI_URL.format(name=root.name)} yourself, extract it, and set VISION_EXP_DATA to the folder "
            f"that holds {root.name}/"
        ) from None
