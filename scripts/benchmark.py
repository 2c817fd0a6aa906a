"""Speed benchmarks, measured in one process and one run so that ratios hold on a noisy machine.

    python scripts/benchmark.py [--sections models data end_to_end memory] [--device auto] [--scale cpu|e2] [--quick] [--json PATH]

models      one training step (forward + backward + optimizer step) of our models against
            equivalent references holding the same weights, on the same inputs: vit_v1 vs timm's
            VisionTransformer, resnet_v1 vs a network of torchvision's BasicBlock (also in
            channels_last). Target: ours/reference time <= 1.05 (>= 1.0x the reference's images/s
            on a GPU).
data        training images/s of the data path alone at the same output size and worker count:
            the cached uint8 loader with batched augmentation vs torchvision's ImageFolder +
            DataLoader (RandomResizedCrop, flip, ToTensor, Normalize per image), and our folder
            loader, each timing a whole epoch of --data-batches batches, the workers of both
            folder loaders kept from one timing to the next. Target on a 2-core CPU: cached >= 10x
            torchvision. Then whole short epochs of the cached loader with per-image RandAugment
            in workers, the workers kept from one epoch to the next (data.persistent_workers, the
            default) vs started each epoch.
            Target: kept >= restarted (the gain is the start-up cost, largest on GPU machines).
            Last, the workers' transport alone: batches cut into 16 pieces (one per worker on a
            16-core GPU machine) sent as numpy arrays (ours) vs as tensors in shared memory.
            Target: arrays >= 2x tensors.
end_to_end  a real training run (trainer, cached loader, augmentation, schedule, metrics) against
            the bare training step of the same model on tensors already on the device.
            Target: end-to-end >= 90% of model-only images/s.
memory      the peak memory of a short e2_vit_enhanced run with each batch whole and in 2 and 4 parts
            (trainer.grad_accum_steps): what accumulation saves for a card too small for a preset.

On CUDA every section runs with the trainer's autocast (bf16; fp16 on cards older than Ampere) and
reports model FLOPs utilisation (MFU) against the card's dense 16-bit tensor-core peak. Ours and the reference alternate within each repeat (and swap who goes
first) so that a noisy machine slows both alike; medians over repeats are reported. The data
and end_to_end sections read Imagenette from $VISION_EXP_DATA or --data-root (--quick: a tiny
generated folder).
"""

import argparse
import contextlib
import copy
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from model_summary import build_model, flops_per_image
from torch import nn

from vision_exp.models.references import timm_vit_from, torchvision_resnet_from
from vision_exp.reporting.files import write_json_atomic
from vision_exp.training.runtime import amp_dtype

# Tiny sizes for --quick (a smoke test of the machinery, not a measurement).
QUICK_OVERRIDES = {
    "vit_v1": ("model.embed_dim=32", "model.depth=1", "model.num_heads=2"),
    "resnet_v1": ("model.widths=[8,16,32,64]",),
}
# --scale e2: the models of the GPU-sized presets (ResNet-18 layout, ViT-Tiny) instead of conf/model's defaults.
E2_PRESETS = {"vit_v1": "e2_vit", "resnet_v1": "e2_resnet"}
# Pieces per batch in the worker transport timing: one per worker on the 16-core GPU machines.
TRANSPORT_PIECES = 16
# Dense 16-bit tensor-core peaks (FLOP/s; bf16, fp16 for the pre-Ampere V100, T4 and P100) by a substring
# of torch.cuda.get_device_name(); the first key found wins, so the PCIe/NVL parts and the L40S come
# before the names they contain.
PEAK_16BIT = {"H200": 989e12, "H100 PCIe": 756e12, "H100 NVL": 835e12, "H100": 989e12, "A100": 312e12,
             "L40S": 362e12, "L40": 181e12, "L4": 121e12, "A10": 125e12, "V100": 125e12, "T4": 65e12, "P100": 19e12}


def peak_16bit(device_name: str) -> float | None:
    return next((peak for key, peak in PEAK_16BIT.items() if key in device_name), None)


class Runtime:
    """Device, autocast and synchronisation for timing."""

    def __init__(self, device: str) -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.amp = amp_dtype("auto", self.device)  # what the trainer picks on this card

    def autocast(self):
        return torch.autocast("cuda", dtype=self.amp) if self.cuda else contextlib.nullcontext()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def peak_flops(self) -> float | None:
        if not self.cuda:
            return None
        return peak_16bit(torch.cuda.get_device_name(self.device))

    def mfu(self, train_flops_per_image: float, images_per_s: float) -> float | None:
        peak = self.peak_flops()
        return train_flops_per_image * images_per_s / peak if peak else None


def train_flops(model: nn.Module, img_size: int) -> float:
    """Training FLOPs per image: forward x 3 (the backward pass costs about twice the forward)."""
    return 3.0 * flops_per_image(copy.deepcopy(model).cpu().float(), img_size)


def time_training_steps(model, optimizer, images, labels, steps: int, rt: Runtime) -> float:
    """Seconds per training step, averaged over `steps` steps."""
    rt.sync()
    start = time.perf_counter()
    for _ in range(steps):
        with rt.autocast():
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    rt.sync()
    return (time.perf_counter() - start) / steps


def alternate(timers: dict, repeats: int, warm: tuple = ()) -> dict:
    """Median of each timer's results, calling them in alternating order; the timers named in `warm` are called
    once untimed first (loaders that keep their workers start them there, as in every epoch of a run but the
    first: with one repeat, the start-up would otherwise be all their timing held)."""
    for name in warm:
        timers[name]()
    results = {name: [] for name in timers}
    for repeat in range(repeats):
        order = list(timers) if repeat % 2 == 0 else list(reversed(timers))
        for name in order:
            results[name].append(timers[name]())
    return {name: statistics.median(values) for name, values in results.items()}


def compare(ours: nn.Module, reference: nn.Module, images, labels, args, rt: Runtime) -> dict:
    """Median seconds per step of both models, measured alternately."""
    models = {"ours": ours.train(), "reference": reference.train()}
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-4) for name, model in models.items()}
    for name in models:  # warm-up: allocator, kernel caches, optimizer state
        time_training_steps(models[name], optimizers[name], images, labels, args.warmup, rt)
    medians = alternate({name: (lambda n=name: time_training_steps(models[n], optimizers[n], images, labels,
                                                                   args.steps, rt)) for name in models}, args.repeats)
    ours_s, ref_s = medians["ours"], medians["reference"]
    batch = images.shape[0]
    return dict(
        ours_s_per_step=ours_s,
        reference_s_per_step=ref_s,
        ours_images_per_s=batch / ours_s,
        reference_images_per_s=batch / ref_s,
        ratio_ours_over_reference=ours_s / ref_s,
    )


def models_section(args, rt: Runtime) -> dict:
    images = torch.randn(args.batch_size, 3, args.img_size, args.img_size, device=rt.device)
    labels = torch.randint(0, 10, (args.batch_size,), device=rt.device)

    def build(name: str) -> nn.Module:
        torch.manual_seed(0)
        if args.scale == "e2" and not args.quick:
            from hydra.utils import instantiate

            from vision_exp.api import compose_config

            cfg = compose_config([f"experiment={E2_PRESETS[name]}", "data.num_classes=10", f"data.img_size={args.img_size}"])
            return instantiate(cfg.model)
        return build_model(name, 10, args.img_size, QUICK_OVERRIDES[name] if args.quick else ())

    cases: list[tuple[str, str, Callable[[nn.Module], nn.Module], torch.memory_format]] = [
        ("vit_v1", "timm VisionTransformer", timm_vit_from, torch.contiguous_format),
        ("resnet_v1", "torchvision BasicBlock", torchvision_resnet_from, torch.contiguous_format),
        ("resnet_v1", "torchvision BasicBlock", torchvision_resnet_from, torch.channels_last),
    ]
    rows = {}
    for config, reference_name, make_reference, memory_format in cases:
        ours = build(config)
        reference = make_reference(ours).to(rt.device, memory_format=memory_format)
        flops = train_flops(ours, args.img_size)
        ours = ours.to(rt.device, memory_format=memory_format)
        x = images.contiguous(memory_format=memory_format)
        key = config if memory_format == torch.contiguous_format else f"{config}_channels_last"
        row = dict(reference=reference_name, **compare(ours, reference, x, labels, args, rt))
        row["mfu"] = rt.mfu(flops, row["ours_images_per_s"])
        row["params"] = sum(p.numel() for p in ours.parameters())
        rows[key] = row
    return rows


# ------------------------------------------------------------------------------------------ data
def tiny_imagefolder(root: Path) -> Path:
    """A generated ImageFolder with Imagenette-sized JPEGs (for --quick)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 24), ("val", 4)):
        for label in range(2):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)).save(folder / f"{i}.JPEG")
    return root


def imagenette_root(args) -> Path:
    if args.quick:
        return tiny_imagefolder(Path(tempfile.mkdtemp(prefix="data-", dir=args.scratch)) / "tiny")
    root = Path(args.data_root or Path(os.environ.get("VISION_EXP_DATA", "./data")) / "imagenette2-160")
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        sys.exit(f"error: no train/ and val/ folders in {root}: set VISION_EXP_DATA, or --data-root to an ImageFolder root")
    return root


def images_per_s(batches, count: int, rt: Runtime) -> float:
    """Images/s over the first `count` batches of an iterator (its start-up included)."""
    start, seen = time.perf_counter(), 0
    for index, (images, _) in enumerate(batches):
        seen += len(images)
        if index + 1 == count:
            break
    rt.sync()
    return seen / (time.perf_counter() - start)


def torchvision_loader(root: Path, args, augment, pin: bool, batches: int):
    """torchvision's ImageFolder + DataLoader doing the same per-image work. Its workers are kept from one
    timing to the next, as ours are (started each time, they cost it their start-up in every timing and ours
    in the first only), and each timing is a whole epoch of `batches` batches: a loader left midway starts
    its next epoch by draining what its workers had prefetched."""
    from torch.utils.data import DataLoader, RandomSampler
    from torchvision import datasets
    from torchvision import transforms as T

    transform = T.Compose([T.RandomResizedCrop(args.img_size, scale=augment.scale), T.RandomHorizontalFlip(),
                           T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    dataset = datasets.ImageFolder(str(root / "train"), transform)
    return DataLoader(dataset, batch_size=args.batch_size, sampler=RandomSampler(dataset, num_samples=batches * args.batch_size),
                      num_workers=args.workers, pin_memory=pin, persistent_workers=args.workers > 0)


def data_section(args, rt: Runtime) -> dict:
    from vision_exp.data.config import DataConfig
    from vision_exp.data.loaders import build_loaders, index_dataset
    from vision_exp.recipe.config import AugmentConfig

    root = imagenette_root(args)
    batches = 2 if args.quick else args.data_batches
    cache = tempfile.mkdtemp(prefix="cache-", dir=args.scratch)
    settings = dict(root=str(root), name="bench", img_size=args.img_size, batch_size=args.batch_size,
                    num_workers=args.workers, cache_dir=cache)
    augment = AugmentConfig()
    cached = build_loaders(index_dataset(DataConfig(**settings)), DataConfig(**settings), augment, rt.device, 0)
    ours_folder = build_loaders(index_dataset(DataConfig(loader="folder", **settings)),
                                DataConfig(loader="folder", **settings), augment, rt.device, 0)
    reference = torchvision_loader(root, args, augment, rt.cuda, batches)
    limit = batches * args.batch_size

    def on_device(loader):
        for images, labels in loader:
            yield images.to(rt.device, non_blocking=True), labels.to(rt.device, non_blocking=True)

    epochs = iter(range(10**6))
    medians = alternate({
        "cached": lambda: images_per_s(cached.train.epoch(next(epochs), limit=limit), batches, rt),
        "torchvision": lambda: images_per_s(on_device(reference), batches, rt),
        "folder": lambda: images_per_s(ours_folder.train.epoch(next(epochs), limit=limit), batches, rt),
    }, 1 if args.quick else args.data_repeats, warm=("cached", "torchvision", "folder"))
    randaugment = AugmentConfig(randaugment="rand-m9-mstd0.5-inc1-mmax9")
    per_image = {persistent: build_loaders(index_dataset(DataConfig(**settings)),
                                           DataConfig(persistent_workers=persistent, **settings), randaugment, rt.device, 0)
                 for persistent in (True, False)}
    epoch_count = 2 if args.quick else args.data_epochs
    per_image_medians = alternate({
        "kept": lambda: whole_epochs_images_per_s(per_image[True].train, epoch_count, limit, rt),
        "restarted": lambda: whole_epochs_images_per_s(per_image[False].train, epoch_count, limit, rt),
        "one_process": lambda: one_process_images_per_s(per_image[True].train, limit),
    }, 1 if args.quick else args.data_repeats, warm=("kept",))  # "restarted" starts its workers in each timing
    return {
        "train_loader": dict(
            reference="torchvision ImageFolder + DataLoader", workers=args.workers, img_size=args.img_size,
            cached_images_per_s=medians["cached"], folder_images_per_s=medians["folder"],
            torchvision_images_per_s=medians["torchvision"],
            speedup_cached_over_torchvision=medians["cached"] / medians["torchvision"],
        ),
        "randaugment_epochs": dict(
            reference="workers started each epoch", workers=args.workers, img_size=args.img_size,
            epochs=epoch_count, batches_per_epoch=batches, kept_workers_images_per_s=per_image_medians["kept"],
            restarted_workers_images_per_s=per_image_medians["restarted"],
            speedup_kept_over_restarted=per_image_medians["kept"] / per_image_medians["restarted"],
            one_process_images_per_s=per_image_medians["one_process"],
            kept_workers_over_one_process=per_image_medians["kept"] / per_image_medians["one_process"],
        ),
        "worker_transport": worker_transport(per_image[True].train, args, batches),
    }


def worker_transport(loader, args, batches: int) -> dict:
    """How fast the workers' pieces reach the main process, the policy left out (it returns the image as
    it is): each batch cut into TRANSPORT_PIECES pieces as on a 16-core machine, the pieces sent as numpy
    arrays (ours) or as tensors in shared memory (DataLoader's default collation)."""
    from torch.utils.data import default_collate

    from vision_exp.data.loaders import ArrayDataset, WorkerPool, planned_batches, stack_as_arrays

    def pool(collate_fn):
        workers = WorkerPool(ArrayDataset(loader.images, loader.labels, lambda pixels: pixels), 0, args.workers,
                             collate_fn=collate_fn)
        workers.sampler.chunks = TRANSPORT_PIECES
        return workers

    pools = {"arrays": pool(stack_as_arrays), "tensors": pool(default_collate)}
    epochs = iter(range(10**6))

    def images_per_s(workers) -> float:
        plan = planned_batches(np.arange(len(loader.images)), args.batch_size, limit=batches * args.batch_size)
        start, seen = time.perf_counter(), 0
        for _, _, (images, _) in workers.epoch(plan, next(epochs)):
            seen += len(images)
        return seen / (time.perf_counter() - start)

    for workers in pools.values():  # start the workers outside the clock
        images_per_s(workers)
    medians = alternate({name: (lambda w=workers: images_per_s(w)) for name, workers in pools.items()},
                        1 if args.quick else args.data_repeats)
    return dict(reference="tensors in shared memory (DataLoader's default collation)", workers=args.workers,
                pieces_per_batch=TRANSPORT_PIECES, batch_size=args.batch_size, batches=batches,
                arrays_images_per_s=medians["arrays"], tensors_images_per_s=medians["tensors"],
                speedup_arrays_over_tensors=medians["arrays"] / medians["tensors"])


def one_process_images_per_s(loader, count: int) -> float:
    """The per-image policy applied in this process, image after image: what one worker could deliver at
    most. The workers' rate over this one says how well they scale with the machine's cores."""
    from vision_exp.data.loaders import ArrayDataset

    dataset = ArrayDataset(loader.images, loader.labels, loader.per_image)
    count = min(count, len(dataset))
    start = time.perf_counter()
    dataset.__getitems__([(row, row) for row in range(count)])
    return count / (time.perf_counter() - start)


def whole_epochs_images_per_s(loader, epochs: int, limit: int, rt: Runtime) -> float:
    """Images/s over `epochs` consecutive epochs of `limit` samples each, their starts included."""
    start, seen = time.perf_counter(), 0
    for epoch in range(epochs):
        for images, _ in loader.epoch(epoch, limit=limit):
            seen += len(images)
    rt.sync()
    return seen / (time.perf_counter() - start)


# ------------------------------------------------------------------------------------ end to end
def end_to_end_section(args, rt: Runtime) -> dict:
    """The trainer on real data for `steps` steps vs the bare step of the same model and optimizer."""
    from hydra.utils import instantiate

    from vision_exp.api import compose_config
    from vision_exp.experiment import run_experiment

    root = imagenette_root(args)
    steps = 3 if args.quick else args.e2e_steps
    batch = args.batch_size
    overrides = [
        "data=folder", f"data.root={root}", "data.name=bench", f"data.img_size={args.img_size}",
        f"data.batch_size={batch}", f"data.num_workers={args.workers}", "data.max_val_per_class=4",
        f"data.cache_dir={tempfile.mkdtemp(prefix='cache-', dir=args.scratch)}", f"trainer.train_samples={steps * batch}",
        "trainer.train_eval_samples=8", "trainer.progress=none", f"trainer.device={rt.device.type}",
        *(QUICK_OVERRIDES["resnet_v1"] if args.quick else ()),
    ]
    cfg = compose_config(overrides)

    def end_to_end() -> float:
        folder = Path(tempfile.mkdtemp(prefix="run-", dir=args.scratch))
        return run_experiment(cfg.copy(), folder, overrides)["train_images_per_s"]

    probe = cfg.copy()
    probe.data.num_classes = len([p for p in (root / "train").iterdir() if p.is_dir()])
    model = instantiate(probe.model).to(rt.device)
    optimizer = instantiate(probe.optimizer)(model)
    images = torch.randn(batch, 3, args.img_size, args.img_size, device=rt.device)
    labels = torch.randint(0, probe.data.num_classes, (batch,), device=rt.device)
    if rt.cuda:  # the trainer's policy: channels_last for ConvNets on CUDA
        model, images = model.to(memory_format=torch.channels_last), images.contiguous(memory_format=torch.channels_last)
    time_training_steps(model, optimizer, images, labels, args.warmup, rt)
    medians = alternate({
        "end_to_end": end_to_end,
        "model_only": lambda: batch / time_training_steps(model, optimizer, images, labels, steps, rt),
    }, 1 if args.quick else args.e2e_repeats)
    flops = train_flops(instantiate(probe.model), args.img_size)
    return {
        "resnet_v1": dict(
            reference="the bare training step", steps=steps, batch_size=batch,
            end_to_end_images_per_s=medians["end_to_end"], model_only_images_per_s=medians["model_only"],
            fraction_of_model_only=medians["end_to_end"] / medians["model_only"],
            mfu=rt.mfu(flops, medians["end_to_end"]),
        )
    }


# A run in a fresh process that prints its peak resident memory: on the CPU the one peak that counts what
# torch allocates, each setting measured from the same start.
PEAK_RSS_RUN = """
import json, resource, sys
from vision_exp.api import compose_config
from vision_exp.experiment import run_experiment
overrides = json.loads(sys.argv[1])
result = run_experiment(compose_config(overrides), sys.argv[2], overrides)
print(json.dumps(dict(peak_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      images_per_s=result["train_images_per_s"])))
"""
GRAD_ACCUM_PARTS = (1, 2, 4)


def memory_section(args, rt: Runtime) -> dict:
    """Peak memory of a short run of e2_vit_enhanced (conf/model's vit_v1 at --quick) with each batch whole and
    in 2 and 4 parts (trainer.grad_accum_steps): on CUDA the allocator's peak, on the CPU the peak resident
    memory of a fresh process per setting (torch, the model and the data cache count alike in all three)."""
    from vision_exp.api import compose_config
    from vision_exp.experiment import run_experiment

    root = imagenette_root(args)
    batch = args.batch_size
    steps = 1 if args.quick else 2
    base = [
        "model=vit_v1" if args.quick else "experiment=e2_vit_enhanced", "data=folder", f"data.root={root}",
        "data.name=bench", f"data.img_size={args.img_size}", f"data.batch_size={batch}", f"data.num_workers={args.workers}",
        "data.max_train_per_class=4" if args.quick else f"data.max_train_per_class={batch}", "data.max_val_per_class=4",
        f"data.cache_dir={tempfile.mkdtemp(prefix='cache-', dir=args.scratch)}", f"trainer.train_samples={steps * batch}",
        "trainer.train_eval_samples=8", "trainer.progress=none", f"trainer.device={rt.device.type}",
        *(QUICK_OVERRIDES["vit_v1"] if args.quick else ()),
    ]
    peaks, speeds = {}, {}
    for parts in GRAD_ACCUM_PARTS:
        overrides = [*base, f"trainer.grad_accum_steps={parts}"]
        folder = tempfile.mkdtemp(prefix="run-", dir=args.scratch)
        if rt.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(rt.device)
            speeds[parts] = run_experiment(compose_config(overrides), Path(folder), overrides)["train_images_per_s"]
            peaks[parts] = torch.cuda.max_memory_allocated(rt.device)
        else:
            run = subprocess.run([sys.executable, "-c", PEAK_RSS_RUN, json.dumps(overrides), folder],
                                 capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
            if run.returncode:
                sys.exit(f"error: the memory run with trainer.grad_accum_steps={parts} failed:\n{run.stderr[-2000:]}")
            measured = json.loads(run.stdout.strip().splitlines()[-1])
            peaks[parts], speeds[parts] = measured["peak_bytes"], measured["images_per_s"]
    return {
        f"grad_accum_steps={parts}": dict(
            reference="each batch whole" if parts == 1 else f"each batch of {batch} in {parts} parts", steps=steps,
            batch_size=batch, peak_mib=peaks[parts] / 2**20, fraction_of_whole=peaks[parts] / peaks[1],
            images_per_s=speeds[parts])
        for parts in GRAD_ACCUM_PARTS
    }


SECTIONS: dict[str, Callable] = {"models": models_section, "data": data_section, "end_to_end": end_to_end_section,
                                 "memory": memory_section}


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    return str(value)


def print_table(section: str, rows: dict) -> None:
    """One table per section; a new header wherever a row has other columns than the row above."""
    print(f"\n[{section}]")
    header = None
    for case, row in rows.items():
        columns = [k for k in row if k != "reference"]
        if columns != header:
            header = columns
            print(f"{'case':<26}{'reference':<38}" + "".join(f"{c:>26}" for c in columns))
        print(f"{case:<26}{row['reference']:<38}" + "".join(f"{fmt(row[c]):>26}" for c in columns))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--quick", action="store_true", help="tiny models, data and batches, 1 repeat: a smoke test")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch-size", type=int, default=None, help="default 64 (models), 128 (data, end_to_end); 256 on CUDA")
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--scale", choices=("cpu", "e2"), default="cpu",
                        help="models: cpu = conf/model defaults; e2 = those of the e2_vit / e2_resnet presets")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3, help="training steps per timing (models)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model first")
    parser.add_argument("--data-root", help="an ImageFolder root (default $VISION_EXP_DATA/imagenette2-160)")
    parser.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8), help="data loading workers")
    parser.add_argument("--data-batches", type=int, default=30)
    parser.add_argument("--data-repeats", type=int, default=3)
    parser.add_argument("--data-epochs", type=int, default=4, help="epochs of --data-batches batches per timing (RandAugment)")
    parser.add_argument("--e2e-steps", type=int, default=40)
    parser.add_argument("--e2e-repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.json:  # found out after the measurements, they would be lost
        target = Path(args.json).absolute()
        if not target.parent.is_dir():
            parser.error(f"--json {args.json}: no folder {target.parent}")
        if target.is_dir() or not os.access(target.parent, os.W_OK):
            parser.error(f"--json {args.json}: {'a folder' if target.is_dir() else 'its folder cannot be written'}")
    args.scratch = Path(tempfile.mkdtemp(prefix="bench-"))  # caches, run folders, --quick's data: removed at the end
    try:
        return run_sections(args)
    finally:
        shutil.rmtree(args.scratch, ignore_errors=True)


def run_sections(args) -> dict:
    rt = Runtime(args.device)
    torch.set_num_threads(args.threads)
    if rt.cuda:
        torch.backends.cudnn.benchmark = True
    results = dict(meta=dict(torch=torch.__version__, machine=platform.processor() or platform.machine(),
                             device=torch.cuda.get_device_name(rt.device) if rt.cuda else "cpu",
                             threads=args.threads, quick=args.quick, scale=args.scale, workers=args.workers,
                             cores=os.cpu_count(), load_average_at_start=os.getloadavg()[0]))
    busy_cores = results["meta"]["load_average_at_start"]
    if busy_cores > max(0.5, 0.1 * (os.cpu_count() or 1)):  # the fast paths (a few ms a batch) feel it first
        print(f"warning: the load average is {busy_cores:.1f} on {os.cpu_count()} cores: other work is running (or "
              f"just ended), and the ratios will understate the fast paths (meta.load_average_at_start)", file=sys.stderr)
    for section in args.sections:
        section_args = copy.copy(args)
        if section_args.batch_size is None:
            section_args.batch_size = (256 if rt.cuda else 64 if section == "models" else 128)
        if args.quick:
            section_args.batch_size, section_args.repeats, section_args.steps, section_args.warmup = 4, 1, 1, 1
            section_args.img_size = 32
        results[section] = SECTIONS[section](section_args, rt)
        results["meta"][f"{section}_batch_size"] = section_args.batch_size
        results["meta"][f"{section}_img_size"] = section_args.img_size
        print_table(section, results[section])
        results["meta"]["load_average_at_end"] = os.getloadavg()[0]
        if args.json:  # after every section: a run stopped by its time limit (gpu_check.sh) keeps those it finished
            write_json_atomic(Path(args.json), results)
    return results


if __name__ == "__main__":
    main()
