"""Notebook API: `vision_exp.run([...overrides])` and `vision_exp.sweep([[...], [...]])`.

`@hydra.main` cannot run inside a notebook, so these compose the same conf/train.yaml with
Hydra's compose API and call the same `run_experiment` as the command line: a run here and
`python -m vision_exp.train <overrides>` produce the same files.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Iterable, Optional

from omegaconf import OmegaConf, open_dict

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose_config(overrides: Iterable[str] = (), with_hydra: bool = False):
    """The config `python -m vision_exp.train <overrides>` would run (with the `hydra` node if asked)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name="train"):
        return compose(config_name="train", overrides=list(overrides), return_hydra_config=with_hydra)


def _show_logs() -> None:
    """Outside Hydra nobody configures logging: print vision_exp's INFO lines in the notebook."""
    logger = logging.getLogger("vision_exp")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def run(overrides: Iterable[str] = (), run_dir: Optional[str] = None) -> dict:
    """Train one run; returns the content of its metrics.json (with `run_dir` added).

    The run folder is the one the command line would use (hydra.run.dir, by default
    outputs/<name>/<date>_<time>), unless `run_dir` is given.
    """
    from vision_exp.experiment import run_experiment

    overrides = list(overrides)
    cfg = compose_config(overrides, with_hydra=True)
    folder = Path(run_dir or cfg.hydra.run.dir)
    with open_dict(cfg):
        del cfg["hydra"]
    _show_logs()
    result = run_experiment(cfg, folder, overrides)
    return {**result, "run_dir": str(folder)}
