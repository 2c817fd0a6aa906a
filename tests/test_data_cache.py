"""The uint8 cache: built once, reused, rebuilt when the config or the files change."""
import json
import os

import numpy as np
import pytest

from conftest import write_image_folder
from vision_exp.data import cache as cache_mod
from vision_exp.data.cache import cached_split
from vision_exp.data.config import DataConfig
from vision_exp.data.images import open_rgb, resize_center_square
from vision_exp.data.index import index_image_folder
from vision_exp.errors import DataError


def build(root, cache_dir, size=20, on_bad_image="skip", workers=1):
    index = index_image_folder(DataConfig(root=str(root)))
    return index, cached_split(str(cache_dir), "t-train", index.train, size, workers, on_bad_image)


def test_cache_holds_the_decoded_images_and_labels(tiny_folder, tmp_path):
    index, split = build(tiny_folder, tmp_path)
    assert split.images.shape == (len(index.train), 20, 20, 3) and split.images.dtype == np.uint8
    assert list(split.labels) == list(index.train.labels)
    expected = np.asarray(resize_center_square(open_rgb(index.train.paths[5], 20), 20))
    np.testing.assert_array_equal(split.images[5], expected)
    entries = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(entries) == 1
    manifest = json.loads((entries[0] / "manifest.json").read_text())
    assert manifest["count"] == len(index.train) and manifest["size"] == 20 and len(manifest["paths"]) == len(index.train)


def test_parallel_build_equals_serial_build(tiny_folder, tmp_path):
    _, serial = build(tiny_folder, tmp_path / "a", workers=1)
    _, parallel = build(tiny_folder, tmp_path / "b", workers=2)
    np.testing.assert_array_equal(np.asarray(serial.images), np.asarray(parallel.images))


def test_second_use_reuses_the_cache(tiny_folder, tmp_path, monkeypatch):
    build(tiny_folder, tmp_path)
    calls = []
    monkeypatch.setattr(cache_mod, "build_split_cache", lambda *a, **k: calls.append(a))
    _, split = build(tiny_folder, tmp_path)
    assert calls == [] and len(split.images) > 0


def test_changed_size_or_changed_files_rebuild(tmp_path):
    root = write_image_folder(tmp_path / "d", per_split={"train": 3, "val": 1})
    build(root, tmp_path / "c", size=20)
    build(root, tmp_path / "c", size=24)
    assert len(list((tmp_path / "c").iterdir())) == 2
    victim = next((root / "train").rglob("*.JPEG"))
    os.utime(victim, ns=(1, 1))
    build(root, tmp_path / "c", size=20)
    assert len(list((tmp_path / "c").iterdir())) == 3


def test_manifest_mismatch_is_rebuilt(tmp_path):
    root = write_image_folder(tmp_path / "d", per_split={"train": 3, "val": 1})
    _, first = build(root, tmp_path / "c")
    entry = next((tmp_path / "c").iterdir())
    manifest = json.loads((entry / "manifest.json").read_text())
    manifest["count"] = 999
    (entry / "manifest.json").write_text(json.dumps(manifest))
    _, second = build(root, tmp_path / "c")
    assert len(second.images) == len(first.images)
    assert json.loads((entry / "manifest.json").read_text())["count"] == len(first.images)


def test_unreadable_image_is_skipped_or_refused(tmp_path):
    root = write_image_folder(tmp_path / "d", per_split={"train": 3, "val": 1})
    victim = sorted((root / "train").rglob("*.JPEG"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])  # a truncated JPEG
    index, split = build(root, tmp_path / "c")
    assert len(split.images) == len(index.train) - 1 and str(victim) not in split.paths
    assert len(split.skipped) == 1 and str(victim) in split.skipped[0]
    with pytest.raises(DataError, match=victim.name):
        build(root, tmp_path / "c2", on_bad_image="error")
    assert not any((tmp_path / "c2").glob("*/manifest.json")), "a refused build leaves no cache entry"
