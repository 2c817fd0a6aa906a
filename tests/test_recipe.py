"""Recipes: optimizer groups, schedules, augmentations, mixup targets, EMA, and every option running."""
import json
import re
from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import CONF_DIR, compose, finished_trainer, lrs, mean_loss, tiny_overrides, tiny_vit_overrides
from vision_exp.errors import ConfigError
from vision_exp.experiment import run_experiment
from vision_exp.models.vit import ViT
from vision_exp.recipe.augment import BatchAugment, per_image_transform
from vision_exp.recipe.config import AugmentConfig
from vision_exp.recipe.loss import create_train_loss
from vision_exp.recipe.optim import create_optimizer, scaled_lr
from vision_exp.recipe.schedule import warmup_steps
from vision_exp.training.checkpoint import load_checkpoint


def option_names(group):
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_no_weight_decay_on_norms_biases_and_embeddings():
    model = ViT(img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2)
    optimizer = create_optimizer(model, name="adamw", lr=1e-3, weight_decay=0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    undecayed = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert {"pos_embed", "cls_token"} <= undecayed
    assert all(".bias" not in n and "norm" not in n for n in decayed)
    assert "blocks.0.attn.qkv.weight" in decayed and "head.weight" in decayed


@pytest.mark.parametrize("name, settings", [("sgd", {"lr": 0.1}), ("adam", {"lr": 1e-2}), ("adamw", {"lr": 1e-2})])
def test_fused_kernels_asked_for_are_used_and_take_the_same_steps(name, settings):
    """optimizer.fused=true reaches torch (which has CPU kernels too), and the fused update is the one the
    for-each kernels compute: choosing it on a GPU changes speed, not results."""
    weights = {}
    for fused in (False, True):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 3))
        initial = torch.cat([p.detach().flatten() for p in model.parameters()])
        optimizer = create_optimizer(model, name, weight_decay=0.05, fused=fused, **settings)
        assert bool(optimizer.defaults.get("fused")) is fused
        for _ in range(3):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(torch.randn(16, 4)), torch.randint(3, (16,))).backward()
            optimizer.step()
        weights[fused] = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.testing.assert_close(weights[True], weights[False])
    assert (weights[True] - initial).abs().min() > 0  # every weight took the steps


def test_sgd_nesterov_flag_and_fused_only_on_gpu():
    model = torch.nn.Linear(2, 2)
    assert create_optimizer(model, "sgd", nesterov=True).param_groups[0]["nesterov"] is True
    assert create_optimizer(model, "sgd", nesterov=False).param_groups[0]["nesterov"] is False
    assert create_optimizer(model, "SGD", nesterov=False).param_groups[0]["nesterov"] is False  # timm's sgd: Nesterov
    assert not create_optimizer(model, "adamw", lr=1e-3).defaults.get("fused")
    with pytest.raises(ConfigError, match="optimizer.lr=0"):
        create_optimizer(model, "sgd", lr=0)
    with pytest.raises(ConfigError, match="'lamb' has no fused implementation"):
        create_optimizer(model, "lamb", lr=1e-3, fused=True)
    for setting in ({"eps": 1e-8}, {"betas": [0.9, 0.99]}):  # timm's SGD would ignore them without a word
        with pytest.raises(ConfigError, match="Adam-style settings: 'sgd' has none"):
            create_optimizer(model, "sgd", lr=0.1, **setting)


def test_lr_scaling_with_batch_size():
    assert scaled_lr(0.1, 512, 256, "linear") == pytest.approx(0.2)
    assert scaled_lr(1e-3, 1024, 256, "sqrt") == pytest.approx(2e-3)
    assert scaled_lr(0.1, 512, None, "linear") == 0.1


def test_cosine_warmup_reaches_the_peak_then_lr_min_once_the_budget_is_spent():
    values = lrs("cosine", warmup_fraction=0.1, lr_min=0.01)
    assert values[0] == 0.0 and values[10] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(values[:10], values[1:11]))
    assert all(a >= b - 1e-12 for a, b in zip(values[10:], values[11:]))
    assert values[100] == pytest.approx(0.01)


def test_linear_step_and_constant_schedules(caplog):
    linear = lrs("linear", warmup_epochs=1)
    assert linear[10] == pytest.approx(1.0) and linear[100] == pytest.approx(0.0, abs=1e-9)
    assert linear[55] == pytest.approx(0.5, abs=0.02)
    step = lrs("step", step_epochs=3, step_decay=0.1)
    assert step[29] == pytest.approx(1.0) and step[30] == pytest.approx(0.1) and step[60] == pytest.approx(0.01)
    thirds = lrs("step", total=90, per_epoch=1)  # the classic 30/60/90 at any length
    assert thirds[29] == pytest.approx(1.0) and thirds[30] == pytest.approx(0.1) and thirds[89] == pytest.approx(0.01)
    assert set(lrs("step", step_epochs=30)) == {1.0}
    assert "scheduler.step_epochs=30 never decays in a run of 10 epochs" in caplog.text
    assert set(lrs("constant")) == {1.0}
    floored = lrs("linear", warmup_epochs=1, lr_min=0.1)
    assert floored[100] == pytest.approx(0.1) and floored[55] == pytest.approx(0.55, abs=0.02)
    for name in ("step", "constant"):
        with pytest.raises(ConfigError, match=f"lr_min=0.1 has no effect on the {name} schedule"):
            lrs(name, lr_min=0.1)
    with pytest.raises(ConfigError, match="add scheduler.warmup_epochs=null to warm up for a fraction"):
        lrs("cosine", warmup_fraction=0.1, warmup_epochs=1)


def test_the_default_step_schedule_decays_twice_whatever_the_number_of_steps():
    """Every third of the run is x0.1 at 1/3 and 2/3 (epochs 30 and 60 of 90): a run of 100 steps must not decay
    a third time for its last step."""
    for total in (100, 10, 11, 90):
        used = lrs("step", total=total, per_epoch=1)[:total]  # the learning rate of each of its steps
        assert sorted(set(used), reverse=True) == pytest.approx([1.0, 0.1, 0.01]), total
        assert used.index(pytest.approx(0.1)) == pytest.approx(total / 3, abs=1)


def test_a_run_shorter_than_two_warmups_warms_up_for_its_first_half_then_decays():
    """warmup_epochs=1 on a one-epoch run (a quick look) would end at the peak learning rate."""
    assert warmup_steps(16, 16, None, 1) == 8 and warmup_steps(15, 15, None, 1) == 7
    assert warmup_steps(160, 16, None, 1) == 16  # a run of ten epochs keeps its epoch of warm-up
    values = lrs("cosine", total=16, per_epoch=16, warmup_epochs=1)
    assert values[8] == pytest.approx(1.0) and values[16] == pytest.approx(0.0, abs=1e-9)


def test_mixup_targets_are_soft_distributions_even_for_odd_batches():
    aug = AugmentConfig(mixup_alpha=0.8, cutmix_alpha=1.0)
    batch_augment = BatchAugment.create(aug, num_classes=5, label_smoothing=0.1, device=torch.device("cpu"))
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1])
    images = torch.randn(7, 3, 8, 8)
    mixed, targets = batch_augment(images.clone(), labels)
    assert mixed.shape == images.shape and targets.shape == (7, 5)
    torch.testing.assert_close(targets.sum(1), torch.ones(7))
    assert (targets.argmax(1)[-1] == labels[-1]) and targets[-1].max() == pytest.approx(0.92)
    assert batch_augment.soft_targets
    assert BatchAugment.create(AugmentConfig(), 5, 0.0, torch.device("cpu")) is None


def test_random_erasing_blanks_part_of_some_images():
    torch.manual_seed(0)
    batch_augment = BatchAugment.create(AugmentConfig(random_erasing=1.0), 5, 0.0, torch.device("cpu"))
    images = torch.zeros(4, 3, 16, 16)
    erased, labels = batch_augment(images.clone(), torch.arange(4))
    assert (erased != 0).any() and torch.equal(labels, torch.arange(4)) and not batch_augment.soft_targets


@pytest.mark.parametrize("aug", [AugmentConfig(randaugment="rand-m9-mstd0.5-inc1-mmax9"), AugmentConfig(trivialaugment=True)])
def test_per_image_policies_change_images(aug):
    policy = per_image_transform(aug, (0.5, 0.5, 0.5))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    outputs = [np.asarray(policy(image)) for _ in range(8)]
    assert all(o.shape == (32, 32, 3) for o in outputs)
    assert any(not np.array_equal(o, np.asarray(image)) for o in outputs)
    assert per_image_transform(AugmentConfig(), (0.5, 0.5, 0.5)) is None


def recorded_losses(monkeypatch) -> tuple:
    """(the training losses the run creates, (logits, targets, value) of each call): what reaches the loss."""
    import vision_exp.experiment

    calls, losses = [], []
    original = vision_exp.experiment.create_train_loss

    def recording_loss(*args, **kwargs):
        loss = original(*args, **kwargs)
        losses.append(loss)

        def record(logits, targets):
            value = loss(logits, targets)
            calls.append((logits.detach(), targets.detach(), value.detach()))
            return value
        return record

    monkeypatch.setattr(vision_exp.experiment, "create_train_loss", recording_loss)
    return losses, calls


def test_mixup_targets_and_images_reach_the_loss_and_the_model(tiny_folder, tmp_path, monkeypatch):
    """What training uses: mixed, smoothed (B, C) targets, a loss for soft targets (plain CrossEntropyLoss
    would accept them silently and smooth a second time), and the mixed images as the model's input."""
    from timm.loss import SoftTargetCrossEntropy

    from vision_exp.training.trainer import Trainer

    losses, calls = recorded_losses(monkeypatch)
    augmented, model_inputs = [], []
    augment, fit = BatchAugment.__call__, Trainer.fit

    def recording_augment(self, images, labels):
        before = images.clone()  # timm's Mixup mixes in place
        mixed, targets = augment(self, images, labels)
        augmented.append((before, mixed.clone()))
        return mixed, targets

    def watching_fit(self):
        forward = self.forward

        def recording_forward(images):
            if self.model.training:
                model_inputs.append(images.clone())
            return forward(images)
        self.forward = recording_forward
        return fit(self)

    monkeypatch.setattr(BatchAugment, "__call__", recording_augment)
    monkeypatch.setattr(Trainer, "fit", watching_fit)
    cfg = compose(tiny_overrides(tiny_folder, "augmentation=mixup_cutmix", "loss.label_smoothing=0.1",
                                 "trainer.train_samples=16"))
    run_experiment(cfg, tmp_path / "run", [])
    assert len(losses) == 1 and isinstance(losses[0], SoftTargetCrossEntropy)
    assert len(calls) == 2
    for logits, targets, value in calls:
        assert targets.shape == logits.shape == (8, 3)
        torch.testing.assert_close(targets.sum(1), torch.ones(8))
        assert targets.min() >= 0.1 / 3 - 1e-6, "label smoothing is applied to the mixed targets once"
        manual = (-targets * torch.log_softmax(logits.float(), 1)).sum(1).mean()
        torch.testing.assert_close(value.float(), manual)
    assert any(targets.max() < 0.9 for _, targets, _ in calls), "images were mixed"
    assert len(model_inputs) == len(augmented) == 2
    for seen, (before, mixed) in zip(model_inputs, augmented):
        assert torch.equal(seen, mixed)
    assert any(not torch.equal(before, mixed) for before, mixed in augmented)


def test_label_smoothing_without_mixup_reaches_the_loss(tiny_folder, tmp_path, monkeypatch):
    _, calls = recorded_losses(monkeypatch)
    cfg = compose(tiny_overrides(tiny_folder, "loss.label_smoothing=0.2", "trainer.train_samples=16"))
    run_experiment(cfg, tmp_path / "run", [])
    assert len(calls) == 2
    for logits, labels, value in calls:
        log_p = torch.log_softmax(logits.float(), 1)
        nll = -log_p.gather(1, labels[:, None]).squeeze(1)
        manual = (0.8 * nll - 0.2 * log_p.mean(1)).mean()  # (1 - e) on the label, e spread over the 3 classes
        torch.testing.assert_close(value.float(), manual)
        assert not torch.allclose(value.float(), nll.mean())


def test_ema_weights_differ_and_are_the_ones_evaluated(tiny_folder, tmp_path, monkeypatch):
    run = tmp_path / "run"
    summary, trainer = finished_trainer(monkeypatch, tiny_overrides(tiny_folder, "trainer.ema_decay=0.9"), run)
    ema_loss, live_loss = mean_loss(trainer.ema.module, trainer.data.val), mean_loss(trainer.model, trainer.data.val)
    assert summary["val_loss"] == pytest.approx(ema_loss, rel=1e-5) and abs(live_loss - ema_loss) > 1e-4
    assert summary["train_loss"] == pytest.approx(mean_loss(trainer.ema.module, trainer.data.train_eval), rel=1e-5)
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    ema = {k.removeprefix("module."): v for k, v in last["ema"].items()}
    differs = [k for k in last["model"] if last["model"][k].is_floating_point() and not torch.equal(last["model"][k], ema[k])]
    assert differs, "the EMA should differ from the live weights"
    assert best["epoch"] == 1  # one epoch: best.pt and last.pt hold the same step
    for key, value in best["model"].items():
        assert torch.equal(value, ema[key]), key
    from vision_exp.builder import load_trained_model

    for checkpoint in ("last.pt", "best.pt"):  # evaluate and predict load the weights the run evaluated
        model, _, _ = load_trained_model(run / "checkpoints" / checkpoint)
        assert all(torch.equal(value, ema[key]) for key, value in model.state_dict().items()), checkpoint


@pytest.mark.parametrize("group, option", [(g, o) for g in ("optimizer", "scheduler", "augmentation") for o in option_names(g)])
def test_every_recipe_option_trains_a_few_steps(tiny_folder, tmp_path, group, option):
    cfg = compose(tiny_overrides(tiny_folder, f"{group}={option}", "trainer.train_samples=16",
                                 "trainer.train_eval_samples=4", "data.max_val_per_class=2"))
    summary = run_experiment(cfg, tmp_path / "run", [])
    assert summary["status"] == "completed" and summary["samples_seen"] == 16


@pytest.mark.parametrize("option", option_names("enhancement"))
def test_every_enhancement_trains_a_few_steps(tiny_folder, tmp_path, option):
    cfg = compose(tiny_vit_overrides(tiny_folder, "experiment=cpu_vit", f"enhancement={option}"))
    summary = run_experiment(cfg, tmp_path / "run", [])
    assert summary["status"] == "completed" and summary["samples_seen"] == 20
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "completed"


@pytest.mark.parametrize("option", ["randaugment", "deit"])
def test_configured_randaugment_caps_every_ops_magnitude_at_nine(option):
    """timm's increasing posterize at magnitude 10 asks Pillow >= 12 for 0 bits, which it refuses: the configured
    strings cap the magnitude (mmax9), which mstd's noise would otherwise push to 10 on some draws."""
    from omegaconf import OmegaConf

    setting = OmegaConf.load(CONF_DIR / "augmentation" / f"{option}.yaml").randaugment
    (randaugment,) = per_image_transform(AugmentConfig(randaugment=setting), (0.5, 0.5, 0.5)).transforms
    assert {op.magnitude_max for op in randaugment.ops} == {9}


@pytest.mark.parametrize("preset", ["e2_vit", "cpu_vit"])
@pytest.mark.parametrize("option", [o for o in option_names("enhancement") if o not in ("none", "all")])
def test_every_enhancement_setting_survives_the_preset(preset, option):
    """An enhancement is composed after the preset: each value it names must be the one that runs
    (a preset's own values, e.g. e2_vit's weight decay, must not leak into the change)."""
    from omegaconf import OmegaConf

    from vision_exp.reporting.records import flatten

    body = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "enhancement" / f"{option}.yaml"))
    body.pop("defaults", None)
    composed = compose([f"experiment={preset}", f"enhancement={option}"])
    composed_settings = flatten(OmegaConf.to_container(composed))
    for key, value in flatten(body).items():
        assert composed_settings[key] == value, key
    # A group the enhancement switches (override /optimizer: adamw) runs with that option's values,
    # except where the enhancement itself sets one: the preset's values for the old option do not apply.
    for entry in OmegaConf.load(CONF_DIR / "enhancement" / f"{option}.yaml").get("defaults", []):
        (group, choice), = ((k.split("override /")[-1], v) for k, v in entry.items())
        standalone = compose([f"{group}={choice}"])[group]
        for key in standalone:
            if OmegaConf.is_interpolation(standalone, key) or key in body.get(group, {}):
                continue
            assert composed[group][key] == standalone[key], f"{group}.{key}"
    baseline = compose([f"experiment={preset}", "enhancement=none"])
    assert composed != baseline


def test_all_stacks_every_single_enhancement():
    from omegaconf import OmegaConf

    listed = OmegaConf.load(CONF_DIR / "enhancement" / "all.yaml").defaults
    assert sorted(listed) == sorted(o for o in option_names("enhancement") if o not in ("none", "all"))


def test_enhancements_stack_from_the_command_line():
    """`'enhancement=[a,b]'` applies both on top of the preset (scripts/gpu_check.sh relies on it)."""
    stacked = compose(["experiment=e2_vit_enhanced", "enhancement=[ema,random_erasing]"])
    preset = compose(["experiment=e2_vit_enhanced"])
    assert (stacked.trainer.ema_decay, stacked.augmentation.random_erasing) == (0.999, 0.25)
    assert (preset.trainer.ema_decay, preset.augmentation.random_erasing) == (None, 0.0)
    assert stacked.model.init == preset.model.init == "mimetic" and stacked.model.patch_size == preset.model.patch_size == 4


def test_choosing_an_optimizer_on_the_vit_preset_brings_that_optimizers_values():
    """e2_vit takes Adam's values from the optimizer group, so `optimizer=adamw` gets AdamW's weight
    decay instead of silently keeping Adam's 1e-4 (as it did on the first GPU lease)."""
    adam, adamw = compose(["experiment=e2_vit"]), compose(["experiment=e2_vit", "optimizer=adamw"])
    assert (adam.optimizer.name, adam.optimizer.lr, adam.optimizer.weight_decay) == ("adam", 1e-3, 1e-4)
    assert (adamw.optimizer.name, adamw.optimizer.weight_decay) == ("adamw", 0.05)


@pytest.mark.parametrize("base", ["e2_vit", "cpu_vit"])
def test_enhanced_preset_is_its_base_plus_the_listed_enhancements(base):
    """`<base>_enhanced` changes exactly what its listed enhancements change, each to that value."""
    from omegaconf import OmegaConf

    from vision_exp.reporting.records import flatten

    listed = [entry.split("/")[-1] for entry in OmegaConf.load(CONF_DIR / "experiment" / f"{base}_enhanced.yaml").defaults
              if entry.startswith("/enhancement/")]
    assert listed
    plain = flatten(OmegaConf.to_container(compose([f"experiment={base}"])))
    enhanced = flatten(OmegaConf.to_container(compose([f"experiment={base}_enhanced"])))
    expected = {}
    for option in listed:
        single = flatten(OmegaConf.to_container(compose([f"experiment={base}", f"enhancement={option}"])))
        expected.update({key: value for key, value in single.items() if plain.get(key) != value})
    changed = {key: value for key, value in enhanced.items() if plain.get(key) != value and key != "name"}
    assert changed == expected


@pytest.mark.parametrize("policy", ["rand-m10-inc1", "rand-m2"])
def test_posterize_keeps_a_bit_at_any_magnitude(policy):
    """At these magnitudes timm's posterize asks for 0 bits, which Pillow 12+ refuses in the middle of training."""
    from timm.data.auto_augment import posterize

    transform = per_image_transform(AugmentConfig(randaugment=policy), (0.5, 0.5, 0.5))
    (op,) = [op for op in transform.transforms[0].ops if op.aug_fn is posterize]
    op.prob = 1.0
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    kept = np.array(op(image))
    assert kept.shape == (8, 8, 3) and (kept & 0x7F).max() == 0 and kept.max() > 0  # the top bit kept


def test_a_warmup_fraction_below_one_always_leaves_steps_to_decay():
    """Rounded, 0.98 of 20 steps was all 20: the run ended at the peak rate and never reached lr_min."""
    used = lrs("cosine", total=20, per_epoch=5, warmup_fraction=0.98, lr_min=0.1)
    assert max(used) == pytest.approx(1.0) and used[20] == pytest.approx(0.1)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_mixup_targets_carry_the_configured_label_smoothing(smoothing):
    """timm's Mixup smooths by 0.1 unless told otherwise: the mixed targets must carry loss.label_smoothing, 0
    included. Each target mixes two labels; with 5 classes every other class keeps smoothing / 5."""
    torch.manual_seed(0)
    batch_augment = BatchAugment.create(AugmentConfig(mixup_alpha=0.8), 5, smoothing, torch.device("cpu"))
    _, targets = batch_augment(torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 4, 0]))
    torch.testing.assert_close(targets.sum(1), torch.ones(6))
    assert targets.min().item() == pytest.approx(smoothing / 5, abs=1e-6)


def test_cutmix_alone_turns_batch_augmentation_on():
    """augmentation.cutmix_alpha without mixup or erasing still mixes batches (and makes the targets soft)."""
    batch_augment = BatchAugment.create(AugmentConfig(cutmix_alpha=1.0), 5, 0.0, torch.device("cpu"))
    assert batch_augment is not None and batch_augment.soft_targets


def mixed_share_and_blend(batch_augment, seed) -> tuple:
    """(the share of the other image in a mixed batch, whether the batch is mixup's convex blend
    lam x + (1 - lam) x.flip(0)), with lam read off the unsmoothed targets."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    images = torch.randn(4, 3, 8, 8)
    mixed, targets = batch_augment(images.clone(), torch.arange(4))
    lam = targets[0, 0].item()
    return 1 - lam, torch.allclose(mixed, lam * images + (1 - lam) * images.flip(0), atol=1e-5)


@pytest.mark.parametrize("switch_prob, convex", [(0.0, True), (1.0, False)])
def test_mix_switch_prob_chooses_between_mixup_and_cutmix(switch_prob, convex):
    """mix_switch_prob is the chance of CutMix over mixup when both are on: at 0 every batch is the convex blend
    lam x + (1 - lam) x.flip(0) that mixup makes (lam read off the unsmoothed targets); at 1 none is (a box is pasted)."""
    aug = AugmentConfig(mixup_alpha=0.8, cutmix_alpha=1.0, mix_switch_prob=switch_prob)
    batch_augment = BatchAugment.create(aug, 4, 0.0, torch.device("cpu"))
    for seed in range(4):
        assert mixed_share_and_blend(batch_augment, seed)[1] is convex, seed


def test_the_optimizer_trains_at_the_rate_scaled_to_its_batch_size():
    """optimizer.lr is the rate for lr_base_batch_size: a batch twice as large trains at 2x (linear) or
    sqrt(2)x (sqrt) the rate."""
    model = torch.nn.Linear(2, 2)
    linear = create_optimizer(model, "sgd", lr=0.1, batch_size=512, lr_base_batch_size=256)
    sqrt = create_optimizer(model, "adamw", lr=1e-3, batch_size=512, lr_base_batch_size=256, lr_scale_rule="sqrt")
    assert all(group["lr"] == pytest.approx(0.2) for group in linear.param_groups)
    assert all(group["lr"] == pytest.approx(1e-3 * 2 ** 0.5) for group in sqrt.param_groups)


def test_warmup_rises_linearly_from_warmup_lr_init():
    """scheduler.warmup_lr_init is where the warm-up starts: 0.1 rising to the peak 1.0 over 10 steps."""
    values = lrs("cosine", warmup_epochs=1, warmup_lr_init=0.1)
    assert values[0] == pytest.approx(0.1) and values[5] == pytest.approx(0.55) and values[10] == pytest.approx(1.0)


def test_values_at_the_edge_of_their_range_are_refused():
    """momentum=1 never lets an update fade; label_smoothing=1 makes every target uniform (nothing to learn)."""
    with pytest.raises(ConfigError, match=r"optimizer.momentum=1 must lie in \[0, 1\)"):
        create_optimizer(torch.nn.Linear(2, 2), "sgd", lr=0.1, momentum=1)
    with pytest.raises(ConfigError, match=r"loss.label_smoothing=1 must be a number in \[0, 1\)"):
        create_train_loss(label_smoothing=1)
    assert isinstance(create_train_loss(label_smoothing=0.99), torch.nn.CrossEntropyLoss)


def test_warmups_round_to_the_nearest_step():
    """scheduler.warmup_epochs x the steps of an epoch is rounded, not cut: 0.9 epoch of 3 steps is 3 steps, and 0.29
    epoch of 100 steps (28.999... in floats) is 29; so is scheduler.warmup_fraction=0.29 of a run of 100 steps."""
    assert warmup_steps(1000, 3, None, 0.9) == 3
    assert warmup_steps(1000, 100, None, 0.29) == 29
    assert warmup_steps(100, 10, 0.29, None) == 29


def test_the_step_schedule_multiplies_by_step_decay_at_each_decay():
    """scheduler.step_decay is the factor of each decay, not a fixed x0.1: 0.5 halves the rate every step_epochs."""
    values = lrs("step", step_epochs=3, step_decay=0.5)
    assert values[29] == pytest.approx(1.0) and values[30] == pytest.approx(0.5) and values[60] == pytest.approx(0.25)
    assert values[90] == pytest.approx(0.5 ** 3)


def test_a_step_as_long_as_the_run_is_reported_as_never_decaying(caplog):
    """step_epochs equal to the run's length decays after its last step: every step it trains is at the peak rate."""
    used = lrs("step", step_epochs=10)[:100]  # 100 steps of 10 per epoch: the run is 10 epochs
    assert set(used) == {1.0}
    assert "scheduler.step_epochs=10 never decays in a run of 10 epochs" in caplog.text


@pytest.mark.parametrize("choice, kind", [("sgd", "SGD"), ("sgd_b256", "SGD"), ("adam", "Adam"), ("adamw", "AdamW"),
                                          ("lamb", "Lamb")])
def test_each_optimizer_option_builds_the_optimizer_it_names(choice, kind):
    """Adam and AdamW take the same settings and parameter groups: only the class tells them apart."""
    from vision_exp.builder import build

    optimizer = build(compose([f"optimizer={choice}"]).optimizer, "optimizer")(torch.nn.Linear(2, 2))
    assert type(optimizer).__name__ == kind


def test_adamw_decays_the_weights_apart_from_the_gradient_and_adam_through_it():
    """With a zero gradient, AdamW's step shrinks a weight by lr * weight_decay of itself (decoupled decay, what
    the ViT recipes ask for); Adam's L2 term goes through the adaptive step, which moves every weight by about lr."""
    def one_step(name: str) -> tuple:
        torch.manual_seed(0)
        model = torch.nn.Linear(8, 8, bias=False)
        before = model.weight.detach().clone()
        optimizer = create_optimizer(model, name, lr=0.1, weight_decay=0.5)
        model.weight.grad = torch.zeros_like(model.weight)
        optimizer.step()
        return before, model.weight.detach()

    before, after = one_step("adamw")
    torch.testing.assert_close(after, before * (1 - 0.1 * 0.5))
    before, after = one_step("adam")
    torch.testing.assert_close(before - after, 0.1 * before.sign(), rtol=1e-4, atol=1e-4)


def test_optimizer_settings_reach_the_parameter_groups():
    """optimizer.momentum, betas and eps are the ones the optimizer steps with, not timm's defaults."""
    model = torch.nn.Linear(2, 2)
    assert all(group["momentum"] == 0.8 for group in create_optimizer(model, "sgd", momentum=0.8).param_groups)
    adamw = create_optimizer(model, "adamw", lr=1e-3, betas=[0.8, 0.95], eps=1e-6)
    assert all(group["betas"] == (0.8, 0.95) and group["eps"] == 1e-6 for group in adamw.param_groups)


def test_randaugment_fills_uncovered_pixels_with_the_dataset_mean():
    """A translated image's uncovered strip takes the colour of the data's mean (its pixel value rounded), not
    timm's default grey, so that a normalised batch sees zeros there."""
    mean = (0.485, 0.456, 0.406)
    policy = per_image_transform(AugmentConfig(randaugment="rand-m9"), mean)
    (translate,) = [op for op in policy.transforms[0].ops if op.name == "TranslateXRel"]
    translate.prob = 1.0
    shifted = np.asarray(translate(Image.new("RGB", (32, 32), (255, 255, 255))))
    edges = {tuple(shifted[0, 0]), tuple(shifted[0, -1])}  # the strip is on the left or on the right
    assert tuple(round(255 * m) for m in mean) in edges


def test_randaugment_and_trivialaugment_together_apply_both_in_turn():
    """augmentation.randaugment and trivialaugment set together: each image goes through both in turn."""
    policy = per_image_transform(AugmentConfig(randaugment="rand-m9", trivialaugment=True), (0.5, 0.5, 0.5))
    assert [type(op).__name__ for op in policy.transforms] == ["RandAugment", "TrivialAugmentWide"]


def test_random_erasing_erases_its_probability_share_of_the_images():
    """augmentation.random_erasing is a chance per image: about a quarter of a large batch at 0.25."""
    import random

    random.seed(0)
    batch_augment = BatchAugment.create(AugmentConfig(random_erasing=0.25), 5, 0.0, torch.device("cpu"))
    erased, _ = batch_augment(torch.zeros(400, 3, 16, 16), torch.zeros(400, dtype=torch.long))
    share = (erased != 0).flatten(1).any(1).float().mean().item()
    assert share == pytest.approx(0.25, abs=0.05)


def test_random_erasing_also_applies_to_batches_that_are_mixed():
    """Erasing comes before mixing, whatever mixing does: with mix_prob=0 the erased images are what remains."""
    batch_augment = BatchAugment.create(AugmentConfig(random_erasing=1.0, mixup_alpha=0.8, mix_prob=0.0), 5, 0.0,
                                        torch.device("cpu"))
    erased, _ = batch_augment(torch.zeros(4, 3, 16, 16), torch.arange(4))
    assert (erased != 0).flatten(1).any(1).all()


def test_mix_prob_is_the_chance_that_a_batch_is_mixed():
    """At mix_prob=0 the images stay as they are and each target is the image's own label, smoothed."""
    batch_augment = BatchAugment.create(AugmentConfig(mixup_alpha=0.8, cutmix_alpha=1.0, mix_prob=0.0), 4, 0.1,
                                        torch.device("cpu"))
    images, labels = torch.randn(4, 3, 8, 8), torch.arange(4)
    mixed, targets = batch_augment(images.clone(), labels)
    assert torch.equal(mixed, images)
    torch.testing.assert_close(targets, torch.nn.functional.one_hot(labels, 4) * (1 - 0.1) + 0.1 / 4)


@pytest.mark.parametrize("mode, shared", [("batch", True), ("elem", False)])
def test_mix_mode_elem_draws_a_mixing_weight_for_each_image(mode, shared):
    """batch mode mixes every image with the same lam; elem draws one per image (read off its own label's share)."""
    np.random.seed(0)
    batch_augment = BatchAugment.create(AugmentConfig(mixup_alpha=0.8, mix_mode=mode), 4, 0.0, torch.device("cpu"))
    _, targets = batch_augment(torch.randn(4, 3, 8, 8), torch.arange(4))
    own_share = targets.diagonal()
    assert (len(own_share.unique()) == 1) is shared


@pytest.mark.parametrize("mixup_alpha, cutmix_alpha, convex", [(0.8, 0.0, True), (0.0, 1.0, False)])
def test_mixup_alone_blends_and_cutmix_alone_pastes_a_box(mixup_alpha, cutmix_alpha, convex):
    """Each alpha drives its own method: a batch that is mixed at all (CutMix's box may come out empty) is a blend
    with mixup only and a pasted box with CutMix only."""
    aug = AugmentConfig(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha)
    batch_augment = BatchAugment.create(aug, 4, 0.0, torch.device("cpu"))
    draws = [mixed_share_and_blend(batch_augment, seed) for seed in range(6)]
    assert all(blend is convex for share, blend in draws if share > 0) and any(share > 0 for share, _ in draws)


@pytest.mark.parametrize("name", ["weights", "3aw"])
def test_a_weighted_randaugment_set_draws_at_most_all_its_ops(name):
    """A weighted set draws its n ops without replacement: n as large as the set runs, one more is refused before
    training (timm would fail at the first image)."""
    from timm.data.auto_augment import rand_augment_choices

    size = len(rand_augment_choices(name))
    policy = per_image_transform(AugmentConfig(randaugment=f"rand-n{size}-t{name}"), (0.5, 0.5, 0.5))
    assert np.asarray(policy(Image.new("RGB", (16, 16), (90, 120, 200)))).shape == (16, 16, 3)
    with pytest.raises(ConfigError, match=f"n{size + 1}: the weighted set t{name} has only {size} ops"):
        AugmentConfig(randaugment=f"rand-n{size + 1}-t{name}")


@pytest.mark.parametrize("build, settings, phrase", [
    (lrs, {"name": "cosine", "warmup_fraction": 1.0}, "scheduler.warmup_fraction=1.0 must lie in [0, 1)"),
    (lrs, {"name": "cyclic"}, "scheduler.name='cyclic': choose one of cosine, linear, step, constant"),
    (scaled_lr, {"lr": 0.1, "batch_size": 512, "base_batch_size": 0, "rule": "linear"},
     "optimizer.lr_base_batch_size=0 must be positive (or null: no scaling)"),
    (scaled_lr, {"lr": 0.1, "batch_size": 512, "base_batch_size": 256, "rule": "cubic"},
     "optimizer.lr_scale_rule='cubic': choose linear or sqrt"),
    (partial(create_optimizer, torch.nn.Linear(2, 2), lr=1e-3), {"name": "adamw", "weight_decay": -0.1},
     "optimizer.weight_decay=-0.1 must not be negative"),
    (partial(create_optimizer, torch.nn.Linear(2, 2), lr=1e-3), {"name": "adamw", "betas": [0.9, 1.0]},
     "optimizer.betas=[0.9, 1.0] must be two numbers in [0, 1)"),
    (partial(create_optimizer, torch.nn.Linear(2, 2), lr=1e-3), {"name": "adamx"}, "optimizer 'adamx': "),
    (create_train_loss, {"label_smoothing": -0.1}, "loss.label_smoothing=-0.1 must be a number in [0, 1)"),
    (AugmentConfig, {"random_erasing": 1.5}, "augmentation.random_erasing=1.5 is a probability in [0, 1]"),
    (AugmentConfig, {"mix_switch_prob": -0.1}, "augmentation.mix_switch_prob=-0.1 is a probability in [0, 1]"),
    (AugmentConfig, {"cutmix_alpha": -1.0}, "augmentation.mixup_alpha and cutmix_alpha must not be negative"),
    (AugmentConfig, {"mix_mode": "row"}, "augmentation.mix_mode='row': choose batch, pair or elem"),
    (AugmentConfig, {"repeats": 0}, "augmentation.repeats=0 must be at least 1"),
])
def test_recipe_values_out_of_their_range_are_config_errors(build, settings, phrase):
    """Each would train on nonsense (a warm-up as long as the run, a negative decay or smoothing, a beta of 1 that never
    forgets, a schedule or scaling rule silently replaced, an image never drawn) or fail inside timm without naming
    the setting."""
    with pytest.raises(ConfigError, match=re.escape(phrase)):
        build(**settings)


def test_recipe_values_at_the_closed_end_of_their_range_are_accepted():
    """The ranges their messages give include these ends: step_decay=1 keeps the rate (a step schedule as a control),
    a crop scale of exactly [1, 1] (whole images, only the aspect ratio drawn), RandAugment's p0 (no op applied)."""
    assert set(lrs("step", step_decay=1.0)) == {1.0}
    assert AugmentConfig(scale=[1, 1]).scale == (1.0, 1.0)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    policy = per_image_transform(AugmentConfig(randaugment="rand-p0"), (0.5, 0.5, 0.5))
    assert np.array_equal(np.asarray(policy(image)), np.asarray(image))
