"""Typed data settings: what the entry points turn `cfg.data` into."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from vision_exp.conf_dir import CONF_DIR
from vision_exp.config_types import fixed_numbers
from vision_exp.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LOADERS = ("cached", "folder")
FORMATS = ("imagefolder", "tiny_imagenet", "imagenet_kaggle", "hf")  # the layouts vision_exp.data.formats reads
BAD_IMAGE_POLICIES = ("skip", "error")


@dataclass
class DataConfig:
    """Where the images are, which of them to use, and how to batch them."""

    root: Optional[str]  # null only in data=folder, until the user names the folder
    name: str = "imagefolder"
    format: str = "imagefolder"
    train_split: str = "train"
    val_split: str = "val"
    image_column: str = "image"  # format=hf: the Image column
    label_column: str = "label"  # format=hf: the ClassLabel column
    img_size: int = 64
    num_classes: Optional[int] = None
    classes: Optional[Union[list, str]] = None
    max_train_per_class: Optional[int] = None
    max_val_per_class: Optional[int] = None
    subset_seed: int = 0
    batch_size: int = 128
    eval_batch_size: Optional[int] = None
    num_workers: int = 2
    persistent_workers: bool = True
    loader: str = "cached"
    on_device: Union[bool, str] = "auto"
    cache_dir: str = ".cache"
    cache_size: Optional[int] = None
    crop_pct: float = 0.875
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    download: bool = False
    on_bad_image: str = "skip"

    def __post_init__(self) -> None:
        if not self.root:
            raise ConfigError(f"data.root is not set: data={self.name} needs the dataset's folder, data.root=<dir> "
                              f"(<dir>/{self.train_split}/<class>/*, <dir>/{self.val_split}/<class>/*)")
        # `data.root=~/x` reaches here unexpanded (the shell expands no `~` after `data.root=`), and so does a quoted
        # VISION_EXP_DATA or VISION_EXP_CACHE: unexpanded, the data is "not found" and the cache lands in ./~/.
        self.root, self.cache_dir = os.path.expanduser(str(self.root)), os.path.expanduser(str(self.cache_dir))
        # Per RGB channel (every image is decoded to RGB); a zero std divides by zero, and training runs on NaN.
        self.mean = fixed_numbers("data.mean", self.mean, 3, ", one per RGB channel, e.g. [0.485, 0.456, 0.406]")
        self.std = fixed_numbers("data.std", self.std, 3, " above 0, one per RGB channel, e.g. [0.229, 0.224, 0.225]",
                                 lambda std: min(std) > 0)
        if isinstance(self.classes, (list, tuple)):
            self.classes = [str(c) for c in self.classes]
        elif isinstance(self.classes, str):
            self.classes = str(find_class_list(self.classes))
        if self.format not in FORMATS:
            raise ConfigError(f"data.format={self.format!r}: choose one of {', '.join(FORMATS)}")
        for key in ("train_split", "val_split", "image_column", "label_column"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ConfigError(f"data.{key}={getattr(self, key)!r} must be a non-empty name")
        if self.img_size < 16:
            raise ConfigError(f"data.img_size={self.img_size} is too small: use 16 or more")
        if self.batch_size <= 0:
            raise ConfigError(f"data.batch_size={self.batch_size} must be positive")
        if self.eval_batch_size is not None and self.eval_batch_size <= 0:
            raise ConfigError(f"data.eval_batch_size={self.eval_batch_size} must be positive")
        if self.num_classes is not None and self.num_classes < 2:
            raise ConfigError(f"data.num_classes={self.num_classes} must be at least 2")
        for key in ("max_train_per_class", "max_val_per_class"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"data.{key}={value} must be at least 1 (or null for all)")
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers={self.num_workers} must be 0 or more")
        if self.loader not in LOADERS:
            raise ConfigError(f"data.loader={self.loader!r}: choose one of {', '.join(LOADERS)}")
        if self.on_device not in (True, False, "auto"):
            raise ConfigError(f"data.on_device={self.on_device!r}: use true, false or auto")
        if self.on_bad_image not in BAD_IMAGE_POLICIES:
            raise ConfigError(
                f"data.on_bad_image={self.on_bad_image!r}: choose one of {', '.join(BAD_IMAGE_POLICIES)}"
            )
        if not 0.1 <= self.crop_pct <= 1.0:
            raise ConfigError(f"data.crop_pct={self.crop_pct} must lie in [0.1, 1]")
        if self.cache_size is not None and self.cache_size < self.img_size:
            raise ConfigError(
                f"data.cache_size={self.cache_size} is below data.img_size={self.img_size}"
            )

    @property
    def eval_resize(self) -> int:
        """Shorter side before evaluation's centre crop of img_size: img_size / crop_pct."""
        return int(round(self.img_size / self.crop_pct))

    @property
    def resize_size(self) -> int:
        """The stored size of cached images (shorter side, then the centre square): data.cache_size, else
        eval_resize. A storage choice only: evaluation still resizes to eval_resize before its crop."""
        return self.cache_size or self.eval_resize

    def cache_entry(self, split: str) -> Path:
        """The cache folder of a split ("train" or "val"): named after the settings that select its
        pixels, not after where they lie, so a cache copied to another machine is found there."""
        classes = read_class_list(self.classes)  # a class-list file by its WNIDs, as the index reads it
        selection = {
            "name": self.name, "format": self.format, "split": getattr(self, f"{split}_split"), "classes": classes,
            "num_classes": self.num_classes,
            "limit": getattr(self, f"max_{split}_per_class"), "seed": self.subset_seed, "size": self.resize_size,
        }
        if self.format == "hf":  # rows, not files: the columns decide which pixels and labels they are
            selection["columns"] = [self.image_column, self.label_column]
        digest = hashlib.sha256(json.dumps(selection, sort_keys=True).encode()).hexdigest()[:12]
        return Path(self.cache_dir) / f"{self.name}-{split}-{self.resize_size}px-{digest}"

    @property
    def eval_batch(self) -> int:
        return self.eval_batch_size or 2 * self.batch_size


def find_class_list(path: str) -> Path:
    """A class-list file as given, else one the configs ship: presets name theirs `conf/data/classes/<name>.txt`,
    which must be found from any working directory and in an installed wheel (where conf/ is vision_exp/conf)."""
    given = Path(path).expanduser()
    if given.is_file() or given.is_absolute():
        return given
    shipped = CONF_DIR.joinpath(*given.parts[1:]) if given.parts[:1] == ("conf",) else given
    return shipped if shipped.is_file() else given


def text_lines(path: Path, what: str, error=ConfigError) -> list:
    """The non-empty lines of a UTF-8 text file (a byte-order mark, as spreadsheets save one, dropped); another
    encoding, or a binary file, is `error` naming it rather than a UnicodeDecodeError's traceback."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path} is not UTF-8 text (byte {exc.start}: {exc.reason}): save it as UTF-8") from None
    return [line for line in text.splitlines() if line.strip()]


def read_class_list(classes) -> Optional[list]:
    """data.classes as a list of WNIDs, or a text file with one WNID per line (a name may follow it)."""
    if classes is None or isinstance(classes, list):
        return classes
    path = Path(classes)
    if not path.is_file():
        raise ConfigError(f"data.classes={classes!r} is neither a list nor a readable class-list file")
    return [line.split()[0] for line in text_lines(path, "the data.classes file")]
