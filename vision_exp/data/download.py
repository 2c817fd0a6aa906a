"""Fetch Imagenette with torchvision's own downloader (only when the user sets data.download=true)."""
from __future__ import annotations

import logging
from pathlib import Path

from vision_exp.errors import DataError

log = logging.getLogger(__name__)

IMAGENETTE_SIZES = {"imagenette2": "full", "imagenette2-320": "320px", "imagenette2-160": "160px"}


def download_imagenette(root: Path) -> None:
    """Download and extract `root` (its name picks the size), with torchvision's progress bar."""
    from torchvision.datasets import Imagenette

    size = IMAGENETTE_SIZES.get(root.name)
    if size is None:
        raise DataError(
            f"data.download=true fetches Imagenette only, into a folder named one of "
            f"{sorted(IMAGENETTE_SIZES)}; got {root}"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading Imagenette (%s) into %s", size, root.parent)
    Imagenette(str(root.parent), split="train", size=size, download=True)
