"""Dataset layouts: each indexer reads one format on disk into the same DatasetIndex.

`index_by_format` picks the indexer by `data.format`. Downstream (cache, loaders) sees only image
paths and labels, so a format is one function here. Every indexer applies the same subset knobs
(`select_classes`, then `build_split`'s seeded per-class limits) and checks its annotations
before anything is decoded: a val image without a label, or a val class that training lacks, is
a DataError naming the file, not a silently wrong accuracy.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

from vision_exp.data import hf_rows
from vision_exp.data.config import DataConfig, text_lines
from vision_exp.data.index import (
    DatasetIndex,
    Split,
    build_split,
    distinct_names,
    index_image_folder,
    list_images,
    no_images_in,
    readable_class_names,
    report_ignored,
    require_root,
    select_classes,
    visible,
)
from vision_exp.errors import DataError

KAGGLE_ROOT_HINT = "on Kaggle: data.root=/kaggle/input/imagenet-object-localization-challenge"


def read_text_file(path: Path, what: str) -> list:
    """The non-empty lines of a dataset's annotation file, or a DataError that says which file is missing."""
    if not path.is_file():
        raise DataError(f"missing {what}: {path}")
    return text_lines(path, f"the {what}", DataError)


def synset_names(classes: list, names_file: Path) -> tuple:
    """Short names ('tench') from the '<wnid> <names, comma separated>' file shipped with the dataset;
    timm's ImageNet table for the classes it does not list (or when it is absent)."""
    descriptions = {}
    if names_file.is_file():
        for line in read_text_file(names_file, "class names file"):
            fields = line.split(maxsplit=1)
            descriptions[fields[0]] = fields[-1]
    return distinct_names([descriptions[wnid].split(",")[0].strip() if wnid in descriptions else fallback
                           for wnid, fallback in zip(classes, readable_class_names(classes))], classes)


def first_words(rows: list, path: Path) -> dict:
    """{first field: first word of the second field} of annotation rows (file or image id -> wnid); an image
    labelled twice with two classes is refused, where the last row would silently win."""
    labels = {}
    for row in rows:
        if len(row) < 2 or not row[1].split():
            raise DataError(f"malformed row in {path}: {row}")
        label = row[1].split()[0]
        if labels.setdefault(row[0], label) != label:
            raise DataError(f"{path} labels {row[0]} twice, as {labels[row[0]]} and as {label}: one class per image")
    return labels


def class_images(split_dir: Path, classes: list, subfolder: str = "") -> tuple:
    """({class: image paths}, [other entries]) from `<split_dir>/<class>/<subfolder>/`, for the selected classes only
    (listing all 1,000 ImageNet folders to use 100 of them would be slow on network disks)."""
    images, ignored = {}, []
    for name in classes:
        folder = split_dir / name / subfolder
        if not folder.is_dir():
            raise DataError(f"missing image folder of class {name}: {folder}")
        images[name], other = list_images(folder)
        ignored += other
    return images, ignored


def label_val_images(images: list, labels: dict, train_classes: set, annotations: Path,
                     key: Callable[[Path], str]) -> dict:
    """{class: val images} of a flat val folder labelled by an annotation file ({key(image): class});
    every image must be labelled, every labelled image present, every class a training class."""
    by_key = {key(Path(p)): p for p in images}
    unlabelled = sorted(set(by_key) - set(labels))
    if unlabelled:
        raise DataError(f"val image without annotation in {annotations}: {by_key[unlabelled[0]]} "
                        f"({len(unlabelled)} in all)")
    absent = sorted(set(labels) - set(by_key))
    if absent:
        raise DataError(f"{annotations} labels val images that are missing: {absent[:5]} ({len(absent)} in all)")
    unknown = sorted(set(labels.values()) - train_classes)
    if unknown:
        raise DataError(f"classes in val not in train: {unknown[:10]} (labelled in {annotations})")
    per_class = {}
    for name in sorted(by_key):
        per_class.setdefault(labels[name], []).append(by_key[name])
    return per_class


def index_tiny_imagenet(cfg: DataConfig) -> DatasetIndex:
    """Tiny-ImageNet as released: classes from wnids.txt, `train/<wnid>/images/*.JPEG`, a flat
    `val/images/` labelled by `val/val_annotations.txt` (file, wnid, box), names from words.txt."""
    root = require_root(cfg)
    wnids = [line.split()[0] for line in read_text_file(root / "wnids.txt", "class list")]
    repeated = next((wnid for number, wnid in enumerate(wnids) if wnid in wnids[:number]), None)
    if repeated:  # its images would be counted under two labels
        raise DataError(f"{root / 'wnids.txt'} lists {repeated} twice: each class once")
    classes = select_classes(wnids, cfg)
    train_dir, val_dir = root / cfg.train_split, root / cfg.val_split
    train_files, ignored = class_images(train_dir, classes, "images")
    annotations = val_dir / "val_annotations.txt"
    labels = first_words([line.split("\t") for line in read_text_file(annotations, "val annotations")], annotations)
    if not (val_dir / "images").is_dir():
        raise DataError(f"missing val image folder: {val_dir / 'images'}")
    val_images, ignored_val = list_images(val_dir / "images")
    val_files = label_val_images(val_images, labels, set(wnids), annotations, key=lambda p: p.name)
    train = build_split(train_files, classes, cfg.max_train_per_class, cfg.subset_seed,
                        lambda name: no_images_in(train_dir / name / "images"))
    val = build_split(val_files, classes, cfg.max_val_per_class, cfg.subset_seed,
                      lambda name: f"no val images of class {name} in {annotations}")
    return DatasetIndex(str(root), tuple(classes), synset_names(classes, root / "words.txt"), train, val,
                        report_ignored(ignored + ignored_val, cfg.on_bad_image))


def index_imagenet_kaggle(cfg: DataConfig) -> DatasetIndex:
    """ImageNet as the Kaggle "ImageNet Object Localization Challenge" ships it:
    `ILSVRC/Data/CLS-LOC/train/<wnid>/*.JPEG`, a flat `ILSVRC/Data/CLS-LOC/val/` labelled by
    LOC_val_solution.csv (ImageId, PredictionString starting with the wnid), names from
    LOC_synset_mapping.txt."""
    root = require_root(cfg, KAGGLE_ROOT_HINT)
    images_dir = root / "ILSVRC" / "Data" / "CLS-LOC"
    train_dir, val_dir = images_dir / cfg.train_split, images_dir / cfg.val_split
    for folder in (train_dir, val_dir):
        if not folder.is_dir():
            raise DataError(f"missing split folder: {folder} (is {root} the Kaggle ImageNet folder?)")
    available = sorted(p.name for p in train_dir.iterdir() if p.is_dir() and visible(p))
    classes = select_classes(available, cfg)
    train_files, ignored = class_images(train_dir, classes)
    solution = root / f"LOC_{cfg.val_split}_solution.csv"
    rows = list(csv.reader(read_text_file(solution, "val labels")))
    if not rows or rows[0][:2] != ["ImageId", "PredictionString"]:
        raise DataError(f"{solution} does not start with the header ImageId,PredictionString")
    labels = first_words(rows[1:], solution)
    val_images, ignored_val = list_images(val_dir)
    val_files = label_val_images(val_images, labels, set(available), solution, key=lambda p: p.stem)
    train = build_split(train_files, classes, cfg.max_train_per_class, cfg.subset_seed,
                        lambda name: no_images_in(train_dir / name))
    val = build_split(val_files, classes, cfg.max_val_per_class, cfg.subset_seed,
                      lambda name: f"no val images of class {name} in {solution}")
    return DatasetIndex(str(root), tuple(classes), synset_names(classes, root / "LOC_synset_mapping.txt"), train, val,
                        report_ignored(ignored + ignored_val, cfg.on_bad_image))


def hf_rows_by_class(dataset, cfg: DataConfig, split: str) -> tuple:
    """({class name: row numbers}, class names) of one split, after checking its two columns."""
    datasets = hf_rows.import_datasets()
    where = f"split {split!r} of {cfg.root}"
    for key, kind in (("image_column", datasets.Image), ("label_column", datasets.ClassLabel)):
        column = getattr(cfg, key)
        if not isinstance(dataset.features.get(column), kind):
            raise DataError(f"data.{key}={column!r} is not a column of type {kind.__name__} in {where}: it has "
                            + ", ".join(f"{name} ({type(f).__name__})" for name, f in dataset.features.items()))
    names = dataset.features[cfg.label_column].names
    labels = dataset.with_format("arrow")[cfg.label_column].to_pylist()
    if min(labels, default=0) < 0:
        raise DataError(f"{where} has unlabelled rows (label -1): use a labelled split")
    per_class = {}
    for row, label in enumerate(labels):
        per_class.setdefault(names[label], []).append(row)
    return per_class, names


def index_hf_dataset(cfg: DataConfig) -> DatasetIndex:
    """A Hugging Face image-classification dataset on disk (see hf_rows): classes are the names of
    the ClassLabel column, images are rows named by hf:// URIs. What `datasets` converts goes under
    data.cache_dir with the project's other caches."""
    root = str(require_root(cfg))
    hf_cache = str(Path(cfg.cache_dir) / "huggingface")
    train_rows, train_names = hf_rows_by_class(hf_rows.open_split(root, cfg.train_split, hf_cache), cfg,
                                               cfg.train_split)
    val_rows, val_names = hf_rows_by_class(hf_rows.open_split(root, cfg.val_split, hf_cache), cfg, cfg.val_split)
    if train_names != val_names:
        raise DataError(f"splits {cfg.train_split!r} and {cfg.val_split!r} of {root} have different "
                        f"ClassLabel names in {cfg.label_column!r}")
    unknown = sorted(set(val_rows) - set(train_rows))
    if unknown:
        raise DataError(f"classes in val not in train: {unknown[:10]} (split {cfg.val_split!r} of {root})")
    classes = select_classes(sorted(train_rows), cfg)

    def pick(split: str, rows: dict, limit) -> Split:
        """The selected rows (numbers, which build_split samples like paths), then named by URI."""
        chosen = build_split(rows, classes, limit, cfg.subset_seed,
                             lambda name: f"split {split!r} of {root} has no rows of class {name}")
        return Split(tuple(hf_rows.row_uri(root, split, cfg.image_column, hf_cache, row) for row in chosen.paths),
                     chosen.labels)

    train = pick(cfg.train_split, train_rows, cfg.max_train_per_class)
    val = pick(cfg.val_split, val_rows, cfg.max_val_per_class)
    return DatasetIndex(root, tuple(classes), readable_class_names(classes), train, val)


INDEXERS = {
    "imagefolder": index_image_folder,
    "tiny_imagenet": index_tiny_imagenet,
    "imagenet_kaggle": index_imagenet_kaggle,
    "hf": index_hf_dataset,
}


def index_by_format(cfg: DataConfig) -> DatasetIndex:
    """The index of `cfg.root` read as `cfg.format` (validated against config.FORMATS)."""
    return INDEXERS[cfg.format](cfg)
