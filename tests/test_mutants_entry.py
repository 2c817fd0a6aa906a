"""Entry points and config validation, checked where mutation testing found behaviour no other test pinned down.

Mutants of vision_exp/settings.py, config_types.py, builder.py, cli.py, conf_dir.py, debug.py, train.py, evaluate.py,
predict.py, api.py, experiment.py, summarize.py and report.py (a flipped comparison, a dropped check, another
key or message) that the suite let pass: each test here names the behaviour that would break. They call the
functions directly or compose configs, so they run in seconds, without training.
"""
from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path
from typing import Any, Optional, Union

import pytest
from omegaconf import OmegaConf

from conftest import compose
from vision_exp.errors import CheckpointError, ConfigError, DataError


# --- settings.py: the torch-free sections of a run --------------------------------------------------------------

@pytest.mark.parametrize("seed", [True, -1, 1.0, "0", None])
def test_a_seed_that_is_no_whole_number_in_range_is_refused(seed):
    """torch.manual_seed takes whole numbers 0..2**63-1: a bool, a negative, a float or a string is one message."""
    from vision_exp.settings import LARGEST_SEED, check_seed

    with pytest.raises(ConfigError) as raised:
        check_seed(seed)
    assert str(raised.value) == f"seed={seed!r} must be a whole number from 0 to {LARGEST_SEED}"


def test_seed_zero_and_the_largest_seed_are_accepted():
    """Both ends of torch's seed range are valid seeds."""
    from vision_exp.settings import LARGEST_SEED, check_seed

    assert LARGEST_SEED == 2**63 - 1
    check_seed(0)
    check_seed(LARGEST_SEED)


def test_the_path_settings_are_the_keys_of_the_paths_config():
    """`+paths.output=...` is refused against exactly these names."""
    from vision_exp.settings import path_settings

    assert path_settings() == ("data_dir", "output_dir", "cache_dir")


@pytest.mark.parametrize("override, message", [
    ("+lr=0.1", "lr is not a setting (did you mean optimizer.lr?)"),
    ("+loss.smoothing=0.1", "loss.smoothing is not a setting (did you mean loss.label_smoothing?)"),
    ("+paths.output=/big", "paths.output is not a setting (did you mean paths.output_dir?)"),
    ("+sed=1", "sed is not a setting (did you mean seed?)"),
    ("+trainr.epochz=3", "trainr.epochz is not a setting (did you mean trainer.epochs?)"),  # both misspelt
    ("+trainr.nonsense=3", "trainr is not a setting (did you mean trainer?)"),
    ("+modle=vit_v1", "modle is not a setting (did you mean model?)"),
])
def test_a_key_the_run_does_not_read_is_refused_with_the_closest_setting(override, message):
    """A key added with + at the top level, in loss or in paths would be silently ignored by a run."""
    from vision_exp.settings import run_settings

    with pytest.raises(ConfigError) as raised:
        run_settings(compose([override]))
    assert str(raised.value) == message


def test_the_seed_is_checked_by_run_settings():
    """A run checks its seed with the other torch-free settings, before the slow imports."""
    from vision_exp.settings import run_settings

    with pytest.raises(ConfigError, match=r"^seed=-1 must be a whole number"):
        run_settings(compose(["seed=-1"]))


def test_validating_on_the_training_split_is_refused():
    """A val split that is the train split would report training accuracy as validation accuracy."""
    from vision_exp.settings import run_settings

    with pytest.raises(ConfigError, match=r"^data.val_split='train' is the training split"):
        run_settings(compose(["data.val_split=train"]))
    assert run_settings(compose(["data.val_split=test"])).data.val_split == "test"


@pytest.mark.parametrize("mix", ["augmentation.mixup_alpha=0.8", "augmentation.cutmix_alpha=1.0"])
def test_mixing_a_batch_of_one_image_is_refused(mix):
    """Mixup/CutMix need two images in a batch."""
    from vision_exp.settings import run_settings

    with pytest.raises(ConfigError, match="data.batch_size=1 has none to mix"):
        run_settings(compose(["data.batch_size=1", mix, "augmentation.mix_prob=1.0"]))


@pytest.mark.parametrize("overrides", [
    ["data.batch_size=1", "augmentation.mixup_alpha=0.8", "augmentation.mix_prob=0.0"],  # never mixes
    ["data.batch_size=1", "augmentation.mixup_alpha=0.0", "augmentation.cutmix_alpha=0.0"],
    ["data.batch_size=2", "augmentation.mixup_alpha=0.8", "augmentation.mix_prob=1.0"],
])
def test_a_batch_of_one_is_fine_when_nothing_is_mixed_and_two_images_mix(overrides):
    """The mixing check refuses only a batch of one that would actually be mixed."""
    from vision_exp.settings import run_settings

    settings = run_settings(compose([*overrides, "trainer.grad_accum_steps=1"]))
    assert settings.data.batch_size == int(overrides[0].split("=")[1])


def test_run_settings_types_each_section_from_its_own_node():
    """Each dataclass is built from its section: the distillation settings come from loss.distillation."""
    from vision_exp.settings import run_settings

    settings = run_settings(compose(["data.batch_size=12", "augmentation.mix_prob=0.25", "trainer.epochs=3",
                                     "loss.distillation.weight=0.25"]))
    assert settings.data.batch_size == 12 and settings.augmentation.mix_prob == 0.25
    assert settings.trainer.epochs == 3 and settings.distillation.weight == 0.25


@pytest.mark.parametrize("override, message", [
    ("data.batch_size=abc", "data.batch_size='abc' must be an integer"),
    ("augmentation.mix_prob=often", "augmentation.mix_prob='often' must be a finite number"),
    ("trainer.epochs=many", "trainer.epochs='many' must be a finite number or null"),
    ("loss.distillation.weight=half", "loss.distillation.weight='half' must be a finite number"),
])
def test_a_wrong_type_in_a_section_names_its_key_with_the_section_prefix(override, message):
    """A string where a number belongs names the full key (section.key) and the kind expected."""
    from vision_exp.settings import run_settings

    with pytest.raises(ConfigError) as raised:
        run_settings(compose([override]))
    assert str(raised.value) == message


# --- config_types.py: types, keys and fixed-length lists ------------------------------------------------------

@pytest.mark.parametrize("value, expected, fits", [
    (None, str, False), (None, type(None), True), ("x", type(None), False), (1, bool, False), (False, bool, True),
    ("x", str, True), (3, str, False), ({"a": 1}, dict, True), ([1], dict, False), ({"a": 1}, dict[str, int], True),
    ("ab", list[str], False), ((1, 2), list[int], True), ([], tuple[int, str], False), (2.5, int, False),
    (object(), Any, True), ([1, 2], list, True), ([True], list[int], False), (1, Optional[str], False),
])
def test_conforms_matches_each_kind_of_annotation(value, expected, fits):
    """Each annotation accepts its own kind of value only (a bool is no int, None no str)."""
    from vision_exp.config_types import conforms

    assert conforms(value, expected) is fits


@pytest.mark.parametrize("expected, text", [
    (bool, "true or false"), (int, "an integer"), (str, "a name"), (dict, "a mapping"), (list[int], "a list"),
    (tuple[float, float], "a list"), (type(None), "null"), (Union[list, tuple, None], "a list or null"),
    (Optional[str], "a name or null"), (Path, "Path"),
])
def test_describe_names_what_a_value_must_be(expected, text):
    """The message names the expected kind in words, each alternative once."""
    from vision_exp.config_types import describe

    assert describe(expected) == text


def test_check_types_names_the_section_key_value_and_kind_and_skips_unannotated_keys():
    """A key without an annotation is not checked; a wrong one is named in full."""
    from vision_exp.config_types import check_types

    check_types({"free": object(), "size": 3}, {"size": int}, "demo")
    with pytest.raises(ConfigError) as raised:
        check_types({"size": 3, "name": 4}, {"size": int, "name": Optional[str]}, "demo")
    assert str(raised.value) == "demo.name=4 must be a name or null"


def test_parameter_types_reads_dataclasses_classes_and_functions():
    """A class's checks come from its constructor's annotations."""
    from dataclasses import dataclass

    from vision_exp.config_types import parameter_types

    @dataclass
    class Settings:
        size: int = 1

    class Widget:
        def __init__(self, depth: int, name: str = "w") -> None:
            pass

    def factory(rate: float) -> None:
        pass

    assert parameter_types(Settings) == {"size": int}
    assert parameter_types(Widget) == {"depth": int, "name": str, "return": type(None)}
    assert parameter_types(factory) == {"rate": float, "return": type(None)}


def test_parameter_types_of_annotations_that_cannot_be_resolved_is_no_check():
    """An annotation that cannot be resolved skips the check rather than stopping the run."""
    from vision_exp.config_types import parameter_types

    def factory(rate: "NoSuchType") -> None:  # noqa: F821
        pass

    assert parameter_types(factory) == {}


@pytest.mark.parametrize("value, count, shown", [
    ([1, 2, 3], 2, "[1, 2, 3]"), ([1], 3, "[1]"), ("ab", 2, "'ab'"), ([1, True], 2, "[1, True]"),
    ([1, float("inf")], 2, "[1, inf]"), ([1, float("nan"), 2], 3, "[1, nan, 2]"), ([1, "a"], 2, "[1, 'a']"),
    ((1, None, 3), 3, "[1, None, 3]"),
])
def test_fixed_numbers_refuses_other_lengths_non_numbers_and_non_finite_values(value, count, shown):
    """A list of another length, a name, a bool or inf/nan is one message naming the key, as given."""
    from vision_exp.config_types import fixed_numbers

    with pytest.raises(ConfigError) as raised:
        fixed_numbers("demo.size", value, count, " above 0")
    assert str(raised.value) == f"demo.size={shown} must be {'two' if count == 2 else 'three'} numbers above 0"


def test_fixed_numbers_returns_floats_and_applies_its_rule():
    """Accepted lists become tuples of floats (a config node too); the rule is checked, inclusively."""
    from vision_exp.config_types import fixed_numbers

    result = fixed_numbers("demo.size", OmegaConf.create({"v": [1, 2]}).v, 2)
    assert result == (1.0, 2.0) and all(type(item) is float for item in result)
    assert fixed_numbers("demo.rgb", (0, 0.5, 1), 3) == (0.0, 0.5, 1.0)
    with pytest.raises(ConfigError, match=r"^demo.size=\[2, 1\] must be two numbers with low <= high$"):
        fixed_numbers("demo.size", [2, 1], 2, " with low <= high", lambda v: v[0] <= v[1])
    assert fixed_numbers("demo.size", [1, 1], 2, " with low <= high", lambda v: v[0] <= v[1]) == (1.0, 1.0)


def test_check_known_keys_names_the_section_the_owner_and_the_closest_key():
    """A misspelt key is named with its section, the class it configures and the closest setting."""
    from vision_exp.config_types import check_known_keys

    check_known_keys({"depth": 1}, ["depth", "width"], "model")
    with pytest.raises(ConfigError) as raised:
        check_known_keys({"depht": 1}, ["depth", "width"], "model", "ResNet")
    assert str(raised.value) == "model.depht is not a setting of ResNet (did you mean model.depth?)"
    with pytest.raises(ConfigError) as raised:
        check_known_keys({"zzz": 1}, ["depth", "width"], "model")
    assert str(raised.value) == "model.zzz is not a setting"


def test_a_top_level_key_that_belongs_to_a_section_is_pointed_there_only_at_the_top_level():
    """`+momentum=0.9` is pointed at optimizer.momentum, but only for the top level."""
    from vision_exp.config_types import check_known_keys

    values = {"optimizer": {"momentum": 0.9}, "momentum": 0.9}
    with pytest.raises(ConfigError) as raised:
        check_known_keys(values, ["optimizer"], "")
    assert str(raised.value) == "momentum is not a setting (did you mean optimizer.momentum?)"
    with pytest.raises(ConfigError) as raised:
        check_known_keys(values, ["optimizer"], "outer")
    assert str(raised.value) == "outer.momentum is not a setting"


def test_declared_settings_are_the_configs_own_keys_and_its_non_global_groups():
    """The top-level settings each command accepts: its own keys and its groups' packages, not Hydra's or global groups."""
    from vision_exp.config_types import declared_settings

    train = declared_settings("train")
    assert set(train) == {"name", "seed", "loss", "paths", "data", "model", "optimizer", "scheduler", "augmentation",
                          "trainer"}
    assert set(declared_settings("predict")) == {"ckpt", "images", "topk", "batch_size", "device", "paths"}
    assert set(declared_settings("evaluate")) == {"ckpt", "device", "amp", "data", "paths"}


def test_check_arguments_checks_keys_unless_the_target_takes_any_keyword():
    """A target taking **kwargs accepts any key, still type-checked; a class names itself."""
    from vision_exp.config_types import check_arguments

    class Widget:
        def __init__(self, depth: int) -> None:
            pass

    def anything(depth: int, **extra) -> None:
        pass

    check_arguments(anything, {"depth": 2, "colour": "red"}, "demo")
    with pytest.raises(ConfigError, match=r"^demo.depth='2' must be an integer$"):
        check_arguments(anything, {"depth": "2"}, "demo")
    with pytest.raises(ConfigError, match=r"^demo.colour is not a setting of Widget$"):
        check_arguments(Widget, {"colour": "red"}, "demo")
    with pytest.raises(ConfigError, match=r"^demo.self is not a setting of Widget$"):
        check_arguments(Widget, {"self": 1}, "demo")


def test_a_dataclass_is_not_named_as_the_owner_of_an_unknown_key():
    """A settings dataclass is the section itself: the message does not name its class."""
    from vision_exp.config_types import typed
    from vision_exp.recipe.config import DistillConfig

    with pytest.raises(ConfigError) as raised:
        typed(DistillConfig, OmegaConf.create({"wieght": 0.5}), "loss.distillation")
    assert str(raised.value) == "loss.distillation.wieght is not a setting (did you mean loss.distillation.weight?)"


def test_typed_resolves_interpolations_and_builds_the_dataclass():
    """typed() resolves ${...} before checking and building."""
    from vision_exp.config_types import typed
    from vision_exp.recipe.config import DistillConfig

    node = OmegaConf.create({"base": 0.25, "section": {"weight": "${base}", "kind": "soft", "teacher": "t.pt"}}).section
    settings = typed(DistillConfig, node, "loss.distillation")
    assert (settings.weight, settings.kind, settings.teacher) == (0.25, "soft", "t.pt")


# --- builder.py: from a config section or a checkpoint to the object ------------------------------------------

class Widget:
    """A target for `build`: a class whose own code refuses a value the type checks let through."""

    def __init__(self, depth: int, name: str = "w") -> None:
        if depth < 0:
            raise ValueError(f"depth={depth} cannot be negative")
        self.depth, self.name = depth, name


def widget_node(**values):
    return OmegaConf.create({"_target_": f"{__name__}.Widget", **values})


def test_build_instantiates_the_target_with_the_sections_values():
    """build() hands the section's values to its target."""
    from vision_exp.builder import build

    widget = build(widget_node(depth=3, name="x"), "thing")
    assert (type(widget).__name__, widget.depth, widget.name) == ("Widget", 3, "x")


@pytest.mark.parametrize("values, message", [
    ({"depht": 3}, "thing.depht is not a setting of Widget (did you mean thing.depth?)"),
    ({"depth": "3"}, "thing.depth='3' must be an integer"),
    ({"depth": -1}, "thing: depth=-1 cannot be negative"),
])
def test_build_refuses_a_section_the_target_cannot_take_in_one_message(values, message):
    """An unknown key, a wrong type or a value the target's own code refuses: one ConfigError naming the section."""
    from vision_exp.builder import build

    with pytest.raises(ConfigError) as raised:
        build(widget_node(**values), "thing")
    assert str(raised.value) == message


def test_build_leaves_hydras_own_keys_out_of_the_argument_check():
    """Hydra's underscore keys (_convert_) are not settings of the target."""
    from vision_exp.builder import build

    assert build(widget_node(depth=1, _convert_="all"), "thing").depth == 1


@pytest.mark.parametrize("relative, run", [("run/checkpoints/best.pt", "run"), ("run/best.pt", "run"),
                                           ("a/checkpoint/last.pt", "a/checkpoint")])
def test_the_run_folder_of_a_checkpoint(tmp_path, relative, run):
    """A run's config.yaml is found above checkpoints/, or beside a checkpoint kept elsewhere."""
    from vision_exp.builder import run_dir_of

    assert run_dir_of(tmp_path / relative) == tmp_path / run


def test_the_evaluated_weights_are_the_ema_copy_without_its_wrapper_prefix():
    """With EMA on, the averaged weights (their module. prefix removed) are the ones evaluated."""
    from vision_exp.builder import evaluated_weights

    assert evaluated_weights({"model": {"w": 1}, "ema": {"module.w": 2, "b": 3}}) == {"w": 2, "b": 3}
    assert evaluated_weights({"model": {"w": 1}, "ema": None}) == {"w": 1}
    assert evaluated_weights({"model": {"w": 1}}) == {"w": 1}


def tiny_model_checkpoint(path: Path, with_config=True, extra_model=(), recorded=(), **state):
    """A checkpoint of a small ResNet as a run writes it (weights, and the config as text unless told; `recorded`:
    overrides that only the recorded config has)."""
    import torch

    from vision_exp.builder import build

    cfg = compose(["model.widths=[8,8,16,16]", "data.num_classes=3", *extra_model])
    model = build(cfg.model, "model")
    content = {"model": model.state_dict(), **state}
    if with_config:
        content["config"] = OmegaConf.to_yaml(compose([*cfg_overrides(extra_model), *recorded]), resolve=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(content, path)
    return model


def cfg_overrides(extra_model):
    return ["model.widths=[8,8,16,16]", "data.num_classes=3", *extra_model]


def test_a_checkpoint_without_its_run_folder_builds_from_its_own_config(tmp_path):
    """A checkpoint shared alone still loads, from the config it carries."""
    import torch

    from vision_exp.builder import load_trained_model

    saved = tiny_model_checkpoint(tmp_path / "shared.pt")
    model, run_cfg, state = load_trained_model(tmp_path / "shared.pt")
    assert run_cfg.model.widths == [8, 8, 16, 16] and "model" in state
    assert all(torch.equal(a, b) for a, b in zip(saved.state_dict().values(), model.state_dict().values()))


def test_a_checkpoint_with_ema_loads_the_averaged_weights_it_evaluated(tmp_path):
    """With EMA on, the run's validation numbers come from the averaged copy: evaluate and predict must use it."""
    import torch

    from vision_exp.builder import build, load_trained_model

    weights = build(compose(cfg_overrides(())).model, "model").state_dict()
    averaged = {f"module.{key}": value + 1 if value.is_floating_point() else value for key, value in weights.items()}
    tiny_model_checkpoint(tmp_path / "last.pt", ema=averaged)
    model, _, _ = load_trained_model(tmp_path / "last.pt")
    loaded = model.state_dict()
    assert all(torch.equal(loaded[key], averaged[f"module.{key}"]) for key in weights)


def test_the_run_folders_config_comes_before_the_checkpoints_copy(tmp_path):
    """Beside its run folder, a checkpoint is read with the folder's config.yaml."""
    from vision_exp.builder import load_trained_model

    tiny_model_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt", extra_model=["name=from_checkpoint"])
    (tmp_path / "run" / "config.yaml").write_text(
        OmegaConf.to_yaml(compose(["model.widths=[8,8,16,16]", "data.num_classes=3", "name=from_folder"]), resolve=True))
    _, run_cfg, _ = load_trained_model(tmp_path / "run" / "checkpoints" / "best.pt")
    assert run_cfg.name == "from_folder"


def test_a_checkpoint_of_a_zero_initialised_run_still_loads(tmp_path):
    """zero_init_residual only initialises: the weights replace it, and a block refusing it for training must not
    stop the checkpoint from loading."""
    from vision_exp.builder import load_trained_model

    tiny_model_checkpoint(tmp_path / "run.pt", extra_model=["model=resnet_v3"], recorded=["model.zero_init_residual=true"])
    _, run_cfg, _ = load_trained_model(tmp_path / "run.pt")
    assert run_cfg.model.zero_init_residual is True


def test_checkpoints_that_cannot_be_used_are_one_checkpoint_error(tmp_path):
    """A file of another program, one without config, one whose config builds no model: one CheckpointError each."""
    import torch

    from vision_exp.builder import load_trained_model

    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"list.pt is not a checkpoint of a vision-exp run \(it holds no 'model'"):
        load_trained_model(tmp_path / "list.pt")
    torch.save({"weights": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="holds no 'model' entry"):
        load_trained_model(tmp_path / "other.pt")
    tiny_model_checkpoint(tmp_path / "old.pt", with_config=False)
    with pytest.raises(CheckpointError, match=r"^no config.yaml for .*old.pt: expected the run folder's"):
        load_trained_model(tmp_path / "old.pt")
    torch.save({"model": {}, "config": "name: x\n"}, tmp_path / "nomodel.pt")
    with pytest.raises(CheckpointError, match=r"^the model of .*nomodel.pt cannot be built from its own copy of the run's "
                                              r"config: "):
        load_trained_model(tmp_path / "nomodel.pt")


# --- cli.py: one line and an exit status for bad input ------------------------------------------------------

@pytest.mark.parametrize("argv", [[], ["-m"], ["--cfg", "job"], ["--info"], ["--run"], ["seed=1"]])
def test_one_hydra_command_at_a_time_passes(argv):
    """A single Hydra command (or none) is not refused."""
    from vision_exp.cli import check_hydra_arguments

    check_hydra_arguments(argv)


@pytest.mark.parametrize("argv, named", [
    (["--run", "--cfg", "job"], "--run and --cfg"), (["--cfg", "job", "--shell-completion"], "--cfg and --shell-completion"),
    (["-m", "--run", "--info"], "--run and -m and --info"),
])
def test_two_hydra_commands_are_named_in_hydras_order(argv, named):
    """Flags that ask Hydra for two things are named, in a fixed order."""
    from vision_exp.cli import check_hydra_arguments

    with pytest.raises(ConfigError, match=f"^{named} each choose what the command does"):
        check_hydra_arguments(argv)


def test_refused_in_one_line_prints_the_config_error_and_exits_2(capsys):
    """A ConfigError is one line on stderr and status 2; other errors are left to the command."""
    from vision_exp.cli import refused_in_one_line

    with pytest.raises(SystemExit) as stopped:
        with refused_in_one_line():
            raise ConfigError("bad value")
    assert stopped.value.code == 2 and capsys.readouterr().err == "error: bad value\n"
    with pytest.raises(DataError):  # only config errors: the others are the command's to report
        with refused_in_one_line():
            raise DataError("no images")


def test_the_command_stops_before_hydra_on_flags_that_ask_two_things_or_a_key_its_config_lacks(monkeypatch, capsys):
    """The console entry point checks the flags and the keys of its own config first, and runs Hydra only if
    they pass."""
    from vision_exp.cli import command

    called = []
    main = command(lambda: called.append(True), "evaluate")
    monkeypatch.setattr(sys, "argv", ["vx-evaluate", "device=cpu"])
    main()
    assert called == [True]
    for argv, message in [(["-m", "--cfg", "job"], "error: -m runs a sweep and --cfg prints one run's config"),
                          (["devise=cpu"], "error: devise is not a setting (did you mean device?)\n")]:
        monkeypatch.setattr(sys, "argv", ["vx-evaluate", *argv])
        with pytest.raises(SystemExit) as stopped:
            main()
        assert stopped.value.code == 2 and called == [True]
        assert capsys.readouterr().err.startswith(message)


def test_a_user_error_is_logged_exits_2_and_removes_the_folder_made_for_it(tmp_path, caplog):
    """A refused command logs why, exits 2 and removes the folders made for it."""
    from vision_exp.cli import user_errors

    made = tmp_path / "new" / "out"
    made.mkdir(parents=True)
    (made / "predict.log").write_text("")
    with pytest.raises(SystemExit) as stopped, caplog.at_level(logging.ERROR):
        with user_errors(logging.getLogger("vision_exp.test"), [made, made.parent]):
            raise DataError("no images in x")
    assert stopped.value.code == 2 and "no images in x" in caplog.text
    assert not (tmp_path / "new").exists()


def test_ctrl_c_is_one_line_exit_130_and_removes_the_folder_made_for_it(tmp_path, caplog, monkeypatch):
    """Ctrl-C is one line and status 130, a second Ctrl-C ignored, and the folder made for it removed."""
    import signal

    from vision_exp import cli

    ignored = []
    monkeypatch.setattr(cli, "ignore_further_ctrl_c", lambda: ignored.append(True))
    made = tmp_path / "out"
    made.mkdir()
    with pytest.raises(SystemExit) as stopped, caplog.at_level(logging.ERROR):
        with cli.user_errors(logging.getLogger("vision_exp.test"), [made]):
            raise KeyboardInterrupt
    assert stopped.value.code == 130 and "stopped by Ctrl-C" in caplog.text and ignored == [True]
    assert not made.exists()
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN


def test_other_errors_pass_through_user_errors_and_keep_the_folder(tmp_path):
    """A bug is not a refusal: it propagates and its folder stays."""
    from vision_exp.cli import user_errors

    made = tmp_path / "out"
    made.mkdir()
    with pytest.raises(RuntimeError):
        with user_errors(logging.getLogger("vision_exp.test"), [made]):
            raise RuntimeError("a bug")
    assert made.exists()


def test_a_folder_holding_only_logs_holds_no_result(tmp_path):
    """An earlier refused command's folder is reused; a result or a file of that name is never overwritten."""
    from vision_exp.cli import beside, holds_no_result

    (tmp_path / "best-eval").mkdir()
    assert holds_no_result(tmp_path / "best-eval")
    (tmp_path / "best-eval" / "evaluate.log").write_text("refused")
    assert holds_no_result(tmp_path / "best-eval")
    (tmp_path / "best-eval" / "metrics.json").write_text("{}")
    assert not holds_no_result(tmp_path / "best-eval")
    (tmp_path / "best-eval-2").write_text("a file, not a folder")
    assert beside(str(tmp_path / "best.pt"), "eval") == str(tmp_path / "best-eval-3")


def config_of(**values):
    return OmegaConf.create({"hydra": {"job": {"name": "predict", "config_name": "predict"},
                                       "runtime": {"choices": {"env": "local"}}}, **values})


def test_require_values_names_every_unset_value_and_the_command():
    """Unset mandatory values are named together, with the command that takes them."""
    from vision_exp.cli import RequireValues

    RequireValues().check(config_of(ckpt="a.pt", images="x", topk=5))
    with pytest.raises(ConfigError) as raised:
        RequireValues().check(config_of(ckpt="???", images="???", topk=5))
    assert str(raised.value) == "ckpt, images must be given, e.g. python -m vision_exp.predict ckpt=... images=..."


def test_known_settings_refuses_an_unknown_key_or_path_and_accepts_unset_mandatory_ones():
    """An unknown top-level or paths key is refused; an unset ??? value is no unknown key."""
    from vision_exp.cli import KnownSettings

    KnownSettings().check(config_of(ckpt="???", images="???", topk=5, paths={"data_dir": "d"}))
    with pytest.raises(ConfigError, match=r"^topkk is not a setting \(did you mean topk\?\)$"):
        KnownSettings().check(config_of(ckpt="a.pt", topkk=5))
    with pytest.raises(ConfigError, match=r"^paths.dataa_dir is not a setting \(did you mean paths.data_dir\?\)$"):
        KnownSettings().check(config_of(ckpt="a.pt", paths={"dataa_dir": "d"}))


def test_a_notebook_environment_given_to_predict_is_explained():
    """env=kaggle brings data settings predict does not have: the refusal says so, and only then."""
    from vision_exp.cli import KnownSettings

    cfg = config_of(ckpt="a.pt", data={"num_workers": 2})
    cfg.hydra.runtime.choices.env = "kaggle"
    with pytest.raises(ConfigError, match=r"^data is not a setting.* \(env=kaggle sets the data loader's workers"):
        KnownSettings().check(cfg)
    cfg.hydra.runtime.choices.env = "local"
    with pytest.raises(ConfigError) as raised:
        KnownSettings().check(cfg)
    assert "env=" not in str(raised.value)
    other = config_of(ckpt="a.pt", topkk=1)
    other.hydra.runtime.choices.env = "kaggle"
    with pytest.raises(ConfigError) as raised:  # a mistake of its own: the environment is not the reason
        KnownSettings().check(other)
    assert str(raised.value) == "topkk is not a setting (did you mean topk?)"


def test_require_checkpoint_refuses_a_missing_file_and_accepts_a_file(tmp_path):
    """ckpt must name an existing file before the folder named after it is made."""
    from vision_exp.cli import RequireCheckpoint

    with pytest.raises(ConfigError, match="checkpoint not found"):
        RequireCheckpoint().check(config_of(ckpt=str(tmp_path / "best.pt")))
    (tmp_path / "best.pt").write_bytes(b"")
    RequireCheckpoint().check(config_of(ckpt=str(tmp_path / "best.pt")))


def test_the_output_folder_check_records_the_folders_it_makes_and_names_the_settings(tmp_path):
    """The folders a launch creates are recorded once (for removal on refusal); an unwritable one names the settings that move it."""
    from vision_exp.cli import CheckOutputFolder

    folder = tmp_path / "a" / "b"
    CheckOutputFolder().check(OmegaConf.create({"hydra": {"run": {"dir": str(folder)}}}))
    assert folder.is_dir()
    assert CheckOutputFolder.folders_made_for(folder) == [folder, folder.parent]
    assert CheckOutputFolder.folders_made_for(folder) == []  # taken once
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"^cannot write to the output folder .* \(choose another with hydra.run.dir"):
        CheckOutputFolder().check(OmegaConf.create({"hydra": {"run": {"dir": str(tmp_path / "file" / "x")}}}))


def test_a_sweep_warns_that_it_ignores_hydra_run_dir_and_checks_its_own_folder(tmp_path, capsys):
    """A sweep given hydra.run.dir is warned; its own folder is checked and recorded, an unwritable one is status 2."""
    from vision_exp.cli import CheckOutputFolder

    def sweep_config(overrides, sweep_dir):
        return OmegaConf.create({"hydra": {"overrides": {"hydra": overrides}, "sweep": {"dir": str(sweep_dir)}}})

    CheckOutputFolder().on_multirun_start(sweep_config(["hydra.run.dir=/x"], tmp_path / "sweep"))
    assert capsys.readouterr().err.startswith("warning: hydra.run.dir names a single run's folder")
    assert CheckOutputFolder.folders_made_for(tmp_path / "sweep") == [tmp_path / "sweep"]
    CheckOutputFolder().on_multirun_start(sweep_config(["hydra.sweep.dir=/y"], tmp_path / "other"))
    assert capsys.readouterr().err == ""
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as stopped:
        CheckOutputFolder().on_multirun_start(sweep_config([], tmp_path / "file" / "x"))
    assert stopped.value.code == 2 and capsys.readouterr().err.startswith("error: cannot write to the output folder")


def test_a_refusal_callback_exits_2_with_its_message(capsys):
    """A Hydra callback's refusal is one line and status 2, not Hydra's traceback."""
    from vision_exp.cli import RequireValues

    with pytest.raises(SystemExit) as stopped:
        RequireValues().on_run_start(config_of(ckpt="???"))
    assert stopped.value.code == 2 and capsys.readouterr().err.startswith("error: ckpt must be given")


# --- conf_dir.py and debug.py: overrides, debug=fast and the groups a run was composed of -------------------

@pytest.mark.parametrize("override, key", [("+data.batch_size=8", "data.batch_size"), ("++seed=1", "seed"),
                                           ("~trainer.ema", "trainer.ema"), ("name=a=b", "name"),
                                           ("data.root=/x+y", "data.root")])
def test_the_setting_an_override_sets(override, key):
    """An override's setting, whether it sets, adds or deletes it, and whatever its value holds."""
    from vision_exp.conf_dir import overridden_key

    assert overridden_key(override) == key


def test_group_choices_leave_out_where_it_ran_and_take_the_jobs_experiment_last():
    """The HParams table names the groups a run chose, a preset sweep job by its own experiment."""
    from vision_exp.conf_dir import group_choices

    choices = {"experiment@_global_": "e2_vit", "experiment": "resnet_vs_vit", "model": "vit_v1", "enhancement": None,
               "hydra": "x", "hydra/launcher": "basic", "env": "local", "paths": "default", "debug": "fast"}
    assert group_choices(choices) == {"experiment": "e2_vit", "model": "vit_v1", "enhancement": "none", "debug": "fast"}


def test_no_debug_choice_leaves_the_config_as_it_is():
    """Without debug= the config is untouched."""
    from vision_exp.debug import apply_debug_last

    cfg = compose(["trainer.epochs=5"])
    before = OmegaConf.to_container(cfg)
    apply_debug_last(cfg, None, [])
    assert OmegaConf.to_container(cfg) == before


def test_debug_fast_keeps_what_the_command_line_sets_and_sets_the_rest():
    """debug=fast sets its values except those the command line gives."""
    from vision_exp.debug import apply_debug_last

    overrides = ["trainer.epochs=3", "+data.max_val_per_class=2"]
    cfg = compose(overrides)
    apply_debug_last(cfg, "fast", overrides)
    assert cfg.trainer.epochs == 3 and cfg.data.max_val_per_class == 2
    assert cfg.data.max_train_per_class == 16 and cfg.data.batch_size == 32 and cfg.trainer.progress == "log"


def test_debug_fast_scales_from_the_batch_the_command_trains_without_it():
    """debug=fast's scaling base is the preset's own batch, unless the command line sets a base (even null)."""
    from vision_exp.debug import apply_debug_last

    cfg = compose(["experiment=e2_resnet"])
    apply_debug_last(cfg, "fast", ["experiment=e2_resnet", "debug=fast"])
    assert cfg.optimizer.lr_base_batch_size == compose(["experiment=e2_resnet"]).data.batch_size != 32
    given = compose(["experiment=e2_resnet", "optimizer.lr_base_batch_size=64"])
    apply_debug_last(given, "fast", ["experiment=e2_resnet", "optimizer.lr_base_batch_size=64"])
    assert given.optimizer.lr_base_batch_size == 64
    unscaled = ["experiment=e2_resnet", "optimizer.lr_base_batch_size=null"]  # asked for: no scaling
    kept = compose(unscaled)
    apply_debug_last(kept, "fast", unscaled)
    assert kept.optimizer.lr_base_batch_size is None


# --- train.py: the last lines of a run ------------------------------------------------------------------------

def test_where_a_run_ended_names_its_numbers_and_folder(tmp_path):
    """The last line of a run: accuracies to two decimals, n/a where missing, and the folder."""
    from vision_exp.train import where_it_ended

    line = where_it_ended({"val_acc": 71.234, "best_val_acc": 72.5, "best_epoch": 3, "train_acc": None}, tmp_path)
    assert line == (f"done: val top-1 71.23% (best 72.50% at epoch 3), train top-1 in eval mode n/a; "
                    f"results in {tmp_path}")


def test_a_single_run_stopped_at_once_says_how_to_resume_or_start_again(tmp_path):
    """A run stopped before a checkpoint says to start again; with one, the command that resumes it."""
    from vision_exp.train import stopped_at_once

    run = tmp_path / "run"
    assert stopped_at_once(run, None) == (f"stopped at once, before the run saved a checkpoint: nothing to resume in "
                                          f"{run}; run the command again")
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"x")
    assert stopped_at_once(run, None) == (f"stopped at once; the last checkpoint in {run / 'checkpoints'} resumes: "
                                          f"run the same command with hydra.run.dir={run} trainer.resume=auto")
    assert stopped_at_once(run, tmp_path).endswith(f"resumes: run the same command with hydra.sweep.dir={tmp_path}")


def test_a_stopped_sweep_is_summarized_by_rank_0_only(tmp_path, monkeypatch):
    """Under torchrun only rank 0 writes a stopped sweep's summary."""
    from test_sweeps import write_job
    from vision_exp.train import summarize_stopped_sweep

    sweep = tmp_path / "multirun"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("{}")
    write_job(sweep, 0, ["seed=0"], 50.0)
    for rank in ("1", "2"):
        monkeypatch.setenv("RANK", rank)
        summarize_stopped_sweep(sweep)
        assert not (sweep / "results.md").exists()
    monkeypatch.setenv("RANK", "0")
    summarize_stopped_sweep(sweep)
    assert (sweep / "results.md").is_file()


def test_a_stopped_sweep_without_results_is_one_line_not_an_error(tmp_path, caplog):
    """Nothing to summarize is one line, not a second error after the stop."""
    from vision_exp.train import summarize_stopped_sweep

    with caplog.at_level(logging.INFO, logger="vision_exp.train"):
        summarize_stopped_sweep(tmp_path / "nothing")
    assert "no summary of the jobs so far" in caplog.text


# --- evaluate.py and predict.py: what is read and written ------------------------------------------------------

def test_a_folder_with_only_a_val_split_is_indexed_from_it(tmp_path):
    """Evaluating an ImageFolder that holds only val/ reads that split alone; other layouts are left as they are."""
    from vision_exp.data.config import DataConfig
    from vision_exp.evaluate import val_only_folder

    (tmp_path / "val").mkdir()
    data = DataConfig(root=str(tmp_path))
    assert val_only_folder(data).train_split == "val"
    (tmp_path / "train").mkdir()
    assert val_only_folder(data).train_split == "train"
    assert val_only_folder(DataConfig(root=str(tmp_path / "none"))).train_split == "train"
    (tmp_path / "train").rmdir()
    other_layout = DataConfig(root=str(tmp_path), format="tiny_imagenet")  # its splits are not class folders
    assert val_only_folder(other_layout).train_split == "train"


def test_evaluation_data_keeps_the_run_classes_and_preprocessing():
    """Another dataset is evaluated with the run's classes and preprocessing; ??? keeps the run's value."""
    from vision_exp.evaluate import evaluation_data

    run_data = compose(["data=folder", "data.root=/run", "data.img_size=48", "data.crop_pct=0.9"]).data
    chosen = OmegaConf.create({"root": "/other", "img_size": 96, "crop_pct": 0.5, "eval_batch_size": "???"})
    data = evaluation_data(run_data, chosen, {"classes": ["b", "a"]})
    assert (data.root, data.img_size, data.crop_pct) == ("/other", 48, 0.9)
    assert list(data.classes) == ["b", "a"] and data.num_classes == 2
    assert data.eval_batch_size == run_data.eval_batch_size


@pytest.mark.parametrize("key, value", [("topk", 0), ("topk", True), ("batch_size", "8"), ("batch_size", -1),
                                        ("topk", 2.0)])
def test_predict_refuses_a_count_that_is_no_positive_integer_before_reading_anything(tmp_path, key, value):
    """topk and batch_size must be positive integers, refused before the checkpoint is read."""
    from vision_exp.predict import predict

    with pytest.raises(ConfigError) as raised:
        predict(tmp_path / "missing.pt", tmp_path / "missing", **{key: value})
    assert str(raised.value) == f"{key}={value!r} must be a positive integer"


def test_the_images_to_predict_are_a_file_or_the_images_of_a_folder(tmp_path):
    """A folder's images, any case of extension, sorted, recursively; an empty or missing target is a DataError."""
    from vision_exp.predict import image_files

    (tmp_path / "b" / "c").mkdir(parents=True)
    for name in ("b/c/z.JPEG", "a.png", "b/y.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert image_files(tmp_path) == [tmp_path / "a.png", tmp_path / "b" / "c" / "z.JPEG", tmp_path / "b" / "y.jpg"]
    assert image_files(tmp_path / "notes.txt") == [tmp_path / "notes.txt"]
    (tmp_path / "b" / "c" / "z.JPEG").unlink()
    with pytest.raises(DataError, match=r"^no images \(.*\) in .*c$"):
        image_files(tmp_path / "b" / "c")
    with pytest.raises(DataError, match=r"^images=.*nowhere: no such file or folder$"):
        image_files(tmp_path / "nowhere")


def test_an_unreadable_image_is_skipped_with_a_warning(caplog):
    """One unreadable image costs only its own row."""
    from vision_exp.predict import readable

    def load(path):
        if path == "bad":
            raise OSError("truncated")
        return path.upper()

    with caplog.at_level(logging.WARNING, logger="vision_exp.predict"):
        assert readable(["a", "bad", "c"], load) == (["a", "c"], ["A", "C"])
    assert "skipped bad: truncated" in caplog.text


def test_predicting_more_classes_than_the_model_has_gives_each_class_once(tmp_path):
    """topk above the number of classes is capped at it: every class once, best first, summing to one."""
    from PIL import Image

    from vision_exp.predict import predict

    tiny_model_checkpoint(tmp_path / "best.pt")
    Image.new("RGB", (40, 30), (200, 20, 20)).save(tmp_path / "red.jpg")
    [(path, top)] = predict(tmp_path / "best.pt", tmp_path / "red.jpg", topk=5, device="cpu")
    assert path == str(tmp_path / "red.jpg") and sorted(name for name, _ in top) == ["0", "1", "2"]
    probabilities = [p for _, p in top]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) == pytest.approx(1, abs=1e-5)


def test_predictions_csv_has_a_column_per_rank_and_four_decimals(tmp_path, monkeypatch):
    """The command's values reach predict(); the CSV has image, top1.., p1.. with four decimals."""
    from vision_exp import predict as predict_module

    rows = [("x.jpg", [("cat", 0.912345), ("dog", 0.05)]), ("y.jpg", [("dog", 0.5), ("cat", 0.25)])]
    seen = {}

    def fake_predict(checkpoint, target, topk, batch_size, device):
        seen.update(checkpoint=checkpoint, target=target, topk=topk, batch_size=batch_size, device=device)
        return rows

    monkeypatch.setattr(predict_module, "predict", fake_predict)
    cfg = OmegaConf.create({"ckpt": "r/best.pt", "images": "imgs", "topk": 2, "batch_size": 7, "device": "cpu"})
    result = predict_module.predict_images(cfg, tmp_path)
    assert seen == {"checkpoint": Path("r/best.pt"), "target": Path("imgs"), "topk": 2, "batch_size": 7, "device": "cpu"}
    assert result[0] == {"image": "x.jpg", "top1": "cat", "top2": "dog", "p1": 0.912345, "p2": 0.05}
    written = list(csv.DictReader((tmp_path / predict_module.PREDICTIONS_FILE).open()))
    assert written == [{"image": "x.jpg", "top1": "cat", "top2": "dog", "p1": "0.9123", "p2": "0.0500"},
                       {"image": "y.jpg", "top1": "dog", "top2": "cat", "p1": "0.5000", "p2": "0.2500"}]


# --- api.py: the notebook calls' checks ------------------------------------------------------------------------

def test_a_sweep_of_no_runs_is_refused():
    """sweep([]) is refused, even with common overrides."""
    import vision_exp

    with pytest.raises(ConfigError, match=r"^sweep\(\) needs at least one run"):
        vision_exp.sweep([], common=["seed=0"])


def test_a_run_hydra_cannot_compose_is_named_by_its_own_overrides_without_the_search_path(tmp_path):
    """A run Hydra cannot compose is named by its own overrides, without Hydra's search path, before any folder is made."""
    import vision_exp

    with pytest.raises(ConfigError) as raised:
        vision_exp.sweep([["seed=0"], ["model=resnet_v9"]], common=["trainer.epochs=1"], sweep_dir=str(tmp_path / "s"))
    message = str(raised.value)
    assert message.startswith("run 1 (model=resnet_v9): ") and "resnet_v9" in message[25:]
    assert "Config search path" not in message and not (tmp_path / "s").exists()


def test_compose_run_applies_debug_fast_and_refuses_a_sweep_preset():
    """A notebook run with debug=fast scales the preset's lr to the debug batch, as the command line does."""
    from vision_exp.api import _compose_run

    cfg = _compose_run(["debug=fast", "trainer.epochs=2"])
    assert cfg.trainer.epochs == 2 and cfg.data.batch_size == 32 and "hydra" in cfg
    scaled = _compose_run(["experiment=e2_resnet", "debug=fast"])
    assert scaled.optimizer.lr_base_batch_size == compose(["experiment=e2_resnet"]).data.batch_size
    with pytest.raises(ConfigError, match=r"^resnet_vs_vit is a sweep preset \(.*python -m vision_exp.train -m "
                                          r"experiment=resnet_vs_vit$"):
        _compose_run(["experiment=resnet_vs_vit"])


def test_compose_config_gives_the_hydra_node_only_when_asked():
    """compose_config returns the run's config, with Hydra's node only on request."""
    from vision_exp.api import compose_config

    assert "hydra" not in compose_config(["seed=3"]) and compose_config(["seed=3"]).seed == 3
    assert compose_config(["seed=3"], with_hydra=True).hydra.job.name == "train"


@pytest.mark.parametrize("name, given, override", [("evaluate", {"ckpt": "x"}, "ckpt=y"),
                                                   ("predict", {"ckpt": "x", "images": "i"}, "+images=z")])
def test_an_argument_of_the_call_given_as_an_override_is_refused(name, given, override):
    """A value the call takes as an argument cannot also be an override."""
    from vision_exp.api import _compose_command

    key = override.lstrip("+").split("=")[0]
    with pytest.raises(ConfigError) as raised:
        _compose_command(name, given, ["topk=3", override] if name == "predict" else [override], None)
    assert str(raised.value) == f"{override}: {key} is {name}()'s argument, not an override"


def test_the_notebook_commands_run_the_command_lines_checks_in_its_order(tmp_path):
    """evaluate()/predict() refuse what the command line refuses: unknown keys first, then the checkpoint, then Hydra's errors without the search path."""
    from vision_exp.api import _compose_command

    with pytest.raises(ConfigError, match=r"^topkk is not a setting"):
        _compose_command("predict", {"ckpt": tmp_path / "none.pt", "images": tmp_path}, ["+topkk=1"], None)
    with pytest.raises(ConfigError, match="checkpoint not found"):
        _compose_command("predict", {"ckpt": tmp_path / "none.pt", "images": tmp_path}, [], None)
    with pytest.raises(ConfigError) as raised:
        _compose_command("evaluate", {"ckpt": tmp_path / "none.pt"}, ["data=no_such_data"], None)
    assert "no_such_data" in str(raised.value) and "Config search path" not in str(raised.value)


def test_out_dir_chooses_the_notebook_commands_folder(tmp_path):
    """out_dir replaces the default folder beside the checkpoint; the arguments are kept as strings."""
    from vision_exp.api import _compose_command

    (tmp_path / "best.pt").write_bytes(b"")
    cfg = _compose_command("predict", {"ckpt": tmp_path / "best.pt", "images": tmp_path}, [], tmp_path / "mine")
    assert cfg.hydra.run.dir == str(tmp_path / "mine") and cfg.ckpt == str(tmp_path / "best.pt")
    assert cfg.images == str(tmp_path)
    default = _compose_command("predict", {"ckpt": tmp_path / "best.pt", "images": tmp_path}, [], None)
    assert default.hydra.run.dir == str(tmp_path / "best-predictions")


def test_a_refused_notebook_command_removes_its_folder_and_logs_why(tmp_path):
    """A refused call removes the folder it made; in a folder that was there its own log says why."""
    import vision_exp

    (tmp_path / "best.pt").write_bytes(b"")
    with pytest.raises(DataError):
        vision_exp.predict(tmp_path / "best.pt", tmp_path / "no_images")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "predict.log").write_text("a log of an earlier command\n")
    with pytest.raises(DataError):
        vision_exp.predict(tmp_path / "best.pt", tmp_path / "no_images", out_dir=tmp_path / "kept")
    log = (tmp_path / "kept" / "predict.log").read_text()
    assert "images=" in log and "earlier command" not in log  # the log is this command's own


def test_the_log_file_takes_info_lines_only_while_the_block_runs(tmp_path):
    """The run's log file gets INFO lines during the block only, and the logger is restored after."""
    from vision_exp.api import _log_file

    logger = logging.getLogger("vision_exp")
    level, handlers = logger.level, list(logger.handlers)
    logger.setLevel(logging.WARNING)  # as a notebook may have it: the file still gets the INFO lines
    try:
        (tmp_path / "run.log").write_text("earlier\n")
        with _log_file(tmp_path / "run.log"):
            logging.getLogger("vision_exp.test").info("inside")
        logging.getLogger("vision_exp.test").warning("outside")
        text = (tmp_path / "run.log").read_text()
        assert text.startswith("earlier\n") and "[vision_exp.test][INFO] - inside" in text and "outside" not in text
        assert logger.level == logging.WARNING and logger.handlers == handlers
    finally:
        logger.setLevel(level)
    with _log_file(tmp_path / "new" / "run.log", mode="w"):
        logging.getLogger("vision_exp.test").info("again")
    with _log_file(tmp_path / "new" / "run.log", mode="w"):
        pass
    assert (tmp_path / "new" / "run.log").read_text() == ""


# --- experiment.py: checks before a run reads its data -------------------------------------------------------

def test_the_model_head_must_match_the_classes_unless_left_to_follow_them():
    """A model head of another size than the classes is refused; none given follows the data."""
    from vision_exp.experiment import check_model_outputs

    check_model_outputs(OmegaConf.create({"num_classes": 10}), 10)
    check_model_outputs(OmegaConf.create({"depth": 2}), 10)
    with pytest.raises(ConfigError) as raised:
        check_model_outputs(OmegaConf.create({"num_classes": 5}), 10)
    assert str(raised.value) == ("model.num_classes=5 but the data has 10 classes: leave model.num_classes out, it "
                                 "follows data.num_classes")


@pytest.mark.parametrize("held", ["metrics.jsonl", "checkpoints"])
def test_a_folder_holding_a_run_is_trained_over_only_when_resuming(tmp_path, held):
    """An earlier run's results are never trained over unless resuming."""
    from vision_exp.experiment import check_run_dir

    check_run_dir(tmp_path, "never")
    (tmp_path / "train.log").write_text("")
    check_run_dir(tmp_path, "never")
    (tmp_path / held).mkdir() if held == "checkpoints" else (tmp_path / held).write_text("")
    with pytest.raises(ConfigError, match=r"already holds a run: continue it with trainer.resume=auto"):
        check_run_dir(tmp_path, "never")
    check_run_dir(tmp_path, "auto")


def test_resuming_another_runs_checkpoint_needs_its_model_and_optimizer(tmp_path):
    """Resuming another folder's checkpoint needs its model and optimizer settings; the batch size is the trainer's to check."""
    from vision_exp.experiment import check_continued_run

    source = tmp_path / "source"
    (source / "checkpoints").mkdir(parents=True)
    (source / "config.yaml").write_text(OmegaConf.to_yaml(compose(["optimizer.lr=0.1", "seed=1"]), resolve=True))
    checkpoint = str(source / "checkpoints" / "last.pt")
    check_continued_run(tmp_path / "new", compose(["optimizer.lr=0.1", "seed=2", "data.batch_size=64"]), checkpoint)
    with pytest.raises(ConfigError, match=r"^cannot resume from .*last.pt: its run trained with other settings "
                                          r"\(optimizer.lr"):
        check_continued_run(tmp_path / "new", compose(["optimizer.lr=0.2"]), checkpoint)
    with pytest.raises(ConfigError, match=r"model.widths"):
        check_continued_run(tmp_path / "new", compose(["optimizer.lr=0.1", "model.widths=[8,8,8,8]"]), checkpoint)
    for resume in ("never", "auto"):
        check_continued_run(tmp_path / "new", compose(["optimizer.lr=0.2"]), resume)
    check_continued_run(source, compose(["optimizer.lr=0.2"]), checkpoint)  # its own folder: the resume check's
    check_continued_run(tmp_path / "new", compose(["optimizer.lr=0.2"]), str(tmp_path / "nowhere" / "last.pt"))


def test_more_than_three_differences_are_cut_with_a_count_of_the_rest(tmp_path):
    """The refusal stays one readable line: three differences, then how many more."""
    from vision_exp.experiment import check_continued_run

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "config.yaml").write_text(OmegaConf.to_yaml(compose([]), resolve=True))
    changed = compose(["optimizer.lr=0.3", "optimizer.momentum=0.5", "optimizer.weight_decay=0.1",
                       "model.stem_stride=1"])
    with pytest.raises(ConfigError) as raised:
        check_continued_run(tmp_path / "new", changed, str(tmp_path / "src" / "last.pt"))
    listed = str(raised.value).split("other settings (", 1)[1].split(")", 1)[0]
    assert listed.count("; ") == 3 and listed.endswith("; and 1 more")
    three = compose(["optimizer.lr=0.3", "optimizer.momentum=0.5", "optimizer.weight_decay=0.1"])
    with pytest.raises(ConfigError) as raised:
        check_continued_run(tmp_path / "new", three, str(tmp_path / "src" / "last.pt"))
    listed = str(raised.value).split("other settings (", 1)[1].split(")", 1)[0]
    assert listed.count("; ") == 2 and "more" not in listed


def test_a_distilled_run_needs_an_existing_teacher_file(tmp_path):
    """A distilled run names an existing teacher file; kind=none needs none."""
    from vision_exp.experiment import check_teacher
    from vision_exp.recipe.config import DistillConfig

    check_teacher(DistillConfig(kind="none", teacher=str(tmp_path / "missing.pt")))
    with pytest.raises(ConfigError, match=r"^loss.distillation.kind=soft needs a teacher"):
        check_teacher(DistillConfig(kind="soft"))
    with pytest.raises(CheckpointError, match=r"^loss.distillation.teacher: checkpoint not found"):
        check_teacher(DistillConfig(kind="hard", teacher=str(tmp_path / "missing.pt")))
    (tmp_path / "best.pt").write_bytes(b"")
    check_teacher(DistillConfig(kind="hard", teacher=str(tmp_path / "best.pt")))


def test_list_and_tuple_settings_compare_equal():
    """A YAML list and a dataclass's tuple of the same numbers are the same setting."""
    from vision_exp.experiment import comparable

    assert comparable((0.5, 0.5)) == comparable([0.5, 0.5]) == [0.5, 0.5]
    assert comparable(64) == 64 and comparable("x") == "x"


def test_only_ranks_after_0_draw_from_a_stream_of_their_own(monkeypatch):
    """Rank 0 keeps a single process's stream; other ranks reseed, differently per step."""
    from vision_exp import experiment

    seeded = []
    monkeypatch.setattr(experiment, "seed_everything", seeded.append)
    experiment.seed_rank(7, 0, 5)
    assert seeded == []
    experiment.seed_rank(7, 1, 5)
    experiment.seed_rank(7, 1, 6)
    assert len(seeded) == 2 and seeded[0] != seeded[1] and 7 not in seeded


# --- summarize.py and report.py: the sweep tools' arguments and exit statuses -----------------------------------

def small_sweep(tmp_path: Path) -> Path:
    from test_sweeps import write_job

    sweep = tmp_path / "multirun"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(json.dumps({"name": "demo", "hydra": {"overrides": {
        "hydra": ["hydra.mode=MULTIRUN"], "task": ["model=resnet_v1,resnet_v2", "seed=0,1"]}}}))
    write_job(sweep, 0, ["model=resnet_v1", "seed=0"], 60.0)
    write_job(sweep, 1, ["model=resnet_v1", "seed=1"], 62.0)
    write_job(sweep, 2, ["model=resnet_v2", "seed=0"], 65.0)
    return sweep


def test_a_one_job_sweep_is_counted_in_the_singular(tmp_path, capsys):
    """A long run launched with -m is a sweep of one job: "1 job", "1 configuration", not "1 jobs"."""
    from test_sweeps import sweep_of

    from vision_exp import summarize

    sweep = sweep_of(tmp_path, (["experiment=cpu_vit", "seed=1"], 63.5))
    assert summarize.main([str(sweep)]) == 0
    assert capsys.readouterr().out == (f"{sweep}: 1 job (1 completed), 1 configuration; wrote results.csv, "
                                       f"results.md and plots\n")
    assert "\n1 job: 1 completed, 0 not completed.\n" in (sweep / "results.md").read_text()


def test_vx_summarize_writes_the_results_and_says_what_it_summarized(tmp_path, capsys):
    """vx-summarize writes the results and one line counting jobs and configurations; val_acc by default."""
    from vision_exp import summarize

    sweep = small_sweep(tmp_path)
    assert summarize.main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert out == f"{sweep}: 3 jobs (3 completed), 2 configurations; wrote results.csv, results.md and plots\n"
    assert "| val_acc mean ± std |" in (sweep / "results.md").read_text()  # the default metric
    assert (sweep / "results.csv").is_file()


def test_vx_summarize_reads_its_baseline_and_metric_options(tmp_path):
    """--baseline, --metric and --output reach the summary."""
    from vision_exp import summarize

    sweep = small_sweep(tmp_path)
    assert summarize.main([str(sweep), "--baseline", "model=resnet_v2", "--metric", "train_acc",
                           "--output", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "results.md").read_text()
    assert "**model=resnet_v2** (baseline)" in text and "| train_acc mean ± std |" in text
    assert not (sweep / "results.md").exists()


def test_vx_summarize_refuses_bad_input_with_status_2(tmp_path, capsys):
    """A folder that is no sweep, or none given, is status 2."""
    from vision_exp import summarize

    assert summarize.main([str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    with pytest.raises(SystemExit) as stopped:
        summarize.main([])
    assert stopped.value.code == 2


def test_vx_summarize_on_a_folder_it_cannot_write_says_where_to_write(tmp_path, capsys, monkeypatch):
    """An unwritable results folder is one line with the advice that fits the command given."""
    from vision_exp import summarize

    sweep = small_sweep(tmp_path)

    def full_disk(summary):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(summarize, "write_results", full_disk)
    assert summarize.main([str(sweep)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write the results into {sweep}: No space left on device; vx-report {sweep}")
    assert summarize.main([str(sweep), "--output", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.rstrip().endswith("No space left on device; choose another --output")


def test_vx_report_prints_or_writes_the_report(tmp_path, capsys):
    """Without --output the report is printed; with it, written (its folder made) and named."""
    from vision_exp import report

    sweep = small_sweep(tmp_path)
    assert report.main([str(sweep)]) == 0
    printed = capsys.readouterr().out
    assert "model=resnet_v2" in printed
    target = tmp_path / "docs" / "report.md"
    assert report.main([str(sweep), "-o", str(target)]) == 0
    assert capsys.readouterr().out == f"wrote {target}\n"
    assert "model=resnet_v2" in target.read_text()


def test_vx_reports_image_links_are_relative_to_the_report_not_the_working_folder(tmp_path, monkeypatch):
    """A report written elsewhere (a write-up's folder) must show its plots from there."""
    import re

    from vision_exp import report

    sweep = small_sweep(tmp_path)
    (tmp_path / "deeper" / "cwd").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "deeper" / "cwd")
    target = tmp_path / "docs" / "report.md"
    assert report.main([str(sweep), "--output", str(target)]) == 0
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", target.read_text())
    assert len(links) == 2 and all((target.parent / link).is_file() for link in links), links


def test_vx_report_refuses_bad_input_and_an_unwritable_report_with_status_2(tmp_path, capsys):
    """A folder that is no sweep, or a report that cannot be written, is status 2 with one line."""
    from vision_exp import report

    assert report.main([str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    sweep = small_sweep(tmp_path)
    (tmp_path / "file").write_text("")
    assert report.main([str(sweep), "--output", str(tmp_path / "file" / "report.md")]) == 2
    assert capsys.readouterr().err.startswith(f"error: cannot write {tmp_path / 'file' / 'report.md'}")
    # the sweep's own files: multirun.yaml replaced by a report left the sweep unreadable
    kept = {path: path.read_bytes() for path in sweep.rglob("*") if path.is_file()}
    assert report.main([str(sweep), "--output", str(sweep / "multirun.yaml")]) == 2
    assert capsys.readouterr().err == f"error: --output {sweep / 'multirun.yaml'}: the report is Markdown, name it <name>.md\n"
    assert report.main([str(sweep), "--output", str(sweep / "results.md")]) == 2
    assert capsys.readouterr().err == (f"error: --output {sweep / 'results.md'} is the sweep's own results.md, which "
                                       f"vx-summarize writes: name the report otherwise, e.g. {sweep / 'report.md'}\n")
    assert {path: path.read_bytes() for path in sweep.rglob("*") if path.is_file()} == kept
    assert report.main([str(sweep), "--output", str(sweep / "report.md")]) == 0 and (sweep / "report.md").is_file()
    assert report.main([str(sweep), "--output", str(tmp_path / "README.MD")]) == 0  # Markdown in capitals too
    assert (tmp_path / "README.MD").read_text().startswith("# ")


@pytest.mark.parametrize("module", ["summarize", "report"])
def test_the_sweep_tools_exit_with_mains_status(module, monkeypatch):
    """The console scripts exit with main()'s status."""
    import importlib

    tool = importlib.import_module(f"vision_exp.{module}")
    monkeypatch.setattr(tool, "main", lambda: 2)
    with pytest.raises(SystemExit) as stopped:
        tool.console()
    assert stopped.value.code == 2
