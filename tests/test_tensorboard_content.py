"""What a run's TensorBoard holds: overlaid metric families, inputs, confusion, attention, config."""
import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import compose, tiny_overrides, tiny_vit_overrides
from vision_exp.experiment import run_experiment


def load(folder):
    accumulator = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator.Tags()


def test_vit_run_logs_curves_inputs_confusion_attention_and_config(tiny_folder, tmp_path):
    run = tmp_path / "run"
    cfg = compose(tiny_vit_overrides(tiny_folder, "experiment=cpu_vit", "trainer.train_samples=72"))
    run_experiment(cfg, run, [])
    root = load(run / "tb")
    assert {"inputs/train_augmented", "val/confusion_best", "val/attention_cls_token"} <= set(root["images"])
    assert "config" in {t.split("/")[0] for t in root["tensors"]}
    assert {"lr", "images_per_s", "data_wait_frac"} <= set(root["scalars"])
    for family in ("train", "train_running", "val"):
        tags = set(load(run / "tb" / family)["scalars"])
        assert {"loss", "acc"} <= tags, family
    accumulator = EventAccumulator(str(run / "tb" / "val"), size_guidance={"scalars": 0})
    accumulator.Reload()
    assert [e.step for e in accumulator.Scalars("acc")] == [36, 72]  # x-axis: training samples seen


def test_an_average_pooled_vit_shows_the_patch_tokens_attention_not_the_unread_class_token(tiny_folder, tmp_path):
    run = tmp_path / "run"
    run_experiment(compose(tiny_vit_overrides(tiny_folder, "experiment=cpu_vit", "model.pool=avg")), run, [])
    images = set(load(run / "tb")["images"])
    assert "val/attention_patch_mean" in images and "val/attention_cls_token" not in images


def test_with_an_ema_the_attention_maps_are_drawn_from_the_averaged_weights(tiny_folder, tmp_path, monkeypatch):
    """The maps show the model whose accuracy the run reports (with EMA on, the average), not the live weights."""
    from vision_exp.training import trainer as trainer_mod

    drawn, draw = [], trainer_mod.classifier_attention

    def recording(model, images):
        drawn.append(model)
        return draw(model, images)

    monkeypatch.setattr(trainer_mod, "classifier_attention", recording)
    fit, trainers = trainer_mod.Trainer.fit, []
    monkeypatch.setattr(trainer_mod.Trainer, "fit", lambda self: trainers.append(self) or fit(self))
    run_experiment(compose(tiny_vit_overrides(tiny_folder, "experiment=cpu_vit", "trainer.train_samples=72",
                                              "trainer.ema_decay=0.9")), tmp_path / "run", [])
    (trainer,) = trainers
    assert drawn and all(model is trainer.ema.module for model in drawn)


def scalars(folder, tag) -> list:
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    accumulator.Reload()
    return [(e.step, e.value) for e in accumulator.Scalars(tag)]


def test_each_family_charts_its_own_numbers(tiny_folder, tmp_path):
    """tb/train is the eval-mode pass over training images, tb/train_running the running average: a swap would
    show the misleading number under the honest name. final/* are metrics.json's."""
    run = tmp_path / "run"
    run_experiment(compose(tiny_vit_overrides(tiny_folder, "experiment=cpu_vit", "trainer.train_samples=72")), run, [])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for family in ("train", "train_running", "val"):
        for tag in ("acc", "loss"):
            expected = [(r["samples_seen"], r[f"{family}/{tag}"]) for r in records]
            assert scalars(run / "tb" / family, tag) == [(s, pytest.approx(v, rel=1e-6)) for s, v in expected], (family, tag)
    assert any(r["train/acc"] != r["train_running/acc"] for r in records)  # else a swap would go unseen
    final = json.loads((run / "metrics.json").read_text())
    for key in ("val_acc", "best_val_acc", "train_acc", "train_running_acc"):
        assert scalars(run / "tb", f"final/{key}") == [(final["samples_seen"], pytest.approx(final[key], rel=1e-6))], key


def test_the_confusion_figure_of_a_thousand_classes_stays_small():
    """At 0.45 inch a class, ImageNet's 1,000 drew a 452-inch square that needed more than 8 GB and failed the
    run at its first checkpoint: the figure stops growing and drops the names it has no room for."""
    import torch

    from vision_exp.reporting.figures import MAX_FIGURE_INCHES, confusion_figure

    confusion = torch.eye(1000, dtype=torch.long) * 3
    names = [f"class {i}" for i in range(1000)]
    figure = confusion_figure(confusion, names)
    assert max(figure.get_size_inches()) <= MAX_FIGURE_INCHES
    assert not {label.get_text() for label in figure.axes[0].get_xticklabels()} & set(names)
    named = confusion_figure(torch.eye(3, dtype=torch.long), ["a", "b", "c"])
    assert [t.get_text() for t in named.axes[0].get_yticklabels()] == ["a", "b", "c"]


def test_a_nan_metric_is_null_in_metrics_jsonl(tmp_path):
    """Diverged evaluation (NaN loss with finite training) must still leave lines any JSON reader accepts."""
    from vision_exp.reporting.run import RunReporter

    reporter = RunReporter(tmp_path, {"seed": 0})
    reporter.log_epoch({"epoch": 1, "epoch_progress": 1.0, "samples_seen": 8, "val/loss": float("nan"), "val/acc": 0.0})
    reporter.close()

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    line = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0], parse_constant=refuse)
    assert line["val/loss"] is None and line["val/acc"] == 0.0


def test_a_figure_that_cannot_be_written_raises_its_own_error(tmp_path, monkeypatch):
    """On a read-only folder the temporary file's clean-up failed too, and its error hid savefig's."""
    import errno
    import pathlib

    from vision_exp.reporting.files import pyplot, save_figure_atomic

    figure = pyplot().figure()
    monkeypatch.setattr(figure, "savefig", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EROFS, "read-only (savefig)")))
    monkeypatch.setattr(pathlib.Path, "unlink", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EROFS, "read-only (unlink)")))
    with pytest.raises(OSError, match=r"savefig") as raised:
        save_figure_atomic(figure, tmp_path / "plot.png")
    assert raised.value.__context__ is None


def test_curves_png_draws_each_family_under_its_own_name_against_epoch_progress(tmp_path, monkeypatch):
    """curves.png: the eval-mode train pass is labelled as such and the running average as the running one (a
    swap would show the misleading number under the honest name); x is epoch_progress, so that the points of
    a run stopped within an epoch stand where it stopped."""
    from vision_exp.reporting import curves

    drawn = {}
    monkeypatch.setattr(curves, "save_figure_atomic", lambda fig, path: drawn.update(fig=fig, path=path))
    records = [{"epoch": 1, "epoch_progress": 1.0, "train/acc": 50.0, "train_running/acc": 40.0, "val/acc": 45.0,
                "train/loss": 1.5, "train_running/loss": 1.9, "val/loss": 1.7},
               {"epoch": 2, "epoch_progress": 1.5, "train/acc": 60.0, "train_running/acc": 48.0, "val/acc": 52.0,
                "train/loss": 1.2, "train_running/loss": 1.6, "val/loss": 1.4}]
    curves.plot_curves(records, tmp_path / "curves.png")
    loss_axes, acc_axes = drawn["fig"].axes
    for ax, metric in ((loss_axes, "loss"), (acc_axes, "acc")):
        lines = {line.get_label(): line for line in ax.get_lines()}
        for family, label in (("train", "train (eval mode)"), ("train_running", "train (running, train mode)"),
                              ("val", "val")):
            assert list(lines[label].get_ydata()) == [r[f"{family}/{metric}"] for r in records], (metric, label)
            assert list(lines[label].get_xdata()) == [1.0, 1.5]


def step_points(run, tag) -> list:
    """(samples seen, value) of a per-step chart in the run's tb/ folder."""
    return scalars(run / "tb", f"train_step/{tag}")


def recording_steps(monkeypatch) -> list:
    """Each training step as (its mean loss, its batch size, the lr it used, samples seen after it)."""
    from vision_exp.training.trainer import Trainer

    steps, original = [], Trainer._step

    def recording(self, images, labels, global_count):
        lr = self.optimizer.param_groups[0]["lr"]
        loss, correct = original(self, images, labels, global_count)
        seen = (steps[-1][3] if steps else self.position.samples_seen) + global_count
        steps.append((float(loss), len(labels), lr, seen))
        return loss, correct

    monkeypatch.setattr(Trainer, "_step", recording)
    return steps


def test_the_loss_and_lr_are_charted_every_n_steps_against_samples_seen(tiny_folder, tmp_path, monkeypatch):
    """trainer.log_every_steps=3 over 2 epochs of 5 steps (batches of 8, 8, 8, 8, 4): train_step/loss is the
    sample-weighted mean of the steps since the last point (across the epoch's end too), train_step/lr the lr
    the point's step used, at the samples seen after it; the epoch charts keep their own tags and points."""
    steps = recording_steps(monkeypatch)
    run = tmp_path / "run"
    run_experiment(compose(tiny_overrides(tiny_folder, "trainer.epochs=2", "trainer.log_every_steps=3")), run, [])
    assert [size for _, size, _, _ in steps] == [8, 8, 8, 8, 4] * 2
    every = 3
    ends = list(range(every, len(steps) + 1, every))
    windows = [steps[end - every:end] for end in ends]
    expected_loss = [(w[-1][3], sum(loss * size for loss, size, _, _ in w) / sum(size for _, size, _, _ in w))
                     for w in windows]
    assert step_points(run, "loss") == [(s, pytest.approx(v, rel=1e-5)) for s, v in expected_loss]
    assert step_points(run, "lr") == [(w[-1][3], pytest.approx(w[-1][2], rel=1e-6)) for w in windows]
    root = load(run / "tb")["scalars"]
    assert [s for s, _ in scalars(run / "tb", "lr")] == [36, 72]  # the epoch chart of the lr is as it was
    for family in ("train", "train_running", "val"):
        assert not {t for t in load(run / "tb" / family)["scalars"] if t.startswith("train_step")}, family
    assert {"train_step/loss", "train_step/lr"} <= set(root)


def test_by_default_an_epoch_has_at_least_four_step_points(tiny_folder, tmp_path, monkeypatch):
    """Without trainer.log_every_steps: batches of 4 give 9 steps an epoch, and the points come at even
    intervals, at least 4 an epoch (every 50 steps on long epochs)."""
    steps = recording_steps(monkeypatch)
    run = tmp_path / "run"
    run_experiment(compose(tiny_overrides(tiny_folder, "data.batch_size=4", "trainer.epochs=2")), run, [])
    per_epoch = len(steps) // 2
    seen = [s for s, _ in step_points(run, "loss")]
    assert seen == [s for s, _ in step_points(run, "lr")]
    assert sum(s <= steps[per_epoch - 1][3] for s in seen) >= 4  # in the first epoch
    at_step = {s: index + 1 for index, (_, _, _, s) in enumerate(steps)}
    numbers = [at_step[s] for s in seen]
    interval = numbers[0]
    assert numbers == list(range(interval, len(steps) + 1, interval))


def test_the_lr_chart_shows_the_warmup_and_the_schedule_step_by_step(tiny_folder, tmp_path):
    """A 2-epoch cosine run warming up for its first epoch: one lr point a step, each the lr the schedule gives
    that step (a scheduler built apart), rising through the warmup, then decaying."""
    from vision_exp.recipe.schedule import create_scheduler

    run = tmp_path / "run"
    cfg = compose(tiny_overrides(tiny_folder, "trainer.epochs=2", "trainer.log_every_steps=1", "scheduler=cosine",
                                 "scheduler.warmup_epochs=1", "optimizer.lr=0.1"))
    run_experiment(cfg, run, [])
    points = step_points(run, "lr")
    assert len(points) == 10
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = create_scheduler(optimizer, total_steps=10, steps_per_epoch=5, warmup_epochs=1)
    expected = []
    for step in range(10):  # step `step + 1` trains with the lr set after `step` updates
        schedule.step_update(num_updates=step)
        expected.append(optimizer.param_groups[0]["lr"])
    assert [v for _, v in points] == [pytest.approx(v, rel=1e-6) for v in expected]
    values = [v for _, v in points]
    peak = values.index(max(values))
    assert peak >= 4 and all(a < b for a, b in zip(values[:peak], values[1:peak + 1]))  # the warmup rises
    assert all(a > b for a, b in zip(values[peak:], values[peak + 1:]))  # then the cosine decays


def test_a_resumed_run_charts_each_step_once_as_an_uninterrupted_run(tiny_folder, tmp_path, monkeypatch):
    """A run that crashes at step 8 logged steps 7 and 8's points after its last checkpoint (step 6): the resumed
    run logs them again, and TensorBoard must show each once (purge_step), as the uninterrupted run does."""
    from vision_exp.training.trainer import Trainer

    base = ("trainer.epochs=2", "trainer.deterministic=true", "trainer.log_every_steps=1", "trainer.checkpoint_every_steps=3")
    run_experiment(compose(tiny_overrides(tiny_folder, *base)), tmp_path / "a", [])
    reference = {tag: step_points(tmp_path / "a", tag) for tag in ("loss", "lr")}

    original = Trainer._step

    def crashing(self, images, labels, global_count):
        if self.position.step == 8:
            raise RuntimeError("simulated crash")
        return original(self, images, labels, global_count)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_step", crashing)
        with pytest.raises(RuntimeError):
            run_experiment(compose(tiny_overrides(tiny_folder, *base)), tmp_path / "b", [])
    interrupted = step_points(tmp_path / "b", "loss")
    assert [s for s, _ in interrupted] == [s for s, _ in reference["loss"]][:8]  # points after the checkpoint
    run_experiment(compose(tiny_overrides(tiny_folder, *base, "trainer.resume=auto")), tmp_path / "b", [])
    for tag in ("loss", "lr"):
        resumed = step_points(tmp_path / "b", tag)
        assert [s for s, _ in resumed] == [s for s, _ in reference[tag]], tag  # each step once, in order
        assert resumed == [(s, pytest.approx(v, rel=1e-5)) for s, v in reference[tag]], tag


def session_hparams(run) -> dict:
    """The hyper-parameters of the run's HParams session start, as plain values."""
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    accumulator = EventAccumulator(str(run / "tb"))
    accumulator.Reload()
    content = accumulator.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
    values = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    return {key: getattr(value, value.WhichOneof("kind")) for key, value in values.items()}


def test_the_hparams_hold_no_paths_but_name_the_dataset_and_class_list(tiny_folder, tmp_path):
    """A distilled run on a folder with a class-list file: the dataset folder and the class list show by their
    names, the teacher checkpoint, cache and output paths not at all; what the run computes is all there."""
    from conftest import TINY_CLASSES

    teacher_run = tmp_path / "teacher"
    run_experiment(compose(tiny_overrides(tiny_folder)), teacher_run, [])
    class_list = tmp_path / "lists" / "three.txt"
    class_list.parent.mkdir()
    class_list.write_text("\n".join(TINY_CLASSES) + "\n")
    run = tmp_path / "run"
    cfg = compose(tiny_vit_overrides(tiny_folder, "experiment=cpu_vit_distilled", f"data.classes={class_list}",
                                     f"loss.distillation.teacher={teacher_run / 'checkpoints' / 'best.pt'}"))
    run_experiment(cfg, run, [])
    hparams = session_hparams(run)
    paths = {key: value for key, value in hparams.items()
             if isinstance(value, str) and (value.startswith(("/", "~", "./")) or str(tmp_path) in value)}
    assert not paths
    assert hparams["data.root"] == tiny_folder.name and hparams["data.classes"] == class_list.name
    assert not [key for key in hparams if key.startswith(("paths.", "data.cache_dir", "loss.distillation.teacher"))]
    assert hparams["loss.distillation.kind"] == "soft" and hparams["optimizer.lr"] == pytest.approx(cfg.optimizer.lr)
    assert hparams["model.embed_dim"] == 16


def test_a_long_interval_charts_the_sample_weighted_mean_of_all_its_steps(tmp_path):
    """trainer.log_every_steps=150: the reporter keeps no tensor a step for that long (it folds them on the
    device), and the point is still the mean over the 150 steps' samples, the lr that of the 150th step."""
    from vision_exp.reporting.run import RunReporter

    reporter = RunReporter(tmp_path, {"seed": 0}, log_every_steps=150, steps_per_epoch=1000)
    generator = torch.Generator().manual_seed(0)
    losses = torch.rand(300, generator=generator) * 3
    counts = [8 if step % 7 else 3 for step in range(300)]
    for step in range(300):
        reporter.log_step(step + 1, 8 * (step + 1), losses[step], counts[step], lr=0.001 * step)
        assert len(reporter._step_losses) <= 64
    reporter.close()

    def mean(part):
        return sum(float(losses[i]) * counts[i] for i in part) / sum(counts[i] for i in part)

    assert step_points(tmp_path, "loss") == [(1200, pytest.approx(mean(range(150)))),
                                             (2400, pytest.approx(mean(range(150, 300))))]
    assert step_points(tmp_path, "lr") == [(1200, pytest.approx(0.149)), (2400, pytest.approx(0.299))]


def test_the_hparams_name_the_config_groups_a_run_was_composed_of(tiny_folder, tmp_path):
    """In the enhancement study's HParams table a row says which enhancement (and experiment, model, ...) it
    is: a preset's values alone would not; where it ran (env, paths) and Hydra's own groups are no column."""
    import vision_exp

    run = tmp_path / "run"
    vision_exp.run(tiny_vit_overrides(tiny_folder, "experiment=cpu_vit", "enhancement=label_smoothing"), run_dir=str(run))
    choices = {key.removeprefix("choices."): value for key, value in session_hparams(run).items()
               if key.startswith("choices.")}
    assert choices["experiment"] == "cpu_vit" and choices["enhancement"] == "label_smoothing"
    assert choices["model"] == "vit_v1" and choices["data"] == "folder" and choices["debug"] == "none"
    assert not [group for group in choices if group.startswith(("hydra", "env", "paths"))]


def test_a_preset_sweeps_job_is_named_by_the_experiment_it_ran():
    from vision_exp.conf_dir import group_choices

    composed = {"experiment@_global_": "e2_vit", "experiment": "resnet_vs_vit", "model": "vit_v1", "env": "kaggle",
                "hydra/launcher": "basic", "enhancement": None}
    assert group_choices(composed) == {"experiment": "e2_vit", "model": "vit_v1", "enhancement": "none"}


def test_step_points_come_as_asked_or_every_fifty_steps_with_four_an_epoch_at_least():
    """trainer.log_every_steps wins; by default a point every 50 steps, more often on epochs of under 200 steps,
    and every step on the shortest epochs (never an interval of 0, which would divide by zero)."""
    from vision_exp.reporting.run import step_interval

    assert step_interval(7, 1000) == 7
    assert step_interval(None, 1000) == 50 and step_interval(None, 200) == 50
    assert step_interval(None, 40) == 10 and step_interval(None, 9) == 2
    assert step_interval(None, 3) == 1 and step_interval(None, 0) == 1


def test_an_infinite_metric_is_null_in_metrics_jsonl_and_only_metrics_are_charted(tmp_path):
    """A diverged loss is inf as often as NaN: strict JSON has neither. The counters (epoch, samples seen, progress)
    are the x-axis, not charts of their own; the other numbers (lr) are charted."""
    from vision_exp.reporting.run import RunReporter

    reporter = RunReporter(tmp_path, {"seed": 0})
    reporter.log_epoch({"epoch": 1, "epoch_progress": 1.0, "step": 2, "samples_seen": 8, "lr": 0.1,
                        "train_running/loss": float("inf"), "val/loss": -float("inf"), "val/acc": 10.0})
    reporter.close()

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    line = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0], parse_constant=refuse)
    assert line["train_running/loss"] is None and line["val/loss"] is None and line["val/acc"] == 10.0
    assert set(load(tmp_path / "tb")["scalars"]) == {"lr"}
    assert scalars(tmp_path / "tb" / "val", "acc") == [(8, 10.0)]


def session_events(run) -> tuple:
    """(the session start's group name, the session end's status name or None) of the run's tb/ folder."""
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    accumulator = EventAccumulator(str(run / "tb"))
    accumulator.Reload()
    content = accumulator.PluginTagToContent(metadata.PLUGIN_NAME)
    start = plugin_data_pb2.HParamsPluginData.FromString(content[metadata.SESSION_START_INFO_TAG]).session_start_info
    if metadata.SESSION_END_INFO_TAG not in content:
        return start.group_name, None
    end = plugin_data_pb2.HParamsPluginData.FromString(content[metadata.SESSION_END_INFO_TAG]).session_end_info
    return start.group_name, api_pb2.Status.Name(end.status)


def test_only_a_finished_run_ends_its_hparams_session_as_a_success(tmp_path):
    """TensorBoard keeps the first session end it reads: a stopped run that ended its session would stay marked
    so after it was resumed to completion. Each run is a session of its own (its folder), even where two runs
    share every hyper-parameter; metrics.json says completed with the final numbers charted, a 0 % accuracy too."""
    from vision_exp.reporting.run import RunReporter

    (tmp_path / "a").mkdir()
    stopped = RunReporter(tmp_path / "a", {"seed": 0})
    stopped.close()
    assert session_events(tmp_path / "a") == (str(tmp_path / "a"), None)
    reporter = RunReporter(tmp_path / "a", {"seed": 0}, completed_epochs=1, resume_samples=8)
    reporter.finish({"samples_seen": 16, "val_acc": 0.0, "best_val_acc": 12.5})
    assert session_events(tmp_path / "a") == (str(tmp_path / "a"), "STATUS_SUCCESS")
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["status"] == "completed"
    assert scalars(tmp_path / "a" / "tb", "final/val_acc") == [(16, 0.0)]
    assert scalars(tmp_path / "a" / "tb", "final/best_val_acc") == [(16, 12.5)]
    assert len(list((tmp_path / "a" / "tb").glob("*.session"))) == 1  # the resumed attempt's session replaced the first


def test_a_fresh_start_drops_the_points_of_an_attempt_killed_before_its_first_checkpoint(tmp_path):
    """Such an attempt starts over from nothing: its points would mix with the new run's in every chart. A
    resumed run keeps the epochs its checkpoint covers, in metrics.jsonl, curves.png and TensorBoard."""
    from vision_exp.reporting.run import RunReporter

    def epoch(n):
        return {"epoch": n, "epoch_progress": float(n), "samples_seen": 8 * n, "val/acc": 10.0 * n}

    killed = RunReporter(tmp_path, {"seed": 0})
    killed.log_epoch(epoch(1))
    killed.close()
    fresh = RunReporter(tmp_path, {"seed": 0})
    assert fresh.records == [] and (tmp_path / "metrics.jsonl").read_text() == ""
    for n in (1, 2, 3):
        fresh.log_epoch(epoch(n))
    fresh.close()
    assert scalars(tmp_path / "tb" / "val", "acc") == [(8, 10.0), (16, 20.0), (24, 30.0)]
    resumed = RunReporter(tmp_path, {"seed": 0}, completed_epochs=2, resume_samples=16)
    assert resumed.records == [epoch(1), epoch(2)]
    assert [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [epoch(1), epoch(2)]
    resumed.log_epoch(epoch(3))
    resumed.close()
    assert scalars(tmp_path / "tb" / "val", "acc") == [(8, 10.0), (16, 20.0), (24, 30.0)]


def test_the_reporters_curves_show_every_epoch_logged(tmp_path, monkeypatch):
    """curves.png is drawn from the records the reporter keeps: an epoch logged but not kept would be missing."""
    from vision_exp.reporting import run as run_mod

    drawn = []
    monkeypatch.setattr(run_mod, "plot_curves", lambda records, path, title: drawn.append((list(records), path, title)))
    reporter = run_mod.RunReporter(tmp_path, {"seed": 0}, title="tiny")
    records = [{"epoch": n, "epoch_progress": float(n), "samples_seen": 8 * n, "val/acc": 5.0 * n} for n in (1, 2)]
    for record in records:
        reporter.log_epoch(record)
    reporter.plot_curves()
    reporter.close()
    assert drawn == [(records, tmp_path / "curves.png", "tiny")]


def test_the_confusion_figure_normalises_each_true_class_and_writes_its_counts_where_they_belong():
    """Rows are true classes, columns predictions: each row is scaled by its own images (a class without any is
    a row of zeros, not NaN), the counts stand in their cells (a transposed count would blame the wrong class),
    none for empty cells, white on dark cells; up to 30 classes have counts, up to 50 names."""
    from vision_exp.reporting.figures import MAX_COUNTED_CLASSES, MAX_FIGURE_INCHES, MAX_NAMED_CLASSES, confusion_figure

    confusion = torch.tensor([[6, 2, 0], [1, 0, 3], [0, 0, 0]])
    figure = confusion_figure(confusion, ["a", "b", "c"], "val, epoch 3")
    ax = figure.axes[0]
    rows = confusion.double()
    expected = [[v / max(row.sum().item(), 1) for v in row.tolist()] for row in rows]
    drawn = ax.get_images()[0].get_array().tolist()
    assert [v for row in drawn for v in row] == pytest.approx([v for row in expected for v in row])
    texts = {(t.get_position(), t.get_text()): t.get_color() for t in ax.texts}
    cells = {((j, i), str(v)): ("white" if expected[i][j] > 0.5 else "black")
             for i, row in enumerate(confusion.tolist()) for j, v in enumerate(row) if v}
    assert texts == cells and ax.get_title() == "val, epoch 3"
    bigger = confusion_figure(torch.eye(10, dtype=torch.long), [str(i) for i in range(10)])
    assert max(figure.get_size_inches()) < max(bigger.get_size_inches()) <= MAX_FIGURE_INCHES
    for n, named, counted in ((MAX_COUNTED_CLASSES, True, True), (MAX_COUNTED_CLASSES + 1, True, False),
                              (MAX_NAMED_CLASSES, True, False), (MAX_NAMED_CLASSES + 1, False, False)):
        names = [f"class {i}" for i in range(n)]
        ax = confusion_figure(torch.eye(n, dtype=torch.long), names).axes[0]
        assert ([t.get_text() for t in ax.get_yticklabels()] == names) == named, n
        assert (len(ax.texts) == n) == counted and (len(ax.texts) == 0) == (not counted), n


def test_the_attention_overlay_tints_each_image_by_its_own_map_from_none_to_full_red():
    """Each image's map is stretched to [0, 1] on its own (a faint map still shows where it looks), upsampled to
    the image's patches, and only the red channel carries it."""
    from vision_exp.reporting.figures import attention_overlay

    images = torch.full((2, 3, 4, 4), 0.5)
    attention = torch.tensor([[[1.0, 3.0], [2.0, 3.0]], [[0.1, 0.1], [0.1, 0.2]]])
    overlay = attention_overlay(images, attention)
    for b in range(2):
        lo, hi = attention[b].min(), attention[b].max()
        for y in range(4):
            for x in range(4):
                heat = float((attention[b, y // 2, x // 2] - lo) / (hi - lo))
                assert overlay[b, 0, y, x].item() == pytest.approx(min(1.0, 0.55 * 0.5 + 0.45 * heat))
                assert overlay[b, 1:, y, x].tolist() == pytest.approx([0.55 * 0.5] * 2)


def test_the_classifier_attention_reads_the_tokens_the_head_reads():
    """With pool=cls the head reads the class token: its attention to each patch; with average pooling it reads the
    patches: their mean attention to each patch. The class token as a key is no patch, in neither map."""
    from vision_exp.reporting.figures import classifier_attention

    class Attending(torch.nn.Module):
        def __init__(self, pool, maps):
            super().__init__()
            self.pool, self.maps = pool, maps

        def attention_maps(self, images):
            return self.maps

    generator = torch.Generator().manual_seed(0)
    last = torch.rand(2, 3, 5, 5, generator=generator)  # (batch, heads, 1 + 4 tokens, 1 + 4 tokens)
    maps = [torch.zeros_like(last), last]
    cls = classifier_attention(Attending("cls", maps), torch.zeros(2, 3, 4, 4))
    avg = classifier_attention(Attending("avg", maps), torch.zeros(2, 3, 4, 4))
    for b in range(2):
        for patch in range(4):
            by_head = [last[b, h, :, 1 + patch] for h in range(3)]
            from_cls = sum(float(column[0]) for column in by_head) / 3
            from_patches = sum(float(column[q]) for column in by_head for q in range(1, 5)) / 12
            assert cls[b, patch // 2, patch % 2].item() == pytest.approx(from_cls), (b, patch)
            assert avg[b, patch // 2, patch % 2].item() == pytest.approx(from_patches), (b, patch)


def test_the_input_grid_shows_eight_images_a_row():
    from vision_exp.reporting.figures import image_grid

    images = torch.rand(10, 3, 4, 6)
    grid = image_grid(images)
    assert grid.shape == (3, 2 * (4 + 2) + 2, 8 * (6 + 2) + 2)  # 2 rows of 8, 2 px padding
    assert torch.equal(grid[:, 2:6, 2:8], images[0]) and torch.equal(grid[:, 8:12, 2:8], images[8])
