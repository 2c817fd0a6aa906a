"""Which images a run uses: scan a dataset, pick the class subset and the per-class samples.

Everything here is deterministic given the config (sorted listings, seeded sampling), so two
runs with the same settings see the same images, and a cache built once can be reused. A class's
per-class subset (max_train_per_class, max_val_per_class) is drawn with subset_seed and the class's
name, not its label: it is the same whichever other classes are chosen.
"""
from __future__ import annotations

import hashlib
import logging
import os
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from vision_exp.data.config import DataConfig, read_class_list
from vision_exp.data.download import IMAGENETTE_SIZES, IMAGEWOOF_FOLDERS
from vision_exp.data.hf_rows import is_row_uri, row_name
from vision_exp.errors import ConfigError, DataError

log = logging.getLogger(__name__)

DOWNLOAD_HINTS = {  # by data.name prefix: how to get a missing ImageFolder dataset
    "imagenette": "add data.download=true to fetch it",
    "imagewoof": "add data.download=true to fetch it",
}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Split:
    """Image files and their class indices (positions in DatasetIndex.classes)."""

    paths: tuple
    labels: tuple

    def __len__(self) -> int:
        return len(self.paths)

    def digest(self, root: str) -> str:
        """SHA-256 of the images in order, named relative to `root` (a copy elsewhere matches; a Hugging Face row
        by split and row number), with their labels: what a checkpoint's batch positions point into, so a
        resumed run can tell that it reads the same images."""
        prefix, digest = str(Path(root)) + os.sep, hashlib.sha256()
        for path, label in zip(self.paths, self.labels):
            name = row_name(path) if is_row_uri(path) else path.removeprefix(prefix)
            digest.update(f"{name}\t{label}\n".encode())
        return digest.hexdigest()


@dataclass(frozen=True)
class DatasetIndex:
    """The selected classes and the images of each split."""

    root: str
    classes: tuple
    class_names: tuple
    train: Split
    val: Split
    ignored_files: tuple = ()
    from_cache: bool = False  # rebuilt from cache manifests: the original files are not here

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def readable_class_names(classes: Sequence[str]) -> tuple:
    """WNIDs become ImageNet names ('n01440764' -> 'tench'); other folder names stay as they are."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    names = []
    for wnid in classes:
        try:
            names.append(info.label_name_to_description(wnid).split(",")[0].strip())
        except KeyError:
            names.append(wnid)
    return distinct_names(names, classes)


def distinct_names(names: Sequence[str], classes: Sequence[str]) -> tuple:
    """Each name once: a name two classes share gets its class's id ('crane (n02012849)', the bird, and
    'crane (n03126707)', the machine), or per-class accuracies keyed by name would keep one of the two."""
    counts = Counter(names)
    return tuple(f"{name} ({wnid})" if counts[name] > 1 else name for name, wnid in zip(names, classes))


def visible(path: Path) -> bool:
    """Not a hidden entry: Jupyter's `.ipynb_checkpoints/`, macOS's `.DS_Store` and `._<name>` (AppleDouble, an
    image's name with no image in it) are neither classes nor images, and would otherwise shift the labels or stop
    the run."""
    return not path.name.startswith(".")


def list_images(folder: Path) -> tuple:
    """([sorted image paths], [other entries]) directly inside `folder`, hidden entries left out. A subfolder and a
    broken link are other entries: their images are not read (torchvision's ImageFolder would read a subfolder's),
    which `report_ignored` says rather than dropping them unnoticed."""
    entries = sorted(p for p in folder.iterdir() if visible(p))
    is_image = [p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS for p in entries]
    return ([str(p) for p, image in zip(entries, is_image) if image],
            [str(p) for p, image in zip(entries, is_image) if not image])


def list_class_folders(split_dir: Path) -> tuple:
    """({class name: sorted image paths}, [other entries]) for an ImageFolder split (hidden folders are no class)."""
    if not split_dir.is_dir():
        downloaded = split_dir.parent.name in (*IMAGENETTE_SIZES, *IMAGEWOOF_FOLDERS)
        raise DataError(f"missing split folder: {split_dir}" + (
            f" (left by an interrupted download? delete {split_dir.parent} and run again with data.download=true)"
            if downloaded else ""))
    folders = sorted(p for p in split_dir.iterdir() if p.is_dir() and visible(p))
    if not folders:
        raise DataError(f"no class folders in {split_dir} (expected {split_dir}/<class>/<image>)")
    images, ignored = {}, []
    for folder in folders:
        images[folder.name], other = list_images(folder)
        ignored += other
    return images, ignored


def refuse_root_inside_dataset(cfg: DataConfig) -> None:
    """A missing `data.root` whose parent holds the splits: the data folder was set to the dataset's own folder
    (VISION_EXP_DATA=.../imagenette2-160), a common slip that would otherwise download a second copy inside it."""
    root = Path(cfg.root)
    parent = root.parent
    if root.exists() or not all((parent / split).is_dir() for split in (cfg.train_split, cfg.val_split)):
        return
    fix = (f"data.root={parent}" if cfg.name == "folder" else  # set by the user
           f"set VISION_EXP_DATA to the folder that holds {root.name}/ ({parent.parent}), not to the dataset's "
           f"folder (or data.root={parent})")
    raise DataError(f"dataset folder not found: {root}, but {parent} holds {cfg.train_split}/ and {cfg.val_split}/ "
                    f"itself\n  fix: {fix}")


def require_root(cfg: DataConfig, hint: str = "") -> Path:
    """`data.root` as a Path, or a DataError that names it and says how to point at the data."""
    root = Path(cfg.root)
    refuse_root_inside_dataset(cfg)
    if root.exists() and not root.is_dir():  # an archive not yet extracted, say: neither the data folder nor a download helps
        holds = f"{cfg.train_split}/ and {cfg.val_split}/" if cfg.format == "imagefolder" else "the dataset"
        where = f"\n  or: {hint}" if hint and hint not in DOWNLOAD_HINTS.values() else ""
        raise DataError(f"dataset folder not found: {root} is a file\n  fix: data.root=<the folder that holds {holds}> "
                        f"(an archive: extract it first){where}")
    if not root.is_dir():
        fix = ("data.root=<the folder that holds train/ and val/>" if cfg.name == "folder" else  # set by the user
               f"set VISION_EXP_DATA to the folder that holds {root.name}/ (or data.root=<path>)")
        raise DataError(f"dataset folder not found: {root}\n  fix: {fix}" + (f"\n  or: {hint}" if hint else ""))
    return root


def report_ignored(ignored: list, on_bad_image: str) -> tuple:
    """Entries of the image folders that are not images: refused with on_bad_image=error, else logged."""
    if ignored and on_bad_image == "error":
        raise DataError(f"{what_is_ignored(ignored[0])} (data.on_bad_image=skip ignores it)")
    if ignored:
        log.warning("ignored %d entries that are no image files, e.g. %s", len(ignored), what_is_ignored(ignored[0]))
    return tuple(ignored)


def no_images_in(folder: Path) -> str:
    """A class folder without images, naming a subfolder of it that holds some: they are not read."""
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and visible(p)) if folder.is_dir() else []
    holding = next((sub.name for sub in subfolders if list_images(sub)[0]), None)
    moved = f" (images in its subfolder {holding}/ are not read; move them up a level)" if holding else ""
    return f"class folder without images: {folder}{moved}"


def what_is_ignored(path: str) -> str:
    """Why an entry of an image folder is not read, naming it."""
    if Path(path).is_dir():
        return f"a folder among the images: {path} (images in subfolders are not read; move them up a level)"
    if not Path(path).exists():
        return f"a broken link among the images: {path}"
    return f"not an image file: {path}"


def select_classes(available: Sequence[str], cfg: DataConfig) -> list:
    """The class subset: an explicit list, else `num_classes` drawn with `subset_seed`."""
    wanted = read_class_list(cfg.classes)
    if wanted is not None:
        missing = [c for c in wanted if c not in available]
        if missing:
            raise DataError(f"{len(missing)} of the {len(wanted)} classes wanted are not class folders in {cfg.root}: "
                            f"{missing[:10]} (data.classes; when evaluating, the classes the checkpoint was trained on)")
        if len(set(wanted)) != len(wanted):
            raise ConfigError("data.classes lists a class twice")
        if len(wanted) < 2:
            raise ConfigError(f"data.classes lists {len(wanted)} class(es): a classifier needs at least 2")
        if cfg.num_classes is not None and cfg.num_classes != len(wanted):
            raise ConfigError(
                f"data.num_classes={cfg.num_classes} but data.classes lists {len(wanted)} classes: "
                f"set data.num_classes={len(wanted)}"
            )
        return sorted(wanted)
    if cfg.num_classes is None or cfg.num_classes == len(available):
        if len(available) < 2:
            raise DataError(f"{cfg.root} has {len(available)} class(es) ({', '.join(available)}): a classifier "
                            f"needs at least 2")
        return sorted(available)
    if cfg.num_classes > len(available):
        raise ConfigError(
            f"data.num_classes={cfg.num_classes} but {cfg.root} has only {len(available)} classes"
        )
    return sorted(random.Random(cfg.subset_seed).sample(sorted(available), cfg.num_classes))


def take_per_class(files: list, limit: Optional[int], seed: int, name: str) -> list:
    """At most `limit` files of class `name`, drawn with `seed` and that name, so the subset depends neither on
    listing order nor on the class's label (its place among the chosen classes). random hashes a str seed with
    SHA-512, not with Python's salted hash(): every process draws alike."""
    if limit is None or len(files) <= limit:
        return files
    return sorted(random.Random(f"{seed}:{name}").sample(files, limit))


def build_split(per_class: dict, classes: list, limit: Optional[int], seed: int,
                no_images: Callable[[str], str]) -> Split:
    """The images of `classes` (at most `limit` each, drawn by class name: take_per_class) labelled by position;
    `no_images(class)` is the error message for a class that has none, worded for the layout it was listed from."""
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = take_per_class(per_class.get(name, []), limit, seed, name)
        if not files:
            raise DataError(no_images(name))
        paths += files
        labels += [label] * len(files)
    return Split(tuple(paths), tuple(labels))


def index_image_folder(cfg: DataConfig) -> DatasetIndex:
    """Index an ImageFolder root (`<root>/<split>/<class>/<image>`) with the subset knobs applied."""
    root = require_root(cfg, next((hint for name, hint in DOWNLOAD_HINTS.items() if cfg.name.startswith(name)), ""))
    train_dir, val_dir = root / cfg.train_split, root / cfg.val_split
    splits = (cfg.train_split, cfg.val_split)
    if not train_dir.is_dir() and root.name in splits and (root.parent / cfg.train_split).is_dir():
        holds = " and ".join(f"{split}/" for split in dict.fromkeys(splits))  # val/ alone for an evaluation
        raise DataError(f"data.root={root} is the {root.name}/ split folder: set data.root={root.parent}, the folder "
                        f"that holds {holds}")
    train_files, ignored = list_class_folders(train_dir)
    val_files, ignored_val = list_class_folders(val_dir)
    if set(train_files) != set(val_files):
        only_train = sorted(set(train_files) - set(val_files))
        only_val = sorted(set(val_files) - set(train_files))
        raise DataError(
            f"train and val class folders differ in {root}: only in train {only_train[:10]}, "
            f"only in val {only_val[:10]}"
        )
    classes = select_classes(sorted(train_files), cfg)
    train = build_split(train_files, classes, cfg.max_train_per_class, cfg.subset_seed,
                        lambda name: no_images_in(train_dir / name))
    val = build_split(val_files, classes, cfg.max_val_per_class, cfg.subset_seed,
                      lambda name: no_images_in(val_dir / name))
    ignored_files = report_ignored(ignored + ignored_val, cfg.on_bad_image)
    return DatasetIndex(str(root), tuple(classes), readable_class_names(classes), train, val, ignored_files)
