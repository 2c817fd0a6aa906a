"""`trainer`: how long a run trains and how the trainer runs it, checked without importing torch."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from vision_exp.errors import ConfigError

PROGRESS_MODES = ("auto", "bar", "log", "none")
AMP_MODES = ("auto", "bf16", "fp16", "off")


@dataclass
class TrainerConfig:
    epochs: Optional[float] = 15  # conf/trainer/default.yaml's
    train_samples: Optional[int] = None
    train_eval_samples: Optional[int] = None
    device: str = "auto"
    amp: str = "auto"
    channels_last: Union[bool, str] = "auto"
    compile: bool = False
    grad_clip: Optional[float] = None
    grad_accum_steps: int = 1
    ema_decay: Optional[float] = None
    ema_warmup: bool = True
    sync_bn: bool = False
    checkpoint_every_steps: Optional[int] = None
    save_interval_s: float = 60.0
    resume: Union[str, bool] = "never"  # never | auto | a checkpoint's path (a bool only to refuse `true` clearly)
    deterministic: bool = False
    cudnn_benchmark: bool = True
    progress: str = "auto"
    log_every_steps: Optional[int] = None
    eval_every_epochs: int = 1

    def __post_init__(self) -> None:
        if self.train_samples is not None and self.train_samples <= 0:
            raise ConfigError(f"trainer.train_samples={self.train_samples} must be positive")
        if self.train_samples is None and (self.epochs is None or self.epochs <= 0):
            raise ConfigError(f"trainer.epochs={self.epochs} must be positive (or set trainer.train_samples)")
        if self.train_eval_samples is not None and self.train_eval_samples < 1:
            raise ConfigError(f"trainer.train_eval_samples={self.train_eval_samples} must be at least 1")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"trainer.grad_clip={self.grad_clip} must be positive (or null)")
        if not isinstance(self.grad_accum_steps, int) or self.grad_accum_steps < 1:
            raise ConfigError(f"trainer.grad_accum_steps={self.grad_accum_steps} must be a whole number, at least 1")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ConfigError(f"trainer.ema_decay={self.ema_decay} must lie in (0, 1) (or null for no EMA)")
        if self.checkpoint_every_steps is not None and self.checkpoint_every_steps < 1:
            raise ConfigError(f"trainer.checkpoint_every_steps={self.checkpoint_every_steps} must be at least 1")
        if self.log_every_steps is not None and self.log_every_steps < 1:  # the trainer would log on negative multiples
            raise ConfigError(f"trainer.log_every_steps={self.log_every_steps} must be at least 1 "
                              f"(or null: 4 lines an epoch)")
        if not isinstance(self.eval_every_epochs, int) or self.eval_every_epochs < 1:
            raise ConfigError(f"trainer.eval_every_epochs={self.eval_every_epochs} must be a whole number, at least 1 "
                              f"(the last epoch is always evaluated)")
        if self.save_interval_s is None or self.save_interval_s < 0:
            raise ConfigError(f"trainer.save_interval_s={self.save_interval_s} must be 0 (every epoch) or more seconds")
        if isinstance(self.resume, bool):
            raise ConfigError(f"trainer.resume={str(self.resume).lower()}: use auto (this folder's last checkpoint), "
                              f"never, or the path of a checkpoint")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"trainer.amp={self.amp!r}: choose one of {', '.join(AMP_MODES)}")
        if self.progress not in PROGRESS_MODES:
            raise ConfigError(f"trainer.progress={self.progress!r}: choose one of {', '.join(PROGRESS_MODES)}")
        if self.channels_last not in (True, False, "auto"):
            raise ConfigError(f"trainer.channels_last={self.channels_last!r}: use true, false or auto")
