"""What a run folder's records say when one of them is not what its writer leaves (another tool, a bad copy)."""
import json

import pytest

from vision_exp.reporting.files import read_json
from vision_exp.reporting.records import completed_record, first_differences, record_failure


@pytest.mark.parametrize("content", ["[]", "null", '"completed"', "3"])
def test_a_metrics_json_that_holds_no_record_is_no_completed_run_and_a_failure_replaces_it(tmp_path, content):
    """A sweep rerun asks each job folder whether it completed: a metrics.json holding a list or null stopped the
    job with an AttributeError, and the record of that failure failed the same way, leaving the file as it was."""
    (tmp_path / "metrics.json").write_text(content)
    assert completed_record(tmp_path) is None
    record_failure(tmp_path, "out of memory")
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert (record["status"], record["error"]) == ("failed", "out of memory")


def test_read_json_gives_the_default_for_content_of_another_type_and_any_content_without_one(tmp_path):
    path = tmp_path / "record.json"
    path.write_text("[1, 2]")
    assert read_json(path, {}) == {} and read_json(path, []) == [1, 2] and read_json(path) == [1, 2]
    path.write_text('{"status": "completed"}')
    assert read_json(path, {}) == {"status": "completed"}
    assert read_json(tmp_path / "missing.json", {"default": 1}) == {"default": 1}


def test_a_failure_record_keeps_its_details_and_never_replaces_a_completed_runs_results(tmp_path):
    """The traceback of a crash is what its owner debugs from; a late error (a sweep job that failed after it
    completed, a refused rerun) must not turn a finished run's results into a failure."""
    run = tmp_path / "new" / "run"
    record_failure(run, "stopped by SIGTERM", {"traceback": "line 1"}, status="interrupted")
    record = read_json(run / "metrics.json")
    assert (record["status"], record["error"], record["traceback"]) == ("interrupted", "stopped by SIGTERM", "line 1")
    completed = {"status": "completed", "best_val_acc": 50.0}
    (tmp_path / "metrics.json").write_text(json.dumps(completed))
    record_failure(tmp_path, "late error")
    assert read_json(tmp_path / "metrics.json") == completed
    evaluation = {"top1": 80.0, "per_class": {"tench": 90.0}}  # vx-evaluate's, in a folder then named as a run's
    (tmp_path / "metrics.json").write_text(json.dumps(evaluation))
    record_failure(tmp_path, "data.batch_size=0 must be positive")
    assert read_json(tmp_path / "metrics.json") == evaluation
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "failed", "error": "earlier"}))
    record_failure(tmp_path, "later")
    assert read_json(tmp_path / "metrics.json")["error"] == "later"


def stop_inside(run, error, *, before_start_=False):
    """metrics.json after `error` stopped a block under recorded_failures(run) (raised inside before_start() if
    asked), or {} where none was written."""
    from vision_exp.reporting.records import before_start, recorded_failures

    with pytest.raises(type(error)), recorded_failures(run):
        if before_start_:
            with before_start():
                raise error
        raise error
    return read_json(run / "metrics.json", {})


def test_each_way_a_run_stops_leaves_the_status_that_says_whether_to_resume_it(tmp_path):
    """A sweep rerun resumes interrupted jobs and reports failed ones: a stop must read interrupted, a crash failed
    with its traceback; a stop after the last step is a completed run, not an interrupted one."""
    import signal

    from vision_exp.errors import Interrupted

    stopped = stop_inside(tmp_path / "stopped", Interrupted("stopped by SIGTERM", signal.SIGTERM))
    assert (stopped["status"], stopped["error"]) == ("interrupted", "stopped by SIGTERM")
    assert stop_inside(tmp_path / "done", Interrupted("stopped", signal.SIGTERM, completed=True)) == {}
    crashed = stop_inside(tmp_path / "crashed", RuntimeError("boom"))
    assert (crashed["status"], crashed["error"]) == ("failed", "RuntimeError: boom") and "boom" in crashed["traceback"]


def test_a_refused_command_keeps_an_earlier_attempts_status_and_another_process_files(tmp_path):
    """A mistyped resume (refused before it wrote anything) must not mark an earlier attempt failed: its status
    (interrupted, so resumable) stands; a folder another process trains in is that run's; any other refusal is
    recorded as failed, so the folder says why it holds no results."""
    from vision_exp.errors import ConfigError, RankZeroFailed
    from vision_exp.reporting.records import CONFIG_FILE, folder_busy

    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / CONFIG_FILE).write_text("seed: 0\n")  # a run began here, and left no metrics.json
    assert stop_inside(earlier, ConfigError("bad value"), before_start_=True) == {}
    assert stop_inside(earlier, ConfigError("bad later"))["error"] == "bad later"  # after it started: recorded
    fresh = tmp_path / "fresh"
    assert stop_inside(fresh, ConfigError("bad value"), before_start_=True)["status"] == "failed"
    busy = tmp_path / "busy"
    assert stop_inside(busy, folder_busy(busy)) == {} and not busy.exists()
    # under torchrun, the ranks that stopped with rank 0 leave its record (a bug's traceback) as it wrote it
    assert stop_inside(tmp_path / "rank1", RankZeroFailed("rank 0 failed (ValueError; its traceback is above)")) == {}


def test_a_failure_that_cannot_be_recorded_still_raises_the_runs_own_error(tmp_path, monkeypatch):
    """A full disk while writing metrics.json must not replace the run's error by the disk's."""
    import vision_exp.reporting.records as records

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(records, "write_json_atomic", disk_full)
    with pytest.raises(RuntimeError, match="the run's own"), records.recorded_failures(tmp_path):
        raise RuntimeError("the run's own error")


def test_a_held_run_folder_is_busy_and_a_free_one_is_not(tmp_path):
    """A second process in a run folder stops before it touches the first's files; a lock file left by a process
    that ended (the OS released its lock) must not block the folder forever."""
    from vision_exp.errors import RunFolderBusy
    from vision_exp.reporting.files import exclusive_lock
    from vision_exp.reporting.records import LOCK_FILE, check_not_busy

    check_not_busy(tmp_path)  # no lock file yet
    with exclusive_lock(tmp_path / LOCK_FILE) as held:
        assert held
        with exclusive_lock(tmp_path / LOCK_FILE) as second:
            assert not second
        with pytest.raises(RunFolderBusy):
            check_not_busy(tmp_path)
    check_not_busy(tmp_path)  # the lock file stays, its lock is gone


def test_an_extended_completed_run_keeps_its_results_under_its_budget(tmp_path):
    """Extending a finished run moves its metrics.json aside under the samples it had seen, so that two extensions
    keep both results; a folder without a completed run keeps its record where it is."""
    from vision_exp.reporting.records import set_aside_completed_record

    completed = {"status": "completed", "samples_seen": 960, "best_val_acc": 40.0}
    (tmp_path / "metrics.json").write_text(json.dumps(completed))
    set_aside_completed_record(tmp_path)
    assert not (tmp_path / "metrics.json").exists()
    assert read_json(tmp_path / "metrics.completed-960.json") == completed
    (tmp_path / "metrics.json").write_text('{"status": "interrupted"}')
    set_aside_completed_record(tmp_path)
    assert read_json(tmp_path / "metrics.json") == {"status": "interrupted"}


def test_the_overrides_file_holds_every_override_in_order(tmp_path):
    """A sweep's summary reads each job's configuration from its overrides: one lost is a column wrong."""
    from vision_exp.reporting.records import OVERRIDES_FILE, write_overrides

    overrides = ["model=vit_v1", "optimizer.lr=0.1", "seed=3"]
    write_overrides(tmp_path, overrides)
    assert read_json(tmp_path / OVERRIDES_FILE) == overrides


def test_where_and_how_a_run_reports_is_no_difference_of_configuration(tmp_path):
    """Resuming with another logging interval, progress bar, checkpoint cadence, device or output folder computes
    the same run: refusing it would strand a sweep moved to another machine."""
    from vision_exp.reporting.records import config_differences

    saved = {"paths": {"output": "/a"}, "data": {"num_workers": 4, "cache_dir": "/c"},
             "trainer": {"epochs": 2, "device": "cuda", "progress": "bar", "log_every_steps": 10, "save_interval_s": 600,
                         "checkpoint_every_steps": 100}}
    moved = {"paths": {"output": "/b"}, "data": {"num_workers": 0, "cache_dir": "/d"},
             "trainer": {"epochs": 2, "device": "cpu", "progress": "none", "log_every_steps": 1, "save_interval_s": 0,
                         "checkpoint_every_steps": 3}}
    assert config_differences(saved, moved) == []
    assert config_differences(saved, {**moved, "trainer": {**moved["trainer"], "epochs": 3}}) == ["trainer.epochs: 2 -> 3"]


def test_json_files_hold_non_finite_numbers_as_strings_any_reader_accepts(tmp_path):
    """A diverged run's loss is inf or NaN, which is no JSON: a strict reader (jq, a browser) would reject the
    whole metrics.json, nested lists and tuples (a sweep's per-job values) included."""
    from vision_exp.reporting.files import write_json_atomic

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    write_json_atomic(tmp_path / "m.json", {"loss": float("inf"), "low": -float("inf"), "acc": float("nan"),
                                            "curve": [1.0, float("nan")], "pair": (float("inf"), 2),
                                            "nested": {"x": float("nan")}, "ok": 1.5})
    content = json.loads((tmp_path / "m.json").read_text(), parse_constant=refuse)
    assert content == {"loss": "inf", "low": "-inf", "acc": "nan", "curve": [1.0, "nan"], "pair": ["inf", 2],
                       "nested": {"x": "nan"}, "ok": 1.5}


def test_a_write_that_fails_leaves_the_earlier_file_and_no_temporary_one(tmp_path, monkeypatch):
    """metrics.json is replaced whole or not at all: a failed write (a full disk) keeps the earlier content, and
    no temporary file is left in the run folder."""
    import os

    from vision_exp.reporting.files import write_text_atomic

    path = tmp_path / "metrics.json"
    path.write_text("earlier")

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError):
        write_text_atomic(path, "later")
    assert path.read_text() == "earlier" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_leftover_temporaries_are_removed_from_the_run_folder_and_its_checkpoints_only(tmp_path):
    """What a kill cut short (a half-written metrics.json, checkpoint or PNG) goes; the results stay."""
    from vision_exp.reporting.files import remove_leftover_temporaries

    (tmp_path / "checkpoints").mkdir()
    leftovers = [".metrics.json.tmp-123", ".curves.png.tmp.png", "checkpoints/.last.pt.tmp-9",
                 "checkpoints/.conf.png.tmp.png"]
    kept = ["metrics.json", "curves.png", ".lock", "checkpoints/last.pt", "checkpoints/best.pt"]
    for name in leftovers + kept:
        (tmp_path / name).write_text("x")
    remove_leftover_temporaries(tmp_path)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == sorted(kept)


def test_cut_short_records_read_as_far_as_they_are_whole(tmp_path):
    """A crash can cut metrics.json or the last metrics.jsonl line short: readers get the default or the whole
    lines, and a run that logged nothing yet has no lines."""
    from vision_exp.reporting.files import read_jsonl

    path = tmp_path / "metrics.json"
    path.write_text('{"status": "comp')
    assert read_json(path, {}) == {} and read_json(path) is None
    assert read_jsonl(tmp_path / "metrics.jsonl") == []
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n{"epo')
    assert read_jsonl(tmp_path / "metrics.jsonl") == [{"epoch": 1}, {"epoch": 2}]


def test_a_run_whose_last_checkpoint_was_moved_aside_can_still_be_resumed(tmp_path):
    """A kill inside a checkpoint write can leave only last.prev.pt: the run is still resumable from it."""
    from vision_exp.reporting.files import last_checkpoint, previous_path

    assert last_checkpoint(tmp_path) is None
    previous_path(tmp_path / "last.pt").write_text("x")
    assert last_checkpoint(tmp_path) == tmp_path / "last.pt"


def test_a_folder_named_as_a_checkpoint_is_answered_with_the_file_to_name(tmp_path):
    """ckpt=<run folder> is the usual slip: the message names the best checkpoint inside it."""
    from vision_exp.reporting.files import check_writable, missing_checkpoint

    (tmp_path / "checkpoints").mkdir()
    best = tmp_path / "checkpoints" / "best.pt"
    best.write_text("x")
    assert str(best) in missing_checkpoint(tmp_path)
    (tmp_path / "empty").mkdir()
    assert "name a .pt file" in missing_checkpoint(tmp_path / "empty")
    assert missing_checkpoint(best) is None and "not found" in missing_checkpoint(tmp_path / "nope.pt")
    check_writable(tmp_path / "out" / "run")
    assert list((tmp_path / "out" / "run").iterdir()) == []  # the probe is gone


def test_an_evaluation_stores_what_was_measured_per_class_and_as_a_matrix(tmp_path):
    """evaluate's files: the summary numbers as measured, each class's accuracy over its own images (the row of
    the confusion matrix: true class down), no accuracy for a class without images, the matrix as counted."""
    import csv

    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from vision_exp.reporting.evaluation import write_evaluation

    confusion = torch.tensor([[3, 1, 0], [2, 4, 2], [0, 0, 0]])
    names = ["tench", "springer", "cassette"]
    result = {"confusion": confusion, "acc": 58.3, "acc5": 91.7, "loss": 1.25, "count": int(confusion.sum())}
    summary = write_evaluation(tmp_path, result, names, {"checkpoint": "best.pt"})
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert stored == summary
    assert (stored["top1"], stored["top5"], stored["loss"], stored["images"]) == (58.3, 91.7, 1.25, 12)
    assert stored["checkpoint"] == "best.pt"
    rows = confusion.tolist()
    expected = {name: (100.0 * row[i] / sum(row) if sum(row) else None) for i, (name, row) in enumerate(zip(names, rows))}
    assert stored["per_class"] == pytest.approx(expected)
    per_class = list(csv.reader((tmp_path / "per_class.csv").open()))
    assert per_class[0] == ["class", "images", "accuracy"]
    assert per_class[1:] == [[n, str(sum(r)), "" if expected[n] is None else f"{expected[n]:.2f}"] for n, r in zip(names, rows)]
    matrix = list(csv.reader((tmp_path / "confusion.csv").open()))
    assert matrix[0][1:] == names and [[int(v) for v in row[1:]] for row in matrix[1:]] == rows
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    for tag, value in (("eval/top1", 58.3), ("eval/top5", 91.7), ("eval/loss", 1.25)):
        assert events.Scalars(tag)[0].value == pytest.approx(value, rel=1e-6), tag


def test_the_hparams_table_shows_names_not_paths_and_leaves_out_where_a_run_lies():
    """The HParams table compares runs across machines: absolute, home and relative paths would split one
    experiment into many columns; the dataset folder and class list by name say which data."""
    from vision_exp.reporting.hparams import table_hparams

    config = {"data": {"root": "/kaggle/input/imagenette2-160", "classes": "../lists/ten.txt", "cache_dir": "/c",
                       "img_size": 160},
              "loss": {"distillation": {"teacher": "best.pt", "kind": "soft"}},
              "paths": {"output": "outputs"}, "model": {"name": "vit"},
              "extra": {"abs": "/home/me/file", "home": "~/x", "dot": "./x", "up": "../x", "win": "..\\x",
                        "word": "cosine", "relative": "a/b"}}
    assert table_hparams(config) == {"data.root": "imagenette2-160", "data.classes": "ten.txt", "data.img_size": 160,
                                     "loss.distillation.kind": "soft", "model.name": "vit", "extra.word": "cosine",
                                     "extra.relative": "a/b"}
    listed = table_hparams({"data": {"classes": ["n01", "n02"], "root": None}})
    assert listed == {"data.classes": "['n01', 'n02']", "data.root": "None"}


def test_curves_png_has_its_title_and_draws_a_family_that_begins_later(tmp_path, monkeypatch):
    """A family missing from the first records (no train pass yet) still has its line; the title names the run;
    a run with no epoch yet draws empty axes without a legend."""
    from vision_exp.reporting import curves

    drawn = {}
    monkeypatch.setattr(curves, "save_figure_atomic", lambda fig, path: drawn.update(fig=fig, path=path))
    records = [{"epoch_progress": 1.0, "val/acc": 45.0, "val/loss": 1.7},
               {"epoch_progress": 2.0, "val/acc": 52.0, "val/loss": 1.4, "train/acc": 60.0, "train/loss": 1.2}]
    curves.plot_curves(records, tmp_path / "curves.png", "resnet18 on imagenette")
    assert drawn["fig"]._suptitle.get_text() == "resnet18 on imagenette"
    loss_axes, acc_axes = drawn["fig"].axes
    assert "loss" in loss_axes.get_ylabel() and "accuracy" in acc_axes.get_ylabel()
    for ax, metric in ((loss_axes, "loss"), (acc_axes, "acc")):
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert set(lines) == {"train (eval mode)", "val"}
        points = [(x, y) for x, y in lines["train (eval mode)"].get_xydata().tolist() if y == y]  # drawn points
        assert points == [(r["epoch_progress"], r[f"train/{metric}"]) for r in records if f"train/{metric}" in r]
    curves.plot_curves([], tmp_path / "curves.png")
    assert all(ax.get_legend() is None for ax in drawn["fig"].axes)


def test_a_refused_folder_says_how_to_go_on_for_a_run_and_for_a_sweep_job(tmp_path):
    """A sweep job's folder is chosen by its position in the sweep, a run's by hydra.run.dir: the advice must name
    the setting the user can change, and which settings the resume may change."""
    from vision_exp.errors import ConfigError
    from vision_exp.reporting.records import CONFIG_FILE, check_same_config

    (tmp_path / CONFIG_FILE).write_text("seed: 0\ntrainer:\n  epochs: 2\n")
    other = {"seed": 1, "trainer": {"epochs": 2}}
    with pytest.raises(ConfigError, match=r"seed: 0 -> 1.*hydra\.sweep\.dir") as refused:
        check_same_config(tmp_path, other, ("data.eval_batch_size",), sweep_job=True)
    assert "only data.eval_batch_size may change" in str(refused.value) and "hydra.run.dir" not in str(refused.value)
    with pytest.raises(ConfigError, match=r"seed: 0 -> 1.*hydra\.run\.dir") as refused:
        check_same_config(tmp_path, other)
    assert "hydra.sweep.dir" not in str(refused.value) and "may change" not in str(refused.value)


def test_the_folders_a_command_would_make_are_those_the_system_makes(tmp_path):
    """A refused command removes the folders made for it: they must be the ones mkdir makes, deepest first, where
    `..` follows a link as the system does, or another folder would be removed and the made one left behind."""
    from vision_exp.reporting.files import missing_folders

    tmp_path = tmp_path.resolve()
    assert missing_folders(tmp_path / "a" / "b") == [tmp_path / "a" / "b", tmp_path / "a"]
    assert missing_folders(tmp_path) == []
    (tmp_path / "real" / "deep").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real" / "deep")
    folder = tmp_path / "link" / ".." / "made"
    missing = missing_folders(folder)
    folder.mkdir()
    assert missing == [tmp_path / "real" / "made"] and missing[0].is_dir()
    detour = tmp_path / "on" / ".." / "way" / "run"
    missing = missing_folders(detour)
    detour.mkdir(parents=True)  # makes `on` too, for `..` to leave it
    assert missing == [tmp_path / "way" / "run", tmp_path / "way", tmp_path / "on"] and all(p.is_dir() for p in missing)


def test_a_message_about_two_configs_shows_three_differences_and_counts_the_others():
    """A sweep refused for a folder of another configuration can differ in dozens of settings: the message
    names three and says how many more, so that it stays one readable line and none is taken for all."""
    differences = [f"setting{i}: {i} -> {i + 1}" for i in range(5)]
    assert first_differences(differences) == "setting0: 0 -> 1; setting1: 1 -> 2; setting2: 2 -> 3; and 2 more"
    assert first_differences(differences[:3]) == "setting0: 0 -> 1; setting1: 1 -> 2; setting2: 2 -> 3"


def test_a_figure_write_cut_short_leaves_the_earlier_png_whole(tmp_path):
    """curves.png is redrawn every epoch while a user may have it open: a write that fails halfway (a full disk,
    a kill) must leave the previous picture, not half a PNG, and no temporary file beside it."""
    from vision_exp.reporting.files import pyplot, save_figure_atomic

    path = tmp_path / "curves.png"
    path.write_bytes(b"the previous epoch's picture")
    figure = pyplot().figure()

    def cut_short(target, **kwargs):
        with open(target, "wb") as handle:
            handle.write(b"\x89PNG half")
        raise OSError("No space left on device")

    figure.savefig = cut_short
    with pytest.raises(OSError, match="No space left"):
        save_figure_atomic(figure, path)
    assert path.read_bytes() == b"the previous epoch's picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]


def test_results_files_are_written_only_through_the_atomic_writers():
    """A reader (TensorBoard, a sweep's summary, a user's notebook, a resumed run) must never see half a file: every
    file vision_exp writes goes through reporting/files.py's writers or checkpoint.py's, but for two that cannot be
    seen half written: metrics.jsonl's appended lines (read_jsonl skips a cut last line) and the data cache's
    arrays, written inside a temporary folder that is renamed whole."""
    import re
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "vision_exp"
    direct = re.compile(r"\.write_text\(|\.write_bytes\(|\.savefig\(|json\.dump\(|np\.save\(|torch\.save\(|"
                        r"open\([^)]*[\"'](?:w|a|x)b?\+?[\"']")
    writers = {"reporting/files.py", "training/checkpoint.py"}
    allowed = {("reporting/run.py", 'with open(self.jsonl, "a") as handle:'),
               ("data/cache.py", 'np.save(tmp / "labels.npy", np.asarray(split.labels, dtype=np.int64)[keep])')}
    found = {(str(path.relative_to(package)), line.strip().split("  #")[0])
             for path in package.rglob("*.py") if str(path.relative_to(package)) not in writers
             for line in path.read_text().splitlines() if direct.search(line)}
    assert found == allowed
