"""Where the configs are: conf/ beside the package in a clone (and an editable install), vision_exp/conf
inside an installed wheel (pyproject.toml maps it there)."""
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
CONF_DIR = next((folder for folder in (_PACKAGE / "conf", _PACKAGE.parent / "conf") if folder.is_dir()), _PACKAGE.parent / "conf")
