"""Where the configs are: conf/ beside the package in a clone (and an editable install), vision_exp/conf
inside an installed wheel (pyproject.toml maps it there)."""
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
CONF_DIR = next((folder for folder in (_PACKAGE / "conf", _PACKAGE.parent / "conf") if folder.is_dir()), _PACKAGE.parent / "conf")


def apply_debug_last(cfg, choice) -> None:
    """debug=<choice>'s values over the composed config. The defaults list applies the debug group after the
    experiment group, but a preset sweep appends its presets (`+experiment@_global_=...`) after the whole list,
    and their budgets would override the seconds debug=fast asks for."""
    if choice:
        from omegaconf import OmegaConf

        cfg.merge_with(OmegaConf.load(CONF_DIR / "debug" / f"{choice}.yaml"))
