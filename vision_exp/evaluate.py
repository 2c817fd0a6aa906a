"""`python -m vision_exp.evaluate ckpt=<path> [data=...]`: top-1/top-5, per-class accuracy and the
confusion matrix of a checkpoint, written beside it (in <checkpoint>-eval-<data>/); a refused command leaves
no folder there. In a notebook, `vision_exp.evaluate(ckpt, [overrides])` (this module, callable: see
`vision_exp.api.evaluate`) writes the same.

torch and the data pipeline are imported once the command's values were checked: `--help` and a missing
or mistyped checkpoint answer in about a second."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from vision_exp.api import make_module_callable
from vision_exp.conf_dir import CONF_DIR
from vision_exp.cli import CheckOutputFolder, command, user_errors
from vision_exp.config_types import typed
from vision_exp.data.config import DataConfig
from vision_exp.errors import OutOfMemory

log = logging.getLogger("vision_exp.evaluate")


# How the run turned images into inputs: another dataset is evaluated through the same steps, since the
# chosen data group's defaults (a different crop_pct, no cache_size) would change what the model sees.
RUN_PREPROCESSING = ("img_size", "crop_pct", "cache_size", "mean", "std")


def evaluation_data(run_data: DictConfig, chosen, state: dict) -> DataConfig:
    """The run's data settings, updated with the user's choice; always the run's preprocessing and classes
    (the model's head maps outputs to exactly those classes). A setting left `???` (conf/evaluate.yaml declares
    them so that `data.<key>=<value>` needs no plus) keeps the run's value."""
    # Resolved where it was composed: merged into the run's config, `${paths.cache_dir}` would name the run's paths.
    values = OmegaConf.to_container(chosen, resolve=True) if chosen else {}
    given = {key: value for key, value in values.items() if not OmegaConf.is_missing(chosen, key)}
    node = OmegaConf.merge(run_data, given)
    with open_dict(node):
        for key in RUN_PREPROCESSING:
            if key in run_data:
                node[key] = run_data[key]
        if "classes" in state:
            node.classes = list(state["classes"])
            node.num_classes = len(state["classes"])
    return typed(DataConfig, node, "data")


def val_only_folder(data: DataConfig) -> DataConfig:
    """An ImageFolder that holds only a validation split is indexed from that split alone (the index reads
    the class folders of both; evaluation never uses the training images). A root that is the val/ folder itself
    is then refused naming its parent, not for lacking train/."""
    root = Path(data.root)
    holds_val = (root / data.val_split).is_dir() or root.name == data.val_split
    if data.format == "imagefolder" and holds_val and not (root / data.train_split).exists():
        return dataclasses.replace(data, train_split=data.val_split)
    return data


def evaluate_checkpoint(cfg: DictConfig, out_dir: Path) -> dict:
    """evaluate.yaml's `cfg` evaluated into `out_dir`; returns its metrics.json content. What the command line and
    vision_exp.evaluate() both run, so that they write the same files."""
    import torch

    from vision_exp.builder import load_trained_model
    from vision_exp.data.loaders import build_val_loader, index_dataset
    from vision_exp.reporting.evaluation import write_evaluation
    from vision_exp.training.evaluation import evaluate
    from vision_exp.training.runtime import amp_dtype, select_device

    model, run_cfg, state = load_trained_model(Path(cfg.ckpt))
    data = val_only_folder(evaluation_data(run_cfg.data, cfg.get("data"), state))
    device = select_device(cfg.device, key="device")
    index = index_dataset(data)
    val_loader = build_val_loader(index, data, device)
    model.to(device)
    try:
        result = evaluate(model, val_loader.epoch(0), device, amp_dtype(cfg.amp, device, key="amp"), len(index.classes))
    except torch.cuda.OutOfMemoryError:
        size = data.eval_batch
        smaller = f"data.eval_batch_size={size // 2} (the same metrics from smaller batches), " if size > 1 else ""
        raise OutOfMemory(f"{device} ran out of memory evaluating with data.eval_batch_size={size}: run again with "
                          f"{smaller}amp=bf16 or fp16 if it is off") from None
    meta = {"checkpoint": str(cfg.ckpt), "data": data.name, "root": data.root}
    summary = write_evaluation(out_dir, result, index.class_names, meta)
    top5 = "n/a (5 classes or fewer)" if result["acc5"] is None else f"{result['acc5']:.2f}%"
    log.info("%s on %s val (%d images): top-1 %.2f%%, top-5 %s", cfg.ckpt, data.name, result["count"], result["acc"], top5)
    for name, acc in summary["per_class"].items():
        log.info("  %-24s %s", name, "n/a" if acc is None else f"{acc:6.2f}%")
    log.info("written to %s", out_dir)
    return summary


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
def hydra_main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    with user_errors(log, CheckOutputFolder.folders_made_for(out_dir)):
        evaluate_checkpoint(cfg, out_dir)


main = command(hydra_main, "evaluate")

if __name__ == "__main__":
    main()
else:  # `vision_exp.evaluate(...)` in a notebook
    make_module_callable(__name__, "evaluate")
