"""Images/s of one process applying RandAugment (64 px, real Imagenette) with the old per-image seeding
(torch.manual_seed, states saved and restored per image) and the new (CPU generator seeded directly, states
kept once per piece of 128), alternating, median of 5. The old way is written out here, as it was in
vision_exp/data/loaders.py before 2026-11-27 (apply_seeded):
    VISION_EXP_DATA=<dir holding imagenette2-160> python docs/measurements/cpu-2026-11-27/randaugment_seeding.py
"""
import glob, os, random, statistics, time
import numpy as np, torch
from PIL import Image
from vision_exp.data.loaders import ArrayDataset
from vision_exp.recipe.augment import ArrayAugment, per_image_transform
from vision_exp.recipe.config import AugmentConfig
torch.set_num_threads(1)
files = sorted(glob.glob(os.path.join(os.environ["VISION_EXP_DATA"], "imagenette2-160/train/*/*.JPEG")))[::70][:128]
images = np.stack([np.array(Image.open(f).convert("RGB").resize((64, 64))) for f in files])
policy = ArrayAugment(per_image_transform(AugmentConfig(randaugment="rand-m9-mstd0.5-inc1-mmax9"), (0.485, 0.456, 0.406)))
dataset = ArrayDataset(images, torch.zeros(len(images), dtype=torch.long), policy)
items = [(i, 7919 * i) for i in range(len(images))]
def old():
    for index, seed in items:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            ps, ns = random.getstate(), np.random.get_state()
            random.seed(seed); np.random.seed(seed % 2**32)
            try: policy(images[index])
            finally: random.setstate(ps); np.random.set_state(ns)
def new():
    dataset.__getitems__(items)
def rate(f):
    t = time.perf_counter(); f(); return len(items) / (time.perf_counter() - t)
rates = {"old": [], "new": []}
for r in range(5):
    for name, f in (("old", old), ("new", new)) if r % 2 else (("new", new), ("old", old)):
        rates[name].append(rate(f))
print({k: round(statistics.median(v)) for k, v in rates.items()})
