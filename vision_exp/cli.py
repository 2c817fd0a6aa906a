"""Shared behaviour of the command-line entry points: one clear message for bad input."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

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


class CheckOutputFolder(Callback):
    """Refuse an output folder that cannot be written, in one line, before Hydra creates it (Hydra
    itself would stop with a traceback)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(Path(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(Path(config.hydra.sweep.dir))

    @staticmethod
    def _check(folder: Path) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".write-test-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            print(f"error: cannot write to the output folder {folder}: {exc.strerror or exc} "
                  f"(set VISION_EXP_OUTPUT or hydra.run.dir / hydra.sweep.dir)", file=sys.stderr)
            sys.exit(2)
