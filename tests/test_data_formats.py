"""Dataset formats: Imagewoof (ImageFolder), Tiny-ImageNet, Kaggle ImageNet and Hugging Face datasets,
each on a generated fixture: subset knobs, readable names, both loaders end to end, portable caches
and clear errors for broken layouts."""
import dataclasses
import io
import re
import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from conftest import TINY_CLASSES, class_image, compose, write_image_folder
from vision_exp.data.config import FORMATS, DataConfig
from vision_exp.data.formats import INDEXERS, synset_names
from vision_exp.data.config import read_class_list
from vision_exp.data.loaders import build_loaders, cached_index_split, index_dataset
from vision_exp.errors import ConfigError, DataError
from vision_exp.experiment import run_experiment
from vision_exp.recipe.config import AugmentConfig

TRAIN, VAL = 6, 2  # images per class in every fixture
NAMES = ("tench", "English springer", "cassette player")


def jpeg_bytes(label: int, rng, size=(32, 28)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(class_image(label, rng, size)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_tiny_imagenet(root, classes=TINY_CLASSES, seed=0):
    """The released layout: wnids.txt, words.txt, train/<wnid>/images/, val/images/ + val_annotations.txt."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("".join(f"{wnid}\n" for wnid in classes))
    (root / "words.txt").write_text("n00001740\tentity\nn01440764\ttench, Tinca tinca\n"
                                    "n02102040\tEnglish springer, English springer spaniel\n"
                                    "n02979186\tcassette player\n")
    annotations, number = [], 0
    for label, wnid in enumerate(classes):
        (root / "train" / wnid / "images").mkdir(parents=True)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(TRAIN):
            (root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG").write_bytes(jpeg_bytes(label, rng))
        for _ in range(VAL):
            (root / "val" / "images").mkdir(parents=True, exist_ok=True)
            (root / "val" / "images" / f"val_{number}.JPEG").write_bytes(jpeg_bytes(label, rng))
            annotations.append(f"val_{number}.JPEG\t{wnid}\t0\t0\t20\t20")
            number += 1
    (root / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
    return root


def write_imagenet_kaggle(root, classes=TINY_CLASSES, seed=0):
    """ILSVRC/Data/CLS-LOC/{train/<wnid>,val}/, LOC_val_solution.csv and LOC_synset_mapping.txt."""
    rng = np.random.default_rng(seed)
    images = root / "ILSVRC" / "Data" / "CLS-LOC"
    (images / "val").mkdir(parents=True)
    solution, number = ["ImageId,PredictionString"], 1
    for label, wnid in enumerate(classes):
        (images / "train" / wnid).mkdir(parents=True)
        for i in range(TRAIN):
            (images / "train" / wnid / f"{wnid}_{i}.JPEG").write_bytes(jpeg_bytes(label, rng))
        for _ in range(VAL):
            image_id = f"ILSVRC2012_val_{number:08d}"
            (images / "val" / f"{image_id}.JPEG").write_bytes(jpeg_bytes(label, rng))
            solution.append(f"{image_id},{wnid} 10 12 30 28 {wnid} 1 2 3 4 ")
            number += 1
    (root / "LOC_val_solution.csv").write_text("\n".join(solution) + "\n")
    (root / "LOC_synset_mapping.txt").write_text("n01440764 tench, Tinca tinca\n"
                                                 "n02102040 English springer, English springer spaniel\n"
                                                 "n02979186 cassette player\n")
    return root


def hf_split(classes, count, rng, labels=None):
    """Rows of JPEG bytes, plus one grayscale PIL image (stored as PNG) to vary the encodings."""
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as HFImage

    labels = labels if labels is not None else [label for label in range(len(classes)) for _ in range(count)]
    images = [{"bytes": jpeg_bytes(label, rng), "path": None} for label in labels]
    images[0] = Image.fromarray(class_image(labels[0], rng, (30, 30))).convert("L")
    features = Features({"image": HFImage(), "label": ClassLabel(names=list(classes))})
    return Dataset.from_dict({"image": images, "label": labels}, features=features)


def write_hf_dataset(root, classes=TINY_CLASSES, seed=0, val_split="validation"):
    """A DatasetDict saved with save_to_disk, as `data=hf` reads it."""
    from datasets import DatasetDict

    rng = np.random.default_rng(seed)
    splits = {"train": hf_split(classes, TRAIN, rng), val_split: hf_split(classes, VAL, rng)}
    DatasetDict(splits).save_to_disk(str(root))
    return root


@pytest.fixture(scope="session")
def tiny_imagenet_root(tmp_path_factory):
    return write_tiny_imagenet(tmp_path_factory.mktemp("tiny_imagenet") / "tiny-imagenet-200")


@pytest.fixture(scope="session")
def kaggle_root(tmp_path_factory):
    return write_imagenet_kaggle(tmp_path_factory.mktemp("kaggle") / "imagenet-object-localization-challenge")


@pytest.fixture(scope="session")
def hf_root(tmp_path_factory):
    return write_hf_dataset(tmp_path_factory.mktemp("hf") / "hf_dataset")


@pytest.fixture(scope="session")
def imagewoof_root(tiny_folder):
    return tiny_folder  # Imagewoof is an ImageFolder like Imagenette: the shared fixture serves


ROOTS = {"imagewoof": "imagewoof_root", "tiny_imagenet": "tiny_imagenet_root", "imagenet_kaggle": "kaggle_root",
         "hf": "hf_root"}
WRITERS = {"tiny_imagenet": write_tiny_imagenet, "imagenet_kaggle": write_imagenet_kaggle, "hf": write_hf_dataset}


def data_config(overrides: list) -> DataConfig:
    """The typed data config, as a run builds it from the composed one."""
    return DataConfig(**OmegaConf.to_container(compose(overrides).data, resolve=True))


def preset(name: str, root, *overrides) -> DataConfig:
    return data_config([f"data={name}", f"data.root={root}", *overrides])


def fixture_overrides(name: str, root) -> list:
    """data=<name> on its 3-class fixture (Imagewoof's preset expects 10 classes)."""
    return [f"data={name}", f"data.root={root}", *(["data.num_classes=null"] if name == "imagewoof" else [])]


def fixture_preset(name: str, root, *overrides) -> DataConfig:
    return data_config([*fixture_overrides(name, root), *overrides])


def test_every_format_has_an_indexer_and_unknown_formats_are_refused(tmp_path):
    assert set(INDEXERS) == set(FORMATS)
    with pytest.raises(ConfigError, match="data.format='coco'"):
        DataConfig(root=str(tmp_path), format="coco")
    with pytest.raises(ConfigError, match="data.label_column"):
        DataConfig(root=str(tmp_path), label_column="")


@pytest.mark.parametrize("name", list(ROOTS))
def test_index_applies_the_subset_knobs_with_readable_names(name, request):
    root = request.getfixturevalue(ROOTS[name])
    full = index_dataset(fixture_preset(name, root))
    per_class = (12, 4) if name == "imagewoof" else (TRAIN, VAL)
    assert full.classes == TINY_CLASSES and full.class_names == NAMES
    assert (len(full.train), len(full.val)) == (3 * per_class[0], 3 * per_class[1])
    assert sorted(set(full.train.labels)) == sorted(set(full.val.labels)) == [0, 1, 2]

    base = fixture_preset(name, root, "data.num_classes=2")
    picks = {index_dataset(dataclasses.replace(base, subset_seed=seed)).classes for seed in range(6)}
    assert len(picks) > 1 and all(len(p) == 2 and set(p) <= set(TINY_CLASSES) for p in picks)
    assert index_dataset(base).train.paths == index_dataset(base).train.paths

    listed = index_dataset(fixture_preset(name, root, "data.classes=[n02979186,n01440764]"))
    assert listed.classes == ("n01440764", "n02979186") and listed.class_names == (NAMES[0], NAMES[2])

    limited = fixture_preset(name, root, "data.max_train_per_class=3", "data.max_val_per_class=1")
    small = index_dataset(limited)
    assert (len(small.train), len(small.val)) == (9, 3) and set(small.train.paths) < set(full.train.paths)
    assert index_dataset(dataclasses.replace(limited, subset_seed=1)).train.paths != small.train.paths


@pytest.mark.parametrize("name, loader", [(name, "cached") for name in ROOTS] + [("hf", "folder")])
def test_one_epoch_trains_end_to_end(name, loader, request, tmp_path):
    root = request.getfixturevalue(ROOTS[name])
    workers = 1 if loader == "folder" else 0  # hf rows decoded in a DataLoader worker
    overrides = [*fixture_overrides(name, root), f"data.loader={loader}", "data.img_size=16", "data.batch_size=8",
                 f"data.num_workers={workers}", "data.max_val_per_class=1", "model.widths=[8,8,16,16]",
                 "model.stem_stride=1", "trainer.epochs=1", "trainer.train_samples=8", "trainer.train_eval_samples=3",
                 "trainer.progress=none"]
    summary = run_experiment(compose(overrides), tmp_path / "run", overrides)
    assert summary["status"] == "completed" and summary["samples_seen"] == 8
    config = OmegaConf.load(tmp_path / "run" / "config.yaml")
    assert config.data.format == ("imagefolder" if name == "imagewoof" else name) and config.data.num_classes == 3


@pytest.mark.parametrize("name", list(ROOTS))
def test_folder_and_cached_loaders_see_the_same_images(name, request, tmp_path):
    """The folder loader decodes every format (hf rows included) to the pixels the cache stores."""
    root = request.getfixturevalue(ROOTS[name])
    cached = fixture_preset(name, root, f"data.cache_dir={tmp_path}", "data.img_size=16", "data.batch_size=8",
                            "data.num_workers=0")
    folder = dataclasses.replace(cached, loader="folder")
    index = index_dataset(cached)
    bundles = [build_loaders(index, data, AugmentConfig(), torch.device("cpu"), seed=0) for data in (cached, folder)]
    for (xc, yc), (xf, yf) in zip(*(bundle.val.epoch(0) for bundle in bundles)):
        assert torch.equal(yc, yf)
        assert (xc - xf).abs().max() <= 1.0 / (255 * 0.224) + 1e-4  # uint8 storage vs float: one grey level
    images, labels = next(bundles[1].train.epoch(0))
    assert images.shape == (8, 3, 16, 16) and set(labels.tolist()) <= {0, 1, 2}


@pytest.mark.parametrize("name", list(WRITERS))
def test_a_copied_cache_trains_without_the_original_dataset(name, tmp_path):
    root = WRITERS[name](tmp_path / "data" / name)
    data = preset(name, root, f"data.cache_dir={tmp_path / 'cache'}", "data.img_size=16", "data.num_workers=0")
    original = index_dataset(data)
    workers = 2 if name == "hf" else 1  # hf rows decoded in the cache's worker processes
    built = {split: cached_index_split(original, data, split, workers) for split in ("train", "val")}
    assert len(built["train"].images) == len(original.train) and not built["train"].skipped
    shutil.copytree(tmp_path / "cache", tmp_path / "elsewhere")
    shutil.rmtree(root)
    moved = dataclasses.replace(data, cache_dir=str(tmp_path / "elsewhere"))
    index = index_dataset(moved)
    assert index.from_cache and (index.classes, index.class_names) == (original.classes, original.class_names)
    bundle = build_loaders(index, moved, AugmentConfig(), torch.device("cpu"), seed=0)
    np.testing.assert_array_equal(np.asarray(bundle.val.images), np.asarray(built["val"].images))
    images, _ = next(bundle.train.epoch(0))
    assert images.shape[1:] == (3, 16, 16)


def test_tiny_imagenet_defaults_and_names_from_words_txt(tiny_imagenet_root, tmp_path):
    data = preset("tiny_imagenet", tiny_imagenet_root)
    assert (data.img_size, data.resize_size, data.train_split, data.val_split) == (64, 64, "train", "val")
    (tmp_path / "d").mkdir()
    shutil.copytree(tiny_imagenet_root, tmp_path / "d" / "t")
    (tmp_path / "d" / "t" / "words.txt").write_text("n01440764\ttinca, tench\n")  # the others: timm's names
    assert index_dataset(dataclasses.replace(data, root=str(tmp_path / "d" / "t"))).class_names == (
        "tinca", "English springer", "cassette player")
    assert compose(["data=tiny_imagenet"]).data.root.endswith("/tiny-imagenet-200")


def remove(path):
    path.unlink()


def unannotated_val_image(root):
    shutil.copy(root / "val" / "images" / "val_0.JPEG", root / "val" / "images" / "val_99.JPEG")


def val_class_not_in_train(root):
    (root / "wnids.txt").write_text("n01440764\nn02102040\n")
    shutil.rmtree(root / "train" / "n02979186")


def class_without_val_images(root):
    lines = (root / "val" / "val_annotations.txt").read_text().splitlines()
    kept = [line for line in lines if "n02979186" not in line]
    (root / "val" / "val_annotations.txt").write_text("\n".join(kept) + "\n")
    for line in set(lines) - set(kept):
        (root / "val" / "images" / line.split("\t")[0]).unlink()


TINY_BREAKS = {
    "missing root": (lambda root: shutil.rmtree(root), "dataset folder not found: .*tiny-imagenet-200"),
    "no wnids.txt": (lambda root: remove(root / "wnids.txt"), "missing class list: .*wnids.txt"),
    # its images were counted under two labels, and the run trained on without a word
    "a class listed twice": (lambda root: (root / "wnids.txt").write_text("n01440764\nn02102040\nn02979186\nn01440764\n"),
                             "wnids.txt lists n01440764 twice: each class once$"),
    "words.txt in Latin-1": (lambda root: (root / "words.txt").write_bytes(b"n01440764\ttench, caf\xe9 fish\n"),
                             r"the class names file .*words.txt is not UTF-8 text \(byte 20: invalid continuation byte\): "
                             "save it as UTF-8$"),
    "no annotations": (lambda root: remove(root / "val" / "val_annotations.txt"),
                       "missing val annotations: .*val_annotations.txt"),
    "unannotated image": (unannotated_val_image,
                          "val image without annotation in .*val_annotations.txt: .*val_99.JPEG"),
    "annotated image missing": (lambda root: remove(root / "val" / "images" / "val_3.JPEG"),
                                "labels val images that are missing: .*val_3"),
    "val class not in train": (val_class_not_in_train, r"classes in val not in train: \['n02979186'\]"),
    "class without val images": (class_without_val_images, "no val images of class n02979186 in .*val_annotations.txt"),
    # the last row won: a silently wrong label (the same label twice is a harmless repeat, and reads)
    "an image labelled twice": (lambda root: (root / "val" / "val_annotations.txt").write_text(
        (root / "val" / "val_annotations.txt").read_text() + "val_0.JPEG\tn01440764\t0\t0\t20\t20\n"
        "val_0.JPEG\tn02102040\t0\t0\t20\t20\n"),
        r"val_annotations.txt labels val_0.JPEG twice, as n01440764 and as n02102040: one class per image$"),
    "no train images folder": (lambda root: shutil.rmtree(root / "train" / "n02102040" / "images"),
                               "missing image folder of class n02102040"),
    "no val images folder": (lambda root: shutil.rmtree(root / "val" / "images"), "missing val image folder: .*val/images"),
}


@pytest.mark.parametrize("break_it, message", list(TINY_BREAKS.values()), ids=list(TINY_BREAKS))
def test_broken_tiny_imagenet_layouts_are_named(tiny_imagenet_root, tmp_path, break_it, message):
    root = shutil.copytree(tiny_imagenet_root, tmp_path / "tiny-imagenet-200")
    break_it(root)
    with pytest.raises(DataError, match=message):
        index_dataset(preset("tiny_imagenet", root))


def edit_solution(pattern: str, replacement: str):
    """A break that rewrites LOC_val_solution.csv with a regex substitution."""
    def edit(root):
        path = root / "LOC_val_solution.csv"
        path.write_text(re.sub(pattern, replacement, path.read_text()))
    return edit


KAGGLE_BREAKS = {
    "missing root": (lambda root: shutil.rmtree(root),
                     "dataset folder not found: .*\n.*\n  or: on Kaggle: data.root=/kaggle/input"),
    "no solution csv": (lambda root: remove(root / "LOC_val_solution.csv"),
                        "missing val labels: .*LOC_val_solution.csv"),
    "bad header": (edit_solution("ImageId,", "Id,"), "header ImageId,Prediction"),
    "not UTF-8": (lambda root: (root / "LOC_val_solution.csv").write_bytes(b"ImageId,PredictionString\n\xff\xfe,x\n"),
                  r"the val labels .*LOC_val_solution.csv is not UTF-8 text \(byte 25: invalid start byte\)"),
    "unannotated image": (edit_solution("ILSVRC2012_val_00000002,", "x,"),
                          "val image without annotation in .*LOC_val_solution.csv: .*ILSVRC2012_val_00000002.JPEG"),
    "val class not in train": (edit_solution(",n02979186 10", ",n09999999 10"),
                               r"classes in val not in train: \['n09999999'\]"),
    "empty prediction": (edit_solution(",n01440764[^\n]*", ","), "malformed row in .*LOC_val_solution.csv"),
    "no prediction field": (edit_solution(",n01440764[^\n]*", ""), "malformed row in .*LOC_val_solution.csv"),
    "no val folder": (lambda root: shutil.rmtree(root / "ILSVRC" / "Data" / "CLS-LOC" / "val"),
                      "missing split folder: .*CLS-LOC/val"),
}


@pytest.mark.parametrize("break_it, message", list(KAGGLE_BREAKS.values()), ids=list(KAGGLE_BREAKS))
def test_broken_kaggle_layouts_are_named(kaggle_root, tmp_path, break_it, message):
    root = shutil.copytree(kaggle_root, tmp_path / "imagenet-object-localization-challenge")
    break_it(root)
    with pytest.raises(DataError, match=message):
        index_dataset(preset("imagenet_kaggle", root))


def test_a_labels_file_saved_with_a_byte_order_mark_reads_as_without_one(kaggle_root, tmp_path):
    """Excel saves CSV with a UTF-8 byte-order mark: the header it hid was reported missing from a file showing it."""
    root = shutil.copytree(kaggle_root, tmp_path / "imagenet-object-localization-challenge")
    plain_index = index_dataset(preset("imagenet_kaggle", root))
    solution = root / "LOC_val_solution.csv"
    solution.write_bytes(b"\xef\xbb\xbf" + solution.read_bytes())
    assert index_dataset(preset("imagenet_kaggle", root)).val == plain_index.val


def test_a_class_list_file_that_is_not_utf8_is_one_message(tmp_path):
    listing = tmp_path / "classes.txt"
    listing.write_bytes(b"n01440764 tench\nn02102040 caf\xe9 dog\n")
    with pytest.raises(ConfigError, match=re.escape(f"the data.classes file {listing} is not UTF-8 text (byte 29: ")):
        read_class_list(str(listing))


def test_blank_annotation_lines_are_skipped_and_stray_files_in_class_folders_are_counted(tiny_imagenet_root, kaggle_root,
                                                                                          tmp_path):
    """Annotation files edited by hand end in blank lines; a notes file in a class folder is no image, for the
    readers of both released layouts, in a train class folder or the flat val folder (reported, or refused with
    on_bad_image=error, like an ImageFolder's)."""
    tiny = shutil.copytree(tiny_imagenet_root, tmp_path / "tiny-imagenet-200")
    (tiny / "wnids.txt").write_text("\n" + (tiny / "wnids.txt").read_text().replace("\n", "\n\n") + "  \n")
    annotations = tiny / "val" / "val_annotations.txt"
    annotations.write_text(annotations.read_text().replace("\n", "\n\n", 1) + "\n")
    (tiny / "words.txt").write_text("n01440764\ttench , Tinca tinca\n")
    (tiny / "train" / "n02102040" / "images" / "notes.txt").write_text("taken in 2009")
    kaggle = shutil.copytree(kaggle_root, tmp_path / "kaggle")
    (kaggle / "LOC_val_solution.csv").write_text((kaggle / "LOC_val_solution.csv").read_text() + "\n\n")
    (kaggle / "ILSVRC" / "Data" / "CLS-LOC" / "val" / "notes.txt").write_text("")  # the flat val folder's too
    for name, root, notes in (("tiny_imagenet", tiny, "train/n02102040/images/notes.txt"),
                              ("imagenet_kaggle", kaggle, "ILSVRC/Data/CLS-LOC/val/notes.txt")):
        index = index_dataset(preset(name, root))
        assert (index.num_classes, len(index.train.paths), len(index.val.paths)) == (3, 3 * TRAIN, 3 * VAL)
        assert [Path(path).relative_to(root).as_posix() for path in index.ignored_files] == [notes]
        with pytest.raises(DataError, match=f"not an image file: .*{notes}"):
            index_dataset(preset(name, root, "data.on_bad_image=error"))
    assert index_dataset(preset("tiny_imagenet", tiny)).class_names[0] == "tench"


def test_kaggle_split_names_choose_folder_and_labels_and_hidden_folders_are_no_classes(kaggle_root, tmp_path):
    """data.val_split names both the image folder and its LOC_<split>_solution.csv; a notebook's
    .ipynb_checkpoints among the class folders is not a class."""
    root = shutil.copytree(kaggle_root, tmp_path / "kaggle")
    images = root / "ILSVRC" / "Data" / "CLS-LOC"
    (images / "val").rename(images / "holdout")
    (root / "LOC_val_solution.csv").rename(root / "LOC_holdout_solution.csv")
    (images / "train" / ".ipynb_checkpoints").mkdir()
    index = index_dataset(preset("imagenet_kaggle", root, "data.val_split=holdout"))
    assert index.classes == tuple(sorted(TINY_CLASSES)) and len(index.val.paths) == 3 * VAL
    assert all(Path(path).parent == images / "holdout" for path in index.val.paths)


def test_names_from_a_synset_file_that_repeat_get_their_class_id(tmp_path):
    mapping = tmp_path / "LOC_synset_mapping.txt"
    mapping.write_text("n02012849 crane\nn03126707 crane\nn01440764 tench, Tinca tinca\n")
    assert synset_names(["n01440764", "n02012849", "n03126707"], mapping) == (
        "tench", "crane (n02012849)", "crane (n03126707)")


def test_imagenet100_preset_ships_the_cmc_class_list(kaggle_root, tmp_path, monkeypatch):
    from timm.data import ImageNetInfo

    monkeypatch.chdir(tmp_path)  # the preset's list is found from any working directory
    data = preset("imagenet100", kaggle_root)
    wnids = read_class_list(data.classes)
    assert data.format == "imagenet_kaggle" and data.num_classes == 100
    assert len(wnids) == len(set(wnids)) == 100 and wnids[:3] == ["n02869837", "n01749939", "n02488291"]
    info = ImageNetInfo()
    assert all(info.label_name_to_description(wnid) for wnid in wnids)
    with pytest.raises(DataError, match=r"100 of the 100 classes wanted are not class folders in .*\(data.classes; when "
                                        r"evaluating, the classes the checkpoint was trained on\)"):
        index_dataset(data)  # the fixture has 3 of ImageNet's classes, not these 100
    listing = tmp_path / "two.txt"
    listing.write_text("n02979186\nn02102040\n")
    assert index_dataset(preset("imagenet_kaggle", kaggle_root, f"data.classes={listing}")).classes == (
        "n02102040", "n02979186")


def test_imagewoof_missing_root_is_downloaded_on_request(tmp_path, monkeypatch, imagewoof_root):
    import torchvision.datasets.utils as tv_utils

    monkeypatch.setenv("VISION_EXP_DATA", str(tmp_path))
    data = preset("imagewoof", tmp_path / "imagewoof2-160")
    assert data.name == "imagewoof" and data.num_classes == 10
    with pytest.raises(DataError, match="add data.download=true to fetch it"):
        index_dataset(data)
    fetched = []

    def fake_download(url, download_root):  # no network in tests: "extract" the fixture instead
        fetched.append((url, download_root))
        shutil.copytree(imagewoof_root, Path(download_root) / "imagewoof2-160")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    index = index_dataset(dataclasses.replace(data, download=True, num_classes=None))
    staging = str(tmp_path / "imagewoof2-160.partial")  # renamed into place once complete
    assert fetched == [("https://s3.amazonaws.com/fast-ai-imageclas/imagewoof2-160.tgz", staging)]
    assert len(index.classes) == 3 and not Path(staging).exists()


def test_a_download_that_fails_is_one_message_with_the_ways_out(tmp_path, monkeypatch):
    """No network (Kaggle's default) or a read-only parent folder: a DataError, not urllib's traceback."""
    import urllib.error

    import torchvision.datasets

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "Imagenette", offline)
    data = dataclasses.replace(preset("imagenette", tmp_path / "imagenette2-160"), download=True)
    with pytest.raises(DataError, match=r"could not download imagenette2-160 into .*name resolution.*Internet setting"
                                        r".*VISION_EXP_DATA to the folder that holds imagenette2-160/"):
        index_dataset(data)


@pytest.mark.parametrize("download", [False, True])
def test_a_data_folder_set_to_the_dataset_itself_is_named_and_nothing_is_downloaded(tmp_path, monkeypatch, download):
    """VISION_EXP_DATA=<...>/imagenette2-160 (the dataset's own folder, not the one that holds it): the fix names the
    parent, and data.download=true does not fetch a second copy into <...>/imagenette2-160/imagenette2-160."""
    import torchvision.datasets

    dataset = write_image_folder(tmp_path / "imagenette2-160", per_split={"train": 1, "val": 1})
    monkeypatch.setenv("VISION_EXP_DATA", str(dataset))
    fetched = []
    monkeypatch.setattr(torchvision.datasets, "Imagenette", lambda *args, **kwargs: fetched.append(args))
    data = dataclasses.replace(data_config(["data=imagenette"]), download=download)
    with pytest.raises(DataError) as info:
        index_dataset(data)
    assert str(info.value) == (
        f"dataset folder not found: {dataset / 'imagenette2-160'}, but {dataset} holds train/ and val/ itself\n"
        f"  fix: set VISION_EXP_DATA to the folder that holds imagenette2-160/ ({tmp_path}), not to the dataset's "
        f"folder (or data.root={dataset})")
    assert fetched == [] and sorted(p.name for p in dataset.iterdir()) == ["train", "val"]


def test_a_missing_folder_root_inside_a_dataset_points_at_the_dataset(tmp_path):
    """data=folder takes its root from the command line alone, so the fix is data.root, not VISION_EXP_DATA."""
    dataset = write_image_folder(tmp_path / "photos", per_split={"train": 1, "val": 1})
    with pytest.raises(DataError, match=re.escape(f"holds train/ and val/ itself\n  fix: data.root={dataset}") + "$"):
        index_dataset(data_config(["data=folder", f"data.root={dataset / 'photos'}"]))


@pytest.mark.parametrize("data_name, folder", [("imagewoof", "imagewoof2-160"), ("imagenette", "imagenette2-160")])
def test_an_interrupted_download_leaves_nothing_behind_and_the_next_one_starts_afresh(data_name, folder, tmp_path,
                                                                                       monkeypatch, tiny_folder):
    """A download cut short left a truncated archive (reused: Imagewoof's has no checksum) and a half-extracted
    folder that later runs took for the dataset. Now: one DataError, nothing left, and the next download works."""
    import torchvision.datasets.utils as tv_utils

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(tiny_folder, arcname=folder)
    whole = buffer.getvalue()
    downloads = []

    def fake_download_url(url, root, filename=None, md5=None, **kwargs):  # no network: the first one is cut short
        path = Path(root) / (filename or Path(url).name)
        if path.is_file() and tv_utils.check_integrity(str(path), md5):
            return  # torchvision keeps an archive it finds
        downloads.append(url)
        path.write_bytes(whole[: len(whole) // 2] if len(downloads) == 1 else whole)

    monkeypatch.setattr(tv_utils, "download_url", fake_download_url)
    data_dir = tmp_path / "data"
    data = dataclasses.replace(preset(data_name, data_dir / folder, "data.num_classes=null"), download=True)
    with pytest.raises(DataError, match=rf"could not download {folder} into .*The partial download .*{folder}.partial "
                                        r"was removed, so the next data.download=true starts afresh"):
        index_dataset(data)
    assert list(data_dir.iterdir()) == []  # no half-extracted folder, no truncated archive
    index = index_dataset(data)
    assert len(downloads) == 2 and len(index.classes) == 3 and len(index.val) == 12
    assert [path.name for path in data_dir.iterdir()] == [folder]


def test_hf_rows_open_like_files_and_are_stamped_by_fingerprint(hf_root):
    from vision_exp.data.cache import file_records
    from vision_exp.data.hf_rows import open_split, parse_row_uri
    from vision_exp.data.images import open_rgb

    data = preset("hf", hf_root)
    index = index_dataset(data)
    uri = index.train.paths[1]
    hf_cache = str(Path(data.cache_dir) / "huggingface")
    assert uri.startswith("hf://") and parse_row_uri(uri) == (str(hf_root), "train", "image", hf_cache, 1)
    stored = open_split(str(hf_root), "train", hf_cache)[1]["image"]
    np.testing.assert_array_equal(np.asarray(open_rgb(uri)), np.asarray(stored.convert("RGB")))
    assert open_rgb(index.train.paths[0]).mode == "RGB"  # the grayscale row
    assert min(open_rgb(uri, min_size=12).size) >= 12
    fingerprint = open_split(str(hf_root), "train", hf_cache)._fingerprint
    assert file_records(index.train, index.root)[0][:2] == [["train/0", f"{fingerprint}:image", 0],
                                                      ["train/1", f"{fingerprint}:image", 0]]


def test_an_hf_row_without_an_image_is_named_as_such(tmp_path):
    """A null image cell is an unreadable image whose reason says so, not "'NoneType' object is not subscriptable"."""
    from datasets import DatasetDict

    from vision_exp.data.images import open_rgb

    root = tmp_path / "hf_nulls"
    splits = {"train": hf_split(TINY_CLASSES, TRAIN, np.random.default_rng(0)),
              "validation": hf_split(TINY_CLASSES, VAL, np.random.default_rng(1))}
    splits["train"] = splits["train"].map(lambda row, i: {"image": None} if i == 1 else row, with_indices=True)
    DatasetDict(splits).save_to_disk(str(root))
    index = index_dataset(preset("hf", root))
    with pytest.raises(ValueError, match="^row 1 of split 'train' has no image in column 'image'$"):
        open_rgb(index.train.paths[1])
    assert open_rgb(index.train.paths[2]).mode == "RGB"


def test_hf_reads_a_folder_that_load_dataset_reads_and_converts_it_into_the_cache_folder(tmp_path, monkeypatch):
    """load_dataset converts the folder into Arrow files: they go under data.cache_dir (VISION_EXP_CACHE) with the
    project's other caches, not into datasets' own default (~/.cache/huggingface), also in a process that opens
    the rows by their URIs alone (a cache or DataLoader worker started afresh)."""
    import datasets  # the dev extra installs it: the tests of data=hf never skip

    from vision_exp.data import hf_rows
    from vision_exp.data.images import open_rgb

    elsewhere = tmp_path / "home-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", elsewhere)
    rng = np.random.default_rng(0)
    (tmp_path / "parquet").mkdir()
    hf_split(TINY_CLASSES, 2, rng).to_parquet(str(tmp_path / "parquet" / "train.parquet"))
    hf_split(TINY_CLASSES, 1, rng).to_parquet(str(tmp_path / "parquet" / "val.parquet"))
    data = preset("hf", tmp_path / "parquet")
    index = index_dataset(data)  # HF names val.parquet's split "validation"
    assert (len(index.train), len(index.val)) == (6, 3) and index.class_names == NAMES
    hf_rows.open_split.cache_clear()  # as in a fresh process
    hf_rows.encoded_images.cache_clear()
    assert open_rgb(index.val.paths[0]).mode == "RGB"
    assert not elsewhere.exists()
    assert list((Path(data.cache_dir) / "huggingface").glob("parquet/**/*.arrow"))


def test_hf_reads_an_image_folder_whose_rows_point_to_the_files(tiny_folder):
    """load_dataset reads class folders ("imagefolder") into rows that keep each image's path instead of its bytes:
    a row must open the file it points to, with the class of its folder."""
    from vision_exp.data import hf_rows
    from vision_exp.data.images import open_rgb

    index = index_dataset(preset("hf", tiny_folder))  # HF names the val/ folder's split "validation"
    assert index.classes == tuple(sorted(TINY_CLASSES)) and len(index.train) and len(index.val)
    for uri, label in zip(index.val.paths, index.val.labels):
        pointed = Path(hf_rows.row_image_file(uri))
        assert pointed.parent == tiny_folder / "val" / index.classes[label]
        assert np.array_equal(np.asarray(open_rgb(uri)), np.asarray(open_rgb(str(pointed))))


def test_row_uris_name_folders_whatever_characters_they_hold():
    """Dataset and cache folders are the user's: spaces, '&', '=', '?' and '%' must come back as they went in."""
    from vision_exp.data.hf_rows import parse_row_uri, row_uri

    parts = ("/data/my set&co=1?/hf", "train=2024", "image", "/cache/a b%20c", 17)
    assert parse_row_uri(row_uri(*parts)) == parts


def test_hf_conversion_into_a_cache_folder_it_cannot_make_is_one_message(tmp_path):
    """data.cache_dir under a file (or unwritable): a DataError naming the setting, not datasets' OSError."""
    rng = np.random.default_rng(0)
    (tmp_path / "parquet").mkdir()
    hf_split(TINY_CLASSES, 2, rng).to_parquet(str(tmp_path / "parquet" / "train.parquet"))
    hf_split(TINY_CLASSES, 1, rng).to_parquet(str(tmp_path / "parquet" / "val.parquet"))
    (tmp_path / "a-file").write_text("not a folder")
    data = preset("hf", tmp_path / "parquet", f"data.cache_dir={tmp_path / 'a-file' / 'cache'}")
    with pytest.raises(DataError, match=r"cannot convert .*parquet into .*a-file/cache/huggingface .*set a writable "
                                        r"data.cache_dir \(VISION_EXP_CACHE\)"):
        index_dataset(data)


def save_dict(root, **splits):
    from datasets import DatasetDict

    DatasetDict(splits).save_to_disk(str(root))


def with_classes(root, names, labels):
    save_dict(root, train=hf_split(TINY_CLASSES, 2, np.random.default_rng(0)),
              validation=hf_split(names, 0, np.random.default_rng(1), labels=labels))


HF_BREAKS = {
    "unknown split": (write_hf_dataset, ["data.val_split=val"],
                      r"no split 'val' in .*: it has \['train', 'validation'\]"),
    "unknown image column": (write_hf_dataset, ["data.image_column=img"],
                             r"data.image_column='img' is not a column of type Image in split 'train'.*: "
                             r"it has image \(Image\), label \(ClassLabel\)"),
    "label not a ClassLabel": (write_hf_dataset, ["data.label_column=image"],
                               "data.label_column='image' is not a column of type ClassLabel"),
    "one Dataset": (lambda root: hf_split(TINY_CLASSES, 1, np.random.default_rng(0)).save_to_disk(str(root)), [],
                    "holds one saved Dataset, not splits"),
    "unlabelled rows": (lambda root: with_classes(root, TINY_CLASSES, [0, -1]), [], r"unlabelled rows \(label -1\)"),
    "other label names": (lambda root: with_classes(root, TINY_CLASSES[:2], [0, 1]), [], "different ClassLabel names"),
    "val class not in train": (
        lambda root: save_dict(root, train=hf_split(TINY_CLASSES, 2, np.random.default_rng(0), labels=[0, 0, 1]),
                               validation=hf_split(TINY_CLASSES, 0, np.random.default_rng(1), labels=[0, 2])),
        [], r"classes in val not in train: \['n02979186'\]"),
    "missing root": (lambda root: None, [], "dataset folder not found: .*hf_dataset"),
}


@pytest.mark.parametrize("write, overrides, message", list(HF_BREAKS.values()), ids=list(HF_BREAKS))
def test_broken_hf_datasets_are_named(tmp_path, write, overrides, message):
    root = tmp_path / "hf_dataset"
    write(root)
    with pytest.raises(DataError, match=message):
        index_dataset(preset("hf", root, *overrides))


def test_hf_rows_keep_their_labels_when_the_classes_interleave(tmp_path):
    """Shuffled datasets (most on the Hub) do not group their rows by class: each row named in the index must
    carry its own label, in both splits."""
    from vision_exp.data.hf_rows import parse_row_uri

    rows = {"train": [2, 0, 1, 1, 0, 2, 0, 1, 2], "validation": [1, 0, 2, 2, 1, 0]}
    save_dict(tmp_path / "hf", **{split: hf_split(TINY_CLASSES, 0, np.random.default_rng(0), labels=labels)
                                  for split, labels in rows.items()})
    index = index_dataset(preset("hf", tmp_path / "hf"))
    for split, labels in ((index.train, rows["train"]), (index.val, rows["validation"])):
        assert sorted(parse_row_uri(uri)[-1] for uri in split.paths) == list(range(len(labels)))
        assert [TINY_CLASSES[labels[parse_row_uri(uri)[-1]]] for uri in split.paths] == [
            index.classes[label] for label in split.labels]


def test_hf_without_the_datasets_package_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'vision-exp\[hf\]'"):
        index_dataset(preset("hf", tmp_path))


def test_the_class_subset_does_not_depend_on_the_order_of_wnids_txt(tmp_path):
    """Tiny-ImageNet's classes are listed by wnids.txt in its own order: the seeded subset is drawn from them sorted,
    so a list written in another order picks the same classes, as folder listings do."""
    roots = write_tiny_imagenet(tmp_path / "listed"), write_tiny_imagenet(tmp_path / "reversed", TINY_CLASSES[::-1])
    for seed in range(8):
        picks = [INDEXERS["tiny_imagenet"](DataConfig(root=str(root), format="tiny_imagenet", num_classes=2,
                                                      subset_seed=seed)).classes for root in roots]
        assert picks[0] == picks[1], seed


def test_a_dataset_already_there_is_not_downloaded_again(tmp_path, monkeypatch, imagewoof_root):
    """data.download=true fetches a missing dataset only: with the folder there, a run reads it and downloads nothing
    (a download per run would be minutes of network and disk each time)."""
    import torchvision.datasets.utils as tv_utils

    root = tmp_path / "imagewoof2-160"
    shutil.copytree(imagewoof_root, root)
    fetched = []
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", lambda url, download_root: fetched.append(url))
    index = index_dataset(dataclasses.replace(preset("imagewoof", root), download=True, num_classes=None))
    assert fetched == [] and index.classes == TINY_CLASSES
