"""Which images a run uses: class subsets, per-class limits, readable names, and bad datasets."""
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from torchvision.transforms import functional as TF

from conftest import TINY_CLASSES, TINY_TRAIN_PER_CLASS, TINY_VAL_PER_CLASS, write_image_folder
from vision_exp.data.config import DataConfig
from vision_exp.data.images import open_rgb, resize_center_square
from vision_exp.data.index import build_split, index_image_folder
from vision_exp.errors import ConfigError, DataError


def cfg(root, **kw):
    return DataConfig(root=str(root), **kw)


def test_full_index_lists_every_image_with_readable_names(tiny_folder):
    index = index_image_folder(cfg(tiny_folder))
    assert index.classes == TINY_CLASSES
    assert index.class_names == ("tench", "English springer", "cassette player")
    assert len(index.train) == 3 * TINY_TRAIN_PER_CLASS and len(index.val) == 3 * TINY_VAL_PER_CLASS
    assert sorted(set(index.train.labels)) == [0, 1, 2]
    assert any(p.endswith(".png") for p in index.train.paths)


def test_class_subset_is_seeded_and_deterministic(tiny_folder):
    a = index_image_folder(cfg(tiny_folder, num_classes=2, subset_seed=0))
    b = index_image_folder(cfg(tiny_folder, num_classes=2, subset_seed=0))
    assert a.classes == b.classes and a.train.paths == b.train.paths
    picks = {index_image_folder(cfg(tiny_folder, num_classes=2, subset_seed=s)).classes for s in range(8)}
    assert len(picks) > 1, "the subset seed should change which classes are drawn"
    assert all(set(p) <= set(TINY_CLASSES) and len(p) == 2 for p in picks)


def test_explicit_class_list_and_class_list_file(tiny_folder, tmp_path):
    index = index_image_folder(cfg(tiny_folder, classes=["n02979186", "n01440764"]))
    assert index.classes == ("n01440764", "n02979186")
    listing = tmp_path / "classes.txt"
    listing.write_text("n02102040 English springer\nn01440764\n")
    assert index_image_folder(cfg(tiny_folder, classes=str(listing))).classes == ("n01440764", "n02102040")
    with pytest.raises(DataError, match="n09999999"):
        index_image_folder(cfg(tiny_folder, classes=["n09999999"]))
    with pytest.raises(ConfigError, match="set data.num_classes=2"):
        index_image_folder(cfg(tiny_folder, classes=["n01440764", "n02102040"], num_classes=3))


def test_fewer_than_two_classes_are_refused(tiny_folder, tmp_path):
    """One class is no classifier: it would report 100% at loss 0."""
    with pytest.raises(ConfigError, match="lists 1 class\\(es\\): a classifier needs at least 2"):
        index_image_folder(cfg(tiny_folder, classes=["n01440764"]))
    with pytest.raises(ConfigError, match="lists 0 class"):
        index_image_folder(cfg(tiny_folder, classes=[]))
    single = write_image_folder(tmp_path / "single", classes=TINY_CLASSES[:1], per_split={"train": 2, "val": 1})
    with pytest.raises(DataError, match="has 1 class\\(es\\) \\(n01440764\\): a classifier needs at least 2"):
        index_image_folder(cfg(single))


def test_classes_that_share_a_name_are_told_apart(tmp_path):
    """ImageNet names two classes 'crane' (a bird, a machine): keyed by name, one's accuracy replaced the other's."""
    cranes = ("n01440764", "n02012849", "n03126707")
    index = index_image_folder(cfg(write_image_folder(tmp_path / "d", classes=cranes, per_split={"train": 1, "val": 1})))
    assert index.class_names == ("tench", "crane (n02012849)", "crane (n03126707)")


def test_per_class_limits_are_seeded_subsets(tiny_folder):
    small = index_image_folder(cfg(tiny_folder, max_train_per_class=5, max_val_per_class=2))
    assert len(small.train) == 15 and len(small.val) == 6
    again = index_image_folder(cfg(tiny_folder, max_train_per_class=5, max_val_per_class=2))
    assert small.train.paths == again.train.paths
    other = index_image_folder(cfg(tiny_folder, max_train_per_class=5, subset_seed=1))
    assert other.train.paths != small.train.paths
    assert set(small.train.paths) < set(index_image_folder(cfg(tiny_folder)).train.paths)


def drawn_per_class(index) -> dict:
    """{class: the training images drawn for it}."""
    return {name: [path for path, y in zip(index.train.paths, index.train.labels) if y == label]
            for label, name in enumerate(index.classes)}


def test_a_class_keeps_its_drawn_images_whichever_other_classes_are_chosen(tiny_folder):
    """The per-class draw is seeded by the class's name, not its label: in another class subset, or another order,
    a class has another label and the same images, so runs on different subsets compare on them; subset_seed still
    redraws every class."""
    every = drawn_per_class(index_image_folder(cfg(tiny_folder, max_train_per_class=5)))
    for subset in (TINY_CLASSES[1:], TINY_CLASSES[::2]):
        chosen = drawn_per_class(index_image_folder(cfg(tiny_folder, classes=list(subset), max_train_per_class=5)))
        assert chosen == {name: every[name] for name in subset}, subset
    redrawn = [drawn_per_class(index_image_folder(cfg(tiny_folder, max_train_per_class=5, subset_seed=seed)))
               for seed in (1, 2)]
    assert all(any(draw[name] != every[name] for draw in redrawn) for name in TINY_CLASSES)
    files = {name: [f"{name}/{number}.JPEG" for number in range(12)] for name in ("a", "b")}
    forward, backward = (build_split(files, order, 5, 0, str) for order in (["a", "b"], ["b", "a"]))
    assert sorted(forward.paths) == sorted(backward.paths)


def test_too_many_classes_is_a_config_error(tiny_folder):
    with pytest.raises(ConfigError, match="only 3 classes"):
        index_image_folder(cfg(tiny_folder, num_classes=5))


def test_missing_root_names_the_path_and_both_fixes(tmp_path):
    with pytest.raises(DataError) as info:
        index_image_folder(cfg(tmp_path / "imagenette2-160", name="imagenette"))
    message = str(info.value)
    assert "imagenette2-160" in message and "VISION_EXP_DATA" in message and "data.download=true" in message


def test_empty_root_and_empty_class_folder(tmp_path):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "val").mkdir(parents=True)
    with pytest.raises(DataError, match="no class folders"):
        index_image_folder(cfg(tmp_path / "empty"))
    root = write_image_folder(tmp_path / "holey", per_split={"train": 2, "val": 1})
    shutil.rmtree(root / "train" / TINY_CLASSES[1])
    (root / "train" / TINY_CLASSES[1]).mkdir()
    with pytest.raises(DataError, match=f"class folder without images: .*{TINY_CLASSES[1]}"):
        index_image_folder(cfg(root))


def test_train_and_val_class_sets_must_agree(tmp_path):
    root = write_image_folder(tmp_path / "d", per_split={"train": 2, "val": 1})
    shutil.rmtree(root / "val" / TINY_CLASSES[2])
    with pytest.raises(DataError, match="only in train.*n02979186"):
        index_image_folder(cfg(root))


def test_non_image_files_are_ignored_or_refused(tmp_path):
    root = write_image_folder(tmp_path / "d", per_split={"train": 2, "val": 1})
    (root / "train" / TINY_CLASSES[0] / "notes.txt").write_text("not an image")
    index = index_image_folder(cfg(root))
    assert index.ignored_files and not any(p.endswith(".txt") for p in index.train.paths)
    with pytest.raises(DataError, match="notes.txt"):
        index_image_folder(cfg(root, on_bad_image="error"))


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "I;16"])
def test_every_image_mode_becomes_rgb(tmp_path, mode):
    image = Image.new("RGB", (20, 10), (200, 30, 10)).convert(mode)
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    image.save(path)
    out = open_rgb(str(path))
    assert out.mode == "RGB" and out.size == (20, 10)


def test_transparent_pixels_become_white(tmp_path):
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "t.png")
    assert open_rgb(str(tmp_path / "t.png")).getpixel((0, 0)) == (255, 255, 255)


def test_draft_decoding_keeps_at_least_the_requested_size(tmp_path):
    Image.new("RGB", (160, 120), (1, 2, 3)).save(tmp_path / "big.jpg")
    img = open_rgb(str(tmp_path / "big.jpg"), min_size=50)
    assert min(img.size) >= 50 and img.size[0] < 160


@pytest.mark.parametrize("bad", [{"img_size": 8}, {"img_size": 15}, {"batch_size": 0}, {"batch_size": -4},
                                 {"loader": "fast"}, {"max_train_per_class": 0}, {"max_val_per_class": 0},
                                 {"on_bad_image": "ignore"}, {"eval_batch_size": 0}, {"num_classes": 1},
                                 {"num_workers": -1}, {"on_device": "yes"}, {"crop_pct": 1.01}, {"crop_pct": 0.09},
                                 {"img_size": 32, "cache_size": 31}, {"format": "coco"}, {"train_split": ""},
                                 {"label_column": ""}, {"std": [0.2, 0.0, 0.2]}])
def test_invalid_values_are_config_errors(tmp_path, bad):
    with pytest.raises(ConfigError):
        cfg(tmp_path, **bad)


def test_a_half_extracted_download_says_how_to_start_it_again(tmp_path):
    """Earlier versions extracted in place: an interrupted download left train/ without val/."""
    root = write_image_folder(tmp_path / "imagenette2-160", per_split={"train": 1, "val": 1})
    shutil.rmtree(root / "val")
    with pytest.raises(DataError, match=f"missing split folder: {root / 'val'} \\(left by an interrupted download\\? "
                                        f"delete {root} and run again with data.download=true\\)"):
        index_image_folder(cfg(root))


def test_a_drawn_class_subset_is_listed_in_sorted_order(tiny_folder):
    """Label i is the i-th class in sorted order whatever order the subset was drawn in, as with every class."""
    for seed in range(8):
        classes = index_image_folder(cfg(tiny_folder, num_classes=2, subset_seed=seed)).classes
        assert list(classes) == sorted(classes), seed


def test_a_per_class_limit_keeps_the_images_in_folder_order(tiny_folder):
    """The limited split is a subset in the listing's (sorted) order, class by class, like the unlimited one."""
    full = index_image_folder(cfg(tiny_folder))
    small = index_image_folder(cfg(tiny_folder, max_train_per_class=5))
    for label in range(len(TINY_CLASSES)):
        chosen = [p for p, y in zip(small.train.paths, small.train.labels) if y == label]
        listed = [p for p, y in zip(full.train.paths, full.train.labels) if y == label]
        assert len(chosen) == 5 and chosen == [p for p in listed if p in chosen]


def test_draft_decoding_of_a_long_image_keeps_its_shorter_side(tmp_path):
    """The reduction is set by the shorter side: a 400 x 100 JPEG asked for 50 px may shrink to 200 x 50,
    not to 50 x 13 (reckoned from the longer side, the image would be upsampled from 13 px)."""
    Image.new("RGB", (400, 100), (1, 2, 3)).save(tmp_path / "long.jpg")
    img = open_rgb(str(tmp_path / "long.jpg"), min_size=50)
    assert min(img.size) >= 50 and img.size[0] < 400


def test_the_stored_square_is_the_central_square_of_the_image():
    """Three 8 px bands side by side: the square kept is the green one, whichever side is the longer."""
    bands = np.zeros((8, 24, 3), np.uint8)
    bands[:, :8, 0], bands[:, 8:16, 1], bands[:, 16:, 2] = 255, 255, 255
    for image in (bands, bands.transpose(1, 0, 2)):
        square = np.asarray(resize_center_square(Image.fromarray(image), 8))
        assert square.shape == (8, 8, 3) and (square == [0, 255, 0]).all()
    halved = np.asarray(resize_center_square(Image.fromarray(bands), 4)).astype(int)
    assert halved.shape == (4, 4, 3) and (halved[:, 1:3] == [0, 255, 0]).all()


def test_the_stored_square_is_torchvisions_resize_and_centre_crop():
    """Pixel for pixel where no resampling is needed (an odd difference between the sides puts the centre half-way
    between pixels: the crop starts on a whole pixel, as CenterCrop's does, not averaging neighbours), and to within
    one level of rounding at any other size."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (8, 13, 3), dtype=np.uint8)
    for image in (pixels, pixels.transpose(1, 0, 2)):
        stored = resize_center_square(Image.fromarray(image), 8)
        np.testing.assert_array_equal(np.asarray(stored), np.asarray(TF.center_crop(Image.fromarray(image), 8)))
    for height, width, size in ((57, 91, 20), (160, 213, 73), (100, 37, 64), (30, 31, 64)):
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        expected = np.asarray(TF.center_crop(TF.resize(image, size), size)).astype(int)
        assert np.abs(np.asarray(resize_center_square(image, size)).astype(int) - expected).max() <= 1


def test_a_banner_one_pixel_high_is_stored_without_resampling_the_whole_image():
    """Resized whole, a 1 x 30000 px image would become 64 x 1,920,000 px (over 500 MB) before its centre was
    cropped; only the central square is resampled, so it costs what a small photo does."""
    measure = (
        "import resource; from PIL import Image; from vision_exp.data.images import resize_center_square\n"
        "banner = Image.new('RGB', (30000, 1), (10, 200, 30))\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "square = resize_center_square(banner, 64)\n"
        "grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024\n"
        "print(square.size, square.getpixel((32, 32)), grown_mb, sep='\\n')"
    )
    printed = subprocess.run([sys.executable, "-c", measure], capture_output=True, text=True, check=True).stdout
    size, pixel, grown_mb = printed.split("\n")[:3]
    assert (size, pixel) == ("(64, 64)", "(10, 200, 30)") and float(grown_mb) < 50


def test_hidden_folders_and_files_are_not_classes_or_images(tmp_path):
    """Jupyter leaves `.ipynb_checkpoints/` and macOS `.DS_Store` and `._<name>` (AppleDouble) files in the
    folders they touch: neither a class nor an image, they must not stop a run or shift the labels."""
    root = write_image_folder(tmp_path / "d", per_split={"train": 2, "val": 1})
    clean = index_image_folder(cfg(root, on_bad_image="error"))
    (root / "train" / ".ipynb_checkpoints").mkdir()
    (root / "train" / ".ipynb_checkpoints" / "x.JPEG").write_bytes((root / "train" / TINY_CLASSES[0]).joinpath(
        f"{TINY_CLASSES[0]}_1.JPEG").read_bytes())
    (root / "train" / TINY_CLASSES[0] / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "val" / TINY_CLASSES[1] / f"._{TINY_CLASSES[1]}_0.JPEG").write_bytes(b"\0\5\26\7AppleDouble")
    index = index_image_folder(cfg(root, on_bad_image="error"))
    assert index.classes == clean.classes and index.train == clean.train and index.val == clean.val


def test_a_root_and_cache_dir_under_home_written_with_a_tilde_are_found(tmp_path, monkeypatch):
    """`data.root=~/x` reaches Python unexpanded (the shell leaves a `~` after `data.root=` alone), as does a
    quoted VISION_EXP_DATA="~/x": the run must read that folder, and not cache into a folder named `~`."""
    monkeypatch.setenv("HOME", str(tmp_path))
    write_image_folder(tmp_path / "d", per_split={"train": 2, "val": 1})
    data = cfg("~/d", cache_dir="~/cache")
    assert index_image_folder(data).root == str(tmp_path / "d")
    assert data.cache_entry("train").parent == tmp_path / "cache"


def test_a_32_bit_grey_image_keeps_its_grey_level(tmp_path):
    """A 16-bit grey level kept in a 32-bit integer image (mode I, as TIFFs and older Pillows give them) is scaled
    down to 8 bits like mode I;16: converted directly, every level above 255 would clip to white. A level beyond
    16 bits is white, not wrapped round to a dark grey."""
    level = 127
    grey = np.full((6, 5), level * 257, dtype=np.int32)
    grey[0, 0] = 2**16 + level * 257
    Image.fromarray(grey).save(tmp_path / "grey32.tif")
    assert Image.open(tmp_path / "grey32.tif").mode == "I"
    pixels = np.asarray(open_rgb(str(tmp_path / "grey32.tif")))
    assert pixels.shape == (6, 5, 3) and (pixels[0, 0] == 255).all() and (pixels.reshape(-1, 3)[1:] == level).all()


def test_a_palette_image_with_a_transparent_colour_shows_white_there(tmp_path):
    """A palette image marks one colour as transparent: like an RGBA image's clear pixels, those become white,
    not the colour the palette happens to hold for them."""
    hidden, shown = (10, 20, 30), (200, 100, 50)
    image = Image.new("P", (4, 4), 0)
    image.putpalette([*hidden, *shown] + [0, 0, 0] * 254)
    image.putpixel((0, 0), 1)
    image.save(tmp_path / "palette.png", transparency=0)
    out = open_rgb(str(tmp_path / "palette.png"))
    assert out.getpixel((1, 1)) == (255, 255, 255) and out.getpixel((0, 0)) == shown


def test_a_non_image_file_among_the_val_images_is_ignored_or_refused_too(tmp_path):
    """data.on_bad_image=error refuses every stray file of the dataset: one among the validation images as well as
    one among the training images."""
    root = write_image_folder(tmp_path / "d", per_split={"train": 2, "val": 1})
    stray = root / "val" / TINY_CLASSES[2] / "labels.csv"
    stray.write_text("not an image")
    assert index_image_folder(cfg(root)).ignored_files == (str(stray),)
    with pytest.raises(DataError, match="labels.csv"):
        index_image_folder(cfg(root, on_bad_image="error"))


def test_classes_of_one_size_are_not_given_the_same_draw(tmp_path):
    """A class's draw is seeded with its name as well as subset_seed: with the seed alone, every class of the same
    size would keep the images at the same places of its listing, one pick repeated in every class."""
    names = ("a", "b", "c")
    files = {name: [f"{name}/{number:02d}.JPEG" for number in range(40)] for name in names}
    split = build_split(files, list(names), 5, 0, str)
    places = {name: tuple(files[name].index(p) for p, y in zip(split.paths, split.labels) if y == label)
              for label, name in enumerate(names)}
    assert all(len(chosen) == 5 for chosen in places.values())
    assert len(set(places.values())) == len(names), places


def test_a_class_only_in_val_is_named(tmp_path):
    """The refusal names the class folders each split lacks, the ones only in val as well as those only in train."""
    root = write_image_folder(tmp_path / "d", per_split={"train": 2, "val": 1})
    shutil.rmtree(root / "train" / TINY_CLASSES[0])
    with pytest.raises(DataError, match=re.escape(f"only in train [], only in val ['{TINY_CLASSES[0]}']")):
        index_image_folder(cfg(root))


def test_a_class_listed_twice_is_refused(tiny_folder):
    """A class listed twice would get two labels, and its images would be counted under both."""
    with pytest.raises(ConfigError, match="lists a class twice"):
        index_image_folder(cfg(tiny_folder, classes=[TINY_CLASSES[0], TINY_CLASSES[1], TINY_CLASSES[0]]))


def test_a_missing_split_of_a_folder_of_ones_own_gives_no_download_advice(tmp_path):
    """Deleting the folder and downloading again suits only a folder a download made: said of a folder of one's own
    images, that advice would have them deleted."""
    root = write_image_folder(tmp_path / "my_photos", per_split={"train": 1, "val": 1})
    shutil.rmtree(root / "val")
    with pytest.raises(DataError) as info:
        index_image_folder(cfg(root))
    assert str(info.value) == f"missing split folder: {root / 'val'}"


def test_the_limits_of_the_data_settings_are_allowed(tmp_path):
    """Each limit admits its own value: 16 px images, one image per class, two classes, a crop of the whole image or
    of a tenth of it, a cache stored at the training size, no workers, batches of one."""
    for allowed in ({"img_size": 16}, {"max_train_per_class": 1, "max_val_per_class": 1}, {"num_classes": 2},
                    {"crop_pct": 1.0}, {"crop_pct": 0.1}, {"img_size": 32, "cache_size": 32}, {"num_workers": 0},
                    {"batch_size": 1, "eval_batch_size": 1}):
        data = cfg(tmp_path, **allowed)
        assert all(getattr(data, key) == value for key, value in allowed.items()), allowed


@pytest.mark.parametrize("img_size, crop_pct", [(64, 0.875), (32, 0.875), (16, 0.7), (24, 0.9)])
def test_evaluation_resizes_to_img_size_over_crop_pct_rounded_to_the_nearest_pixel(tmp_path, img_size, crop_pct):
    """Evaluation resizes the shorter side to img_size / crop_pct, rounded to the nearest whole pixel (32 / 0.875 =
    36.57 gives 37, not 36), and the cache stores that size unless data.cache_size names another."""
    data = cfg(tmp_path, img_size=img_size, crop_pct=crop_pct)
    assert abs(data.eval_resize - img_size / crop_pct) <= 0.5 and data.resize_size == data.eval_resize
    assert cfg(tmp_path, img_size=img_size, crop_pct=crop_pct, cache_size=2 * img_size).resize_size == 2 * img_size


def test_evaluation_batches_are_twice_the_training_batches_unless_set(tmp_path):
    """Evaluation keeps no gradients: by default it takes batches twice the training size; data.eval_batch_size
    (the way out of running out of memory while evaluating) sets them."""
    assert cfg(tmp_path, batch_size=12).eval_batch == 2 * 12
    assert cfg(tmp_path, batch_size=12, eval_batch_size=5).eval_batch == 5


def test_blank_lines_of_a_class_list_file_name_no_class(tiny_folder, tmp_path):
    """A class-list file may group its classes with blank lines or end with some: they name no class."""
    listing = tmp_path / "classes.txt"
    listing.write_text(f"\n{TINY_CLASSES[1]} English springer\n\n   \n{TINY_CLASSES[0]}\n\n")
    assert index_image_folder(cfg(tiny_folder, classes=str(listing))).classes == TINY_CLASSES[:2]


def test_a_subfolder_or_a_broken_link_among_the_images_is_named_not_dropped_unnoticed(tmp_path, caplog):
    """Images in a subfolder of a class folder are not read (torchvision's ImageFolder would read them), and a
    broken link has no image behind it: both are counted with the stray files, and refused under error."""
    root = write_image_folder(tmp_path / "d", per_split={"train": 2, "val": 1})
    nested = root / "train" / TINY_CLASSES[0] / "more"
    nested.mkdir()
    shutil.copy(next((root / "train" / TINY_CLASSES[0]).glob("*.JPEG")), nested / "extra.JPEG")
    broken = root / "val" / TINY_CLASSES[1] / "gone.JPEG"
    broken.symlink_to(tmp_path / "nowhere.JPEG")
    index = index_image_folder(cfg(root))
    assert sorted(index.ignored_files) == sorted([str(nested), str(broken)])
    assert not any("more" in path or "gone" in path for path in (*index.train.paths, *index.val.paths))
    assert "ignored 2 entries" in caplog.text and f"a folder among the images: {nested}" in caplog.text
    with pytest.raises(DataError, match=f"a folder among the images: {re.escape(str(nested))} .*move them up"):
        index_image_folder(cfg(root, on_bad_image="error"))
    shutil.rmtree(nested)
    with pytest.raises(DataError, match=f"a broken link among the images: {re.escape(str(broken))}"):
        index_image_folder(cfg(root, on_bad_image="error"))


def test_a_class_whose_images_all_lie_in_a_subfolder_names_the_subfolder(tmp_path):
    """The layout a subfolder is ignored for, at its worst: no image left in the class folder, where 'class folder
    without images' alone sends the user looking at a folder that visibly holds them."""
    root = write_image_folder(tmp_path / "d", per_split={"train": 2, "val": 1})
    class_dir = root / "train" / TINY_CLASSES[0]
    (class_dir / "@eaDir").mkdir()  # a NAS's thumbnail folder, listed first: it holds no image, so is not named
    (class_dir / "batch1").mkdir()
    for image in [p for p in class_dir.iterdir() if p.is_file()]:
        image.rename(class_dir / "batch1" / image.name)
    for on_bad_image in ("skip", "error"):
        with pytest.raises(DataError, match=re.escape(f"class folder without images: {class_dir} (images in its "
                                                      f"subfolder batch1/ are not read; move them up a level)")):
            index_image_folder(cfg(root, on_bad_image=on_bad_image))
    shutil.rmtree(class_dir / "batch1")
    with pytest.raises(DataError, match=re.escape(f"class folder without images: {class_dir}") + "$"):
        index_image_folder(cfg(root))
