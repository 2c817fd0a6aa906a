"""Shared behaviour of the command-line entry points: one clear message for bad input."""
from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from vision_exp.errors import UserError


@contextlib.contextmanager
def user_errors(log: logging.Logger):
    """A UserError ends the program with its message and exit status 2 (traceback with hydra.verbose=true)."""
    try:
        yield
    except UserError as exc:
        log.error("%s", exc)
        if HydraConfig.initialized() and HydraConfig.get().verbose:
            raise
        sys.exit(2)


# ${vx.beside:<checkpoint>,<what>}: an output folder next to a checkpoint, e.g. best-eval-imagenette/.
OmegaConf.register_new_resolver("vx.beside", lambda ckpt, name: str(Path(ckpt).parent / f"{Path(ckpt).stem}-{name}"),
                                replace=True)
