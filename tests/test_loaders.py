"""Loaders: deterministic order and augmentation, mid-epoch restarts, and cached == folder pixels."""
import numpy as np
import pytest
import torch

from vision_exp.data.config import DataConfig
from vision_exp.data.index import index_image_folder
from vision_exp.data.loaders import build_loaders, epoch_order, train_eval_indices
from vision_exp.recipe.config import AugmentConfig

CPU = torch.device("cpu")


def loaders(root, loader="cached", seed=0, **kw):
    data = DataConfig(root=str(root), img_size=16, batch_size=8, loader=loader, num_workers=0,
                      cache_dir=kw.pop("cache_dir"), **kw)
    return build_loaders(index_image_folder(data), data, AugmentConfig(), CPU, seed, train_eval_samples=10)


def collect(loader, epoch=0, start_batch=0):
    return [(x.clone(), y.clone()) for x, y in loader.epoch(epoch, start_batch)]


@pytest.mark.parametrize("kind", ["cached", "folder"])
def test_epochs_are_deterministic_and_differ_between_epochs(tiny_folder, tmp_path, kind):
    a = loaders(tiny_folder, kind, cache_dir=str(tmp_path)).train
    b = loaders(tiny_folder, kind, cache_dir=str(tmp_path)).train
    first, again = collect(a, 0), collect(b, 0)
    assert len(first) == len(a) == 5  # 36 images in batches of 8: the last one partial
    assert [len(y) for _, y in first] == [8, 8, 8, 8, 4]
    for (xa, ya), (xb, yb) in zip(first, again):
        torch.testing.assert_close(xa, xb)
        assert torch.equal(ya, yb)
    second = collect(a, 1)
    assert not all(torch.equal(y0, y1) for (_, y0), (_, y1) in zip(first, second))


@pytest.mark.parametrize("kind", ["cached", "folder"])
def test_starting_mid_epoch_gives_the_same_remaining_batches(tiny_folder, tmp_path, kind):
    loader = loaders(tiny_folder, kind, cache_dir=str(tmp_path)).train
    full, tail = collect(loader, 3), collect(loader, 3, start_batch=2)
    assert len(tail) == len(full) - 2
    for (x0, y0), (x1, y1) in zip(full[2:], tail):
        torch.testing.assert_close(x0, x1)
        assert torch.equal(y0, y1)


def test_folder_augmentation_does_not_depend_on_worker_count(tiny_folder, tmp_path):
    one = loaders(tiny_folder, "folder", cache_dir=str(tmp_path)).train
    two = loaders(tiny_folder, "folder", cache_dir=str(tmp_path)).train
    two.num_workers = 2
    for (x0, _), (x1, _) in zip(collect(one), collect(two)):
        torch.testing.assert_close(x0, x1)


def test_cached_and_folder_loaders_give_the_same_eval_images(tiny_folder, tmp_path):
    cached = loaders(tiny_folder, "cached", cache_dir=str(tmp_path))
    folder = loaders(tiny_folder, "folder", cache_dir=str(tmp_path))
    for name in ("val", "train_eval"):
        for (xc, yc), (xf, yf) in zip(collect(getattr(cached, name)), collect(getattr(folder, name))):
            assert torch.equal(yc, yf)
            # uint8 storage vs float: at most one grey level apart after normalisation
            assert (xc - xf).abs().max() <= 1.0 / (255 * 0.224) + 1e-4


def test_a_stored_size_of_its_own_changes_how_images_are_kept_not_how_much_of_them_is_evaluated(tiny_folder, tmp_path):
    """data.cache_size is a storage choice: with crop_pct 0.5 evaluation sees the central half of each image,
    whether the cache stores it at img_size / crop_pct (32 px) or at 48 or 64 px."""
    default = collect(loaders(tiny_folder, "cached", cache_dir=str(tmp_path), crop_pct=0.5).val)
    for stored in (48, 64):
        other = collect(loaders(tiny_folder, "cached", cache_dir=str(tmp_path), crop_pct=0.5, cache_size=stored).val)
        folder = collect(loaders(tiny_folder, "folder", cache_dir=str(tmp_path), crop_pct=0.5, cache_size=stored).val)
        for (x, _), (y, _), (z, _) in zip(default, other, folder):
            assert (x - y).abs().mean() < 0.08 and (y - z).abs().max() < 0.05  # resampled twice vs once; noisy images
    whole = collect(loaders(tiny_folder, "cached", cache_dir=str(tmp_path), crop_pct=1.0, cache_size=64).val)
    assert (whole[0][0] - default[0][0]).abs().mean() > 0.1  # another crop_pct is another view


def test_without_random_crops_training_takes_the_eval_crop(tiny_folder, tmp_path):
    """augmentation without random-resized-crop: the centre crop evaluation takes (flips aside), also where
    centring needs rounding (a 23-px stored square cropped to 16 starts at row 4, as torchvision's)."""
    data = DataConfig(root=str(tiny_folder), img_size=16, crop_pct=0.7, batch_size=8, num_workers=0,
                      cache_dir=str(tmp_path))
    bundle = build_loaders(index_image_folder(data), data, AugmentConfig(random_resized_crop=False, hflip=0.0), CPU, 0,
                           train_eval_samples=36)
    assert data.resize_size == 23
    trained = torch.cat([x for x, _ in bundle.train.epoch(0)])
    evaluated = torch.cat([x for x, _ in bundle.train_eval.epoch(0)])
    order = torch.cat([y for _, y in bundle.train.epoch(0)])
    assert trained.shape == evaluated.shape and torch.equal(torch.sort(order).values, torch.sort(
        torch.cat([y for _, y in bundle.train_eval.epoch(0)])).values)
    assert any(torch.allclose(t, e, atol=1e-4) for t in trained[:1] for e in evaluated)
    assert all(any(torch.allclose(t, e, atol=1e-4) for e in evaluated) for t in trained)


@pytest.mark.parametrize("stored", [46, 64, 92])
def test_without_random_crops_training_takes_the_eval_crop_of_a_stored_size_of_its_own(tiny_folder, tmp_path, stored):
    """With a data.cache_size of its own evaluation resizes the stored square to 23 px and crops 16 from row 4:
    training takes that box in stored pixels (rounding the offset at the stored size missed it by up to a pixel)."""
    data = DataConfig(root=str(tiny_folder), img_size=16, crop_pct=0.7, batch_size=8, num_workers=0,
                      cache_dir=str(tmp_path), cache_size=stored)
    bundle = build_loaders(index_image_folder(data), data, AugmentConfig(random_resized_crop=False, hflip=0.0), CPU, 0,
                           train_eval_samples=36)
    trained = torch.cat([x for x, _ in bundle.train.epoch(0)])
    evaluated = torch.cat([x for x, _ in bundle.train_eval.epoch(0)])[epoch_order(36, 0, 0, shuffle=True)]
    # resampled differently (bilinear from the stored square vs an antialiased resize): 0.011 at most; a box
    # a stored pixel off: 0.054 and more
    assert (trained - evaluated).abs().mean().item() < 0.03


def test_train_eval_subset_is_fixed_and_seeded():
    a, b = train_eval_indices(100, 30, 0), train_eval_indices(100, 30, 0)
    assert np.array_equal(a, b) and len(a) == 30 and len(set(a.tolist())) == 30
    assert not np.array_equal(a, train_eval_indices(100, 30, 1))
    assert len(train_eval_indices(20, 30, 0)) == 20


def test_repeated_augmentation_order_keeps_the_epoch_length():
    order = epoch_order(10, 0, 0, shuffle=True, repeats=3)
    assert len(order) == 10
    assert torch.equal(order[:3], order[:1].repeat(3))


def test_randaugment_depends_only_on_the_sample_seed_not_on_numpy_state():
    """timm's RandAugment picks its ops with numpy: workers with other numpy states must draw the same ops."""
    from PIL import Image

    from vision_exp.data.loaders import global_rngs_kept, seeded
    from vision_exp.recipe.augment import per_image_transform

    policy = per_image_transform(AugmentConfig(randaugment="rand-m9-mstd0.5-inc1"), (0.5, 0.5, 0.5))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    outputs = []
    for worker_state in (1, 2, 3):
        np.random.seed(worker_state)
        with global_rngs_kept():
            outputs.append(np.asarray(seeded(policy, image, seed=12345)))
        assert np.random.randint(1 << 30) == np.random.RandomState(worker_state).randint(1 << 30), "numpy state restored"
    assert all(np.array_equal(outputs[0], other) for other in outputs[1:])
    assert not all(np.array_equal(np.asarray(seeded(policy, image, seed=s)), outputs[0]) for s in range(5))


def test_a_program_that_abandons_an_epoch_of_the_folder_loader_still_exits(tiny_folder, tmp_path):
    """Workers ignore SIGTERM (the trainer stops them), so multiprocessing's exit handler could not stop the workers
    of an epoch still referenced at exit (a traceback kept by a notebook or a test runner) and waited forever."""
    import subprocess
    import sys

    script = f"""
from pathlib import Path
import torch
from vision_exp.data.config import DataConfig
from vision_exp.data.index import index_image_folder
from vision_exp.data.loaders import build_loaders
from vision_exp.recipe.config import AugmentConfig
data = DataConfig(root={str(tiny_folder)!r}, img_size=16, batch_size=4, loader="folder", num_workers=2,
                  cache_dir={str(tmp_path)!r})
bundle = build_loaders(index_image_folder(data), data, AugmentConfig(), torch.device("cpu"), 0)
abandoned = bundle.train.epoch(0)
next(abandoned)
print("one batch", flush=True)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "one batch" in result.stdout, result.stderr


def randaugment_train(root, cache_dir, workers, persistent=True, loader="cached"):
    data = DataConfig(root=str(root), img_size=16, batch_size=8, loader=loader, num_workers=workers,
                      persistent_workers=persistent, cache_dir=str(cache_dir))
    return build_loaders(index_image_folder(data), data, AugmentConfig(randaugment="rand-m9-mstd0.5-inc1"), CPU, 0).train


@pytest.mark.parametrize("kind", ["cached", "folder"])
def test_per_image_augmentation_is_the_same_with_batches_split_across_workers(tiny_folder, tmp_path, kind):
    """With workers each batch is cut into one piece per worker and joined again: the same images in the same
    order as without workers, also when an epoch starts mid-way (a resumed run)."""
    alone = randaugment_train(tiny_folder, tmp_path, 0, loader=kind)
    for workers, persistent in ((2, True), (2, False)):
        split = randaugment_train(tiny_folder, tmp_path, workers, persistent, loader=kind)
        for epoch in (0, 1):
            batches, expected = collect(split, epoch), collect(alone, epoch)
            assert [len(y) for _, y in batches] == [8, 8, 8, 8, 4]
            for (x0, y0), (x1, y1) in zip(expected, batches):
                assert torch.equal(y0, y1)
                torch.testing.assert_close(x0, x1)
        for (x0, y0), (x1, y1) in zip(expected[2:], collect(split, 1, start_batch=2), strict=True):  # a resumed epoch
            assert torch.equal(y0, y1)
            torch.testing.assert_close(x0, x1)


def test_a_batch_is_cut_into_one_even_piece_per_worker_and_never_an_empty_one():
    from vision_exp.data.loaders import SeededBatchSampler

    sizes = lambda chunks, batch: [p.stop - p.start for p in SeededBatchSampler(0, chunks).pieces(batch)]
    assert sizes(3, 8) == [3, 2, 3] and sizes(3, 2) == [1, 1] and sizes(1, 8) == [8] and sizes(16, 256) == [16] * 16


def test_cached_pieces_travel_as_numpy_arrays_and_join_into_one_tensor_batch_in_order():
    """A piece sent as a tensor costs the main process a shared-memory handshake (about 2 ms); with 16
    workers that capped the loader near 3,000 images/s. The cached path's pieces are numpy arrays."""
    from vision_exp.data.loaders import ArrayDataset, joined, stack_as_arrays

    images = np.arange(5 * 4 * 4 * 3, dtype=np.uint8).reshape(5, 4, 4, 3)
    dataset = ArrayDataset(images, torch.arange(5) * 10, lambda pixels: pixels)
    pieces = [stack_as_arrays(dataset.__getitems__([(row, 0) for row in rows])) for rows in ([3, 1], [4])]
    assert all(isinstance(array, np.ndarray) for piece in pieces for array in piece)
    pixels, labels = joined(pieces)
    assert torch.equal(pixels, torch.from_numpy(images[[3, 1, 4]])) and labels.tolist() == [30, 10, 40]
    assert pixels.dtype == torch.uint8 and labels.dtype == torch.int64
    alone = joined(pieces[:1])  # one piece (no workers, or fewer images than workers): no copy
    assert alone[0].data_ptr() == torch.as_tensor(pieces[0][0]).data_ptr()


@pytest.mark.parametrize("persistent", [True, False])
def test_loader_workers_are_kept_between_epochs_unless_asked_not_to(tiny_folder, tmp_path, persistent):
    import multiprocessing

    loader = randaugment_train(tiny_folder, tmp_path, 2, persistent)
    before = {p.pid for p in multiprocessing.active_children()}
    workers_by_epoch = []
    for epoch in range(2):
        collect(loader, epoch)
        workers_by_epoch.append({p.pid for p in multiprocessing.active_children()} - before)
    if persistent:
        assert len(workers_by_epoch[0]) == 2 and workers_by_epoch[0] == workers_by_epoch[1]
    else:
        assert not workers_by_epoch[0] & workers_by_epoch[1]


def test_an_epoch_abandoned_midway_leaves_the_next_one_whole(tiny_folder, tmp_path):
    kept = randaugment_train(tiny_folder, tmp_path, 2)
    abandoned = kept.epoch(0)
    next(abandoned)
    abandoned.close()
    fresh = randaugment_train(tiny_folder, tmp_path, 0)
    for (x0, y0), (x1, y1) in zip(collect(fresh, 1), collect(kept, 1), strict=True):
        assert torch.equal(y0, y1)
        torch.testing.assert_close(x0, x1)


@pytest.mark.parametrize("kind", ["cached", "folder"])
def test_augmenting_in_the_main_process_leaves_its_random_generators_alone(tiny_folder, tmp_path, kind):
    """Without workers the per-image policy runs in the trainer's process, whose global RNGs also draw mixup and
    dropout: seeding them per image must not leak out of the loader."""
    import random

    loader = randaugment_train(tiny_folder, tmp_path, 0, loader=kind)
    torch.manual_seed(7), random.seed(7), np.random.seed(7)
    expected = torch.rand(1), random.random(), np.random.rand()
    torch.manual_seed(7), random.seed(7), np.random.seed(7)
    collect(loader)
    assert (torch.rand(1), random.random(), np.random.rand()) == expected


@pytest.mark.parametrize("kind", ["cached", "folder"])
def test_runs_in_one_process_leave_no_loader_workers_behind(tiny_folder, tmp_path, kind):
    """Workers are kept between epochs, not between runs: a multirun in one process (Hydra's basic launcher,
    a notebook) would otherwise add a set of workers per job. With the garbage collector off: a finished run's
    trainer can outlive it in reference cycles, so whether a collection came in between must not matter."""
    import gc
    import multiprocessing

    from conftest import compose, tiny_overrides

    from vision_exp.experiment import run_experiment

    before = {p.pid for p in multiprocessing.active_children()}
    gc.disable()
    try:
        for job in range(2):
            overrides = tiny_overrides(tiny_folder, "data.num_workers=2", f"data.loader={kind}",
                                       "augmentation=randaugment", f"data.cache_dir={tmp_path / 'cache'}")
            run_experiment(compose(overrides), tmp_path / f"job{job}", overrides)
            assert {p.pid for p in multiprocessing.active_children()} <= before, f"workers left after job {job}"
    finally:
        gc.enable()


def test_both_loaders_evaluate_the_same_images_when_one_is_unreadable(tmp_path):
    """The cached loader drops an unreadable file when it builds its cache; the folder loader, which finds it only
    when it reaches it, must leave it out of evaluation too (in training the next image stands in), on every rank."""
    from conftest import TINY_CLASSES, write_image_folder

    from vision_exp.training.evaluation import evaluate

    root = write_image_folder(tmp_path / "data")
    victim = sorted((root / "val" / TINY_CLASSES[2]).glob("*.JPEG"))[1]
    victim.write_bytes(victim.read_bytes()[:200])
    channel_means = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())  # right on all but one
    results = {}
    for kind in ("cached", "folder"):
        for shard in ((0, 1), (0, 2), (1, 2)):
            data = DataConfig(root=str(root), img_size=16, batch_size=4, loader=kind, num_workers=0,
                              cache_dir=str(tmp_path / "cache"))
            bundle = build_loaders(index_image_folder(data), data, AugmentConfig(), CPU, 0, shard=shard)
            results[kind, shard] = evaluate(channel_means, bundle.val.epoch(0), CPU)

    def right(result: dict) -> float:
        return result["acc"] * result["count"] / 100

    for kind in ("cached", "folder"):  # 12 images, one unreadable, one grey (wrong); two ranks share them
        whole, ranks = results[kind, (0, 1)], (results[kind, (0, 2)], results[kind, (1, 2)])
        assert whole["count"] == 11 and right(whole) == pytest.approx(10), kind
        assert sum(r["count"] for r in ranks) == 11 and sum(map(right, ranks)) == pytest.approx(10), kind


def test_evaluating_only_unreadable_images_is_one_message(tmp_path):
    """Left out one by one, they would leave nothing to average: reported as 0% of one image before."""
    from conftest import write_image_folder

    from vision_exp.errors import DataError
    from vision_exp.training.evaluation import evaluate

    root = write_image_folder(tmp_path / "data", per_split={"train": 2, "val": 1})
    for image in (root / "val").rglob("*.*"):
        image.write_bytes(image.read_bytes()[:100])
    data = DataConfig(root=str(root), img_size=16, batch_size=2, loader="folder", num_workers=0)
    bundle = build_loaders(index_image_folder(data), data, AugmentConfig(), CPU, 0)
    with pytest.raises(DataError, match="no image left to evaluate: every one was unreadable"):
        evaluate(torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()), bundle.val.epoch(0), CPU)


@pytest.mark.parametrize("kind", ["cached", "folder"])
def test_the_train_eval_pass_takes_as_many_images_as_the_val_set_by_default(tiny_folder, tmp_path, kind):
    """trainer.train_eval_samples=null: the eval-mode pass over training images is the size of the val set
    (12 of the 36 training images here), so that train_acc and val_acc rest on as many images."""
    data = DataConfig(root=str(tiny_folder), img_size=16, batch_size=8, loader=kind, num_workers=0, cache_dir=str(tmp_path))
    bundle = build_loaders(index_image_folder(data), data, AugmentConfig(), CPU, 0, train_eval_samples=None)
    assert bundle.val.num_samples == 12 and bundle.train.num_samples == 36
    assert bundle.train_eval.num_samples == 12
    assert sum(len(y) for _, y in bundle.train_eval.epoch(0)) == 12


@pytest.mark.parametrize("kind", ["cached", "folder"])
def test_the_bundles_mean_and_std_undo_the_loaders_normalisation(tiny_folder, tmp_path, kind):
    """Batches are (pixel / 255 - mean) / std with data.mean and data.std, and the bundle carries the same two,
    with which TensorBoard's input images are shown: a swap would show them in false colours."""
    from vision_exp.reporting.figures import denormalize

    mean, std = (0.2, 0.4, 0.6), (0.1, 0.2, 0.3)
    bundle = loaders(tiny_folder, kind, cache_dir=str(tmp_path), mean=list(mean), std=list(std))
    x = torch.cat([x for x, _ in bundle.val.epoch(0)])
    by_hand = x * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)  # back to [0, 1]
    assert by_hand.min() > -0.01 and by_hand.max() < 1.01 and by_hand.max() - by_hand.min() > 0.5
    torch.testing.assert_close(denormalize(x, bundle.mean, bundle.std), by_hand.clamp(0, 1))


@pytest.mark.parametrize("repeats", [2, 3, 4])
def test_repeated_augmentation_gives_each_drawn_image_that_many_places_in_a_row(repeats):
    """augmentation.repeats=r: each drawn image takes r consecutive places (its copies, augmented apart, in one batch),
    ceil(10 / r) images fill an epoch of 10 samples, and the epoch keeps its length."""
    order = epoch_order(10, 0, 0, shuffle=True, repeats=repeats).tolist()
    assert len(order) == 10 and len(set(order)) == -(-10 // repeats)
    assert all(len(set(order[start:start + repeats])) == 1 for start in range(0, 10, repeats))


def test_an_unreadable_last_training_image_is_stood_in_for_by_the_first(tmp_path):
    """In training the next readable image stands in for an unreadable one (batches and the sample budget stay
    whole), counted on past the split's end to its start."""
    from conftest import write_image_folder
    from vision_exp.data.images import open_rgb
    from vision_exp.data.loaders import FolderDataset

    index = index_image_folder(DataConfig(root=str(write_image_folder(tmp_path / "d", per_split={"train": 2, "val": 1}))))
    last = index.train.paths[-1]
    with open(last, "rb+") as file:
        file.truncate(100)
    image, label = FolderDataset(index.train, transform=lambda image: image)[len(index.train) - 1, 0]
    assert label == index.train.labels[0]
    assert np.array_equal(np.asarray(image), np.asarray(open_rgb(index.train.paths[0])))


def test_an_evaluation_batch_left_without_readable_images_is_not_yielded(tmp_path):
    """The folder loader leaves unreadable images out of evaluation; a batch with none left is skipped, not passed on
    empty (an empty batch would be averaged as 0 of 0)."""
    from conftest import write_image_folder

    root = write_image_folder(tmp_path / "d", per_split={"train": 2, "val": 1})
    data = DataConfig(root=str(root), img_size=16, batch_size=1, eval_batch_size=1, loader="folder", num_workers=0)
    index = index_image_folder(data)
    with open(index.val.paths[0], "rb+") as file:
        file.truncate(100)
    batches = [y for _, y in build_loaders(index, data, AugmentConfig(), CPU, 0).val.epoch(0)]
    assert [len(y) for y in batches] == [1] * (len(index.val) - 1)
    assert torch.equal(torch.cat(batches), torch.tensor(index.val.labels[1:]))


def test_copies_of_one_image_in_a_batch_get_seeds_of_their_own():
    """Repeated augmentation puts an image's copies in one batch: each sample's augmentation seed comes from its
    place in the epoch, not from the image, or the copies would be augmented alike."""
    from vision_exp.data.loaders import SeededBatchSampler

    sampler = SeededBatchSampler(seed=0)
    rows = np.array([7, 7, 3, 3])
    sampler.start([(0, np.arange(len(rows)), rows)], epoch=0)
    samples = [sample for piece in sampler for sample in piece]
    assert [row for row, _ in samples] == rows.tolist()
    assert len({seed for _, seed in samples}) == len(rows)
