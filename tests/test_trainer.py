"""The trainer on a few batches: outputs, metric families, checkpoints and exact resume."""
import json
import re
import signal
from pathlib import Path

import pytest
import torch

from conftest import TINY_CLASSES, compose, finished_trainer, mean_loss, sigterm_at_step, tiny_overrides, tiny_vit_overrides
from vision_exp.experiment import run_experiment
from vision_exp.errors import ConfigError
from vision_exp.training.checkpoint import load_checkpoint, save_checkpoint
from vision_exp.reporting.run import RunReporter
from vision_exp.training import trainer as trainer_mod
from vision_exp.training.trainer import Trainer

SUMMARY_KEYS = {"status", "epochs", "samples_seen", "val_acc", "best_val_acc", "train_acc", "train_running_acc",
                "val_loss", "train_loss", "wall_time_s", "train_images_per_s", "params"}
FAMILIES = ("train_running/loss", "train_running/acc", "train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best")


def train(folder, run_dir, *extra):
    cfg = compose(tiny_overrides(folder, *extra))
    return run_experiment(cfg, run_dir, list(extra))


def stopped_by_a_signal(monkeypatch, at_step: int, folder, run_dir, *extra) -> None:
    """Train until SIGTERM arrives before step `at_step` (counted from 0): the run checkpoints and stops
    after that step, not at the epoch's end."""
    with sigterm_at_step(monkeypatch, at_step), pytest.raises(trainer_mod.Interrupted):
        train(folder, run_dir, *extra)
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["position"]["step"] == at_step + 1


def test_run_writes_every_output(tiny_folder, tmp_path):
    run = tmp_path / "run"
    summary = train(tiny_folder, run, "trainer.epochs=2")
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert SUMMARY_KEYS <= set(on_disk) and on_disk["status"] == "completed"
    assert on_disk["samples_seen"] == 2 * 36 and on_disk["epochs"] == 2
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    for record in lines:
        assert all(key in record for key in FAMILIES + ("lr", "images_per_s", "epoch_time_s", "data_wait_frac"))
        assert 0 <= record["data_wait_frac"] <= 1
    assert lines[-1]["val/acc"] == on_disk["val_acc"] and lines[-1]["train/acc"] == on_disk["train_acc"]
    for name in ("config.yaml", "curves.png", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    runs = {p.parent.relative_to(run / "tb").as_posix() for p in (run / "tb").rglob("events.out.tfevents.*")}
    assert runs == {".", "train", "train_running", "val"}


def test_checkpoints_load_weights_only_into_the_model(tiny_folder, tmp_path):
    run = tmp_path / "run"
    train(tiny_folder, run)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert {"model", "optimizer", "budget", "rng", "position"} <= set(state)
    assert state["position"]["epoch"] == 1 and state["position"]["samples_seen"] == 36
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    cfg = compose(tiny_overrides(tiny_folder))
    cfg.data.num_classes = 3
    from hydra.utils import instantiate

    model = instantiate(cfg.model)
    model.load_state_dict(best["model"])
    assert best["val_acc"] == json.loads((run / "metrics.json").read_text())["best_val_acc"]


@pytest.mark.parametrize("interval, last_saves", [(0, 3), (3600, 1)])
def test_checkpoints_and_figures_wait_for_the_save_interval_and_the_end_writes_them_all(
        tiny_folder, tmp_path, monkeypatch, interval, last_saves):
    run, saves, plots = tmp_path / "run", [], []
    original_save, original_plot = trainer_mod.save_checkpoint, RunReporter.plot_curves

    def recording_save(state, path):
        saves.append(path.name)
        original_save(state, path)

    def recording_plot(self):
        plots.append(len(self.records))
        original_plot(self)

    monkeypatch.setattr(trainer_mod, "save_checkpoint", recording_save)
    monkeypatch.setattr(RunReporter, "plot_curves", recording_plot)
    summary = train(tiny_folder, run, "trainer.epochs=3", f"trainer.save_interval_s={interval}")
    assert saves.count("last.pt") == last_saves and plots[-1] == 3 and len(plots) == last_saves
    assert 1 <= saves.count("best.pt") <= last_saves
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert (best["epoch"], best["val_acc"]) == (summary["best_epoch"], summary["best_val_acc"])
    assert load_checkpoint(run / "checkpoints" / "last.pt")["position"]["epoch"] == 3
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3, "metrics are logged every epoch regardless"


def test_save_interval_must_not_be_negative(tiny_folder, tmp_path):
    with pytest.raises(ConfigError, match="save_interval_s"):
        train(tiny_folder, tmp_path / "run", "trainer.save_interval_s=-1")


@pytest.mark.parametrize("key, value", [("train_samples", 0), ("epochs", 0), ("train_eval_samples", 0),
                                        ("grad_clip", 0.0), ("grad_accum_steps", 0), ("ema_decay", 0.0),
                                        ("ema_decay", 1.0), ("checkpoint_every_steps", 0), ("log_every_steps", 0)])
def test_trainer_settings_at_the_edge_of_their_range_are_refused(key, value):
    """Each of these 0s (or an EMA decay of 1) would be read as "off" or "the default" further on (a grad_clip of 0
    clips nothing, an ema_decay of 1 freezes the average at the initial weights): refused, naming the setting."""
    from vision_exp.training.config import TrainerConfig

    with pytest.raises(ConfigError, match=re.escape(f"trainer.{key}={value} must")):
        TrainerConfig(**{key: value})


@pytest.mark.parametrize("key, value, phrase", [
    ("progress", "bars", "trainer.progress='bars': choose one of auto, bar,"),
    ("channels_last", "yes", "trainer.channels_last='yes': use true, false or auto"),
    ("amp", "bf32", "trainer.amp='bf32': choose one of auto, bf16, fp16, off"),
    ("resume", True, "trainer.resume=true: use auto (this folder's last"),
])
def test_trainer_settings_outside_their_choices_are_refused(key, value, phrase):
    """Checked without torch, before anything starts: a misspelt choice would otherwise pass unnoticed (progress,
    channels_last compare against their choices) or fail deep inside a run."""
    from vision_exp.training.config import TrainerConfig

    with pytest.raises(ConfigError, match=re.escape(phrase)):
        TrainerConfig(**{key: value})


class Crash(RuntimeError):
    pass


@pytest.mark.parametrize("extra", [(), ("trainer.checkpoint_every_steps=2",)])
def test_resume_after_a_crash_ends_exactly_like_an_uninterrupted_run(tiny_folder, tmp_path, monkeypatch, extra):
    base = ("trainer.epochs=2", "trainer.deterministic=true", *extra)
    reference = train(tiny_folder, tmp_path / "a", *base)

    original_save = Trainer.save

    def crash_after_first_save(self, name):
        original_save(self, name)
        raise Crash("simulated crash")

    monkeypatch.setattr(Trainer, "save", crash_after_first_save)
    with pytest.raises(Crash):
        train(tiny_folder, tmp_path / "b", *base)
    monkeypatch.setattr(Trainer, "save", original_save)
    resumed = train(tiny_folder, tmp_path / "b", *base, "trainer.resume=auto")

    for key in ("val_acc", "val_loss", "train_acc", "train_loss", "train_running_loss", "samples_seen", "best_val_acc"):
        assert resumed[key] == pytest.approx(reference[key], abs=1e-6), key
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_resume_with_a_longer_budget_follows_the_longer_schedule(tiny_folder, tmp_path, monkeypatch, caplog):
    """The schedule comes from this run's budget, not the checkpoint: extending a finished run must not
    train on at the old schedule's final (zero) learning rate."""
    lrs = []
    original_step = Trainer._step

    def recording_step(self, images, labels, global_count):
        lrs.append(self.optimizer.param_groups[0]["lr"])
        return original_step(self, images, labels, global_count)

    monkeypatch.setattr(Trainer, "_step", recording_step)
    train(tiny_folder, tmp_path / "long", "trainer.train_samples=108")
    uninterrupted, lrs[:] = list(lrs), []
    train(tiny_folder, tmp_path / "run", "trainer.train_samples=36")
    first_steps = len(lrs)
    train(tiny_folder, tmp_path / "run", "trainer.train_samples=108", "trainer.resume=auto")
    resumed = lrs[first_steps:]
    assert first_steps == 5 and len(resumed) == 10
    assert resumed == pytest.approx(uninterrupted[first_steps:]) and min(resumed) > 0
    assert "trained toward 36 samples; this run's budget is 108" in caplog.text


@pytest.mark.parametrize("every, logged_after", [("null", [2, 4, 6, 8]), ("3", [3, 6, 9])])
def test_progress_lines_come_four_times_an_epoch_or_every_log_every_steps(tiny_folder, tmp_path, caplog, every,
                                                                           logged_after):
    """trainer.progress=log on 36 images in batches of 4, 9 steps an epoch: by default a line every 9 // 4 = 2 steps
    (four an epoch, not one a step), with trainer.log_every_steps=3 every third step."""
    import logging

    with caplog.at_level(logging.INFO, logger=trainer_mod.__name__):
        train(tiny_folder, tmp_path / "run", "data.batch_size=4", "trainer.progress=log",
              f"trainer.log_every_steps={every}")
    assert [int(step) for step in re.findall(r"epoch 1 \[(\d+)/9\] loss", caplog.text)] == logged_after


def test_each_epoch_line_but_the_last_says_how_long_the_run_has_left(tiny_folder, tmp_path, caplog):
    """A log without a progress bar (Kaggle, a cluster) still says when the run ends."""
    import logging

    with caplog.at_level(logging.INFO, logger=trainer_mod.__name__):
        train(tiny_folder, tmp_path / "run", "trainer.epochs=3")
    lines = [line for line in caplog.text.splitlines() if re.search(r"epoch \d/3: train_running", line)]
    assert len(lines) == 3
    assert all(re.search(r"img/s \| (under a minute|about \d+ min) left$", line) for line in lines[:2]), lines
    assert lines[2].endswith("img/s"), lines


@pytest.mark.parametrize("session_s, session_samples, samples_left, said", [
    (3.0, 100, 900, " | under a minute left"),  # 27 s
    (20.0, 100, 900, " | about 3 min left"),
    (600.0, 100, 900, " | about 1 h 30 min left"),
    (799.4, 100, 900, " | about 2 h 00 min left"),  # 119.9 min, not "1 h 60 min"
    (100.0, 1000, 0, ""),
    (5.0, 0, 1000, ""),
])
def test_time_left_is_this_sessions_pace_over_what_is_left(session_s, session_samples, samples_left, said):
    assert trainer_mod.time_left(session_s, session_samples, samples_left) == said


def test_a_resumed_run_is_timed_by_its_own_pace_not_by_the_session_it_resumes(tiny_folder, tmp_path, caplog):
    """A run that took days on a CPU and resumes on a GPU must not be told it has days left."""
    import logging

    run = tmp_path / "run"
    train(tiny_folder, run, "trainer.epochs=2")
    last = run / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    state["position"]["elapsed_s"] = 1e7  # four months for the first 72 samples
    save_checkpoint(state, last)
    with caplog.at_level(logging.INFO, logger=trainer_mod.__name__):
        train(tiny_folder, run, "trainer.epochs=4", "trainer.resume=auto")
    line = next(line for line in caplog.text.splitlines() if re.search(r"epoch 3/4: train_running", line))
    assert line.endswith("img/s | under a minute left"), line
    assert json.loads((run / "metrics.json").read_text())["wall_time_s"] > 1e7  # the run's own time still adds up


def test_existing_run_dir_is_not_trained_over(tiny_folder, tmp_path):
    run = tmp_path / "run"
    train(tiny_folder, run)
    before = (run / "metrics.json").read_text()
    with pytest.raises(ConfigError, match="already holds a run"):
        train(tiny_folder, run)
    assert (run / "metrics.json").read_text() == before


def recorded_sizes(monkeypatch, method: str) -> list:
    """The sizes of the batches (or parts) Trainer.<method> is given from now on; it runs as before."""
    sizes, original = [], getattr(Trainer, method)

    def recording(self, images, *args):
        sizes.append(len(images))
        return original(self, images, *args)

    monkeypatch.setattr(Trainer, method, recording)
    return sizes


def test_train_samples_budget_stops_exactly(tiny_folder, tmp_path, monkeypatch):
    """36 training images in batches of 8: a full epoch of 8,8,8,8,4, then 14 more samples, 8 and 6. The cut
    epoch's record says how far into it the run got (the x axis of curves.png), not that it was whole."""
    batch_sizes = recorded_sizes(monkeypatch, "_step")
    summary = train(tiny_folder, tmp_path / "run", "trainer.train_samples=50")
    assert batch_sizes == [8, 8, 8, 8, 4, 8, 6]
    assert summary["samples_seen"] == 50 and summary["epochs"] == 2 and summary["steps"] == 5 + 2
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["samples_seen"], r["epoch_progress"]) for r in records] == [(36, 1.0), (50, pytest.approx(50 / 36))]


@pytest.mark.parametrize("augmentation", ["basic", "mixup_cutmix"])
def test_gradient_accumulation_takes_the_same_steps_to_the_same_weights(tiny_folder, tmp_path, monkeypatch, augmentation):
    """A ViT (LayerNorm: no batch statistics) on 44 samples in batches of 8, each in 3 parts (3, 3, 2; the
    epoch's last batch of 4 in 2, 1, 1): the same steps and samples, and up to float sums the same weights and
    running metrics as whole batches. Mixup mixes the whole batch before it is split, as without parts."""
    overrides = tiny_vit_overrides(tiny_folder, "model=vit_v1", f"augmentation={augmentation}", "trainer.train_samples=44",
                                   "trainer.deterministic=true")
    parts_seen = recorded_sizes(monkeypatch, "_forward_backward")
    whole_summary, whole = finished_trainer(monkeypatch, overrides, tmp_path / "whole")
    assert parts_seen == [8, 8, 8, 8, 4, 8]
    parts_seen.clear()
    parts_summary, parts = finished_trainer(monkeypatch, overrides + ["trainer.grad_accum_steps=3"], tmp_path / "parts")
    assert parts_seen == [3, 3, 2] * 4 + [2, 1, 1] + [3, 3, 2]
    for key in ("steps", "samples_seen", "train_running_acc"):
        assert parts_summary[key] == whole_summary[key], key
    assert parts_summary["train_running_loss"] == pytest.approx(whole_summary["train_running_loss"], rel=1e-5)
    for name, weight in whole.model.state_dict().items():
        torch.testing.assert_close(parts.model.state_dict()[name], weight, rtol=1e-4, atol=1e-5, msg=name)
    assert any(not torch.equal(parts.model.state_dict()[name], weight) for name, weight in whole.model.state_dict().items())


def test_running_out_of_device_memory_is_one_line_naming_the_settings_that_fix_it(tiny_folder, tmp_path, monkeypatch):
    """An out-of-memory error is no bug in the code: the run stops as on bad input (a line, status 2 on the
    command line, failed in metrics.json) and says which setting trains the same batches in less memory."""
    import vision_exp

    forward_backward = Trainer._forward_backward

    def out_of_memory_at_step_2(self, images, targets, share):
        if self.position.step == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return forward_backward(self, images, targets, share)

    monkeypatch.setattr(Trainer, "_forward_backward", out_of_memory_at_step_2)
    advice = (r"cpu ran out of memory at step 2 \(epoch 1\) with data.batch_size=8 and trainer.grad_accum_steps=1: "
              r"run again with trainer.grad_accum_steps=2 \(each batch in parts")
    with pytest.raises(trainer_mod.OutOfMemory, match=advice):
        vision_exp.run(tiny_overrides(tiny_folder), run_dir=str(tmp_path / "run"))
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert recorded["status"] == "failed" and "trainer.grad_accum_steps=2" in recorded["error"]
    with pytest.raises(trainer_mod.OutOfMemory, match="grad_accum_steps=8: run again with trainer.amp"):
        vision_exp.run(tiny_overrides(tiny_folder, "trainer.grad_accum_steps=8"), run_dir=str(tmp_path / "parts"))


def test_running_out_of_memory_evaluating_names_the_evaluation_batch_size(tiny_folder, tmp_path, monkeypatch):
    """The validation and train-eval passes take data.eval_batch_size and no parts: more parts would run out of
    memory again in the same pass."""
    import vision_exp

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(trainer_mod, "evaluate", out_of_memory)
    advice = (r"cpu ran out of memory evaluating at step \d+ \(epoch 1\) with data.eval_batch_size=6: run again with "
              r"data.eval_batch_size=3 \(the same metrics from smaller batches\), trainer.amp")
    with pytest.raises(trainer_mod.OutOfMemory, match=advice):
        vision_exp.run(tiny_overrides(tiny_folder, "data.eval_batch_size=6"), run_dir=str(tmp_path / "run"))


def test_the_advice_on_parts_counts_each_ranks_share_of_the_batch(tiny_folder, tmp_path, monkeypatch):
    """Under torchrun each rank splits its own share: with 8 samples on 2 ranks, 4 parts are already one sample
    each, and 8 would save nothing; evaluation batches must still give every rank one sample."""
    import dataclasses

    _, trainer = finished_trainer(monkeypatch, tiny_overrides(tiny_folder, "trainer.grad_accum_steps=2",
                                                              "data.eval_batch_size=3"), tmp_path / "run")
    assert "run again with trainer.grad_accum_steps=4 (" in str(trainer._out_of_memory(evaluating=False))
    assert "run again with data.eval_batch_size=1 (" in str(trainer._out_of_memory(evaluating=True))
    trainer.dist = dataclasses.replace(trainer.dist, world_size=2)
    assert "run again with trainer.grad_accum_steps=4 (" in str(trainer._out_of_memory(evaluating=False))
    assert "data.eval_batch_size=1" not in str(trainer._out_of_memory(evaluating=True))
    trainer.cfg = dataclasses.replace(trainer.cfg, grad_accum_steps=4)
    assert "run again with trainer.amp" in str(trainer._out_of_memory(evaluating=False))


def test_with_sync_bn_a_batch_a_rank_cannot_split_into_every_part_is_refused_before_training(tiny_folder, tmp_path,
                                                                                              monkeypatch):
    """11 samples in batches of 8 on 2 ranks end with 3: one rank gets a single sample, one part where the other runs
    two, and SyncBatchNorm, synchronising each part, would hang there."""
    from vision_exp import experiment
    from vision_exp.training import distributed

    monkeypatch.setattr(distributed, "setup", lambda device: (distributed.DistEnv(world_size=2), torch.device("cpu")))
    monkeypatch.setattr(experiment, "check_sync_bn", lambda *args: None)  # SyncBatchNorm itself runs on CUDA only
    monkeypatch.setattr(trainer_mod, "check_sync_bn", lambda *args: None)
    monkeypatch.setattr(distributed.dist, "broadcast_object_list", lambda holder, src: None)  # rank 0 of 2, alone
    with pytest.raises(ConfigError, match=r"trainer.grad_accum_steps=2 parts .* holds 3 sample\(s\), 1 for some"):
        train(tiny_folder, tmp_path / "run", "trainer.sync_bn=true", "trainer.grad_accum_steps=2", "data.batch_size=8",
              "trainer.train_samples=11", "data.eval_batch_size=4")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_run_out_of_memory_resumes_with_its_batches_in_parts_and_ends_as_it_would_have(tiny_folder, tmp_path,
                                                                                          monkeypatch):
    """The advice works: the stopped ViT run goes on from its last checkpoint in parts (the one setting besides
    the budget a resume may change) and ends with the metrics of the run that never stopped, up to float sums."""
    import vision_exp

    overrides = tiny_vit_overrides(tiny_folder, "model=vit_v1", "trainer.train_samples=72", "trainer.save_interval_s=0",
                                   "trainer.deterministic=true")
    uninterrupted = vision_exp.run(overrides, run_dir=str(tmp_path / "whole"))
    forward_backward = Trainer._forward_backward

    def out_of_memory_in_epoch_2(self, images, targets, share):
        if self.cfg.grad_accum_steps == 1 and self.position.step == 7:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward_backward(self, images, targets, share)

    monkeypatch.setattr(Trainer, "_forward_backward", out_of_memory_in_epoch_2)
    run = tmp_path / "run"
    with pytest.raises(trainer_mod.OutOfMemory, match=f"trainer.resume=auto hydra.run.dir={run} trainer.grad_accum_steps"):
        vision_exp.run(overrides, run_dir=str(run))
    resumed = vision_exp.run([*overrides, "trainer.resume=auto", "trainer.grad_accum_steps=2"], run_dir=str(run))
    assert resumed["status"] == "completed" and resumed["samples_seen"] == uninterrupted["samples_seen"] == 72
    for key in ("train_running_loss", "train_loss", "val_loss"):
        assert resumed[key] == pytest.approx(uninterrupted[key], rel=1e-4), key
    with pytest.raises(ConfigError, match=r"only trainer.train_samples or trainer.epochs or trainer.eval_every_epochs or "
                                           r"trainer.grad_accum_steps"):
        vision_exp.run([*overrides, "trainer.resume=auto", "trainer.train_samples=80", "optimizer.lr=0.1"], run_dir=str(run))


def test_train_and_val_metrics_are_eval_mode_passes_of_the_final_weights(tiny_folder, tmp_path, monkeypatch):
    """The honest training metric: BatchNorm on its running statistics over un-augmented training images, not
    the batch statistics of training mode (which would give other numbers, checked here too)."""
    summary, trainer = finished_trainer(monkeypatch, tiny_overrides(tiny_folder, "trainer.epochs=2"), tmp_path / "run")
    train_eval, val = trainer.data.train_eval, trainer.data.val
    assert summary["train_loss"] == pytest.approx(mean_loss(trainer.model, train_eval), rel=1e-5)
    assert summary["val_loss"] == pytest.approx(mean_loss(trainer.model, val), rel=1e-5)
    assert abs(mean_loss(trainer.model, train_eval, training=True) - summary["train_loss"]) > 1e-3


def test_a_model_handed_over_in_eval_mode_trains_in_train_mode(tiny_folder, tmp_path, monkeypatch):
    """A Trainer given a model in eval mode (one just evaluated in a notebook) still trains it in train mode
    (BatchNorm on each batch's statistics, dropout on), in every epoch after the eval-mode passes too."""
    modes, fit, forward_backward = [], Trainer.fit, Trainer._forward_backward

    def fit_from_eval_mode(self):
        self.model.eval()
        return fit(self)

    def recording(self, images, targets, share):
        modes.append(self.model.training)
        return forward_backward(self, images, targets, share)

    monkeypatch.setattr(Trainer, "fit", fit_from_eval_mode)
    monkeypatch.setattr(Trainer, "_forward_backward", recording)
    train(tiny_folder, tmp_path / "run", "trainer.epochs=2")
    assert modes == [True] * 10


def test_evaluation_leaves_batchnorm_statistics_and_the_mode_as_they_were(tiny_folder, tmp_path, monkeypatch):
    """A model in train mode goes back to it, one in eval mode (the EMA's copy) stays there."""
    from vision_exp.training.evaluation import evaluate

    _, trainer = finished_trainer(monkeypatch, tiny_overrides(tiny_folder), tmp_path / "run")
    model = trainer.model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = evaluate(model, trainer.data.val.epoch(0), torch.device("cpu"))
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert result["loss"] == pytest.approx(mean_loss(model, trainer.data.val), rel=1e-5)
    evaluate(model.eval(), trainer.data.val.epoch(0), torch.device("cpu"))
    assert not model.training


@pytest.mark.parametrize("extra, autotune, deterministic", [((), True, False),
                                                            (("trainer.cudnn_benchmark=false",), False, False),
                                                            (("trainer.deterministic=true",), False, True)])
def test_cudnn_autotuning_and_deterministic_kernels_follow_the_config(tiny_folder, tmp_path, extra, autotune,
                                                                      deterministic):
    """Each run sets both, whatever the one before it in the process (a sweep's jobs, a notebook) left: a run
    after a deterministic one must not keep its slower kernels."""
    torch.backends.cudnn.benchmark = not autotune
    torch.use_deterministic_algorithms(not deterministic)
    train(tiny_folder, tmp_path / "run", *extra)
    assert torch.backends.cudnn.benchmark is autotune
    assert torch.are_deterministic_algorithms_enabled() is deterministic
    torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("setting, channels_last", [("auto", False), ("true", True)])
def test_channels_last_is_automatic_for_convnets_on_cuda_only(tiny_folder, tmp_path, monkeypatch, setting,
                                                              channels_last):
    """trainer.channels_last=auto: the NHWC layout that tensor cores want, for ConvNets on CUDA; on the CPU the
    ResNet keeps PyTorch's default layout unless trainer.channels_last=true asks for it."""
    _, trainer = finished_trainer(monkeypatch, tiny_overrides(tiny_folder, f"trainer.channels_last={setting}"),
                                  tmp_path / "run")
    stem = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert stem.weight.is_contiguous(memory_format=torch.channels_last) is channels_last


def tensorboard_events(folder) -> list:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    events = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        events += list(EventFileLoader(str(path)).Load())
    return events


def hparams_sessions(run, values: bool = False) -> tuple:
    """(session starts, session end statuses) in the run's TensorBoard log; with values, the starts' hparams."""
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    starts, ends = [], []
    for event in tensorboard_events(run / "tb"):
        for value in event.summary.value:
            data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
            if value.tag == metadata.SESSION_START_INFO_TAG:
                starts.append(data.session_start_info.hparams)
            elif value.tag == metadata.SESSION_END_INFO_TAG:
                ends.append(data.session_end_info.status)
    return (starts if values else len(starts)), ends


def test_a_run_stopped_by_a_signal_and_resumed_is_one_successful_tensorboard_session(tiny_folder, tmp_path, monkeypatch):
    """TensorBoard keeps the first session start and end it reads: an interrupted attempt must write neither a
    second start nor a failure that would outlive the resumed run's success."""
    from tensorboard.plugins.hparams import api_pb2

    run = tmp_path / "run"
    stopped_by_a_signal(monkeypatch, 2, tiny_folder, run, "trainer.epochs=2")
    train(tiny_folder, run, "trainer.epochs=2", "trainer.resume=auto")
    assert hparams_sessions(run) == (1, [api_pb2.Status.Value("STATUS_SUCCESS")])


def test_a_run_that_failed_and_resumed_to_completion_is_one_successful_tensorboard_session(tiny_folder, tmp_path,
                                                                                            monkeypatch):
    from tensorboard.plugins.hparams import api_pb2

    step = Trainer._step

    def failing_in_the_second_epoch(self, images, labels, global_count):
        if self.position.step == 6:
            raise RuntimeError("CUDA out of memory (simulated)")
        return step(self, images, labels, global_count)

    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_step", failing_in_the_second_epoch)
        with pytest.raises(RuntimeError):
            train(tiny_folder, run, "trainer.epochs=2", "trainer.save_interval_s=0")
    assert hparams_sessions(run) == (1, [])
    train(tiny_folder, run, "trainer.epochs=2", "trainer.save_interval_s=0", "trainer.resume=auto")
    assert hparams_sessions(run) == (1, [api_pb2.Status.Value("STATUS_SUCCESS")])


def test_a_run_resumed_with_a_longer_budget_shows_it_in_the_hparams_dashboard(tiny_folder, tmp_path):
    """TensorBoard keeps the first session start it reads: the resumed run's must replace the first attempt's,
    or the dashboard would show the budget the run no longer has."""
    run = tmp_path / "run"
    train(tiny_folder, run, "trainer.epochs=1")
    train(tiny_folder, run, "trainer.epochs=2", "trainer.grad_accum_steps=2", "trainer.resume=auto")
    (start,), _ = hparams_sessions(run, values=True)
    assert start["trainer.epochs"].number_value == 2 and start["trainer.grad_accum_steps"].number_value == 2
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run / "tb"), size_guidance={"tensors": 0})
    accumulator.Reload()
    config = accumulator.Tensors("config/text_summary")
    assert len(config) == 1 and b"epochs: 2" in config[0].tensor_proto.string_val[0]


def test_a_run_resumed_from_another_folders_checkpoint_starts_its_own_tensorboard_session(tiny_folder, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny_folder, tmp_path / "first", "trainer.epochs=1")
    other = tmp_path / "second"
    train(tiny_folder, other, "trainer.epochs=2", f"trainer.resume={tmp_path / 'first' / 'checkpoints' / 'last.pt'}")
    assert hparams_sessions(other)[0] == 1
    accumulator = EventAccumulator(str(other / "tb"), size_guidance={"tensors": 0})
    accumulator.Reload()
    assert "config/text_summary" in accumulator.Tags()["tensors"]


def test_a_restart_from_scratch_drops_the_points_of_an_attempt_without_a_checkpoint(tiny_folder, tmp_path):
    import shutil

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    train(tiny_folder, run, "trainer.epochs=2")
    shutil.rmtree(run / "checkpoints")  # killed before its first checkpoint
    (run / "metrics.json").unlink()
    train(tiny_folder, run, "trainer.epochs=2", "trainer.resume=auto")
    accumulator = EventAccumulator(str(run / "tb" / "val"), size_guidance={"scalars": 0})
    accumulator.Reload()
    assert [e.step for e in accumulator.Scalars("acc")] == [36, 72]
    assert hparams_sessions(run)[0] == 1


def test_resuming_a_completed_run_changes_nothing_and_a_smaller_budget_is_refused(tiny_folder, tmp_path, caplog):
    run = tmp_path / "run"
    summary = train(tiny_folder, run, "trainer.epochs=2")
    written = {p: p.stat().st_mtime_ns for p in [run / "metrics.json", *(run / "tb").rglob("events.*")]}
    assert train(tiny_folder, run, "trainer.epochs=2", "trainer.resume=auto") == json.loads(json.dumps(summary))
    assert {p: p.stat().st_mtime_ns for p in written} == written
    with pytest.raises(ConfigError, match="trained on 72 samples, more than this run's budget of 36"):
        train(tiny_folder, run, "trainer.epochs=1", "trainer.resume=auto")
    assert "was trained toward" not in caplog.text, "no word on the schedule of a run that is refused"


def test_mixed_precision_asked_for_on_the_cpu_is_said_to_be_off(caplog):
    from vision_exp.training.runtime import amp_dtype

    assert amp_dtype("auto", torch.device("cpu")) is None and not caplog.records
    assert amp_dtype("bf16", torch.device("cpu")) is None
    assert "trainer.amp=bf16: mixed precision runs on a GPU only; on cpu the run computes in float32" in caplog.text


def test_automatic_precision_on_cuda_is_bf16_from_ampere_on_and_fp16_before(monkeypatch):
    """Compute capability 8.0 (A100) and newer compute bf16 natively; older cards (7.5, a T4) would emulate it
    slowly and get fp16 with a GradScaler instead; trainer.amp=off stays off on any card."""
    from vision_exp.training.runtime import amp_dtype

    cuda = torch.device("cuda")
    for capability, dtype in (((7, 5), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: capability)
        assert amp_dtype("auto", cuda) is dtype, capability
        assert amp_dtype("off", cuda) is None and amp_dtype("fp16", cuda) is torch.float16


def test_another_folders_checkpoint_resumes_only_on_its_batches_and_with_budget_left(tiny_folder, tmp_path):
    """A checkpoint's position (epoch, batch, step) counts batches of its training set at its batch size: with
    others the run would resume elsewhere in the data and end off its budget; its outputs mean its classes. A
    checkpoint that spent the whole budget leaves nothing to train. Each is refused before the new folder gets a file."""
    from conftest import write_image_folder

    train(tiny_folder, tmp_path / "first", "trainer.epochs=1")
    last = tmp_path / "first" / "checkpoints" / "last.pt"
    smaller = write_image_folder(tmp_path / "smaller", per_split={"train": 8, "val": 4})
    others = write_image_folder(tmp_path / "others", classes=("n03000134", "n03394916", "n03417042"))
    refusals = {
        "classes": (others, [], r"it was trained on other classes \(n01440764, n02102040, n02979186\.\.\.; here "
                                r"n03000134, n03394916, n03417042\.\.\.\)"),
        "batch": (tiny_folder, ["data.batch_size=4"], r"\(36 samples in\): its batches were of other data \(batch size 8 there, 4 here\)"),
        "images": (smaller, [], r"training images 36 there, 24 here"),
        "spent": (tiny_folder, ["trainer.epochs=1"], r"has trained on 36 samples, this run's whole budget: nothing is left"),
        "model": (tiny_folder, ["model=resnet_v2"], r"its run trained with other settings \(model.block: BasicBlock -> "
                                                    r"BasicBlockv2\); resume with its model and optimizer settings"),
        "optimizer": (tiny_folder, ["optimizer=adamw"], r"its run trained with other settings \(optimizer.betas: None -> "),
    }
    for name, (folder, extra, message) in refusals.items():
        with pytest.raises(ConfigError, match=message):
            train(folder, tmp_path / name, "trainer.epochs=2", *extra, f"trainer.resume={last}")
        assert not (tmp_path / name).exists() or not any((tmp_path / name).rglob("*.json")), name
    assert train(tiny_folder, tmp_path / "on", "trainer.epochs=2", f"trainer.resume={last}")["samples_seen"] == 72


def test_resume_auto_in_a_new_folder_warns_that_it_continues_nothing(tiny_folder, tmp_path, caplog):
    """Without hydra.run.dir, trainer.resume=auto lands in a new dated folder: a user who meant to continue a run
    must be told that it trains from scratch, and how to name the run; in the run's own folder it resumes quietly."""
    import logging

    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="vision_exp"):
        train(tiny_folder, run, "trainer.epochs=1", "trainer.resume=auto")
    assert f"trainer.resume=auto: {run} holds no earlier run, so this one starts from scratch" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vision_exp"):
        train(tiny_folder, run, "trainer.epochs=2", "trainer.resume=auto")
    assert "holds no earlier run" not in caplog.text


def test_a_continuation_is_not_started_again_over_its_own_checkpoints(tiny_folder, tmp_path):
    """trainer.resume=<another folder's last.pt> into a folder with checkpoints of its own (an earlier attempt of
    the same command) would start again from the other folder, cut the folder's curves back and rotate its
    progress away: refused, every file as it was, and trainer.resume=auto goes on from the folder's own."""
    train(tiny_folder, tmp_path / "first", "trainer.epochs=1")
    last = tmp_path / "first" / "checkpoints" / "last.pt"
    on = tmp_path / "on"
    train(tiny_folder, on, "trainer.epochs=2", f"trainer.resume={last}")
    before = {path: path.read_bytes() for path in on.rglob("*") if path.is_file()}
    with pytest.raises(ConfigError, match=r"already holds checkpoints of its own: continue from them with "
                                          r"trainer.resume=auto, or continue .*last.pt in another hydra.run.dir"):
        train(tiny_folder, on, "trainer.epochs=3", f"trainer.resume={last}")
    assert {path: path.read_bytes() for path in on.rglob("*") if path.is_file()} == before
    assert train(tiny_folder, on, "trainer.epochs=3", "trainer.resume=auto")["samples_seen"] == 108


def test_a_checkpoint_resumes_only_on_the_images_it_trained_on(tiny_folder, tmp_path):
    """As many images of the same classes are not the same training set: another per-class draw, or a dataset folder
    whose files were swapped between classes, would continue the run's batch positions over other images. Both
    are refused before anything is written; a copy of the same images in another place (a new Kaggle session) resumes."""
    import shutil

    from conftest import write_image_folder

    larger = write_image_folder(tmp_path / "larger", per_split={"train": 14, "val": 4})
    train(larger, tmp_path / "first", "data.max_train_per_class=12")
    last = tmp_path / "first" / "checkpoints" / "last.pt"
    with pytest.raises(ConfigError, match=r"\(36 samples in\): it was trained on other images \(as many, of the same "
                                          r"classes, but other files or labels"):
        train(larger, tmp_path / "redrawn", "trainer.epochs=2", "data.max_train_per_class=12", "data.subset_seed=1",
              f"trainer.resume={last}")
    assert not (tmp_path / "redrawn").exists() or not any((tmp_path / "redrawn").rglob("*.json"))
    moved = shutil.copytree(larger, tmp_path / "elsewhere" / "larger")
    assert train(moved, tmp_path / "on", "trainer.epochs=2", "data.max_train_per_class=12",
                 f"trainer.resume={last}")["samples_seen"] == 72

    swapped = shutil.copytree(tiny_folder, tmp_path / "swapped")
    run = tmp_path / "run"
    train(swapped, run)
    written = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    first, second = (swapped / "train" / wnid for wnid in TINY_CLASSES[:2])
    (first / f"{TINY_CLASSES[0]}_5.JPEG").rename(second / "moved_in.JPEG")
    (second / f"{TINY_CLASSES[1]}_5.JPEG").rename(first / "moved_in.JPEG")
    with pytest.raises(ConfigError, match="it was trained on other images"):
        train(swapped, run, "trainer.epochs=2", "trainer.resume=auto")
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == written


def test_a_checkpoint_is_restored_from_the_cpu(tiny_folder, tmp_path, monkeypatch):
    """Resuming loads the checkpoint onto the CPU, whatever the training device: RNG states can only be set from
    CPU tensors (mapped onto a GPU, every resume there failed); weights and optimizer state follow the model."""
    mapped = []
    load_latest = trainer_mod.load_latest
    monkeypatch.setattr(trainer_mod, "load_latest", lambda path, map_location: mapped.append(map_location)
                        or load_latest(path, map_location))
    train(tiny_folder, tmp_path / "run", "trainer.epochs=1")
    train(tiny_folder, tmp_path / "run", "trainer.epochs=2", "trainer.resume=auto")
    assert mapped == ["cpu"]


def test_extending_a_run_whose_budget_cut_its_last_epoch_is_refused(tiny_folder, tmp_path, caplog):
    """50 samples of 36 per epoch end 14 samples into epoch 2: going on from there to 108 could not see
    each image once per epoch nor end on the longer schedule, so the run is refused and left as it was,
    without first saying that it resumed, and no refusal advises a larger budget."""
    run = tmp_path / "run"
    train(tiny_folder, run, "trainer.train_samples=50")
    written = {p: p.stat().st_mtime_ns for p in [run / "metrics.json", run / "config.yaml", *run.rglob("*.pt")]}
    caplog.clear()
    with pytest.raises(ConfigError, match=r"ended inside epoch 2, where its budget of 50 samples cut it \(14 of 36\)"):
        train(tiny_folder, run, "trainer.train_samples=108", "trainer.resume=auto")
    assert "resumed from" not in caplog.text and "was trained toward" not in caplog.text
    with pytest.raises(ConfigError, match=r"nothing is left to train in .*elsewhere\. Evaluate it: ") as refused:
        train(tiny_folder, tmp_path / "elsewhere", "trainer.train_samples=50", f"trainer.resume={run}/checkpoints/last.pt")
    assert "Raise trainer.train_samples" not in str(refused.value)
    assert {p: p.stat().st_mtime_ns for p in written} == written
    assert train(tiny_folder, run, "trainer.train_samples=50", "trainer.resume=auto")["samples_seen"] == 50
    assert train(tiny_folder, tmp_path / "whole", "trainer.train_samples=72")["samples_seen"] == 72
    assert train(tiny_folder, tmp_path / "whole", "trainer.train_samples=108", "trainer.resume=auto")["samples_seen"] == 108


def test_a_run_stopped_at_the_step_its_budget_cut_is_not_extended_either(tiny_folder, tmp_path, monkeypatch):
    """A stop signal at the last (cut) step checkpoints before the epoch ends: the same refusal applies."""
    run = tmp_path / "run"
    stopped_by_a_signal(monkeypatch, 6, tiny_folder, run, "trainer.train_samples=50")
    with pytest.raises(ConfigError, match=r"ended inside epoch 2, where its budget of 50 samples cut it \(14 of 36\)"):
        train(tiny_folder, run, "trainer.train_samples=108", "trainer.resume=auto")


def test_an_extension_that_is_stopped_does_not_leave_the_folder_saying_completed(tiny_folder, tmp_path, monkeypatch):
    """Extending a finished run moves its completed record aside: a SIGTERM in the extension is recorded as
    such, not hidden behind the shorter run's "completed" (which then refused to resume the longer budget), in
    metrics.json and in the HParams dashboard, whose session ends only when the extension completes."""
    from tensorboard.plugins.hparams import api_pb2

    from vision_exp.reporting.records import recorded_failures

    run = tmp_path / "run"
    first = train(tiny_folder, run, "trainer.epochs=1")
    with sigterm_at_step(monkeypatch, 7), pytest.raises(trainer_mod.Interrupted), recorded_failures(run):
        train(tiny_folder, run, "trainer.epochs=3", "trainer.resume=auto")
    assert json.loads((run / "metrics.json").read_text())["status"] == "interrupted"
    assert json.loads((run / "metrics.completed-36.json").read_text()) == json.loads(json.dumps(first))
    assert hparams_sessions(run) == (1, [])
    assert train(tiny_folder, run, "trainer.epochs=3", "trainer.resume=auto")["samples_seen"] == 108
    assert json.loads((run / "metrics.completed-36.json").read_text())["samples_seen"] == 36
    assert hparams_sessions(run) == (1, [api_pb2.Status.Value("STATUS_SUCCESS")])


def test_a_signal_in_an_epochs_last_steps_stops_before_its_evaluation(tiny_folder, tmp_path, monkeypatch):
    """On an accelerator the stop flag is read every 25 steps at most: a SIGTERM between the last reading and
    the epoch's end must not wait for the validation and train-eval passes (minutes on a large set), nor for
    25 steps of the next epoch. The checkpoint is at the epoch's last batch; resumed, the epoch is evaluated."""
    monkeypatch.setattr(Trainer, "_finite_check_interval", lambda self, log_every: 1000)
    evaluated = []
    end_epoch = Trainer._end_epoch
    monkeypatch.setattr(Trainer, "_end_epoch", lambda self: evaluated.append(self.position.epoch) or end_epoch(self))
    run = tmp_path / "run"
    with sigterm_at_step(monkeypatch, 3), pytest.raises(trainer_mod.Interrupted, match=r"epoch 1, batch 5/5"):
        train(tiny_folder, run, "trainer.epochs=2")
    assert evaluated == [] and load_checkpoint(run / "checkpoints" / "last.pt")["position"]["step"] == 5
    assert train(tiny_folder, run, "trainer.epochs=2", "trainer.resume=auto")["samples_seen"] == 72
    assert evaluated == [0, 1]


def test_a_signal_after_the_last_step_lets_the_run_complete_then_stops(tiny_folder, tmp_path, monkeypatch):
    """SIGTERM while the last epoch evaluates: the run completes (nothing left to checkpoint), and the stop
    still reaches the caller, so that a sweep ends instead of starting its next job."""
    end_epoch = Trainer._end_epoch

    def signalled_while_evaluating(self):
        if self.position.epoch + 1 == self.budget.num_epochs:
            self.signals._handle(signal.SIGTERM, None)
        return end_epoch(self)

    monkeypatch.setattr(Trainer, "_end_epoch", signalled_while_evaluating)
    run = tmp_path / "run"
    with pytest.raises(trainer_mod.Interrupted, match="arrived as the run ended: it completed first") as stopped:
        train(tiny_folder, run, "trainer.epochs=2")
    assert stopped.value.completed and stopped.value.signum == signal.SIGTERM
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "completed" and record["samples_seen"] == 72


def test_checkpoint_writes_inside_an_epoch_are_not_training_time(tiny_folder, tmp_path, monkeypatch):
    """Each write is made to take ten seconds of the trainer's clock: none of them may count as training."""
    import time

    real_clock, save, written = time.perf_counter, trainer_mod.save_checkpoint, []

    def slow_save(*args, **kwargs):
        written.append(args[1])
        return save(*args, **kwargs)

    monkeypatch.setattr(trainer_mod, "save_checkpoint", slow_save)
    monkeypatch.setattr(trainer_mod.time, "perf_counter", lambda: real_clock() + 10.0 * len(written))
    summary = train(tiny_folder, tmp_path / "run", "trainer.checkpoint_every_steps=1")
    train_time = summary["samples_seen"] / summary["train_images_per_s"]
    assert len(written) >= 4 and train_time < 10 < 40 <= summary["wall_time_s"]


def test_the_save_interval_counts_from_the_last_write(tiny_folder, tmp_path, monkeypatch):
    """Epochs of 400 s (the trainer's clock moved on at each epoch's end) and trainer.save_interval_s=600: the first
    write comes after epoch 2 (800 s); the next is due 600 s after it, so epoch 3 (400 s later) waits, and the
    run's end writes epoch 4."""
    import time

    real_clock, end_epoch, save, epochs_ended, saved_after = time.perf_counter, Trainer._end_epoch, Trainer.save, [], []

    def slow_epochs(self):
        epochs_ended.append(self.position.epoch + 1)
        return end_epoch(self)

    def recording_save(self, name):
        saved_after.append(self.position.epoch)
        save(self, name)

    monkeypatch.setattr(trainer_mod.time, "perf_counter", lambda: real_clock() + 400.0 * len(epochs_ended))
    monkeypatch.setattr(Trainer, "_end_epoch", slow_epochs)
    monkeypatch.setattr(Trainer, "save", recording_save)
    train(tiny_folder, tmp_path / "run", "trainer.epochs=4", "trainer.save_interval_s=600")
    assert saved_after == [2, 4]


def test_a_step_checkpoint_due_at_an_epochs_last_step_is_written(tiny_folder, tmp_path, monkeypatch):
    """5 steps per epoch and trainer.checkpoint_every_steps=5: each checkpoint falls on an epoch's last step,
    which the in-epoch write leaves to the epoch end; that write must not then wait for trainer.save_interval_s."""
    saved_at, save = [], Trainer.save

    def recording_save(self, name):
        saved_at.append(self.position.step)
        save(self, name)

    monkeypatch.setattr(Trainer, "save", recording_save)
    train(tiny_folder, tmp_path / "run", "trainer.epochs=3", "trainer.checkpoint_every_steps=5",
          "trainer.save_interval_s=3600")
    assert saved_at == [5, 10, 15]


def test_a_checkpoint_without_fp16_state_resumes_where_fp16_is_used(tiny_folder, tmp_path, monkeypatch):
    """A run begun without fp16 (bf16 on an A100, float32 on the CPU) saves an empty GradScaler state; resumed
    where trainer.amp=auto picks fp16 (a T4 in the next Colab session), the scaler starts afresh instead of
    failing to load it."""
    run = tmp_path / "run"
    train(tiny_folder, run, "trainer.epochs=1")
    assert load_checkpoint(run / "checkpoints" / "last.pt")["scaler"] == {}
    monkeypatch.setattr(trainer_mod, "amp_dtype", lambda mode, device: torch.float16)  # as on a T4
    assert train(tiny_folder, run, "trainer.epochs=2", "trainer.resume=auto")["samples_seen"] == 72


def test_weights_that_evaluate_to_nan_stop_the_run_before_they_are_saved(tiny_folder, tmp_path, monkeypatch):
    """A BatchNorm running mean that became NaN keeps the training loss finite (training mode normalises with
    the batch's statistics) while every evaluation is NaN: the run stops at the epoch end, and neither last.pt
    nor best.pt holds those weights."""
    step = Trainer._step

    def overflowing_statistics(self, images, labels, global_count):
        result = step(self, images, labels, global_count)
        if self.position.step == 1:
            batchnorm = next(m for m in self.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
            batchnorm.running_mean.fill_(float("nan"))
        return result

    monkeypatch.setattr(Trainer, "_step", overflowing_statistics)
    run = tmp_path / "run"
    with pytest.raises(trainer_mod.TrainingDiverged, match=r"evaluation loss \(val/loss and train/loss\) became NaN or "
                                                           r"infinite at step 5 \(end of epoch 1\).*checkpoint: none yet"):
        train(tiny_folder, run, "trainer.epochs=2")
    assert not list(run.glob("checkpoints/*.pt"))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_nan_or_infinite_training_loss_stops_the_run_at_its_step(tiny_folder, tmp_path, monkeypatch, bad):
    """On the CPU the loss is checked after every step: a NaN or an infinite loss at step 2 stops the run there,
    not at the epoch's end, and no checkpoint holds the weights it produced."""
    taken, step = [], Trainer._step

    def diverging_at_step_2(self, images, labels, global_count):
        loss, correct = step(self, images, labels, global_count)
        taken.append(self.position.step + 1)
        return (loss + bad if len(taken) == 2 else loss), correct

    monkeypatch.setattr(Trainer, "_step", diverging_at_step_2)
    stopped = r"NaN or infinite at step 2 \(epoch 1\).*checkpoint: none yet"
    with pytest.raises(trainer_mod.TrainingDiverged, match=stopped):
        train(tiny_folder, tmp_path / "run", "trainer.epochs=2")
    assert taken == [1, 2] and not list((tmp_path / "run").glob("checkpoints/*.pt"))


def test_running_metrics_are_the_sample_weighted_means_of_the_training_steps(tiny_folder, tmp_path, monkeypatch):
    """train_running/loss and /acc average over each epoch's own samples: each step's mean loss counts for its batch's
    size (the last batch of 4 half as much as one of 8), the accuracy is a percentage of the samples, and the
    sums start afresh with each epoch."""
    steps, original = [], Trainer._step

    def recording(self, images, labels, global_count):
        loss, correct = original(self, images, labels, global_count)
        steps.append((float(loss), float(correct), len(labels)))
        return loss, correct

    monkeypatch.setattr(Trainer, "_step", recording)
    train(tiny_folder, tmp_path / "run", "trainer.epochs=2")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [size for _, _, size in steps] == [8, 8, 8, 8, 4] * 2 and len(records) == 2
    for record, epoch_steps in zip(records, (steps[:5], steps[5:])):
        correct = sum(c for _, c, _ in epoch_steps)
        assert correct > 0, "a run with no correct prediction could not tell a percentage from a fraction"
        loss_sum = sum(loss * size for loss, _, size in epoch_steps)
        assert record["train_running/loss"] == pytest.approx(loss_sum / 36, rel=1e-6)
        assert record["train_running/acc"] == pytest.approx(100.0 * correct / 36)


@pytest.mark.parametrize("interval", [0, 3600])
def test_a_tied_validation_accuracy_keeps_the_earlier_best_checkpoint(tiny_folder, tmp_path, monkeypatch, interval):
    """best.pt is replaced only by a strictly better validation accuracy: on a tie (common on small validation
    sets) best_epoch and best.pt stay at the first epoch that reached it. best.pt is written once, at the first
    write after that epoch (rewritten at each write, best.prev.pt would become a copy of it), with the weights
    that epoch evaluated: a copy kept until trainer.save_interval_s lets it be written, not the live weights."""
    evaluate, save, validated, saved = trainer_mod.evaluate, trainer_mod.save_checkpoint, [], []

    def tied_validation(model, batches, device, amp=None, num_classes=None, memory_format=torch.contiguous_format):
        result = evaluate(model, batches, device, amp, num_classes, memory_format)
        if num_classes:  # only the validation pass asks for a confusion
            validated.append({key: value.clone() for key, value in model.state_dict().items()})
            result = {**result, "acc": 50.0}
        return result

    def recording_save(state, path):
        saved.append(path.name)
        save(state, path)

    monkeypatch.setattr(trainer_mod, "evaluate", tied_validation)
    monkeypatch.setattr(trainer_mod, "save_checkpoint", recording_save)
    summary = train(tiny_folder, tmp_path / "run", "trainer.epochs=3", f"trainer.save_interval_s={interval}")
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert (summary["best_epoch"], summary["best_val_acc"]) == (1, 50.0)
    assert (best["epoch"], best["samples_seen"]) == (1, 36) and saved.count("best.pt") == 1
    first, last = validated[0], validated[-1]
    assert len(validated) == 3 and any(not torch.equal(value, last[key]) for key, value in first.items())
    for key, value in first.items():
        assert torch.equal(best["model"][key], value), key


@pytest.mark.parametrize("fp16", [False, True])
def test_grad_clip_bounds_the_gradient_norm_of_every_step(tiny_folder, tmp_path, monkeypatch, fp16):
    """trainer.grad_clip: the optimizer steps with the gradients' total norm scaled down to the limit (a
    cross-entropy gradient of a fresh model is far above 0.01, so each step is clipped to it exactly). Under fp16
    (a GradScaler, as on a T4) the gradients are unscaled before they are clipped, not clipped at the loss scale."""
    if fp16:
        monkeypatch.setattr(trainer_mod, "amp_dtype", lambda mode, device: torch.float16)
    norms, fit = [], Trainer.fit

    def watching_fit(self):
        step = self.optimizer.step

        def recording_step(*args, **kwargs):
            grads = [p.grad.norm() for p in self.model.parameters() if p.grad is not None]
            norms.append(float(torch.stack(grads).norm()))
            return step(*args, **kwargs)

        self.optimizer.step = recording_step
        return fit(self)

    monkeypatch.setattr(Trainer, "fit", watching_fit)
    train(tiny_folder, tmp_path / "run", "trainer.grad_clip=0.01", "trainer.train_samples=16")
    # A GradScaler skips the optimizer's step when the scaled gradients overflowed (its first scale, 65536, can be
    # too high; the next step halves it): every step that is taken is clipped.
    assert norms == [pytest.approx(0.01, rel=1e-3)] * (len(norms) if fp16 else 2) and norms


def stopped_and_resumed_like_uninterrupted(monkeypatch, tiny_folder, tmp_path, stop_at, weights, metric, *args):
    """A run stopped by a signal before step `stop_at` and resumed ends with the `weights` entry of last.pt and the
    `metric` of the same run never stopped."""
    args = ("trainer.epochs=2", "trainer.deterministic=true", *args)
    reference = train(tiny_folder, tmp_path / "a", *args)
    stopped_by_a_signal(monkeypatch, stop_at, tiny_folder, tmp_path / "b", *args)
    resumed = train(tiny_folder, tmp_path / "b", *args, "trainer.resume=auto")
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")[weights]
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")[weights]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed[metric] == pytest.approx(reference[metric], abs=1e-6)


def test_a_resumed_run_continues_its_ema_from_the_checkpoint(tiny_folder, tmp_path, monkeypatch):
    """The EMA is part of the state: a run stopped in its second epoch and resumed ends with the EMA weights (the
    ones evaluated and kept as best.pt) and metrics of the run that never stopped."""
    stopped_and_resumed_like_uninterrupted(monkeypatch, tiny_folder, tmp_path, 6, "ema", "val_loss", "trainer.ema_decay=0.9")


@pytest.mark.parametrize("warmup", [False, True])
def test_the_ema_copies_the_first_update_then_keeps_its_decay_of_the_average(tiny_folder, tmp_path, monkeypatch,
                                                                              warmup):
    """timm's EMA copies the weights at the first update; each later one keeps `decay` of the average: 0.9 with
    trainer.ema_warmup=false, and with the warmup the smaller decay of the updates done, 1 - 2^(-2/3) at the
    second (timm's power 2/3), so that a short run does not average in its random initial weights."""
    live, step = [], Trainer._step

    def recording(self, images, labels, global_count):
        result = step(self, images, labels, global_count)
        live.append({key: value.clone() for key, value in self.model.state_dict().items()})
        return result

    monkeypatch.setattr(Trainer, "_step", recording)
    train(tiny_folder, tmp_path / "run", "trainer.train_samples=16", "trainer.ema_decay=0.9",
          f"trainer.ema_warmup={str(warmup).lower()}")
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["ema"]
    ema = {key.removeprefix("module."): value for key, value in saved.items()}
    decay = 1 - 2 ** (-2 / 3) if warmup else 0.9
    first, second = live
    for key, value in second.items():
        expected = decay * first[key] + (1 - decay) * value if value.is_floating_point() else value
        torch.testing.assert_close(ema[key], expected, msg=key)


def test_a_run_stopped_inside_its_last_epoch_resumes_the_running_metrics_of_that_epoch(tiny_folder, tmp_path,
                                                                                         monkeypatch):
    """The running sums of the batches trained before a stop are part of the checkpoint: stopped after 2 of the
    last epoch's 5 steps and resumed, the run reports train_running/* over all 5, as the run that never stopped."""
    stopped_and_resumed_like_uninterrupted(monkeypatch, tiny_folder, tmp_path, 6, "model", "train_running_loss")


def test_a_run_with_random_batch_augmentation_resumes_exactly(tiny_folder, tmp_path, monkeypatch):
    """Mixup/CutMix and random erasing draw from the global RNGs (Python, NumPy, torch): the checkpoint restores them,
    so a run stopped mid-epoch draws the same mixes after the resume and ends with the uninterrupted run's weights."""
    stopped_and_resumed_like_uninterrupted(monkeypatch, tiny_folder, tmp_path, 4, "model", "train_running_loss",
                                           "augmentation=deit")


def test_a_finished_run_frees_its_model_at_once_in_a_fresh_process(tiny_folder, tmp_path):
    """The next job of a one-process sweep (Hydra's basic launcher, a notebook) must not train beside the last
    one's model, optimizer and data. In a fresh process the run's first figure imports matplotlib, whose import
    leaves reference cycles that hold the trainer's frames; with the collector off only their prompt collection
    frees the model."""
    import subprocess
    import sys

    script = f"""
import gc, sys, weakref
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).parent)!r})
from conftest import compose, tiny_overrides
from vision_exp.experiment import run_experiment
from vision_exp.training.trainer import Trainer
assert "matplotlib.pyplot" not in sys.modules
models, built = [], Trainer.__init__
def recording(self, model, *args, **kwargs):
    models.append(weakref.ref(model))
    built(self, model, *args, **kwargs)
Trainer.__init__ = recording
gc.disable()
overrides = tiny_overrides({str(tiny_folder)!r}, "data.cache_dir={tmp_path / 'cache'}")
run_experiment(compose(overrides), Path({str(tmp_path / 'run')!r}), overrides)
print("alive" if models[0]() is not None else "freed", flush=True)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "freed"
