"""`python -m vision_exp.predict ckpt=<path> images=<file or folder> [topk=5]`: the top-k class names
of every image, printed and written to predictions.csv beside the checkpoint. In a notebook,
`vision_exp.predict(ckpt, images, ["topk=3"])` (this module, callable: see `vision_exp.api.predict`) writes the same.

torch and the data pipeline are imported once the command's values were checked: `--help` and a missing
checkpoint or image folder answer in about a second."""
from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Callable

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from vision_exp.api import make_module_callable
from vision_exp.conf_dir import CONF_DIR
from vision_exp.cli import CheckOutputFolder, command, user_errors
from vision_exp.config_types import typed
from vision_exp.data.config import DataConfig
from vision_exp.data.index import IMAGE_EXTENSIONS, visible
from vision_exp.errors import ConfigError, DataError
from vision_exp.recipe.config import AugmentConfig
from vision_exp.reporting.files import write_text_atomic

log = logging.getLogger("vision_exp.predict")


def image_files(target: Path) -> list:
    """`target` itself, or the images under it but for hidden files and folders (as training's index skips them)."""
    if target.is_file():
        return [target]
    if target.is_dir():
        files = sorted(p for p in target.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
                       and all(visible(Path(part)) for part in p.relative_to(target).parts))
        if files:
            return files
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {target}")
    raise DataError(f"images={target}: no such file or folder")


def readable(paths: list, load: Callable) -> tuple:
    """(paths, inputs) of the images `load` decodes; an unreadable one is skipped with a warning, as
    training skips it (data.on_bad_image=skip), so one bad file in a folder costs only its own row."""
    kept, inputs = [], []
    for path in paths:
        try:
            inputs.append(load(path))
        except Exception as exc:  # as the loaders: not an image, truncated, a decompression bomb, ...
            log.warning("skipped %s: %s", path, exc)
            continue
        kept.append(path)
    return kept, inputs


def predict(checkpoint: Path, target: Path, topk: int = 5, batch_size: int = 64, device: str = "auto") -> list:
    """[(path, [(class name, probability), ...]), ...] with the run's evaluation transform."""
    for key, value in (("topk", topk), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{key}={value!r} must be a positive integer")
    files = image_files(target)  # a mistyped images= is answered before the slow imports below
    import numpy as np
    import torch

    from vision_exp.data.batch_augment import Normalize
    from vision_exp.data.images import open_rgb
    from vision_exp.data.loaders import folder_transforms
    from vision_exp.builder import load_trained_model
    from vision_exp.training.runtime import select_device

    model, run_cfg, state = load_trained_model(checkpoint)
    data = typed(DataConfig, run_cfg.data, "data")
    _, transform = folder_transforms(data, AugmentConfig(), None)
    chosen = select_device(device, key="device")
    normalize = Normalize(data.mean, data.std, chosen)
    names = state.get("class_names") or [str(i) for i in range(run_cfg.data.num_classes)]
    model.to(chosen).eval()
    k, rows = min(topk, len(names)), []

    def load(path: Path):
        return transform(open_rgb(str(path), data.resize_size))

    for start in range(0, len(files), batch_size):
        part, inputs = readable(files[start : start + batch_size], load)
        if not part:
            continue
        batch = torch.from_numpy(np.stack(inputs)).to(chosen).permute(0, 3, 1, 2)
        with torch.no_grad():
            probabilities = model(normalize(batch)).float().softmax(1)
        values, indices = probabilities.topk(k, dim=1)
        for path, vals, idxs in zip(part, values.tolist(), indices.tolist()):
            rows.append((str(path), [(names[i], v) for i, v in zip(idxs, vals)]))
    if not rows:
        raise DataError(f"none of the {len(files)} image files in {target} could be read")
    return rows


PREDICTIONS_FILE = "predictions.csv"


def prediction_rows(rows: list) -> list:
    """predict()'s rows as predictions.csv's: {image, top1..topk, p1..pk} (k is topk, or the number of classes
    when that is smaller); the probabilities unrounded, the file keeps 4 decimals."""
    return [{"image": path, **{f"top{i + 1}": name for i, (name, _) in enumerate(top)},
             **{f"p{i + 1}": p for i, (_, p) in enumerate(top)}} for path, top in rows]


def predict_images(cfg: DictConfig, out_dir: Path) -> list:
    """The predictions of predict.yaml's `cfg`, written to <out_dir>/predictions.csv: what the command line and
    vision_exp.predict() both run, so that they write the same file. Returns `prediction_rows`."""
    rows = prediction_rows(predict(Path(cfg.ckpt), Path(cfg.images), cfg.topk, cfg.batch_size, cfg.device))
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows({key: f"{value:.4f}" if isinstance(value, float) else value for key, value in row.items()} for row in rows)
    out = out_dir / PREDICTIONS_FILE
    write_text_atomic(out, table.getvalue())
    log.info("written to %s", out)
    return rows


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="predict")
def hydra_main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    with user_errors(log, CheckOutputFolder.folders_made_for(out_dir)):
        for row in predict_images(cfg, out_dir):
            k = (len(row) - 1) // 2
            print(f"{row['image']}: " + ", ".join(f"{row[f'top{i}']} ({row[f'p{i}']:.1%})" for i in range(1, k + 1)))


main = command(hydra_main, "predict")

if __name__ == "__main__":
    main()
else:  # `vision_exp.predict(...)` in a notebook
    make_module_callable(__name__, "predict")
