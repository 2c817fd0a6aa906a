"""vision_exp/training/trainer.py, checked where mutation testing found behaviour no other test pinned down.

Each test names the behaviour a mutant (a flipped comparison, a dropped call, another argument) broke while the
rest of the suite passed. They train a few steps on the tiny folder of conftest.py, or call the trainer's small
helpers directly.
"""
from __future__ import annotations

import contextlib
import dataclasses
import shutil
import types

import pytest
import torch

from conftest import compose, finished_trainer, lrs, sigterm_at_step, tiny_overrides, tiny_vit_overrides
from vision_exp.errors import CheckpointError, Interrupted
from vision_exp.experiment import run_experiment
from vision_exp.reporting.files import read_jsonl
from vision_exp.reporting.run import RunReporter
from vision_exp.training import trainer as trainer_mod
from vision_exp.training.checkpoint import load_checkpoint, save_checkpoint
from vision_exp.training.trainer import Position, Trainer, TrainingDiverged


def train(folder, run_dir, *extra):
    return run_experiment(compose(tiny_overrides(folder, *extra)), run_dir, list(extra))


# --- the clock: throughput, data wait, epoch and wall times ---------------------------------------------------------

STEP_S, FETCH_S, EVAL_S, REPORT_S = 1.0, 0.5, 2.0, 3.0


@pytest.fixture
def fake_clock(monkeypatch):
    """The trainer's clock moves only when a step (STEP_S), a batch fetch (FETCH_S), an evaluation pass (EVAL_S) or the
    one-off input report (REPORT_S) runs: every time the trainer reports follows from these."""
    clock = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(trainer_mod, "time", types.SimpleNamespace(perf_counter=lambda: clock.now))

    def tick(seconds):
        clock.now += seconds

    step, evaluate, stream, log_inputs = Trainer._step, trainer_mod.evaluate, trainer_mod.batch_stream, RunReporter.log_inputs

    def slow_step(self, *args):
        tick(STEP_S)
        return step(self, *args)

    def slow_evaluate(*args, **kwargs):
        tick(EVAL_S)
        return evaluate(*args, **kwargs)

    @contextlib.contextmanager
    def slow_stream(batches):
        with stream(batches) as fetched:
            yield (tick(FETCH_S) or batch for batch in fetched)

    def slow_log_inputs(self, images):
        tick(REPORT_S)
        return log_inputs(self, images)

    monkeypatch.setattr(Trainer, "_step", slow_step)
    monkeypatch.setattr(trainer_mod, "evaluate", slow_evaluate)
    monkeypatch.setattr(trainer_mod, "batch_stream", slow_stream)
    monkeypatch.setattr(RunReporter, "log_inputs", slow_log_inputs)
    return clock


def test_throughput_data_wait_and_epoch_time_follow_the_clock(tiny_folder, tmp_path, fake_clock):
    """images_per_s counts the epoch's images over its training time (fetches included, the input report and the
    evaluation not), data_wait_frac is the fetches' share of it, epoch_time_s adds the two evaluation passes; the
    summary's throughput is over all training time and its wall time over everything: benchmarks compare these."""
    summary = train(tiny_folder, tmp_path / "run", "trainer.epochs=2")
    train_time = 5 * (STEP_S + FETCH_S)  # 36 images in batches of 8: 5 steps an epoch
    for record in read_jsonl(tmp_path / "run" / "metrics.jsonl"):
        assert record["images_per_s"] == pytest.approx(36 / train_time)
        assert record["data_wait_frac"] == pytest.approx(5 * FETCH_S / train_time)
        assert record["epoch_time_s"] == pytest.approx(train_time + 2 * EVAL_S)
    assert summary["train_images_per_s"] == pytest.approx(72 / (2 * train_time))
    assert summary["wall_time_s"] == pytest.approx(2 * (train_time + 2 * EVAL_S) + REPORT_S)


def test_a_resumed_runs_wall_time_adds_the_time_before_each_resume(tiny_folder, tmp_path, monkeypatch, fake_clock):
    """wall_time_s is the run's whole time, not the last session's: a run of 2 epochs resumed after the first, then
    stopped by a signal inside the second (a checkpoint written mid-epoch) and resumed again, reports the time and
    throughput of the same run uninterrupted."""
    whole = train(tiny_folder, tmp_path / "whole", "trainer.epochs=2")
    run = tmp_path / "run"
    train(tiny_folder, run, "trainer.epochs=1")
    with sigterm_at_step(monkeypatch, 6), pytest.raises(Interrupted):
        train(tiny_folder, run, "trainer.epochs=2", "trainer.resume=auto")
    resumed = train(tiny_folder, run, "trainer.epochs=2", "trainer.resume=auto")
    assert resumed["wall_time_s"] == pytest.approx(whole["wall_time_s"])
    assert resumed["train_images_per_s"] == pytest.approx(whole["train_images_per_s"])


def test_a_write_is_due_once_exactly_save_interval_s_have_passed(tiny_folder, tmp_path, monkeypatch, fake_clock):
    """trainer.save_interval_s set to exactly an epoch's time (its training and its two evaluations): every epoch
    end is due to write last.pt, the interval being reached, not only exceeded."""
    saved, save = [], Trainer.save
    monkeypatch.setattr(Trainer, "save", lambda self, name: saved.append(self.position.epoch) or save(self, name))
    epoch_s = 5 * (STEP_S + FETCH_S) + 2 * EVAL_S
    train(tiny_folder, tmp_path / "run", "trainer.epochs=3", f"trainer.save_interval_s={epoch_s}")
    assert saved == [1, 2, 3]


# --- the learning rate each step uses ------------------------------------------------------------------------------

def test_each_step_trains_at_the_schedules_rate_for_the_steps_done(tiny_folder, tmp_path, monkeypatch):
    """Step k (from 0) uses the schedule's rate after k updates: the warmup of 1 epoch (5 steps) then the cosine to
    step 15, neither one step ahead nor on another epoch length; the TensorBoard chart shows the rate each step used."""
    used, step = [], Trainer._step

    def recording(self, *args):
        used.append(self.optimizer.param_groups[0]["lr"])
        return step(self, *args)

    monkeypatch.setattr(Trainer, "_step", recording)
    charted, log_step = [], RunReporter.log_step
    monkeypatch.setattr(RunReporter, "log_step", lambda self, *args: charted.append(args[-1]) or log_step(self, *args))
    train(tiny_folder, tmp_path / "run", "trainer.epochs=3", "scheduler.warmup_epochs=1", "scheduler.lr_min=0",
          "scheduler.warmup_lr_init=0")
    expected = lrs("cosine", total=15, per_epoch=5, warmup_epochs=1)[:15]
    assert used == pytest.approx([max(used) * value for value in expected])
    assert charted == pytest.approx(used)


# --- the weights that are evaluated --------------------------------------------------------------------------------

def test_an_ema_turned_on_at_resume_starts_from_the_restored_weights(tiny_folder, tmp_path, monkeypatch):
    """A checkpoint without EMA weights, resumed with trainer.ema_decay: the average begins at the trained weights,
    not at the new model's random ones (which the warmup would still weigh in for many steps)."""
    run = tmp_path / "run"
    train(tiny_folder, run, "trainer.epochs=1")
    restored, at_start, fit = load_checkpoint(run / "checkpoints" / "last.pt")["model"], [], Trainer.fit

    def recording_fit(self):
        at_start.append([{k: v.clone() for k, v in model.state_dict().items()} for model in (self.ema.module, self.model)])
        return fit(self)

    monkeypatch.setattr(Trainer, "fit", recording_fit)
    train(tiny_folder, tmp_path / "ema", "trainer.epochs=2", "trainer.ema_decay=0.9",
          f"trainer.resume={run / 'checkpoints' / 'last.pt'}")
    (ema, model), = at_start
    for key, value in restored.items():
        assert torch.equal(model[key], value) and torch.equal(ema[key], value), key


# --- the epoch record ----------------------------------------------------------------------------------------------

def test_the_epoch_record_names_each_evaluation_number_and_the_best_so_far(tiny_folder, tmp_path, monkeypatch):
    """val/acc_best is the best validation accuracy so far (it stays after a worse epoch), val/acc5 is the top-5
    accuracy the evaluation measured, not the top-1 under another name, train/acc that of the train-eval pass, not
    the validation's. TensorBoard gets the best epoch's confusion
    once, at the samples seen by then, and the input images of the first step, before it trains."""
    evaluate, accuracies, train_accuracies = trainer_mod.evaluate, iter([60.0, 40.0]), iter([80.0, 90.0])

    def scripted(model, batches, device, amp=None, num_classes=None, memory_format=torch.contiguous_format):
        result = evaluate(model, batches, device, amp, num_classes, memory_format)
        if num_classes:  # only the validation pass asks for a confusion
            return {**result, "acc": next(accuracies), "acc5": 95.0}
        return {**result, "acc": next(train_accuracies)}

    monkeypatch.setattr(trainer_mod, "evaluate", scripted)
    steps, confusions, inputs = [], [], []
    step, log_confusion, log_inputs = Trainer._step, RunReporter.log_confusion, RunReporter.log_inputs
    monkeypatch.setattr(Trainer, "_step", lambda self, *args: steps.append(1) or step(self, *args))
    monkeypatch.setattr(RunReporter, "log_confusion",
                        lambda self, *args: confusions.append(args[2:]) or log_confusion(self, *args))
    monkeypatch.setattr(RunReporter, "log_inputs", lambda self, images: inputs.append(len(steps)) or log_inputs(self, images))
    summary = train(tiny_folder, tmp_path / "run", "trainer.epochs=2")
    assert [(r["val/acc"], r["val/acc_best"], r["val/acc5"], r["train/acc"]) for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [
        (60.0, 60.0, 95.0, 80.0), (40.0, 60.0, 95.0, 90.0)]
    assert (summary["best_epoch"], summary["best_val_acc"], summary["val_acc5"]) == (1, 60.0, 95.0)
    assert confusions == [(1, 36)] and inputs == [1]


# --- checkpoints a resume reads -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_epoch_checkpoint(tiny_folder, tmp_path_factory):
    """last.pt of a one-epoch run on the tiny folder (copy it before changing it)."""
    root = tmp_path_factory.mktemp("one_epoch")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VISION_EXP_OUTPUT", str(root / "outputs"))
        patch.setenv("VISION_EXP_CACHE", str(root / "cache"))
        train(tiny_folder, root / "run", "trainer.epochs=1")
    return root / "run" / "checkpoints" / "last.pt"


def edited_checkpoint(source, target, drop: str):
    state = load_checkpoint(source)
    del state[drop]
    save_checkpoint(state, target)
    return target


def test_a_checkpoint_without_rng_state_is_refused_naming_it(tiny_folder, tmp_path, one_epoch_checkpoint):
    """A checkpoint lacking the RNG states cannot resume exactly: a CheckpointError names what it lacks, instead of a
    KeyError after its weights were already loaded."""
    edited = edited_checkpoint(one_epoch_checkpoint, tmp_path / "no_rng.pt", "rng")
    with pytest.raises(CheckpointError, match=r"holds no rng state"):
        train(tiny_folder, tmp_path / "run", "trainer.epochs=2", f"trainer.resume={edited}")


def test_a_checkpoint_saved_before_training_digests_still_resumes(tiny_folder, tmp_path, one_epoch_checkpoint):
    """Checkpoints written before the training-set digest existed hold none: they resume (nothing to compare),
    instead of being refused as trained on other images."""
    edited = edited_checkpoint(one_epoch_checkpoint, tmp_path / "old.pt", "train_digest")
    summary = train(tiny_folder, tmp_path / "run", "trainer.epochs=2", f"trainer.resume={edited}")
    assert summary["status"] == "completed" and summary["samples_seen"] == 72


def test_a_run_stopped_at_the_last_step_of_a_whole_epoch_can_be_extended(tiny_folder, tmp_path, monkeypatch):
    """A stop signal at an epoch's last step (a batch of 4 that ends 36 images) leaves a checkpoint at the end of
    the data, not one cut by the budget: resuming it with a longer budget trains on."""
    run = tmp_path / "run"
    with sigterm_at_step(monkeypatch, 4), pytest.raises(Interrupted):
        train(tiny_folder, run, "trainer.epochs=1")
    position = load_checkpoint(run / "checkpoints" / "last.pt")["position"]
    assert (position["epoch"], position["batch"], position["samples_seen"]) == (0, 5, 36)
    assert train(tiny_folder, run, "trainer.epochs=2", "trainer.resume=auto")["samples_seen"] == 72


# --- gradient accumulation -----------------------------------------------------------------------------------------

def test_more_parts_than_samples_in_a_last_batch_trains_only_the_filled_parts(tiny_folder, tmp_path, monkeypatch):
    """trainer.grad_accum_steps=8 on batches of 8 and a last batch of 4: that batch trains in 4 parts of one sample,
    not in 8 with 4 empty ones (whose mean loss is NaN)."""
    parts, forward_backward = [], Trainer._forward_backward
    monkeypatch.setattr(Trainer, "_forward_backward",
                        lambda self, images, *args: parts.append(len(images)) or forward_backward(self, images, *args))
    overrides = tiny_vit_overrides(tiny_folder, "model=vit_v1", "trainer.train_samples=36", "trainer.grad_accum_steps=8")
    summary = run_experiment(compose(overrides), tmp_path / "run", overrides)
    assert parts == [1] * 36 and summary["samples_seen"] == 36 and summary["steps"] == 5


# --- advice and messages -------------------------------------------------------------------------------------------

def test_the_out_of_memory_advice_caps_parts_at_each_ranks_share_and_offers_a_resume_only_from_a_checkpoint(
        tiny_folder, tmp_path, monkeypatch):
    """Doubled parts are capped at the samples of a rank's share (rounded up: 8 on 3 ranks is up to 3 each), and the
    'resume' hint appears only when the run has a checkpoint to resume."""
    _, trainer = finished_trainer(monkeypatch, tiny_overrides(tiny_folder), tmp_path / "run")
    trainer.cfg = dataclasses.replace(trainer.cfg, grad_accum_steps=5)
    assert "run again with trainer.grad_accum_steps=8 (" in str(trainer._out_of_memory(evaluating=False))
    trainer.cfg = dataclasses.replace(trainer.cfg, grad_accum_steps=2)
    trainer.dist = dataclasses.replace(trainer.dist, world_size=3)
    message = str(trainer._out_of_memory(evaluating=False))
    assert "run again with trainer.grad_accum_steps=3 (" in message and "trainer.resume=auto" in message
    shutil.rmtree(trainer.checkpoint_dir)
    assert "trainer.resume=auto" not in str(trainer._out_of_memory(evaluating=False))


def test_on_an_accelerator_the_loss_is_checked_every_log_interval_at_most_25_steps():
    """Each check waits for the device: on a GPU it comes with each progress line, and at least every 25 steps
    (so a NaN is caught within 25 steps); on the CPU after every step."""
    interval = Trainer._finite_check_interval
    assert interval(types.SimpleNamespace(device=torch.device("cpu")), 10) == 1
    cuda = types.SimpleNamespace(device=torch.device("cuda"))
    assert (interval(cuda, 10), interval(cuda, 100)) == (10, 25)


def test_a_divergence_names_its_window_of_steps_the_last_checkpoint_and_the_precision_advice(tmp_path):
    """Checked every 25 steps, a NaN at step 50 lies in steps 26-50; the message names last.pt when it exists, and
    advises turning mixed precision off only when the run uses it."""
    trainer = Trainer.__new__(Trainer)
    trainer.run_dir, trainer.position, trainer.amp = tmp_path, Position(epoch=1), None
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    with pytest.raises(TrainingDiverged, match=r"at steps 26-50 \(epoch 2\); last good checkpoint: none yet") as diverged:
        trainer._check_finite(nan, 50, 25)
    assert "trainer.amp" not in str(diverged.value)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"")
    trainer.amp = torch.bfloat16
    message = str(trainer._diverged("x"))
    assert f"last good checkpoint: {tmp_path / 'checkpoints' / 'last.pt'}." in message and "trainer.amp=bf16/off" in message


def test_a_distilled_checkpoint_without_a_teacher_digest_resumes(tiny_folder, tmp_path, one_epoch_checkpoint):
    """A student's checkpoint saved before teacher digests were recorded holds none: there is nothing to compare, so
    it resumes under its teacher instead of being refused as taught by another one."""
    teacher = shutil.copy(one_epoch_checkpoint, tmp_path / "teacher.pt")
    student = tiny_vit_overrides(tiny_folder, "experiment=cpu_vit_distilled", f"loss.distillation.teacher={teacher}")
    run_experiment(compose([*student, "trainer.train_samples=36"]), tmp_path / "first", [])
    edited = edited_checkpoint(tmp_path / "first" / "checkpoints" / "last.pt", tmp_path / "old.pt", "teacher_digest")
    summary = run_experiment(compose([*student, "trainer.train_samples=72", f"trainer.resume={edited}"]), tmp_path / "run", [])
    assert summary["status"] == "completed" and summary["samples_seen"] == 72


def test_progress_bars_only_on_a_terminal_and_a_resumed_epochs_bar_starts_at_its_batch(tiny_folder, tmp_path,
                                                                                     monkeypatch, caplog):
    """trainer.progress=auto draws bars only on a terminal (a log file gets lines instead); trainer.progress=bar on a
    run resumed after 2 of 5 batches shows that epoch's bar at 2/5, not at 0/5 with the count off by two."""
    import io
    import logging

    bars = []

    class Bar:
        def __init__(self, **kwargs):
            if kwargs.get("unit") == "batch":  # the data cache draws bars of images
                bars.append(kwargs)

        def update(self, n):
            pass

        def set_postfix(self, **kwargs):
            pass

        def close(self):
            pass

    monkeypatch.setattr("tqdm.auto.tqdm", Bar)
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger=trainer_mod.__name__), sigterm_at_step(monkeypatch, 1), \
            pytest.raises(Interrupted):
        train(tiny_folder, run, "trainer.epochs=2", "trainer.progress=auto", "trainer.log_every_steps=1")
    assert not bars and "epoch 1 [1/5] loss" in caplog.text
    train(tiny_folder, run, "trainer.epochs=2", "trainer.progress=bar", "trainer.resume=auto")
    assert [(bar["initial"], bar["total"]) for bar in bars] == [(2, 5), (0, 5)]


@pytest.mark.parametrize("nan_at, extra", [(5, ()), (2, ("trainer.checkpoint_every_steps=2",))])
def test_on_an_accelerator_no_step_goes_unchecked_before_an_epoch_end_or_a_checkpoint(tiny_folder, tmp_path,
                                                                                     monkeypatch, nan_at, extra):
    """With the loss checked every 3 steps (as on a GPU), a NaN at an epoch's last step (5) or at a step a checkpoint
    falls on (2) still stops the run there: no epoch is evaluated and no checkpoint keeps the diverged state."""
    taken, step = [], Trainer._step

    def diverging(self, images, labels, global_count):
        loss, correct = step(self, images, labels, global_count)
        taken.append(self.position.step + 1)
        return (loss + float("nan") if taken[-1] == nan_at else loss), correct

    monkeypatch.setattr(Trainer, "_finite_check_interval", lambda self, log_every: 3)
    monkeypatch.setattr(Trainer, "_step", diverging)
    with pytest.raises(TrainingDiverged, match=r"NaN or infinite at steps \d-\d \(epoch 1\)"):
        train(tiny_folder, tmp_path / "run", "trainer.epochs=2", *extra)
    assert taken == list(range(1, nan_at + 1)) and not list((tmp_path / "run").glob("checkpoints/*.pt"))


def test_a_run_killed_after_its_last_checkpoint_resumes_to_the_same_summary(tiny_folder, tmp_path):
    """Killed after the final last.pt but before metrics.json: the resume has no step left to train, and its
    summary still reports the last epoch's metrics (from metrics.jsonl), not nulls."""
    run = tmp_path / "run"
    first = train(tiny_folder, run, "trainer.epochs=1")
    (run / "metrics.json").unlink()
    again = train(tiny_folder, run, "trainer.epochs=1", "trainer.resume=auto")
    for key in ("val_acc", "val_loss", "train_acc", "train_loss", "train_running_loss", "samples_seen", "steps"):
        assert again[key] == pytest.approx(first[key]), key


def test_step_checkpoints_leave_the_running_metrics_as_without_them_also_after_a_crash(tiny_folder, tmp_path,
                                                                                      monkeypatch):
    """trainer.checkpoint_every_steps=2 moves the running sums into the checkpoint mid-epoch: an epoch's
    train_running/* are those of a run without step checkpoints (no step counted twice), and a run that crashed
    right after the step-2 checkpoint and resumed reports them too (steps 1-2 not lost)."""
    base = ("trainer.epochs=1", "trainer.deterministic=true")
    running = lambda run: {k: v for k, v in read_jsonl(run / "metrics.jsonl")[0].items() if k.startswith("train_running/")}  # noqa: E731
    train(tiny_folder, tmp_path / "plain", *base)
    train(tiny_folder, tmp_path / "stepped", *base, "trainer.checkpoint_every_steps=2")
    assert running(tmp_path / "stepped") == pytest.approx(running(tmp_path / "plain"), abs=1e-6)

    save = Trainer.save

    def crash_after_saving(self, name):
        save(self, name)
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(Trainer, "save", crash_after_saving)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_folder, tmp_path / "crashed", *base, "trainer.checkpoint_every_steps=2")
    monkeypatch.setattr(Trainer, "save", save)
    assert load_checkpoint(tmp_path / "crashed" / "checkpoints" / "last.pt")["position"]["step"] == 2
    train(tiny_folder, tmp_path / "crashed", *base, "trainer.checkpoint_every_steps=2", "trainer.resume=auto")
    assert running(tmp_path / "crashed") == pytest.approx(running(tmp_path / "plain"), abs=1e-6)
