"""Where the configs are: conf/ beside the package in a clone (and an editable install), vision_exp/conf
inside an installed wheel (pyproject.toml maps it there); and what an override or a composition names."""
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
CONF_DIR = next((folder for folder in (_PACKAGE / "conf", _PACKAGE.parent / "conf") if folder.is_dir()), _PACKAGE.parent / "conf")


def overridden_key(override: str) -> str:
    """The setting an override sets, adds (+, ++) or deletes (~): `+data.batch_size=8` -> data.batch_size."""
    return override.split("=", 1)[0].lstrip("+~")


def group_choices(choices) -> dict:
    """The option of each config group a run was composed of (model=vit_v2, enhancement=mixup_cutmix), for the
    HParams table, where a preset's values alone would not say which enhancement a row is; Hydra's own groups and
    where it ran (env, paths) are left out. A preset sweep's job (`+experiment@_global_=e2_vit`) ran that experiment."""
    picked = {}
    for group, option in sorted(choices.items(), key=lambda item: "@" in item[0]):  # the job's experiment last
        name = group.split("@")[0]
        if name not in ("hydra", "env", "paths") and not name.startswith("hydra/"):
            picked[name] = "none" if option is None else str(option)
    return picked
