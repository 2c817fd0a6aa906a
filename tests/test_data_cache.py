"""The uint8 cache: built once, reused, rebuilt when the config or the files change, portable."""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import write_image_folder
from vision_exp.data import cache as cache_mod
from vision_exp.data.config import DataConfig, read_class_list
from vision_exp.data.images import open_rgb, resize_center_square
from vision_exp.data.loaders import build_loaders, build_val_loader, cached_index_split, index_dataset
from vision_exp.errors import DataError
from vision_exp.recipe.config import AugmentConfig


def settings(root, cache_dir, size=20, **kw):
    return DataConfig(root=str(root), cache_dir=str(cache_dir), img_size=16, cache_size=size, **kw)


def build(data, workers=1, split="train"):
    index = index_dataset(data)
    return index, cached_index_split(index, data, split, workers)


def test_cache_holds_the_decoded_images_labels_and_manifest(tiny_folder, tmp_path):
    data = settings(tiny_folder, tmp_path)
    index, split = build(data)
    assert split.images.shape == (len(index.train), 20, 20, 3) and split.images.dtype == np.uint8
    assert list(split.labels) == list(index.train.labels)
    expected = np.asarray(resize_center_square(open_rgb(index.train.paths[5], 20), 20))
    np.testing.assert_array_equal(split.images[5], expected)
    manifest = json.loads((data.cache_entry("train") / "manifest.json").read_text())
    assert manifest["count"] == len(index.train) and manifest["size"] == 20
    assert manifest["classes"] == list(index.classes) and len(manifest["files"]) == len(index.train)
    relative, size, label = manifest["files"][0]
    assert (tiny_folder / relative).stat().st_size == size and label == index.train.labels[0]


# Builds the train cache of a folder with two workers, each image slowed down and a marker file written when
# decoding starts; on Ctrl-C it reports, as train.py's one line does, how many workers are still running.
BUILD_SLOWLY = """
import multiprocessing, sys, time
from vision_exp.data import cache
from vision_exp.data.config import DataConfig
from vision_exp.data.loaders import cached_index_split, index_dataset

root, cache_dir, started = sys.argv[1:]
decode = cache.open_rgb

def slow_open_rgb(path, size):
    open(started, "w").close()
    time.sleep(0.2)
    return decode(path, size)

cache.open_rgb, cache.CHUNK = slow_open_rgb, 2
data = DataConfig(root=root, cache_dir=cache_dir, img_size=16, cache_size=20)
try:
    cached_index_split(index_dataset(data), data, "train", workers=2)
except KeyboardInterrupt:
    print(f"stopped; workers left: {len(multiprocessing.active_children())}")
    sys.exit(130)
"""


def test_ctrl_c_while_decoding_stops_the_workers_at_once_and_leaves_no_entry(tiny_folder, tmp_path):
    """Ctrl-C signals the whole process group. Workers that took it printed tracebacks, broke the pool or went on
    decoding the queued chunks into a removed folder, the process waiting for them at exit; they must leave it
    to the main process, which stops them at once, and a rerun must build the whole entry."""
    cache_dir, started = tmp_path / "cache", tmp_path / "started"
    child = subprocess.Popen([sys.executable, "-c", BUILD_SLOWLY, str(tiny_folder), str(cache_dir), str(started)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(child.pid, signal.SIGINT)  # what Ctrl-C sends
        stdout, stderr = child.communicate(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)  # whatever it left running
    assert child.returncode == 130 and "Traceback" not in stderr, stderr
    assert stdout.strip() == "stopped; workers left: 0"
    assert list(cache_dir.iterdir()) == []  # neither the entry nor its temporary folder
    data = settings(tiny_folder, cache_dir)
    index, split = build(data, workers=2)
    assert len(split.images) == len(index.train) and split.images[-1].any()


def test_a_build_removes_the_folders_of_killed_builds_but_not_of_running_ones(tiny_folder, tmp_path):
    """A SIGKILL or a session's time limit mid-build leaves `<entry>.tmp-<pid>/` (gigabytes for a large split);
    the next build of the entry removes it, while a build in progress (here, or on another machine sharing the
    cache folder) holds its lock and keeps its folder."""
    from vision_exp.reporting.files import exclusive_lock

    data = settings(tiny_folder, tmp_path)
    entry = data.cache_entry("train")
    killed, running = (entry.parent / f"{entry.name}.tmp-{pid}" for pid in (4000001, 4000002))
    for folder in (killed, running):
        folder.mkdir(parents=True)
        (folder / "images.npy").write_bytes(b"half written")
    with exclusive_lock(cache_mod.build_lock(running)) as held:
        assert held
        build(data)
        assert not killed.exists() and (running / "images.npy").is_file()
    assert sorted(path.name for path in entry.parent.iterdir()) == sorted([entry.name, running.name, running.name + ".lock"])


def test_parallel_build_equals_serial_build(tiny_folder, tmp_path):
    _, serial = build(settings(tiny_folder, tmp_path / "a"), workers=1)
    _, parallel = build(settings(tiny_folder, tmp_path / "b"), workers=2)
    np.testing.assert_array_equal(np.asarray(serial.images), np.asarray(parallel.images))


def test_second_use_reuses_the_cache(tiny_folder, tmp_path, monkeypatch):
    build(settings(tiny_folder, tmp_path))
    calls = []
    monkeypatch.setattr(cache_mod, "build_split_cache", lambda *a, **k: calls.append(a))
    _, split = build(settings(tiny_folder, tmp_path))
    assert calls == [] and len(split.images) > 0


def test_a_cache_built_before_modification_times_were_recorded_is_still_used(tiny_folder, tmp_path, monkeypatch):
    """Entries whose manifest has no `mtimes` (built before they were recorded) match on names, sizes and labels:
    every such cache would otherwise be decoded again."""
    data = settings(tiny_folder, tmp_path)
    index, _ = build(data)
    manifest_path = data.cache_entry("train") / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["mtimes"]
    manifest_path.write_text(json.dumps(manifest))
    rebuilt = []
    monkeypatch.setattr(cache_mod, "build_split_cache", lambda *args, **kwargs: rebuilt.append(args))
    _, split = build(data)
    assert len(split.images) == len(index.train) and rebuilt == []


def test_a_reused_cache_moves_to_the_device_without_warnings_and_is_never_written(tiny_folder, tmp_path):
    import warnings

    from vision_exp.data.loaders import CachedLoader

    build(settings(tiny_folder, tmp_path))
    _, split = build(settings(tiny_folder, tmp_path))  # the second use reads the file through a memory map
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loader = CachedLoader(split.images, split.labels, 4, transform=None, device=torch.device("cpu"), on_device=True)
    path = settings(tiny_folder, tmp_path).cache_entry("train") / "images.npy"
    before = path.read_bytes()
    loader.device_images.fill_(0)
    assert path.read_bytes() == before and np.load(path).any()


def test_train_and_train_eval_share_one_device_copy_of_the_training_images(tiny_folder, tmp_path, monkeypatch):
    """fits_on_device counts train + val once: a second copy for the train-eval pass would overrun it."""
    from vision_exp.data import loaders

    monkeypatch.setattr(loaders, "fits_on_device", lambda arrays, device, setting: True)
    data = settings(tiny_folder, tmp_path)
    bundle = build_loaders(index_dataset(data), data, AugmentConfig(), torch.device("cpu"), seed=0)
    assert bundle.train.device_images is bundle.train_eval.device_images is not None
    assert bundle.val.device_images is not None and len(bundle.val.device_images) == len(bundle.val.images)


def test_a_class_list_file_names_the_cache_by_its_wnids_as_the_index_reads_them(tmp_path):
    """A file may name each class after its WNID: the index reads the WNIDs, and so must the cache's name."""
    listed = tmp_path / "classes.txt"
    listed.write_text("n01440764 tench\nn02102040 English springer\n")
    from_file = settings(tmp_path, tmp_path / "c", classes=str(listed))
    assert read_class_list(from_file.classes) == ["n01440764", "n02102040"]
    listed_inline = settings(tmp_path, tmp_path / "c", classes=["n01440764", "n02102040"])
    assert from_file.cache_entry("train") == listed_inline.cache_entry("train")


def test_changed_settings_use_another_entry_and_changed_files_rebuild(tmp_path):
    root = write_image_folder(tmp_path / "d", per_split={"train": 3, "val": 1})
    small, large = settings(root, tmp_path / "c", size=20), settings(root, tmp_path / "c", size=24)
    build(small)
    build(large)
    assert small.cache_entry("train") != large.cache_entry("train")
    assert settings(root, tmp_path / "c", max_train_per_class=2).cache_entry("train") != small.cache_entry("train")
    victim = sorted((root / "train").rglob("*.JPEG"))[0]
    before = np.asarray(build(small)[1].images).copy()
    victim.write_bytes(victim.read_bytes() + b"\0" * 64)  # same name, other content
    after = build(small)[1]
    manifest = json.loads((small.cache_entry("train") / "manifest.json").read_text())
    assert any(size == victim.stat().st_size for _, size, _ in manifest["files"])
    assert after.images.shape == before.shape


def test_manifest_mismatch_is_rebuilt(tmp_path):
    root = write_image_folder(tmp_path / "d", per_split={"train": 3, "val": 1})
    data = settings(root, tmp_path / "c")
    _, first = build(data)
    manifest_path = data.cache_entry("train") / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["count"] = 999
    manifest_path.write_text(json.dumps(manifest))
    _, second = build(data)
    assert len(second.images) == len(first.images)
    assert json.loads(manifest_path.read_text())["count"] == len(first.images)


def test_the_readable_rows_are_copied_in_chunks_in_order(tmp_path):
    """Dropping unreadable images copies the others a chunk at a time (never the whole split in memory)."""
    images = np.random.default_rng(0).integers(0, 256, size=(3 * cache_mod.CHUNK + 5, 2, 2, 3), dtype=np.uint8)
    np.save(tmp_path / "all.npy", images)
    rows = np.setdiff1d(np.arange(len(images)), [0, cache_mod.CHUNK, len(images) - 1])
    cache_mod.copy_rows(tmp_path / "all.npy", rows, tmp_path / "kept.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "kept.npy"), images[rows])


def test_unreadable_image_is_skipped_or_refused(tmp_path):
    root = write_image_folder(tmp_path / "d", per_split={"train": 3, "val": 1})
    victim = sorted((root / "train").rglob("*.JPEG"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])  # a truncated JPEG
    index, split = build(settings(root, tmp_path / "c"))
    kept = [i for i, path in enumerate(index.train.paths) if path != str(victim)]
    assert len(kept) == len(index.train) - 1 and list(split.labels) == [index.train.labels[i] for i in kept]
    for stored, i in zip(split.images, kept):  # the readable images, in order, and not the broken one
        np.testing.assert_array_equal(stored, np.asarray(resize_center_square(open_rgb(index.train.paths[i], 20), 20)))
    assert len(split.skipped) == 1 and str(victim) in split.skipped[0]
    refuse = settings(root, tmp_path / "c2", on_bad_image="error")
    with pytest.raises(DataError, match=victim.name):
        build(refuse)
    assert not refuse.cache_entry("train").exists(), "a refused build leaves no cache entry"
    with pytest.raises(DataError, match=rf"{victim.name}.*on_bad_image=error refuses"):
        build(settings(root, tmp_path / "c", on_bad_image="error"))  # the cache `skip` built above


def test_a_copied_cache_trains_without_the_original_images(tmp_path):
    root = write_image_folder(tmp_path / "d", per_split={"train": 3, "val": 2})
    data = settings(root, tmp_path / "c")
    original = build(data)[0]
    build(data, split="val")
    shutil.copytree(tmp_path / "c", tmp_path / "elsewhere")
    shutil.rmtree(root)
    moved = settings(root, tmp_path / "elsewhere")
    index = index_dataset(moved)
    assert index.from_cache and index.classes == original.classes and index.class_names == original.class_names
    bundle = build_loaders(index, moved, AugmentConfig(), torch.device("cpu"), seed=0)
    assert bundle.train_digest == original.train.digest(str(root)), "a run's checkpoint resumes on the cached copy"
    images, labels = next(bundle.train.epoch(0))
    assert images.shape[1:] == (3, 16, 16) and len(bundle.val.images) == 2 * 3
    with pytest.raises(DataError, match="dataset folder not found"):
        index_dataset(settings(root, tmp_path / "empty-cache"))
    mistyped = settings(tmp_path / "elsewhere-root" / "tinynette-320", tmp_path / "elsewhere")
    assert mistyped.cache_entry("train") == moved.cache_entry("train"), "the key leaves the root out"
    with pytest.raises(DataError, match="dataset folder not found.*tinynette-320"):
        index_dataset(mistyped)  # another folder's cache is not passed off as this one


def test_parallel_builders_of_one_entry_keep_the_first(tmp_path):
    from vision_exp.data.cache import _move_into_place

    root = write_image_folder(tmp_path / "d", per_split={"train": 2, "val": 1})
    data = settings(root, tmp_path / "c")
    _, first = build(data)
    entry = data.cache_entry("train")
    manifest = json.loads((entry / "manifest.json").read_text())
    late = tmp_path / "c" / "late-build"
    shutil.copytree(entry, late)
    (late / "marker").write_text("late")
    _move_into_place(late, entry)  # same files: the entry in place stays
    assert not late.exists() and not (entry / "marker").exists()
    late.mkdir()
    shutil.copytree(entry, late, dirs_exist_ok=True)
    (late / "marker").write_text("late")
    (late / "manifest.json").write_text(json.dumps({**manifest, "mtimes": [0] * len(manifest["files"])}))
    _move_into_place(late, entry)  # built from rewritten files: the entry in place is stale and replaced
    assert (entry / "marker").exists()


def test_two_builders_replacing_one_stale_entry_both_succeed(tmp_path, monkeypatch):
    """Two runs started together over a stale entry both rebuild it; one removes the stale entry and the other's
    build lands before its own rename: it keeps that build instead of failing with "Directory not empty"."""
    root = write_image_folder(tmp_path / "d", per_split={"train": 2, "val": 1})
    data = settings(root, tmp_path / "c")
    build(data)
    entry = data.cache_entry("train")
    manifest = json.loads((entry / "manifest.json").read_text())
    mine, theirs = tmp_path / "c" / "mine", tmp_path / "c" / "theirs"
    for fresh in (mine, theirs):
        shutil.copytree(entry, fresh)
        (fresh / "marker").write_text(fresh.name)
    (entry / "manifest.json").write_text(json.dumps({**manifest, "mtimes": [0] * len(manifest["files"])}))  # stale
    real_rmtree = shutil.rmtree

    def rmtree_then_the_other_build_lands(path, *args, **kwargs):
        real_rmtree(path, *args, **kwargs)
        if path == entry and theirs.exists():
            theirs.rename(entry)

    monkeypatch.setattr(cache_mod.shutil, "rmtree", rmtree_then_the_other_build_lands)
    cache_mod._move_into_place(mine, entry)
    assert (entry / "marker").read_text() == "theirs" and not mine.exists()
    assert cache_mod.load_split_cache(entry) is not None


def test_hf_cache_entries_depend_on_the_columns(tmp_path):
    base = dict(root=str(tmp_path), cache_dir=str(tmp_path / "c"), format="hf", name="hf")
    assert DataConfig(**base).cache_entry("train") != DataConfig(**base, label_column="fine_label").cache_entry("train")
    assert DataConfig(**base).cache_entry("train") == DataConfig(**base).cache_entry("train")


def test_an_image_rewritten_with_the_same_size_rebuilds_the_cache_but_a_copied_cache_is_kept(tmp_path):
    """Uncompressed images keep their byte size when rewritten: the modification time tells them apart in the
    folder the cache was built from; elsewhere (a copied dataset and cache) sizes alone decide."""
    from PIL import Image

    root = tmp_path / "d"
    for split in ("train", "val"):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (24, 24), (40, 40, 40)).save(root / split / name / f"{i}.bmp")
    data = settings(root, tmp_path / "c")
    dark = np.asarray(build(data)[1].images).mean()
    victim = root / "train" / "a" / "0.bmp"
    size = victim.stat().st_size
    Image.new("RGB", (24, 24), (250, 250, 250)).save(victim)
    assert victim.stat().st_size == size
    assert np.asarray(build(data)[1].images).mean() > dark + 20
    shutil.copytree(root, tmp_path / "elsewhere" / "d")  # a copy keeping the modification times
    moved = settings(tmp_path / "elsewhere" / "d", tmp_path / "c")
    entry = moved.cache_entry("train")
    built_at = (entry / "images.npy").stat().st_mtime_ns
    build(moved)
    assert (entry / "images.npy").stat().st_mtime_ns == built_at
    shutil.rmtree(root)  # the folder it was built from gone: new times (a copy without them) do not matter
    for image in (tmp_path / "elsewhere" / "d").rglob("*.bmp"):
        os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    build(moved)
    assert (entry / "images.npy").stat().st_mtime_ns == built_at


def test_another_dataset_of_the_same_names_and_sizes_is_not_given_the_cached_pixels(tmp_path):
    """Every `data=folder` dataset is named `folder`, and uncompressed images of one size have one byte size: a
    second such dataset beside the first matches the first's cache entry on names and sizes, not on times."""
    from PIL import Image

    means = {}
    for grey in (10, 250):
        root = tmp_path / f"grey{grey}"
        for split in ("train", "val"):
            for name in ("a", "b"):
                (root / split / name).mkdir(parents=True)
                Image.new("RGB", (24, 24), (grey, grey, grey)).save(root / split / name / "0.bmp")
        means[grey] = np.asarray(build(settings(root, tmp_path / "c"))[1].images).mean()
    assert settings(tmp_path / "grey10", tmp_path / "c").cache_entry("train") == \
        settings(tmp_path / "grey250", tmp_path / "c").cache_entry("train")
    assert means[10] == pytest.approx(10, abs=1) and means[250] == pytest.approx(250, abs=1)


def test_sixteen_bit_and_transparent_grey_images_decode_like_their_eight_bit_rgb_twins(tmp_path):
    from PIL import Image

    grey16 = Image.fromarray(np.full((8, 8), 127 * 257, dtype=np.uint16))
    grey16.save(tmp_path / "grey16.png")
    assert np.asarray(open_rgb(str(tmp_path / "grey16.png"))).mean() == pytest.approx(127, abs=1)
    Image.new("LA", (8, 8), (90, 0)).save(tmp_path / "clear_la.png")  # fully transparent grey
    Image.new("RGBA", (8, 8), (90, 90, 90, 0)).save(tmp_path / "clear_rgba.png")
    assert np.array_equal(np.asarray(open_rgb(str(tmp_path / "clear_la.png"))),
                          np.asarray(open_rgb(str(tmp_path / "clear_rgba.png"))))
    assert np.asarray(open_rgb(str(tmp_path / "clear_la.png"))).min() == 255  # composited onto white


def test_prepare_data_builds_the_cache_a_run_then_reuses(tiny_folder, tmp_path, capsys, monkeypatch):
    import importlib.util

    from conftest import REPO, compose, tiny_overrides
    from vision_exp.experiment import run_experiment

    spec = importlib.util.spec_from_file_location("prepare_data", REPO / "scripts" / "prepare_data.py")
    prepare_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare_data)
    overrides = tiny_overrides(tiny_folder, f"data.cache_dir={tmp_path / 'cache'}")
    data_overrides = [o for o in overrides if o.startswith("data")]
    assert prepare_data.main([*data_overrides, "--workers", "1"]) == 0
    assert len(list((tmp_path / "cache").iterdir())) == 2 and "train: 36 images" in capsys.readouterr().out

    def no_decoding(*args):
        raise AssertionError("the run decoded images that prepare_data had cached")

    monkeypatch.setattr(cache_mod, "build_split_cache", no_decoding)
    assert run_experiment(compose(overrides), tmp_path / "run", [])["status"] == "completed"
    assert prepare_data.main(["data.bogus=1"]) == 2 and "data.bogus" in capsys.readouterr().err
    assert prepare_data.main(["+modle=vit_v1"]) == 2 and "modle is not a setting" in capsys.readouterr().err
    assert prepare_data.main([*data_overrides, "data.loader=folder"]) == 2
    assert "data.loader=folder decodes the image files at every access" in capsys.readouterr().err


def test_images_past_the_first_chunk_are_stored_in_their_own_rows(tmp_path, monkeypatch):
    """Decoding goes a chunk at a time (64 images; 4 here): every chunk's images go to their own rows, and an
    unreadable image in a later chunk drops its own row, not one of the first chunk's."""
    monkeypatch.setattr(cache_mod, "CHUNK", 4)
    root = write_image_folder(tmp_path / "d", per_split={"train": 4, "val": 1})  # 12 training images: 3 chunks
    victim = sorted((root / "train").rglob("*.JPEG"))[-2]
    victim.write_bytes(victim.read_bytes()[:200])
    index, split = build(settings(root, tmp_path / "c"))
    kept = [i for i, path in enumerate(index.train.paths) if path != str(victim)]
    assert index.train.paths.index(str(victim)) >= 2 * cache_mod.CHUNK
    assert len(split.images) == len(kept) and list(split.labels) == [index.train.labels[i] for i in kept]
    for stored, i in zip(split.images, kept):
        np.testing.assert_array_equal(stored, np.asarray(resize_center_square(open_rgb(index.train.paths[i], 20), 20)))
    assert len(split.skipped) == 1 and str(victim) in split.skipped[0]


def test_a_cache_whose_folder_moved_is_rebuilt_for_another_file_list(tmp_path):
    """A cache whose dataset folder is gone is matched on names and sizes alone: the same dataset found elsewhere with
    an image fewer is another file list, and gets a rebuilt cache, not the pixels (and row count) of the old one."""
    root = write_image_folder(tmp_path / "d", per_split={"train": 3, "val": 1})
    before = build(settings(root, tmp_path / "c"))[1]
    moved = tmp_path / "elsewhere" / root.name
    shutil.move(str(root), str(moved))
    sorted((moved / "train").rglob("*.JPEG"))[0].unlink()
    index, after = build(settings(moved, tmp_path / "c"))
    assert len(index.train) == len(before.images) - 1
    assert len(after.images) == len(index.train) and list(after.labels) == list(index.train.labels)


def test_without_the_dataset_a_cache_missing_one_split_is_not_used(tmp_path):
    """A run starts from the cache alone only when both splits are cached: with the val split never built, a missing
    dataset folder is reported as such, not read from half a cache."""
    root = write_image_folder(tmp_path / "d", per_split={"train": 2, "val": 1})
    data = settings(root, tmp_path / "c")
    build(data)  # the train split alone
    shutil.rmtree(root)
    with pytest.raises(DataError, match="dataset folder not found"):
        index_dataset(data)


def test_the_folder_loader_does_not_take_its_index_from_a_cache(tmp_path):
    """Only the cached loader can run from a cache alone: the folder loader decodes the image files, and without them
    it says that the dataset folder is missing, not that every one of its images is unreadable."""
    root = write_image_folder(tmp_path / "d", per_split={"train": 2, "val": 1})
    data = settings(root, tmp_path / "c")
    build(data)
    build(data, split="val")
    shutil.rmtree(root)
    assert index_dataset(data).from_cache
    with pytest.raises(DataError, match="dataset folder not found"):
        index_dataset(settings(root, tmp_path / "c", loader="folder"))


def test_an_entry_of_another_cache_format_or_with_labels_of_another_length_is_rebuilt(tmp_path):
    """CACHE_FORMAT changes with the decoding or the layout: an entry written under another version is rebuilt, and
    so is one whose labels do not match its images one for one."""
    root = write_image_folder(tmp_path / "d", per_split={"train": 3, "val": 1})
    data = settings(root, tmp_path / "c")
    entry, first = data.cache_entry("train"), build(data)[1]
    manifest = json.loads((entry / "manifest.json").read_text())
    (entry / "manifest.json").write_text(json.dumps({**manifest, "format": cache_mod.CACHE_FORMAT + 1}))
    assert cache_mod.load_split_cache(entry) is None
    assert len(build(data)[1].images) == len(first.images)
    assert json.loads((entry / "manifest.json").read_text())["format"] == cache_mod.CACHE_FORMAT
    np.save(entry / "labels.npy", np.asarray(first.labels)[:-1])
    assert cache_mod.load_split_cache(entry) is None
    assert list(build(data)[1].labels) == list(first.labels)


def test_every_setting_that_selects_the_images_names_its_own_cache_entry(tmp_path):
    """An entry is found by its name alone (a run without its dataset starts from it): each setting that picks a
    split's images must change that name, or two selections would share one entry and one run the other's pixels."""
    base = settings(tmp_path, tmp_path / "c")
    for split, changed in (("train", {"classes": ["n01440764", "n02102040"]}), ("train", {"num_classes": 2}),
                           ("train", {"subset_seed": 1}), ("train", {"max_train_per_class": 2}),
                           ("val", {"max_val_per_class": 2}), ("val", {"val_split": "validation"}),
                           ("train", {"train_split": "training"})):
        assert settings(tmp_path, tmp_path / "c", **changed).cache_entry(split) != base.cache_entry(split), changed


def test_a_cache_damaged_after_it_was_indexed_without_its_dataset_is_one_message(tmp_path):
    """Without the dataset, a damaged cache cannot be rebuilt: the run stops with a message that names both, not
    with an error from deep inside the loader."""
    root = write_image_folder(tmp_path / "d", per_split={"train": 2, "val": 1})
    data = settings(root, tmp_path / "c")
    build(data)
    build(data, split="val")
    shutil.rmtree(root)
    index = index_dataset(data)
    (data.cache_entry("val") / "images.npy").unlink()
    with pytest.raises(DataError, match="is missing and its cached copy .* is unusable"):
        cached_index_split(index, data, "val", 1)


@pytest.mark.parametrize("damage", ["empty images.npy", "empty labels.npy", "manifest a list", "manifest without skipped"])
def test_a_cache_entry_damaged_into_empty_arrays_or_an_odd_manifest_is_rebuilt(tmp_path, damage):
    """An interrupted copy of a cache leaves empty .npy files (np.load: EOFError), an edit a manifest of another
    shape: the entry is rebuilt from the dataset, with the same content, or named as unusable without it."""
    root = write_image_folder(tmp_path / "d", per_split={"train": 2, "val": 1})
    data = settings(root, tmp_path / "c")
    _, first = build(data)
    images, labels = np.array(first.images), np.array(first.labels)  # copies: the memory map is of the file damaged below
    entry = data.cache_entry("train")
    manifest = json.loads((entry / "manifest.json").read_text())
    if damage.startswith("empty"):
        (entry / damage.split()[1]).unlink()
        (entry / damage.split()[1]).write_bytes(b"")
    else:
        (entry / "manifest.json").write_text(json.dumps([] if damage == "manifest a list" else
                                                        {k: v for k, v in manifest.items() if k != "skipped"}))
    _, rebuilt = build(data)
    np.testing.assert_array_equal(rebuilt.images, images)
    np.testing.assert_array_equal(rebuilt.labels, labels)
    build(data, split="val")
    shutil.rmtree(root)
    index = index_dataset(data)
    (entry / "labels.npy").unlink()
    (entry / "labels.npy").write_bytes(b"")
    with pytest.raises(DataError, match="is missing and its cached copy .* is unusable"):
        cached_index_split(index, data, "train", 1)


def test_on_bad_image_error_refuses_a_cache_that_skipped_images_also_without_its_dataset(tmp_path, caplog):
    """The cache alone (its dataset gone) is held to data.on_bad_image as the dataset's own cache is: a copy
    built under `skip` is refused with `error`, and its skipped images are counted with `skip`."""
    root = write_image_folder(tmp_path / "d", per_split={"train": 2, "val": 1})
    victim = sorted((root / "train").rglob("*.JPEG"))[0]
    victim.write_bytes(b"")
    data = settings(root, tmp_path / "c")
    build(data)
    build(data, split="val")
    shutil.rmtree(root)
    index = index_dataset(data)
    assert index.from_cache
    assert len(cached_index_split(index, data, "train", 1).skipped) == 1
    assert "1 unreadable images were skipped when the cache was built" in caplog.text
    with pytest.raises(DataError, match=rf"{victim.name}: cannot identify .*: the cache .* skipped 1 unreadable "
                                        rf"image\(s\) and data.on_bad_image=error refuses them"):
        cached_index_split(index, settings(root, tmp_path / "c", on_bad_image="error"), "train", 1)


def test_a_class_whose_training_images_were_all_skipped_is_refused(tmp_path):
    """Skipping unreadable images may empty a class: its val images would be errors whatever the model learns,
    another experiment than the one asked for, so the run stops naming the class."""
    root = write_image_folder(tmp_path / "d", per_split={"train": 2, "val": 1})
    for image in (root / "train" / "n02102040").iterdir():
        image.write_bytes(b"not an image")
    data = settings(root, tmp_path / "c")
    with pytest.raises(DataError, match=r"^no readable training image left of class n02102040 \(1 such classes in all\): "
                                        r"every one was skipped as unreadable$"):
        build_loaders(index_dataset(data), data, AugmentConfig(), torch.device("cpu"), seed=0)


def test_a_cache_folder_that_cannot_be_made_is_one_message_with_the_setting_to_change(tmp_path):
    """A cache folder that cannot be written (a read-only disk such as Kaggle's input, or a file in the way here) is
    a DataError naming the folder and the settings that move it, not an OSError from deep inside the build."""
    root = write_image_folder(tmp_path / "d", per_split={"train": 2, "val": 1})
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(DataError, match=r"cannot write the data cache at .*file.*VISION_EXP_CACHE or data.cache_dir"):
        build(settings(root, tmp_path / "file" / "cache"))


def test_a_cached_val_split_left_without_readable_images_is_refused(tmp_path):
    """Every val image unreadable leaves nothing to evaluate: refused before training, not found after an epoch, and
    before evaluating a checkpoint."""
    root = write_image_folder(tmp_path / "d", per_split={"train": 2, "val": 1})
    for image in (root / "val").rglob("*.*"):
        image.write_bytes(image.read_bytes()[:100])
    data = settings(root, tmp_path / "c")
    with pytest.raises(DataError, match="no readable images left"):
        build_loaders(index_dataset(data), data, AugmentConfig(), torch.device("cpu"), 0)
    with pytest.raises(DataError, match="no readable images left"):  # evaluating a checkpoint on it (vx-evaluate)
        build_val_loader(index_dataset(data), data, torch.device("cpu"))
