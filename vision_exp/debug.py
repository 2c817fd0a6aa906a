"""The `debug` group's runs (conf/debug): its values over the composed config, and debug=overfit's verdict."""
from typing import Optional

from vision_exp.conf_dir import CONF_DIR, overridden_key
from vision_exp.errors import UserError


def apply_debug_last(cfg, choice, overrides, hydra_overrides=()) -> None:
    """debug=<choice>'s values over the composed config, but for those the command line sets itself (`overrides`,
    Hydra's task overrides). The defaults list applies the debug group after the experiment group, but a preset
    sweep appends its presets (`+experiment@_global_=...`) after the whole list, and their budgets would override
    the seconds debug=fast asks for.

    A smaller debug batch scales the learning rate by the optimizer's lr_scale_rule: a preset's optimizer.lr is
    tuned for its own batch (e2_resnet: 0.4 for 256), and at debug=fast's 32 it made the loss explode. Unless a scaling base is set
    already, optimizer.lr_base_batch_size becomes the batch the command trains without debug, so the lr scales
    to the debug batch as optimizer.lr_scale_rule says. `hydra_overrides` (Hydra's own: hydra.searchpath) find
    the configs that composition needs."""
    if not choice:
        return
    from omegaconf import OmegaConf

    given = {overridden_key(override) for override in overrides}
    debug = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "debug" / f"{choice}.yaml"))
    unscaled = "lr_base_batch_size" in cfg.optimizer and cfg.optimizer.lr_base_batch_size is None
    if ("batch_size" in debug.get("data", {}) and unscaled
            and not given & {"data.batch_size", "optimizer.lr_base_batch_size"}):
        search = [override for override in hydra_overrides if overridden_key(override) == "hydra.searchpath"]
        OmegaConf.update(cfg, "optimizer.lr_base_batch_size", composed_without_debug([*overrides, *search]).data.batch_size)
    for section, values in debug.items():
        for key, value in values.items():
            if f"{section}.{key}" not in given:
                OmegaConf.update(cfg, f"{section}.{key}", value)


class NotMemorised(UserError):
    """debug=overfit's run ended without fitting its one batch of training images."""


OVERFIT_ADVICE = "a network wired right fits them: look at the model's forward, the loss's targets and the learning rate"


def memorised(result: dict) -> bool:
    """debug=overfit's test: the eval-mode pass over its training images is right on every one."""
    return (result.get("train_acc") or 0.0) >= 100.0


def debug_verdict(choice, result: dict) -> Optional[str]:
    """The line a debug run ends with: debug=overfit checks that a network wired right memorised its one batch
    (conf/debug/overfit.yaml says why) and raises NotMemorised if not; None for the other options."""
    if choice != "overfit":
        return None
    fitted = f"train top-1 {result['train_acc']:.2f}% in eval mode, loss {result['train_loss']:.4f}, after {result['steps']} steps"
    if not memorised(result):
        raise NotMemorised(f"overfit check failed: the training images were not memorised ({fitted}); {OVERFIT_ADVICE}")
    return f"overfit check passed: the training images were memorised ({fitted})"


def composed_without_debug(overrides):
    """conf/train.yaml composed with `overrides` but for the debug group's."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    others = [override for override in overrides if overridden_key(override) != "debug"]
    if GlobalHydra.instance().is_initialized():  # within @hydra.main, a sweep's pre-check or a test's compose
        return compose(config_name="train", overrides=others)
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name="train"):
        return compose(config_name="train", overrides=others)
