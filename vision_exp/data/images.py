"""Decoding: every image becomes 3-channel RGB, optionally decoded at reduced size."""
from __future__ import annotations

from typing import Optional

import numpy as np
from PIL import Image

from vision_exp.data.hf_rows import is_row_uri, row_image_file


def open_rgb(path: str, min_size: Optional[int] = None) -> Image.Image:
    """Open `path` (a file, or a dataset row named by an hf:// URI) as RGB (8- and 16-bit grayscale, CMYK,
    palette images included; transparent ones, RGBA, LA, PA, composited onto white).

    With `min_size`, JPEGs are decoded by libjpeg at the smallest power-of-two reduction whose
    shorter side is still at least `min_size` (PIL's draft mode): several times faster, and the
    image is resized to `min_size` right after anyway.
    """
    with Image.open(row_image_file(path) if is_row_uri(path) else path) as img:
        if min_size is not None and img.format == "JPEG":
            scale = min(img.size) / min_size
            img.draft("RGB", (max(1, int(img.size[0] / scale)), max(1, int(img.size[1] / scale))))
        if img.mode.startswith("I;16") or img.mode == "I":  # 16-bit grayscale: convert("RGB") would clip it to white
            return Image.fromarray((np.asarray(img).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)).convert("RGB")
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return img.convert("RGB")


def resize_center_square(img: Image.Image, size: int) -> Image.Image:
    """torchvision's Resize(size) + CenterCrop(size): the stored form of a cached image.

    The crop is reckoned in the source image and only that box is resampled (PIL's `box`), never the whole image at
    the new scale, so a panorama or a 1 px high banner costs no more memory or time than a square photo; the
    pixels match torchvision's to within one level of rounding, and exactly where no resampling is needed.
    """
    width, height = img.size
    short, long = min(width, height), max(width, height)
    resized_long = int(size * long / short)  # torchvision's rounding of the longer side, then of the crop's offset
    resized_width, resized_height = (size, resized_long) if width <= height else (resized_long, size)
    scale_x, scale_y = width / resized_width, height / resized_height
    left = round((resized_width - size) / 2) * scale_x
    top = round((resized_height - size) / 2) * scale_y
    return img.resize((size, size), Image.BILINEAR, box=(left, top, left + size * scale_x, top + size * scale_y))
