"""From a config section or a trained run's checkpoint to the object it describes.

Apart from `experiment.py`, which assembles a whole training run, `evaluate` and `predict` need a trained
model and nothing of training: they import this module, not the trainer.
"""
from __future__ import annotations

from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from vision_exp.config_types import check_arguments, plain
from vision_exp.errors import CheckpointError, ConfigError
from vision_exp.reporting.records import CONFIG_FILE
from vision_exp.training.checkpoint import load_checkpoint, load_model_weights


def build(target: DictConfig, section: str):
    """hydra.utils.instantiate with the user's mistake (an unknown key, a string for a number, a bad model
    size) as one message."""
    check_arguments(get_object(target._target_), {k: v for k, v in plain(target).items() if not k.startswith("_")},
                    section)
    try:
        return instantiate(target)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        raise ConfigError(f"{section}: {cause}") from None


def run_dir_of(checkpoint: Path) -> Path:
    """A run folder holds config.yaml and checkpoints/<name>.pt."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def load_trained_model(checkpoint: Path):
    """(model with the checkpoint's weights, the run's config, the checkpoint's contents)."""
    checkpoint = Path(checkpoint)
    state = load_checkpoint(checkpoint)
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{checkpoint} is not a checkpoint of a vision-exp run (it holds no 'model' entry): "
                              f"use a run's checkpoints/best.pt or checkpoints/last.pt")
    config_path = run_dir_of(checkpoint) / CONFIG_FILE
    if config_path.is_file():  # the run folder's, as the run wrote it
        source, config_text = f"its run's {config_path}", config_path.read_text()
    elif isinstance(state.get("config"), str):  # a checkpoint shared without its run folder
        source, config_text = "its own copy of the run's config", state["config"]
    else:
        raise CheckpointError(f"no config.yaml for {checkpoint}: expected the run folder's {config_path} (a "
                              f"checkpoint written by an older version carries no config of its own)")
    try:
        run_cfg = OmegaConf.create(config_text)
        # An initialisation the weights replace: BasicBlockv3 refuses zero_init_residual for training only, and
        # on the meta device none is drawn (mimetic init's SVDs) nor any memory taken before the weights arrive.
        with torch.device("meta"):
            model = build(OmegaConf.merge(run_cfg.model, {"zero_init_residual": False})
                          if run_cfg.model.get("zero_init_residual") else run_cfg.model, "model")
    except Exception as exc:  # unreadable YAML, no model section, a class since renamed: the run's, not the command's
        raise CheckpointError(f"the model of {checkpoint} cannot be built from {source}: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    load_model_weights(model, evaluated_weights(state), str(checkpoint), assign=True)
    return model, run_cfg, state


def evaluated_weights(state: dict) -> dict:
    """The weights the run evaluated: with EMA on, last.pt's averaged copy (best.pt holds only those already)."""
    if state.get("ema"):
        return {key.removeprefix("module."): value for key, value in state["ema"].items()}
    return state["model"]
