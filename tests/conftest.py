"""Shared fixtures: a tiny generated ImageFolder, composed configs, and paths kept in tmp dirs."""
from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# A suite started in the background (`nohup make test &`) inherits SIGINT ignored, and the processes it starts keep
# it ignored across exec: the Ctrl-C tests would then see no Ctrl-C. Python's own handler is what a terminal gives.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
os.environ.setdefault("VISION_EXP_DATA", str(REPO.parent / "shared" / "data"))
SHARED_DATA = Path(os.environ["VISION_EXP_DATA"])

# Real ImageNet WNIDs, so readable class names can be checked.
TINY_CLASSES = ("n01440764", "n02102040", "n02979186")
TINY_TRAIN_PER_CLASS = 12
TINY_VAL_PER_CLASS = 4

# The same thread count here and in the subprocesses the CLI tests start (they read OMP_NUM_THREADS):
# float reductions split over other thread counts round differently, and the exact-resume tests
# compare a subprocess's run with one trained in this process bit for bit.
TEST_THREADS = max(1, min(2, os.cpu_count() or 1))
torch.set_num_threads(TEST_THREADS)
os.environ["OMP_NUM_THREADS"] = str(TEST_THREADS)


def class_image(label: int, rng: np.random.Generator, size=(40, 48)) -> np.ndarray:
    """A learnable picture: a class-specific colour plus noise."""
    base = np.zeros((size[1], size[0], 3), dtype=np.float32)
    base[..., label % 3] = 200.0
    noise = rng.normal(0, 25, base.shape)
    return np.clip(base + noise + 20, 0, 255).astype(np.uint8)


def write_image_folder(root: Path, classes=TINY_CLASSES, per_split=None, seed: int = 0) -> Path:
    """<root>/{train,val}/<wnid>/ with JPEGs of mixed sizes, one grayscale JPEG and one RGBA PNG per split."""
    per_split = per_split or {"train": TINY_TRAIN_PER_CLASS, "val": TINY_VAL_PER_CLASS}
    rng = np.random.default_rng(seed)
    for split, count in per_split.items():
        for label, wnid in enumerate(classes):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                size = (40, 48) if i % 2 else (48, 40)
                pixels = class_image(label, rng, size)
                if label == 0 and i == 0:
                    Image.fromarray(pixels).convert("L").save(folder / f"{wnid}_{i}.JPEG", quality=90)
                elif label == 1 and i == 0:
                    Image.fromarray(pixels).convert("RGBA").save(folder / f"{wnid}_{i}.png")
                else:
                    Image.fromarray(pixels).save(folder / f"{wnid}_{i}.JPEG", quality=90)
    return root


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("tiny") / "tinynette")


@pytest.fixture(autouse=True)
def isolated_paths(tmp_path, monkeypatch):
    """Outputs and caches of every test go to its own tmp dir."""
    monkeypatch.setenv("VISION_EXP_OUTPUT", str(tmp_path / "outputs"))
    monkeypatch.setenv("VISION_EXP_CACHE", str(tmp_path / "cache"))


def compose(overrides=(), config_name: str = "train"):
    """The composed config, as `python -m vision_exp.train <overrides>` would see it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name="test"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def tiny_overrides(folder: Path, *extra: str) -> list:
    """A run of a few seconds on the tiny folder: small model, 16 px, one epoch."""
    return [
        "data=folder",
        f"data.root={folder}",
        "data.img_size=16",
        "data.batch_size=8",
        "data.num_workers=0",
        "model.widths=[8,8,16,16]",
        "model.stem_stride=1",
        "trainer.epochs=1",
        "trainer.progress=none",
        "trainer.save_interval_s=0",  # checkpoints at every epoch end, which the resume tests interrupt
        *extra,
    ]


def lrs(name, total=100, per_epoch=10, **kw):
    """The learning rate after each of `total` steps of a schedule (index 0: before the first)."""
    from vision_exp.recipe.schedule import create_scheduler

    optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)
    scheduler = create_scheduler(optimizer, total, per_epoch, name, **kw)
    values = [optimizer.param_groups[0]["lr"]]
    for step in range(1, total + 1):
        scheduler.step_update(num_updates=step)
        values.append(optimizer.param_groups[0]["lr"])
    return values


def run_cli(args, env_extra=None, timeout=600, cwd=REPO):
    """`python -m vision_exp.train <args>` in a subprocess; returns the CompletedProcess."""
    import subprocess

    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "vision_exp.train", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=cwd)


def tiny_vit_overrides(folder: Path, *extra: str) -> list:
    """tiny_overrides for the ViT presets: one narrow block on 16 px images."""
    return [
        "data=folder", f"data.root={folder}", "data.img_size=16", "data.batch_size=8", "data.num_workers=0",
        "data.max_val_per_class=2", "model.embed_dim=16", "model.depth=1", "model.num_heads=2",
        "trainer.train_samples=20", "trainer.train_eval_samples=4", "trainer.progress=none", *extra,
    ]


def finished_trainer(monkeypatch, overrides, run_dir) -> tuple:
    """(the run's metrics.json, its Trainer after fit): the weights and loaders its last epoch evaluated."""
    from vision_exp.experiment import run_experiment
    from vision_exp.training.trainer import Trainer

    trainers = []
    fit = Trainer.fit

    def keeping_fit(self):
        trainers.append(self)
        return fit(self)

    monkeypatch.setattr(Trainer, "fit", keeping_fit)
    return run_experiment(compose(overrides), run_dir, []), trainers[0]


@torch.no_grad()
def mean_loss(model, loader, training=False) -> float:
    """Cross-entropy over a loader's fixed images, computed here in the given mode (on a copy of the model)."""
    import copy

    model = copy.deepcopy(model).train(training)
    losses = [torch.nn.functional.cross_entropy(model(images), labels, reduction="sum") for images, labels in loader.epoch(0)]
    return float(sum(losses)) / loader.num_samples


@contextmanager
def sigterm_at_step(monkeypatch, at_step: int, only=lambda trainer: True):
    """Within it, SIGTERM arrives before step `at_step` (counted from 0) of the runs `only` selects:
    such a run checkpoints at that step and raises Interrupted."""
    import signal

    from vision_exp.training.trainer import Trainer

    step = Trainer._step

    def signalled(self, images, labels, global_count):
        if self.position.step == at_step and self.signals.received is None and only(self):
            self.signals.received = signal.SIGTERM
        return step(self, images, labels, global_count)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_step", signalled)
        yield
