"""Batches for the trainer: the cached uint8 path (default) and the plain ImageFolder path.

Both loaders yield `(images, labels)` already on the training device, images normalised float
(B, 3, H, W), and both are deterministic functions of (seed, epoch, batch index): the order of
an epoch is a seeded permutation and every batch draws its augmentation from a generator seeded
by its position. That makes runs reproducible and lets a resumed run continue mid-epoch with
exactly the batches an uninterrupted run would have seen (`epoch(e, start_batch=k)`).
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import multiprocessing
import multiprocessing.util
import random
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from vision_exp.data.batch_augment import EvalBatchTransform, Normalize, TrainBatchTransform
from vision_exp.data.cache import cached_split, checked_skips, load_split_cache, read_manifest
from vision_exp.data.config import DataConfig
from vision_exp.data.download import download_dataset
from vision_exp.data.formats import index_by_format
from vision_exp.data.images import open_rgb, resize_center_square
from vision_exp.data.index import DatasetIndex, Split, refuse_root_inside_dataset
from vision_exp.errors import DataError
from vision_exp.recipe.augment import ArrayAugment, per_image_transform
from vision_exp.recipe.config import AugmentConfig

log = logging.getLogger(__name__)


def mix_seed(*parts: int) -> int:
    """One 63-bit seed from several integers (seed, epoch, batch): stable across runs and machines."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = (value ^ (int(part) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        value ^= value >> 31
    return value & 0x7FFFFFFFFFFFFFFF


def epoch_order(num_samples: int, seed: int, epoch: int, shuffle: bool, repeats: int = 1) -> torch.Tensor:
    """Sample indices of one epoch; with `repeats` > 1 each drawn image appears that many times in a row
    (repeated augmentation: the copies get different augmentations in the same batch)."""
    if not shuffle:
        return torch.arange(num_samples)
    generator = torch.Generator().manual_seed(mix_seed(seed, epoch, 1))
    order = torch.randperm(num_samples, generator=generator)
    if repeats > 1:
        order = order[: -(-num_samples // repeats)].repeat_interleave(repeats)[:num_samples]
    return order


def batch_slices(num_samples: int, batch_size: int) -> list:
    return [slice(start, min(start + batch_size, num_samples)) for start in range(0, num_samples, batch_size)]


def planned_batches(order: np.ndarray, batch_size: int, start_batch: int = 0, limit: Optional[int] = None,
                    shard: tuple = (0, 1)) -> Iterator[tuple]:
    """(batch index, positions in the global batch, dataset rows) of this rank's share of each batch.

    `limit` cuts the epoch after that many samples (the run's budget); rank r of w takes
    positions r, r + w, ... of every global batch, so shards differ in size by at most one.
    """
    count = len(order) if limit is None else min(limit, len(order))
    rank, world = shard
    for batch_index, part in enumerate(batch_slices(count, batch_size)):
        if batch_index >= start_batch:
            positions = np.arange(part.stop - part.start)[rank::world]
            yield batch_index, positions, order[part][positions]


class CachedLoader:
    """Batches gathered from a uint8 array and augmented on the device as whole batches.

    On a GPU the whole array is copied to the device once when it fits (`on_device`), so a
    batch is an index_select there; otherwise it is one `np.take` per batch plus a pinned copy.
    With a per-image policy (RandAugment, TrivialAugment) gathering runs in DataLoader workers
    that apply the policy to each stored image.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, transform, device: torch.device,
                 seed: int = 0, shuffle: bool = False, repeats: int = 1, indices: Optional[np.ndarray] = None,
                 per_image: Optional[Callable] = None, num_workers: int = 0, shard: tuple = (0, 1),
                 on_device: bool = False, device_images: Optional[torch.Tensor] = None,
                 persistent_workers: bool = True) -> None:
        self.images, self.labels = images, torch.as_tensor(labels)
        self.indices = np.arange(len(images)) if indices is None else np.asarray(indices)
        self.batch_size, self.transform, self.device = batch_size, transform, device
        self.seed, self.shuffle, self.repeats, self.shard = seed, shuffle, repeats, shard
        self.per_image, self.num_workers, self.persistent_workers = per_image, num_workers, persistent_workers
        self.workers: Optional[WorkerPool] = None  # started at the first epoch that needs them
        self.pin = device.type == "cuda"
        self.device_images = None
        if on_device and per_image is None:  # `device_images`: the same array already on the device, shared
            self.device_images = device_images if device_images is not None else array_on(device, images)
            self.labels = self.labels.to(device)

    @property
    def num_samples(self) -> int:
        return len(self.indices)

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        """A small host array on the device without a stall: a copy from pageable memory makes the
        host wait until every kernel queued before it has run, once per step; from pinned memory
        (PyTorch's caching host allocator) it is asynchronous."""
        tensor = torch.from_numpy(array)
        return (tensor.pin_memory() if self.pin else tensor).to(self.device, non_blocking=True)

    def _gather(self, rows: np.ndarray) -> tuple:
        if self.device_images is not None:
            index = self._to_device(rows)
            return self.device_images.index_select(0, index), self.labels.index_select(0, index)
        pixels, labels = torch.from_numpy(np.take(self.images, rows, axis=0)), self.labels[torch.from_numpy(rows)]
        return pixels, labels

    def _pixel_batches(self, order: np.ndarray, epoch: int, start_batch: int, limit: Optional[int]) -> Iterator[tuple]:
        plan = planned_batches(order, self.batch_size, start_batch, limit, self.shard)
        if self.per_image is None:
            for batch_index, positions, rows in plan:
                yield batch_index, positions, self._gather(rows)
            return
        if self.workers is None:
            self.workers = WorkerPool(ArrayDataset(self.images, self.labels, self.per_image), self.seed,
                                      self.num_workers, self.persistent_workers)
        yield from self.workers.epoch(plan, epoch)

    def close(self) -> None:
        """Stop the workers now: the last reference to their DataLoader goes, which shuts them down."""
        self.workers = None

    def epoch(self, epoch: int, start_batch: int = 0, limit: Optional[int] = None) -> Iterator[tuple]:
        """This rank's share of the epoch's batches, from `start_batch`, stopping after `limit` samples."""
        order = self.indices[epoch_order(self.num_samples, self.seed, epoch, self.shuffle, self.repeats).numpy()]
        generator = torch.Generator(device=self.device)
        for batch_index, positions, (pixels, labels) in self._pixel_batches(order, epoch, start_batch, limit):
            if self.pin and not pixels.is_cuda:
                pixels, labels = pixels.pin_memory(), labels.pin_memory()
            pixels = pixels.to(self.device, non_blocking=True)
            generator.manual_seed(mix_seed(self.seed, epoch, batch_index, 2))
            batch_total = min(self.batch_size, (limit or self.num_samples) - batch_index * self.batch_size)
            images = self.transform(pixels, generator, positions=self._to_device(positions), batch_total=batch_total)
            yield images, labels.to(self.device, non_blocking=True)


def array_on(device: torch.device, images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).to(device)


@contextlib.contextmanager
def global_rngs_kept() -> Iterator[None]:
    """torch's CPU, Python's and numpy's global RNG states as they were on entry, whatever runs inside
    (saving and restoring numpy's costs about 0.3 ms: done once per batch piece, not per image)."""
    with torch.random.fork_rng(devices=[]):
        python_state, numpy_state = random.getstate(), np.random.get_state()
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def seeded(transform: Callable, image, seed: int):
    """transform(image) with torch's CPU, Python's and numpy's global RNGs seeded by `seed` (timm's
    RandAugment draws its ops from numpy): an image's augmentation depends only on its position in
    the epoch, not on the worker count. The CPU generator is seeded directly: torch.manual_seed
    also records a stack trace per call for devices not yet started, about 0.6 ms, which tripled the
    cost of a RandAugment image at 64 px."""
    torch.default_generator.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    return transform(image)


class SeededItems:
    """Dataset items are (index, per-sample seed) pairs; a piece of a batch is fetched in one go
    (DataLoader calls `__getitems__`), the global RNGs saved and restored once around it."""

    def __getitem__(self, item):
        return self.__getitems__([item])[0]

    def __getitems__(self, items: list) -> list:
        with global_rngs_kept():
            return [self.seeded_item(index, sample_seed) for index, sample_seed in items]


UNREADABLE = -1  # the label of an item that evaluation leaves out


class FolderDataset(SeededItems, Dataset):
    """Images decoded from files on every access, with torchvision transforms per image.

    The folder path finds unreadable files only when it reaches them: with on_bad_image=skip the
    file is named once in the log and, in training, the next readable image stands in (so batches
    and the sample budget stay whole); with `leave_out_unreadable` (evaluation) the item is a blank
    image labelled UNREADABLE, which the loader drops, so that evaluation counts the images the
    cached loader keeps, each once. With `error` the run stops naming the file.
    """

    def __init__(self, split: Split, transform: Callable, decode_size: Optional[int] = None,
                 on_bad_image: str = "skip", leave_out_unreadable: bool = False) -> None:
        self.split, self.transform, self.decode_size, self.on_bad_image = split, transform, decode_size, on_bad_image
        self.leave_out_unreadable = leave_out_unreadable
        self.reported: set = set()

    def __len__(self) -> int:
        return len(self.split)

    def _readable(self, index: int) -> tuple:
        for offset in range(len(self.split)):
            position = (index + offset) % len(self.split)
            path = self.split.paths[position]
            try:
                return open_rgb(path, self.decode_size), self.split.labels[position]
            except Exception as exc:  # any undecodable file: named, then skipped or fatal
                if self.on_bad_image == "error":
                    raise DataError(f"cannot read image {path}: {exc} (data.on_bad_image=skip skips it)") from None
                if path not in self.reported:
                    self.reported.add(path)
                    log.warning("skipping unreadable image %s (%s)", path, exc)
                if self.leave_out_unreadable:
                    return Image.new("RGB", (1, 1)), UNREADABLE  # blank, brought to the batch's shape by the transform
        raise DataError(f"no readable image in {self.split.paths[0]} and the {len(self.split) - 1} others")

    def seeded_item(self, index: int, sample_seed: int) -> tuple:
        image, label = self._readable(index)
        return seeded(self.transform, image, sample_seed), label


class ArrayDataset(SeededItems, Dataset):
    """Stored uint8 images with a per-image policy, for the cached path's workers; items are numpy
    (see `stack_as_arrays`)."""

    def __init__(self, images: np.ndarray, labels, per_image: Callable) -> None:
        self.images, self.labels, self.per_image = images, np.asarray(labels), per_image

    def __len__(self) -> int:
        return len(self.images)

    def seeded_item(self, index: int, sample_seed: int) -> tuple:
        return seeded(self.per_image, np.asarray(self.images[index]), sample_seed), self.labels[index]


def stack_as_arrays(items: list) -> tuple:
    """A worker's piece of a batch as two numpy arrays, which reach the main process pickled by value.
    A tensor would travel as a shared-memory file descriptor, which costs the main process about 2 ms
    per piece: with 16 workers that capped the loader near 3,000 images/s whatever the policy cost
    (docs/benchmarks.md, Worker transport). Small uint8 images are cheaper copied."""
    images, labels = zip(*items)
    return np.stack(images), np.stack(labels)


def joined(parts: list) -> tuple:
    """One batch as tensors from the pieces the workers sent; a single piece is not copied."""
    return tuple(torch.as_tensor(column[0] if len(column) == 1 else np.concatenate(column)) for column in zip(*parts))


def leave_stop_signals_to_the_trainer(worker_id: int) -> None:
    """DataLoader workers ignore SIGTERM/SIGINT. Ctrl-C and SLURM signal the whole process group:
    a worker killed mid-epoch would fail the run, while the trainer stops it cleanly at the next
    step and then shuts its workers down (workers also exit when the main process dies)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def batch_stream(batches: Iterable) -> Iterator[Iterator]:
    """Iterate `batches` and close it on the way out, also on an exception: an abandoned epoch of the folder
    loader would otherwise keep its worker processes until garbage collection (or forever, see below)."""
    stream = iter(batches)
    try:
        yield stream
    finally:
        getattr(stream, "close", lambda: None)()


def stop_leftover_workers() -> None:
    """Workers ignore SIGTERM (above), and multiprocessing's exit handler terminates daemonic children with SIGTERM
    and then joins them: the workers kept by a `WorkerPool`, or those of an epoch abandoned by an exception whose
    traceback is still held, would make the program wait forever. That handler runs at exit in the main process,
    but in a multiprocessing child (a joblib launcher worker) when the child's task returns, before any atexit
    handler: hence one of multiprocessing's finalizers, which that handler runs first. PyTorch's SIGCHLD handler
    is taken down first, else each kill is reported as a crashed worker."""
    if hasattr(signal, "SIGCHLD"):  # not on Windows
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in multiprocessing.active_children():
        if child.daemon:
            child.kill()


multiprocessing.util.Finalize(None, stop_leftover_workers, exitpriority=0)


def usable_workers(requested: int) -> int:
    """DataLoader workers; none inside daemonic processes (a multiprocessing.Pool's workers), which cannot have
    children. The joblib launcher's loky workers are not daemonic: their jobs have workers."""
    return 0 if multiprocessing.current_process().daemon else requested


class SeededBatchSampler:
    """Turns a batch plan into lists of (row, per-sample seed); the seed depends on the sample's
    position in the epoch only, so augmentation is the same for any worker count or rank count.

    Each batch goes out as `chunks` consecutive pieces (one per worker), joined again by
    `WorkerPool`: the first batch of an epoch then waits for batch / workers images per worker
    instead of a whole batch from one worker.
    """

    def __init__(self, seed: int, chunks: int = 1) -> None:
        self.seed, self.chunks, self.plan, self.epoch = seed, max(1, chunks), [], 0

    def start(self, plan: Iterable[tuple], epoch: int) -> None:
        self.plan, self.epoch = list(plan), epoch

    def pieces(self, size: int) -> list:
        """Where a batch of `size` samples is cut: as even as possible, no empty piece."""
        bounds = np.linspace(0, size, min(self.chunks, size) + 1).round().astype(int)
        return [slice(start, stop) for start, stop in itertools.pairwise(bounds)]

    def __iter__(self):
        for batch_index, positions, rows in self.plan:
            samples = [(int(row), mix_seed(self.seed, self.epoch, batch_index, int(position), 3))
                       for position, row in zip(positions, rows)]
            for piece in self.pieces(len(samples)):
                yield samples[piece]

    def __len__(self) -> int:
        return sum(len(self.pieces(len(positions))) for _, positions, _ in self.plan)


class WorkerPool:
    """DataLoader workers fed one epoch's batch plan at a time, kept from one epoch to the next.

    Starting workers anew each epoch cost about a second per epoch on an H200 machine (16 workers
    forked from a process that holds a CUDA context, then each filling a whole batch), a quarter of
    an e2_vit_enhanced epoch (2026-11-27; docs/benchmarks.md, Seeding per-image augmentation). With
    `persistent` false they are started each epoch and gone between epochs, which frees their memory.
    Pieces travel as numpy arrays (`stack_as_arrays`) unless `collate_fn` says otherwise.
    """

    def __init__(self, dataset: Dataset, seed: int, num_workers: int, persistent: bool = True,
                 collate_fn: Callable = stack_as_arrays) -> None:
        workers = usable_workers(num_workers)
        self.sampler = SeededBatchSampler(seed, chunks=workers)
        # Its own generator for the workers' base seeds (every sample is seeded anyway), so that starting an
        # epoch draws nothing from the trainer's global RNG.
        self.loader = DataLoader(dataset, batch_sampler=self.sampler, num_workers=workers, collate_fn=collate_fn,
                                 persistent_workers=persistent and workers > 0, generator=torch.Generator(),
                                 worker_init_fn=leave_stop_signals_to_the_trainer)

    def epoch(self, plan: Iterable[tuple], epoch: int) -> Iterator[tuple]:
        """(batch index, positions, (pixels, labels)) of each planned batch, its pieces joined again.
        An epoch abandoned midway is no harm: the next one drops what the workers still deliver."""
        self.sampler.start(plan, epoch)
        pieces = iter(self.loader)
        for batch_index, positions, _ in list(self.sampler.plan):
            yield batch_index, positions, joined([next(pieces) for _ in self.sampler.pieces(len(positions))])


class FolderLoader:
    """The plain torchvision path: ImageFolder-style decoding and augmentation in DataLoader workers, which
    send uint8 pixels (a quarter of float32's bytes, see `stack_as_arrays`); the device normalises them."""

    def __init__(self, split: Split, transform: Callable, batch_size: int, num_workers: int, device: torch.device,
                 mean: tuple, std: tuple, seed: int = 0, shuffle: bool = False, repeats: int = 1,
                 decode_size: Optional[int] = None, shard: tuple = (0, 1), on_bad_image: str = "skip",
                 persistent_workers: bool = True, leave_out_unreadable: bool = False) -> None:
        self.dataset = FolderDataset(split, transform, decode_size, on_bad_image, leave_out_unreadable)
        self.normalize = Normalize(mean, std, device)
        self.batch_size, self.num_workers, self.device = batch_size, num_workers, device
        self.seed, self.shuffle, self.repeats, self.shard = seed, shuffle, repeats, shard
        self.persistent_workers = persistent_workers
        self.workers: Optional[WorkerPool] = None  # started at the first epoch

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def close(self) -> None:
        """Stop the workers now: the last reference to their DataLoader goes, which shuts them down."""
        self.workers = None

    def epoch(self, epoch: int, start_batch: int = 0, limit: Optional[int] = None) -> Iterator[tuple]:
        order = epoch_order(self.num_samples, self.seed, epoch, self.shuffle, self.repeats).numpy()
        if self.workers is None:
            self.workers = WorkerPool(self.dataset, self.seed, self.num_workers, self.persistent_workers)
        pin = self.device.type == "cuda"
        try:
            for _, _, (pixels, labels) in self.workers.epoch(
                    planned_batches(order, self.batch_size, start_batch, limit, self.shard), epoch):
                if self.dataset.leave_out_unreadable:
                    readable = labels != UNREADABLE  # on the host: no device sync
                    if not readable.all():
                        pixels, labels = pixels[readable], labels[readable]
                        if len(labels) == 0:  # nothing left of this rank's share of the batch
                            continue
                if pin:
                    pixels, labels = pixels.pin_memory(), labels.pin_memory()
                pixels = pixels.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
                yield self.normalize(pixels), labels.to(self.device, non_blocking=True)
        except DataError as exc:  # raised in a worker: keep its message, not the worker's traceback
            raise DataError(str(exc).strip().splitlines()[-1].split("DataError: ", 1)[-1]) from None


@dataclass
class DataBundle:
    """What the trainer needs from the data: three loaders, the class names and the training set's digest."""

    train: object
    val: object
    train_eval: object
    classes: tuple
    class_names: tuple
    mean: tuple
    std: tuple
    train_digest: str  # Split.digest of the training images: a resumed checkpoint must have trained on them

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def close(self) -> None:
        """The loaders' workers stop when the run ends, not at the next garbage collection: a finished run's
        trainer, which holds them, can outlive it in reference cycles (tracebacks kept by matplotlib's parser
        hold the trainer's frames), and the next job in the same process would run beside them."""
        for loader in (self.train, self.val, self.train_eval):
            loader.close()


def train_eval_indices(num_train: int, count: Optional[int], seed: int) -> np.ndarray:
    """A fixed, seeded subset of training images for the honest (eval-mode) training metrics."""
    count = num_train if count is None else min(count, num_train)
    generator = torch.Generator().manual_seed(mix_seed(seed, 4))
    return np.sort(torch.randperm(num_train, generator=generator)[:count].numpy())


def uint8_pixels(image: Image.Image) -> np.ndarray:
    """A PIL image as (H, W, 3) uint8, the form the folder path's workers send (normalised on the device)."""
    return np.asarray(image, dtype=np.uint8)


def folder_transforms(data: DataConfig, aug: AugmentConfig, per_image: Optional[Callable]):
    """(train, eval) PIL -> uint8 (H, W, 3) transforms of the folder path; `Normalize` finishes them."""
    from torchvision import transforms as T

    # The cached path's stored square, (resized to eval_resize,) then its centre crop on the device: both loaders
    # evaluate on the same pixels.
    size = data.resize_size
    to_eval_size = [T.Resize(data.eval_resize)] if size != data.eval_resize else []
    eval_crop = [functools.partial(resize_center_square, size=size), *to_eval_size, T.CenterCrop(data.img_size)]
    if aug.random_resized_crop:
        crop = [T.RandomResizedCrop(data.img_size, scale=aug.scale, ratio=aug.ratio)]
    else:  # evaluation's pixels, not a crop of its own: two centrings round a non-square image's offset apart
        crop = eval_crop
    policy = [per_image] if per_image is not None else []
    train = T.Compose(crop + [T.RandomHorizontalFlip(aug.hflip)] + policy + [uint8_pixels])
    return train, T.Compose(eval_crop + [uint8_pixels])


def index_from_cache(data: DataConfig) -> Optional[DatasetIndex]:
    """The index stored in the cache manifests of both splits (None if either is missing, or if they were
    built from a folder of another name: the key leaves the root out so that a copied cache is found on
    another machine, but a mistyped root, or another dataset of the same `data.name`, must not use it)."""
    manifests = {split: read_manifest(data.cache_entry(split)) for split in ("train", "val")}
    if any(m is None or "classes" not in m for m in manifests.values()):
        return None
    root = manifests["train"]["root"]
    if Path(root).name != Path(data.root).name:
        return None
    splits = {name: Split(tuple(str(Path(root) / f) for f, _, _ in m["files"]), tuple(label for _, _, label in m["files"]))
              for name, m in manifests.items()}
    return DatasetIndex(root, tuple(manifests["train"]["classes"]), tuple(manifests["train"]["class_names"]),
                        splits["train"], splits["val"], from_cache=True)


def index_dataset(data: DataConfig) -> DatasetIndex:
    """Index the dataset: from its files, read as `data.format` (downloading Imagenette or Imagewoof first
    when asked to and it is missing), or, when the files are absent, from a cache built elsewhere with the same settings."""
    try:
        return _index_dataset(data)
    except PermissionError as exc:  # a shared dataset whose folders this user may not list (no read bit for others)
        raise DataError(f"permission denied reading {exc.filename}: the dataset's folders and files must be readable "
                        f"by this user") from None


def _index_dataset(data: DataConfig) -> DatasetIndex:
    root = Path(data.root)
    if not root.exists() and data.download:
        refuse_root_inside_dataset(data)
        download_dataset(root)
    if not root.exists() and data.loader == "cached":
        index = index_from_cache(data)
        if index is not None:
            log.info("%s not found: using the cached images in %s", root, data.cache_dir)
            return index
    return index_by_format(data)


def fits_on_device(arrays: list, device: torch.device, setting) -> bool:
    """Keep cached images on the GPU when asked, or (auto) when they take under a quarter of its free memory."""
    if device.type != "cuda" or setting is False:
        return False
    if setting is True:
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return sum(a.nbytes for a in arrays) < free // 4


def cached_index_split(index: DatasetIndex, data: DataConfig, name: str, workers: int):
    split = getattr(index, name)
    entry = data.cache_entry(name)
    if index.from_cache:
        found = load_split_cache(entry)
        if found is None:  # damaged since the index was read, and the original files are not here to rebuild it
            raise DataError(f"{index.root} is missing and its cached copy {entry} is unusable")
        return checked_skips(found, entry, data.on_bad_image)
    dataset_info = {"root": index.root, "classes": list(index.classes), "class_names": list(index.class_names)}
    return cached_split(entry, split, index.root, dataset_info, data.resize_size, workers, data.on_bad_image)


def build_loaders(index: DatasetIndex, data: DataConfig, aug: AugmentConfig, device: torch.device, seed: int,
                  train_eval_samples: Optional[int] = None, shard: tuple = (0, 1)) -> DataBundle:
    """The train, val and train-eval loaders of an indexed dataset; each rank gets its `shard`
    (rank, world size) of every batch."""
    per_image = per_image_transform(aug, data.mean)
    described = dict(classes=index.classes, class_names=index.class_names, mean=data.mean, std=data.std,
                     train_digest=index.train.digest(index.root))
    if data.loader == "cached":
        workers = max(1, usable_workers(data.num_workers))
        train_split, val_split = (cached_index_split(index, data, name, workers) for name in ("train", "val"))
        if len(train_split.images) == 0 or len(val_split.images) == 0:
            raise DataError(f"no readable images left in {index.root} after skipping unreadable files")
        untrained = sorted(set(range(len(index.classes))) - set(np.unique(train_split.labels).tolist()))
        if untrained:  # its val images would count as errors whatever the model: another experiment than asked for
            raise DataError(f"no readable training image left of class {index.classes[untrained[0]]} "
                            f"({len(untrained)} such classes in all): every one was skipped as unreadable")
        train_tf = TrainBatchTransform(data.img_size, aug.scale, aug.ratio, aug.hflip, aug.random_resized_crop,
                                       data.mean, data.std, device, data.eval_resize)
        eval_tf = EvalBatchTransform(data.img_size, data.mean, data.std, device, data.eval_resize)
        subset = train_eval_indices(len(train_split.images), train_eval_samples or len(val_split.images), seed)
        on_device = fits_on_device([train_split.images, val_split.images], device, data.on_device)
        common = dict(device=device, shard=shard, on_device=on_device)
        train_on_device = array_on(device, train_split.images) if on_device else None  # one copy for train and train_eval
        return DataBundle(
            train=CachedLoader(train_split.images, train_split.labels, data.batch_size, train_tf, seed=seed,
                               shuffle=True, repeats=aug.repeats, per_image=ArrayAugment(per_image) if per_image else None,
                               num_workers=data.num_workers, persistent_workers=data.persistent_workers,
                               device_images=train_on_device, **common),
            val=CachedLoader(val_split.images, val_split.labels, data.eval_batch, eval_tf, **common),
            train_eval=CachedLoader(train_split.images, train_split.labels, data.eval_batch, eval_tf, indices=subset,
                                    device_images=train_on_device, **common),
            **described,
        )
    train_tf, eval_tf = folder_transforms(data, aug, per_image)
    subset = train_eval_indices(len(index.train), train_eval_samples or len(index.val), seed)
    train_eval_split = Split(tuple(index.train.paths[i] for i in subset), tuple(index.train.labels[i] for i in subset))
    common = dict(num_workers=data.num_workers, device=device, mean=data.mean, std=data.std, shard=shard,
                  on_bad_image=data.on_bad_image, persistent_workers=data.persistent_workers)
    return DataBundle(
        train=FolderLoader(index.train, train_tf, data.batch_size, seed=seed, shuffle=True, repeats=aug.repeats, **common),
        val=FolderLoader(index.val, eval_tf, data.eval_batch, decode_size=data.resize_size, leave_out_unreadable=True,
                         **common),
        train_eval=FolderLoader(train_eval_split, eval_tf, data.eval_batch, decode_size=data.resize_size,
                                leave_out_unreadable=True, **common),
        **described,
    )


def build_val_loader(index: DatasetIndex, data: DataConfig, device: torch.device):
    """The validation loader alone, for evaluating a checkpoint: the training split is listed by the
    index but never decoded or cached (on ImageNet that would be 1.28 million images)."""
    if data.loader == "cached":
        split = cached_index_split(index, data, "val", max(1, usable_workers(data.num_workers)))
        if len(split.images) == 0:
            raise DataError(f"no readable images left in {index.root} after skipping unreadable files")
        transform = EvalBatchTransform(data.img_size, data.mean, data.std, device, data.eval_resize)
        return CachedLoader(split.images, split.labels, data.eval_batch, transform, device=device,
                            on_device=fits_on_device([split.images], device, data.on_device))
    _, eval_tf = folder_transforms(data, AugmentConfig(), None)
    return FolderLoader(index.val, eval_tf, data.eval_batch, data.num_workers, device, data.mean, data.std,
                        decode_size=data.resize_size, on_bad_image=data.on_bad_image, leave_out_unreadable=True)
