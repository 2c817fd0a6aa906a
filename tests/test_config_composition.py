"""Combinations of presets, groups and overrides compose into the run the user asked for."""
import json
import subprocess
import sys

import pytest
import torch

from conftest import CONF_DIR, REPO, compose
from vision_exp.api import _compose_run
from vision_exp.builder import build


def trained_lr(cfg) -> float:
    """The learning rate the run's optimizer starts from (after the project's batch-size scaling)."""
    return build(cfg.optimizer, "optimizer")(torch.nn.Linear(2, 2)).param_groups[0]["lr"]


@pytest.mark.parametrize("preset, lr_per_image", [("e2_resnet", 0.4 / 256), ("cpu_resnet", 0.2 / 128),
                                                  (None, 0.2 / 128)])
def test_debug_fast_keeps_the_learning_rate_per_image_of_the_preset(preset, lr_per_image):
    """A preset's lr is tuned for its batch: kept at debug=fast's batch of 32, e2_resnet's 0.4 made the loss explode
    (3e9); scaled as optimizer.lr_base_batch_size scales it, the debug run steps like the preset."""
    cfg = _compose_run(([f"experiment={preset}"] if preset else []) + ["debug=fast"])
    assert cfg.data.batch_size == 32
    assert trained_lr(cfg) == pytest.approx(lr_per_image * 32)


def test_debug_fast_leaves_a_batch_or_scaling_the_command_line_chose():
    """The command line's own batch, or its own scaling base, is the user's choice, as without debug."""
    own_batch = _compose_run(["experiment=e2_resnet", "debug=fast", "data.batch_size=64"])
    assert own_batch.data.batch_size == 64 and trained_lr(own_batch) == pytest.approx(0.4)
    own_base = _compose_run(["experiment=e2_resnet", "debug=fast", "optimizer.lr_base_batch_size=128"])
    assert trained_lr(own_base) == pytest.approx(0.4 * 32 / 128)


def test_debug_fast_scales_the_learning_rate_of_each_job_of_a_preset_sweep():
    """A preset sweep appends its presets after debug: each job's lr follows its own preset's batch, as the sweep's
    pre-check composes the job."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from vision_exp.sweeps.precheck import hydra_config_kept, sweep_job_config

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)), hydra_config_kept():
        primary = compose("train", ["experiment=resnet_vs_vit", "debug=fast"], return_hydra_config=True)
        job = sweep_job_config(primary, ["experiment=resnet_vs_vit", "debug=fast", "+experiment@_global_=e2_resnet",
                                         "seed=0"], GlobalHydra.instance().config_loader())
    assert job.name == "e2_resnet" and trained_lr(job) == pytest.approx(0.4 * 32 / 256)


def test_a_debug_run_on_the_command_line_records_the_scaling_base(tiny_folder, tmp_path):
    """Through `python -m vision_exp.train` (Hydra's own app), the written config names the preset's batch as the
    base of the learning rate's scaling; a model config of the user's own, found through hydra.searchpath, is
    found again when debug composes the run without itself."""
    run_dir, own = tmp_path / "run", tmp_path / "myconf"
    (own / "model").mkdir(parents=True)
    (own / "model" / "resnet_mine.yaml").write_text("defaults:\n  - resnet_v1\n  - _self_\n\nblock: BasicBlockv2\n")
    result = subprocess.run(
        [sys.executable, "-m", "vision_exp.train", "experiment=e2_resnet", "debug=fast", "data=folder",
         f"data.root={tiny_folder}", "data.num_workers=0", "model.layers=[1,1,1,1]", "model.widths=[8,8,8,8]",
         f"hydra.searchpath=[file://{own}]", "model=resnet_mine",
         "trainer.device=cpu", f"hydra.run.dir={run_dir}"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    written = (run_dir / "config.yaml").read_text()
    assert "lr_base_batch_size: 256" in written and "batch_size: 32" in written and "block: BasicBlockv2" in written
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"


@pytest.mark.parametrize("preset, optimizer, lr, weight_decay", [
    ("e2_resnet", "adamw", 1e-3, 0.05), ("cpu_resnet", "adam", 1e-3, 1e-4),
    ("ablation_resnet_blocks", "lamb", 2e-3, 0.05),
])
def test_an_optimizer_chosen_on_the_command_line_brings_its_own_values(preset, optimizer, lr, weight_decay):
    """The ConvNet presets' SGD values (lr 0.4 or 0.2) were passed on to any optimizer=... the command line chose:
    AdamW at lr 0.4 diverges. The chosen optimizer trains with the values of its own file, as after e2_vit."""
    cfg = compose([f"experiment={preset}", f"optimizer={optimizer}"])
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.weight_decay) == (optimizer, lr, weight_decay)


@pytest.mark.parametrize("preset, lr", [("e2_resnet", 0.4), ("cpu_resnet", 0.2), ("ablation_resnet_blocks", 0.4)])
def test_the_convnet_presets_keep_their_sgd_settings(preset, lr):
    """Moving their SGD values into the optimizer group changes nothing the presets train with."""
    optimizer = compose([f"experiment={preset}"]).optimizer
    assert (optimizer.name, optimizer.lr, optimizer.weight_decay, optimizer.nesterov) == ("sgd", lr, 5e-4, True)


@pytest.mark.parametrize("value", [0, -4])
def test_a_log_interval_below_one_step_is_refused(value):
    """0 was taken as the default and a negative interval logged at negative multiples: neither is what was asked."""
    from vision_exp.errors import ConfigError
    from vision_exp.settings import run_settings

    with pytest.raises(ConfigError, match=f"trainer.log_every_steps={value} must be at least 1"):
        run_settings(compose([f"trainer.log_every_steps={value}"]))
    assert run_settings(compose(["trainer.log_every_steps=1"])).trainer.log_every_steps == 1


@pytest.mark.parametrize("preset", ["e2_vit_enhanced", "e2_resnet", None])
def test_debug_overfit_trains_one_batch_of_clean_images_after_any_preset(preset):
    """debug=overfit asks whether a network memorises 20 images: every augmentation (RandAugment, mixup/cutmix,
    erasing, repeats, crops and flips) and weight averaging would keep the eval-mode pass from seeing what was
    trained on, so each is off whatever the preset or the groups chose; the lr is the preset's, scaled to the batch."""
    given = ([f"experiment={preset}"] if preset else []) + ["augmentation=deit", "enhancement=ema"]
    without = _compose_run(given)
    cfg = _compose_run([*given, "debug=overfit"])
    assert without.augmentation.randaugment and without.augmentation.mixup_alpha and without.trainer.ema_decay
    assert (cfg.data.num_classes, cfg.data.max_train_per_class, cfg.data.batch_size) == (10, 2, 20)
    assert (cfg.trainer.epochs, cfg.trainer.train_samples, cfg.trainer.ema_decay) == (100, None, None)
    augmentation = cfg.augmentation
    assert not (augmentation.random_resized_crop or augmentation.hflip or augmentation.randaugment
                or augmentation.trivialaugment or augmentation.random_erasing or augmentation.mixup_alpha
                or augmentation.cutmix_alpha) and augmentation.repeats == 1
    assert cfg.optimizer.lr_base_batch_size == without.data.batch_size and trained_lr(cfg) == pytest.approx(
        trained_lr(_compose_run([*given, "data.batch_size=20", f"optimizer.lr_base_batch_size={without.data.batch_size}"])))
