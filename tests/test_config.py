"""Every config group option composes, and the composed config builds its objects."""

import math
from typing import Optional, Union

import pytest
import torch
from hydra.utils import instantiate

from conftest import CONF_DIR, compose
from vision_exp.experiment import check_buildable

GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in ("hydra",))


def options(group):
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def all_choices():
    for group in GROUPS:
        for option in options(group):
            yield group, option


def test_default_config_builds_the_model_from_the_data_config():
    cfg = compose()
    assert cfg.data.name == "imagenette" and cfg.model._target_.endswith("ResNet")
    assert cfg.data.root.endswith("imagenette2-160")
    model = instantiate(cfg.model)
    assert model(torch.zeros(2, 3, cfg.data.img_size, cfg.data.img_size)).shape == (2, cfg.data.num_classes)


def test_model_follows_data_num_classes_and_img_size():
    cfg = compose(["model=vit_v1", "data.num_classes=7", "data.img_size=32"])
    model = instantiate(cfg.model)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 7)


def test_data_root_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VISION_EXP_DATA", str(tmp_path))
    assert compose().data.root == f"{tmp_path}/imagenette2-160"
    monkeypatch.delenv("VISION_EXP_DATA")
    assert compose().data.root == "./data/imagenette2-160"


@pytest.mark.parametrize("group, option", list(all_choices()))
def test_every_option_composes(group, option, tmp_path):
    overrides = [f"{group}={option}"]
    if group == "data" and option == "folder":
        overrides.append(f"data.root={tmp_path}")
    cfg = compose(overrides)
    if group == "model":
        cfg.data.num_classes = 10
        model = instantiate(cfg.model)
        assert model(torch.zeros(2, 3, cfg.data.img_size, cfg.data.img_size)).shape == (2, 10)
    if group in ("optimizer", "scheduler"):
        model = torch.nn.Linear(4, 2)
        optimizer = instantiate(compose(overrides).optimizer)(model)
        scheduler = instantiate(cfg.scheduler)(optimizer, total_steps=100, steps_per_epoch=10)
        for step in range(1, 101):
            scheduler.step_update(num_updates=step)
        assert optimizer.param_groups[0]["lr"] >= 0


@pytest.mark.parametrize("overrides", [[f"experiment={p}"] for p in options("experiment")]
                         + [[f"{g}={o}"] for g, o in all_choices() if g not in ("experiment", "enhancement")]
                         + [["model=vit_v1", f"enhancement={o}"] for o in options("enhancement")],
                         ids=lambda overrides: " ".join(overrides))
def test_every_shipped_value_has_the_type_its_setting_declares(overrides, tmp_path):
    """The type checks that turn `data.batch_size=abc` into one message must pass every value the project ships
    (a distilled preset given the teacher file it leaves to the command line)."""
    extra = [f"data.root={tmp_path}"] if "data=folder" in overrides else []
    if any(o.endswith("_distilled") for o in overrides):
        (tmp_path / "best.pt").touch()
        extra.append(f"loss.distillation.teacher={tmp_path / 'best.pt'}")
    check_buildable(compose(overrides + extra))


def test_the_check_before_a_run_builds_no_weights(monkeypatch):
    """A sweep checks every job's model before the first trains: on the meta device, so checking a ViT-L with
    mimetic init allocates no weights and draws no random numbers (a run's weights are its seed's alone)."""
    import vision_exp.experiment as experiment

    built = []
    experiment_build = experiment.build

    def recording_build(target, section):
        built.append(experiment_build(target, section))
        return built[-1]

    monkeypatch.setattr(experiment, "build", recording_build)
    rng_before = torch.random.get_rng_state()
    check_buildable(compose(["experiment=cpu_vit", "enhancement=mimetic_init", "model.embed_dim=1024",
                             "model.depth=24", "model.num_heads=16", "model.drop_path=0.1"]))
    model = next(obj for obj in built if isinstance(obj, torch.nn.Module))
    assert sum(p.numel() for p in model.parameters()) > 250_000_000
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert torch.equal(torch.random.get_rng_state(), rng_before)


def test_the_trainer_settings_default_in_python_as_in_their_yaml():
    """A notebook that builds TrainerConfig() itself trains as `python -m vision_exp.train` would: every field's
    default is conf/trainer/default.yaml's value, and the yaml sets no key the dataclass lacks."""
    import dataclasses

    from omegaconf import OmegaConf

    from vision_exp.training.config import TrainerConfig

    shipped = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "trainer" / "default.yaml"))
    defaults = {field.name: field.default for field in dataclasses.fields(TrainerConfig)}
    assert defaults == shipped


@pytest.mark.parametrize("value, expected, fits", [
    (3, int, True), (True, int, False), (3, float, True), ("3", float, False), (None, Optional[int], True),
    ("auto", Union[bool, str], True), (0.5, Union[bool, str], False), ([1, 2], tuple, True), ("ab", list, False),
    ([1, 2], tuple[int, ...], True), ([1, 2.5], tuple[int, ...], False), ([1, "a"], tuple[int, str], True),
    ([1, 2], tuple[int, str], False), ([0.5], list[float], True),
    (True, float, False), ([1, "a", "b"], tuple[int, str], False), ([1], tuple[int, str], False),
    (float("nan"), float, False), (float("-inf"), Optional[float], False), ([1.0, float("inf")], list[float], False),
])
def test_type_checks_of_config_values(value, expected, fits):
    from vision_exp.config_types import conforms, describe

    assert conforms(value, expected) is fits
    assert describe(Optional[int]) == "an integer or null" and describe(float) == "a finite number"


def test_unknown_option_is_refused_by_hydra():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        compose(["trainer.no_such_option=1"])


@pytest.mark.parametrize("preset", options("experiment"))
def test_debug_fast_makes_any_preset_one_short_epoch(preset):
    """Presets fix a budget in samples; debug=fast must clear it, not run it on a 16-image-per-class subset."""
    cfg = compose([f"experiment={preset}", "debug=fast"])
    assert cfg.trainer.train_samples is None and cfg.trainer.epochs == 1
    assert cfg.data.max_train_per_class == 16 and cfg.data.max_val_per_class == 8


@pytest.mark.parametrize("optimizer", options("optimizer"))
def test_each_optimizer_scales_its_lr_with_the_batch_by_the_rule_for_its_kind(optimizer):
    """SGD's lr scales linearly with the batch (Goyal et al. 2017), an Adam-style optimizer's by the square root
    (Malladi et al. 2022): inheriting sgd's linear rule, Adam scaled to a smaller batch stepped too little."""
    cfg = compose([f"optimizer={optimizer}"])
    assert cfg.optimizer.lr_scale_rule == ("sqrt" if cfg.optimizer.name in ("adam", "adamw", "lamb") else "linear")


def test_debug_fast_scales_an_adamw_preset_lr_by_the_square_root_of_the_batch_ratio():
    """debug=fast trains a preset at its own small batch: AdamW's lr follows it by the square root rule."""
    from vision_exp.api import _compose_run
    from vision_exp.builder import build

    preset = _compose_run(["experiment=e2_vit", "optimizer=adamw"])
    debug = _compose_run(["experiment=e2_vit", "optimizer=adamw", "debug=fast"])
    trained_lr = build(debug.optimizer, "optimizer")(torch.nn.Linear(2, 2)).param_groups[0]["lr"]
    assert debug.data.batch_size < preset.data.batch_size == debug.optimizer.lr_base_batch_size
    assert trained_lr == pytest.approx(preset.optimizer.lr * math.sqrt(debug.data.batch_size / preset.data.batch_size))


def test_a_wheel_carries_every_package_and_the_configs(tmp_path):
    """`pip install .` (not -e) must run too: conf/ travels inside the package, and every subpackage is listed."""
    import os
    import subprocess
    import sys
    import zipfile

    from conftest import REPO

    import shutil

    # From a copy of the project's files: an in-tree build/ left by an earlier build would mask a missing package.
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.splitlines()
    source = tmp_path / "source"
    for name in listed:
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True)
    wheel = zipfile.ZipFile(next((tmp_path / "dist").glob("*.whl")))
    packed = set(wheel.namelist())
    configs = {f"vision_exp/conf/{p.relative_to(CONF_DIR).as_posix()}" for p in CONF_DIR.rglob("*") if p.is_file()}
    assert any(name.endswith("classes/imagenet100.txt") for name in configs)
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "vision_exp").rglob("*.py")}
    assert configs <= packed and modules <= packed
    wheel.extractall(tmp_path / "site")
    installed = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    where = subprocess.run([sys.executable, "-c", "from vision_exp.conf_dir import CONF_DIR; print(CONF_DIR); from "
                            "vision_exp.data.config import find_class_list as f; print(f('conf/data/classes/imagenet100.txt'))"],
                           cwd=tmp_path, env=installed, capture_output=True, text=True)
    packaged = tmp_path / "site" / "vision_exp" / "conf"
    assert where.stdout.split() == [str(packaged), str(packaged / "data" / "classes" / "imagenet100.txt")], where.stderr
    shown = subprocess.run([sys.executable, "-m", "vision_exp.train", "--cfg", "job", "experiment=cpu_vit"], cwd=tmp_path,
                           env=installed, capture_output=True, text=True)
    assert shown.returncode == 0 and "embed_dim: 128" in shown.stdout, shown.stderr


def test_the_commands_train_help_shows_compose_and_pass_the_checks():
    """`vx-train --help` opens with example commands: each must still compose and pass the type checks."""
    import re

    from omegaconf import OmegaConf

    header = OmegaConf.load(CONF_DIR / "hydra" / "default.yaml").help.header
    commands = [re.split(r"\s{2,}", line.strip())[0].split() for line in header.splitlines()
                if line.startswith("  vx-train")]  # the indented example lines
    assert len(commands) >= 4
    for words in commands:
        overrides = [word for word in words[1:] if "=" in word]
        assert len(overrides) == len([word for word in words[1:] if word not in ("-m", "--cfg", "job")]), words
        check_buildable(compose(overrides))


def test_the_limits_of_seed_and_grad_accum_steps_are_inclusive():
    """The largest seed torch accepts is a valid seed, and a batch may be split into as many parts as it has
    images (one each): the checks refuse only what lies beyond."""
    from vision_exp.errors import ConfigError
    from vision_exp.settings import LARGEST_SEED, run_settings

    settings = run_settings(compose(["data.batch_size=8", "trainer.grad_accum_steps=8", f"seed={LARGEST_SEED}"]))
    assert settings.trainer.grad_accum_steps == settings.data.batch_size == 8
    with pytest.raises(ConfigError, match="at most 8"):
        run_settings(compose(["data.batch_size=8", "trainer.grad_accum_steps=9"]))
    with pytest.raises(ConfigError, match="must be a whole number from 0 to"):
        run_settings(compose([f"seed={LARGEST_SEED + 1}"]))
