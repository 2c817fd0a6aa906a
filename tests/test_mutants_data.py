"""vision_exp/data/, checked where mutation testing found behaviour no other test pinned down.

Mutants of loaders.py, batch_augment.py and index.py that the suite let pass (a flipped comparison, a dropped
argument, a seed that leaves out a part; cache.py's are in test_data_cache.py): each test names the behaviour that
would break. Most build a loader on a small array of one repeated image, so that whatever differs between two
batches comes from the augmentation alone.
"""
from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import torch
from PIL import Image

from vision_exp.data.batch_augment import TrainBatchTransform, sample_crop_boxes
from vision_exp.data.config import DataConfig
from vision_exp.data.index import Split, index_image_folder, select_classes
from vision_exp.data.loaders import (CachedLoader, build_loaders, fits_on_device, folder_transforms, planned_batches,
                                     usable_workers)
from vision_exp.errors import ConfigError
from vision_exp.recipe.augment import ArrayAugment, per_image_transform
from vision_exp.recipe.config import AugmentConfig

CPU = torch.device("cpu")
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def one_image_repeated(count: int = 32, size: int = 20) -> np.ndarray:
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return np.repeat(image[None], count, axis=0)


def train_loader(random_crops: bool, policy=None) -> CachedLoader:
    transform = TrainBatchTransform(16, (0.08, 1.0), (3 / 4, 4 / 3), 0.5 if random_crops else 0.0, random_crops,
                                    MEAN, STD, CPU)
    images = one_image_repeated()
    return CachedLoader(images, np.zeros(len(images), dtype=np.int64), 8, transform, CPU, seed=0, shuffle=True,
                        per_image=policy)


def batches(loader, epoch: int) -> list:
    return [images for images, _ in loader.epoch(epoch)]


def test_every_batch_and_every_epoch_draws_crops_and_flips_of_its_own():
    """The batch transform's generator is seeded by (seed, epoch, batch): without the batch, every batch of an
    epoch would be cropped and flipped as the first."""
    loader = train_loader(random_crops=True)
    first, second = batches(loader, 0), batches(loader, 1)
    assert not torch.equal(first[0], first[1])
    assert not torch.equal(first[0], second[0])
    torch.testing.assert_close(first, batches(loader, 0))


def test_a_per_image_policy_draws_anew_for_every_batch_and_every_epoch():
    """RandAugment's per-sample seed mixes the epoch and the batch with the sample's place in it: without either,
    the image at place 0 of every batch (or of every epoch) would get the same operations."""
    policy = ArrayAugment(per_image_transform(AugmentConfig(randaugment="rand-m9-mstd0.5-inc1"), MEAN))
    loader = train_loader(random_crops=False, policy=policy)  # the batch transform draws nothing
    first, second = batches(loader, 0), batches(loader, 1)
    assert not torch.equal(first[0], first[1])
    assert not torch.equal(first[0], second[0])
    torch.testing.assert_close(first, batches(loader, 0))


@pytest.mark.parametrize("kind", ["cached", "folder"])
def test_repeated_augmentation_reaches_the_training_loader(tiny_folder, tmp_path, kind):
    """augmentation.repeats=3: each drawn image fills three places in a row of the training batches (identical
    here, with nothing random in the crop)."""
    data = DataConfig(root=str(tiny_folder), img_size=16, batch_size=9, loader=kind, num_workers=0,
                      cache_dir=str(tmp_path))
    aug = AugmentConfig(random_resized_crop=False, hflip=0.0, repeats=3)
    images = torch.cat([x for x, _ in build_loaders(index_image_folder(data), data, aug, CPU, 0).train.epoch(0)])
    triples = images[: len(images) // 3 * 3].reshape(-1, 3, *images.shape[1:])
    assert all(torch.equal(triple[0], triple[1]) and torch.equal(triple[0], triple[2]) for triple in triples)
    assert not torch.equal(triples[0, 0], triples[1, 0])


def folder_pipelines(**augmentation):
    """The folder path's (train, eval) transforms at 16 px."""
    return folder_transforms(DataConfig(root="unused", img_size=16), AugmentConfig(**augmentation), None)


def test_the_folder_path_without_random_crops_trains_on_the_eval_crop():
    train, evaluate = folder_pipelines(random_resized_crop=False, hflip=0.0)
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 48, 3), dtype=np.uint8))
    for seed in range(4):
        torch.manual_seed(seed)
        assert np.array_equal(train(image), evaluate(image))


def test_the_folder_paths_random_crop_takes_the_configured_ratio_and_flip_probability():
    """scale [1, 1] and ratio [2, 2] on a 2:1 image: the one box that fits is the whole image, never mirrored
    with hflip 0 (torchvision's default ratio would fall back to a centre crop, its default flip mirror half)."""
    train, _ = folder_pipelines(scale=(1.0, 1.0), ratio=(2.0, 2.0), hflip=0.0)
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 80, 3), dtype=np.uint8))
    whole = np.asarray(image.resize((16, 16), Image.BILINEAR))
    outputs = []
    for seed in range(8):
        torch.manual_seed(seed)
        outputs.append(train(image))
    assert all(np.array_equal(output, outputs[0]) for output in outputs)
    assert np.abs(outputs[0].astype(int) - whole.astype(int)).mean() < 3  # PIL and torchvision resample alike


def test_crop_boxes_stay_within_the_scale_and_take_independent_offsets():
    generator = torch.Generator().manual_seed(0)
    boxes = sample_crop_boxes(512, 32, 32, (0.1, 0.2), (1.0, 1.0), generator, CPU)
    areas = boxes[:, 2] * boxes[:, 3]
    assert areas.max().item() <= 0.2 * 32 * 32 * 1.1 and areas.min().item() >= 0.1 * 32 * 32 * 0.9  # whole pixels
    x0, y0 = boxes[:, 0], boxes[:, 1]
    assert (x0 != y0).float().mean().item() > 0.5  # one draw for both would put every square on the diagonal


def test_a_budget_past_the_epoch_takes_the_whole_epoch_and_no_more():
    order = np.arange(10)
    whole = [rows.tolist() for _, _, rows in planned_batches(order, 4)]
    assert [rows.tolist() for _, _, rows in planned_batches(order, 4, limit=25)] == whole == [
        [0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_cached_images_go_to_the_gpu_when_they_take_under_a_quarter_of_its_free_memory(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 4000))
    gpu = torch.device("cuda", 0)
    assert fits_on_device([np.zeros(200, np.uint8)], gpu, "auto")
    assert not fits_on_device([np.zeros(150, np.uint8), np.zeros(150, np.uint8)], gpu, "auto")
    assert fits_on_device([np.zeros(900, np.uint8)], gpu, True)
    assert not fits_on_device([np.zeros(1, np.uint8)], gpu, False)
    assert not fits_on_device([np.zeros(1, np.uint8)], CPU, True)


def report_usable_workers(queue) -> None:
    queue.put(usable_workers(4))


def test_a_daemonic_process_loads_without_workers_of_its_own():
    """A daemonic process (a multiprocessing.Pool's worker) cannot start children: its loaders run in the process."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=report_usable_workers, args=(queue,), daemon=True)
    process.start()
    in_daemon = queue.get(timeout=60)
    process.join(timeout=60)
    assert (in_daemon, usable_workers(4)) == (0, 4)


KEPT_POOLS = []


def leave_a_worker_pool_running() -> None:
    """A job whose loader workers outlive it, as when a reference cycle holds its trainer until the next garbage
    collection: what a joblib worker (a multiprocessing child, not daemonic) is left with after a job."""
    from vision_exp.data.loaders import ArrayDataset, WorkerPool

    pool = WorkerPool(ArrayDataset(one_image_repeated(8), np.zeros(8, np.int64), np.asarray), seed=0, num_workers=2)
    list(pool.epoch(planned_batches(np.arange(8), 4, 0, None, (0, 1)), 0))
    KEPT_POOLS.append(pool)


def test_a_child_process_whose_loader_workers_outlive_its_job_still_exits():
    """multiprocessing ends a child by terminating its daemonic children (SIGTERM, which loader workers ignore)
    and joining them, before any atexit handler: the workers must be stopped first, or a joblib sweep that
    finished every job never exits."""
    process = multiprocessing.get_context("spawn").Process(target=leave_a_worker_pool_running)
    process.start()
    process.join(timeout=60)
    try:
        assert process.exitcode == 0, "the child is still waiting for its loader workers"
    finally:
        if process.is_alive():
            process.kill()
            process.join()


def test_a_splits_digest_names_its_images_relative_to_the_root_and_includes_their_labels(tmp_path):
    """A checkpoint's digest must match the same dataset in another folder (a new Kaggle session mounts it
    elsewhere) and must not match the same files labelled otherwise."""
    def split(root, labels):
        return Split(tuple(f"{root}/train/a/{i}.JPEG" for i in range(3)), labels)

    here, there = tmp_path / "here", tmp_path / "there"
    assert split(here, (0, 0, 1)).digest(str(here)) == split(there, (0, 0, 1)).digest(str(there))
    assert split(here, (0, 0, 1)).digest(str(here)) != split(here, (0, 1, 1)).digest(str(here))


def test_a_splits_digest_names_hugging_face_rows_without_their_dataset_or_cache_folder(tmp_path):
    """data.cache_dir is incidental (env=kaggle moves it) and a dataset may be mounted elsewhere: the rows' digest,
    like the files', must not change with either, nor match other rows or other labels."""
    from vision_exp.data.hf_rows import row_uri

    def split(dataset, cache, rows=(0, 1, 2), labels=(0, 0, 1)):
        return Split(tuple(row_uri(str(dataset), "train", "image", str(cache), row) for row in rows), labels)

    here = split(tmp_path / "ds", tmp_path / "cache").digest(str(tmp_path / "ds"))
    assert split(tmp_path / "moved", tmp_path / "kaggle_cache").digest(str(tmp_path / "moved")) == here
    assert split(tmp_path / "ds", tmp_path / "cache", rows=(0, 1, 3)).digest(str(tmp_path / "ds")) != here
    assert split(tmp_path / "ds", tmp_path / "cache", labels=(0, 1, 1)).digest(str(tmp_path / "ds")) != here
    from_cache = Split(tuple(f"{tmp_path / 'ds'}/train/{row}" for row in (0, 1, 2)), (0, 0, 1))  # index_from_cache's
    assert from_cache.digest(str(tmp_path / "ds")) == here


def test_asking_for_one_class_more_than_the_dataset_has_is_one_config_error():
    available = ["a", "b", "c"]
    assert select_classes(available, DataConfig(root="data/x", num_classes=3)) == available
    with pytest.raises(ConfigError, match=r"data.num_classes=4 but data/x has only 3 classes"):
        select_classes(available, DataConfig(root="data/x", num_classes=4))
