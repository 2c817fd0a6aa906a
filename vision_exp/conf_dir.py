"""Where the configs are: conf/ beside the package in a clone (and an editable install), vision_exp/conf
inside an installed wheel (pyproject.toml maps it there)."""
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
CONF_DIR = next((folder for folder in (_PACKAGE / "conf", _PACKAGE.parent / "conf") if folder.is_dir()), _PACKAGE.parent / "conf")


def apply_debug_last(cfg, choice, overrides) -> None:
    """debug=<choice>'s values over the composed config, but for those the command line sets itself (`overrides`,
    Hydra's task overrides). The defaults list applies the debug group after the experiment group, but a preset
    sweep appends its presets (`+experiment@_global_=...`) after the whole list, and their budgets would override
    the seconds debug=fast asks for."""
    if not choice:
        return
    from omegaconf import OmegaConf

    given = {override.split("=", 1)[0].lstrip("+~") for override in overrides}
    debug = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "debug" / f"{choice}.yaml"))
    for section, values in debug.items():
        for key, value in values.items():
            if f"{section}.{key}" not in given:
                OmegaConf.update(cfg, f"{section}.{key}", value)
