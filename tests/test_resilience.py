"""Nothing lost: exact resume after SIGKILL at random steps, corrupt checkpoints, a full disk."""
import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, compose, tiny_overrides
from vision_exp.errors import CheckpointError
from vision_exp.experiment import run_experiment
from vision_exp.training import checkpoint as checkpoint_mod
from vision_exp.training.checkpoint import load_checkpoint, load_latest, save_checkpoint

RUN_ARGS = ("trainer.epochs=3", "trainer.deterministic=true", "trainer.checkpoint_every_steps=1", "data.batch_size=4")


def final_state(run):
    metrics = json.loads((run / "metrics.json").read_text())
    weights = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    return metrics, weights


def assert_same_run(a, b):
    (metrics_a, weights_a), (metrics_b, weights_b) = a, b
    for key in ("val_acc", "val_loss", "train_acc", "train_loss", "train_running_loss", "train_running_acc",
                "samples_seen", "steps", "best_val_acc"):
        assert metrics_a[key] == metrics_b[key], key
    for key in weights_a:
        assert torch.equal(weights_a[key], weights_b[key]), key


@pytest.fixture(scope="module")
def reference(tiny_folder, tmp_path_factory):
    run = tmp_path_factory.mktemp("reference") / "run"
    run_experiment(compose(tiny_overrides(tiny_folder, *RUN_ARGS)), run, [])
    return final_state(run)


def start(folder, run, resume):
    args = [sys.executable, "-m", "vision_exp.train", *tiny_overrides(folder, *RUN_ARGS), f"hydra.run.dir={run}"]
    if resume:
        args.append("trainer.resume=auto")
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_sigkill_at_random_steps_then_resume_ends_exactly_like_an_uninterrupted_run(tiny_folder, tmp_path, reference):
    run, rng, kills = tmp_path / "run", random.Random(0), 0
    last = run / "checkpoints" / "last.pt"
    for attempt in range(3):
        process = start(tiny_folder, run, resume=attempt > 0)
        target, seen, mtime = rng.randint(1, 8), 0, None
        deadline = time.time() + 120
        while process.poll() is None and time.time() < deadline:
            try:  # a checkpoint save renames last.pt to last.prev.pt first: it may be gone for a moment
                current = last.stat().st_mtime_ns
            except FileNotFoundError:
                current = None
            if current != mtime:
                mtime, seen = current, seen + (current is not None)
                if seen >= target:
                    process.send_signal(signal.SIGKILL)
                    kills += 1
                    break
            time.sleep(0.002)
        process.wait(timeout=60)
    final = start(tiny_folder, run, resume=True)
    assert final.wait(timeout=300) == 0
    assert kills >= 2, "the kills should land while training runs"
    assert_same_run(final_state(run), reference)
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


def test_a_kill_between_the_best_and_last_writes_keeps_the_best_checkpoint(tiny_folder, tmp_path, monkeypatch):
    """The process dies right after the first epoch-end write of last.pt: resumed, the run must still hold the
    best.pt its metrics name (written first, it cannot be lost to a last.pt that records it as saved)."""
    from vision_exp.training.trainer import Trainer

    class Crash(RuntimeError):
        pass

    run, args = tmp_path / "run", tiny_overrides(tiny_folder, "trainer.epochs=2", "trainer.deterministic=true",
                                                 "trainer.save_interval_s=0")
    save = Trainer.save

    def save_then_crash(self, name):
        save(self, name)
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "save", save_then_crash)
        with pytest.raises(Crash):
            run_experiment(compose(args), run, [])
    result = run_experiment(compose([*args, "trainer.resume=auto"]), run, [])
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert (best["epoch"], best["val_acc"]) == (result["best_epoch"], result["best_val_acc"])


def test_corrupt_last_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    path = tmp_path / "last.pt"
    save_checkpoint({"step": torch.tensor(1)}, path)
    save_checkpoint({"step": torch.tensor(2)}, path)
    assert load_latest(path)[0]["step"] == 2
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    state, used = load_latest(path)
    assert state["step"] == 1 and used.name == "last.prev.pt"
    assert "does not match" in caplog.text
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def crash_at_the_fifth_checkpoint(folder, run, monkeypatch) -> None:
    """Train until the fifth write of last.pt, then crash: the run folder a resume starts from."""

    class Crash(RuntimeError):
        pass

    original, saves = checkpoint_mod.save_checkpoint, []

    def crash_on_fifth(state, path):
        original(state, path)
        saves.append(path.name)
        if saves.count("last.pt") == 5:
            raise Crash

    with monkeypatch.context() as patch:
        patch.setattr("vision_exp.training.trainer.save_checkpoint", crash_on_fifth)
        with pytest.raises(Crash):
            run_experiment(compose(tiny_overrides(folder, *RUN_ARGS)), run, [])


def test_resume_from_a_corrupt_checkpoint_still_ends_like_the_reference(tiny_folder, tmp_path, reference, monkeypatch):
    run = tmp_path / "run"
    crash_at_the_fifth_checkpoint(tiny_folder, run, monkeypatch)
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    run_experiment(compose(tiny_overrides(tiny_folder, *RUN_ARGS, "trainer.resume=auto")), run, [])
    assert_same_run(final_state(run), reference)


def test_a_kill_between_the_renames_of_a_save_resumes_from_the_previous_checkpoint(tiny_folder, tmp_path, reference,
                                                                                    monkeypatch, caplog):
    """save_checkpoint moves last.pt aside before the new file takes its name: a SIGKILL in between
    leaves only last.prev.pt, and resume=auto must use it rather than start from scratch."""
    run = tmp_path / "run"
    crash_at_the_fifth_checkpoint(tiny_folder, run, monkeypatch)
    last = run / "checkpoints" / "last.pt"
    os.replace(last, checkpoint_mod.previous_path(last))  # the state a kill inside the sixth save leaves
    os.replace(checkpoint_mod.digest_path(last), checkpoint_mod.digest_path(checkpoint_mod.previous_path(last)))
    checkpoint_mod.digest_path(last).write_text("0" * 64 + "\n")
    leftovers = [run / "checkpoints" / ".last.pt.tmp-4242", run / ".metrics.jsonl.tmp-4242", run / ".curves.png.tmp.png"]
    for leftover in leftovers:  # the killed writes' temporary files, which nothing else would ever remove
        leftover.write_bytes(b"")
    evaluating = run / "checkpoints" / "best-eval-run-data" / ".metrics.json.tmp-4343"  # vx-evaluate, writing now
    evaluating.parent.mkdir()
    evaluating.write_bytes(b"")
    run_experiment(compose(tiny_overrides(tiny_folder, *RUN_ARGS, "trainer.resume=auto")), run, [])
    assert "last.prev.pt" in caplog.text and "starting from scratch" not in caplog.text
    assert_same_run(final_state(run), reference)
    assert not any(leftover.exists() for leftover in leftovers) and evaluating.exists()


@pytest.mark.parametrize("replaces_before_the_kill", [0, 1, 2, 3])
def test_a_kill_at_any_step_of_a_save_leaves_a_loadable_checkpoint(tmp_path, monkeypatch, replaces_before_the_kill):
    """save_checkpoint renames files four times (digest aside, checkpoint aside, new digest, new checkpoint): a
    kill after any of them leaves the newest complete checkpoint, or the one before it, loadable."""

    class Killed(BaseException):
        pass

    path = tmp_path / "last.pt"
    for step in (1, 2, 3):
        save_checkpoint({"step": torch.tensor(step)}, path)
    replace, done = os.replace, []

    def replace_until_killed(source, target):
        if len(done) == replaces_before_the_kill:
            raise Killed
        replace(source, target)
        done.append(target)

    monkeypatch.setattr(checkpoint_mod.os, "replace", replace_until_killed)
    with pytest.raises(Killed):
        save_checkpoint({"step": torch.tensor(4)}, path)
    monkeypatch.undo()
    state, _ = load_latest(path)
    assert int(state["step"]) in (3, 4)


def no_space(*args, **kwargs):
    """What a write to a full disk raises."""
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_while_checkpointing_keeps_the_earlier_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"step": torch.tensor(1)}, path)
    monkeypatch.setattr(checkpoint_mod.torch, "save", no_space)
    with pytest.raises(CheckpointError, match="disk is full.*earlier checkpoint"):
        save_checkpoint({"step": torch.tensor(2)}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert not list(tmp_path.glob(".*tmp*")), "no temp file is left behind"


def test_a_full_disk_after_the_checkpoint_was_moved_aside_names_the_file_that_now_holds_it(tmp_path, monkeypatch):
    """The disk fills while the new digest is written, after last.pt became last.prev.pt: the message names
    last.prev.pt as the earlier checkpoint kept (last.pt is gone), and a resume loads it from there."""
    path = tmp_path / "last.pt"
    save_checkpoint({"step": torch.tensor(1)}, path)
    monkeypatch.setattr(checkpoint_mod, "write_text_atomic", no_space)
    kept = tmp_path / "last.prev.pt"
    with pytest.raises(CheckpointError, match=re.escape(f"disk is full; the earlier checkpoint {kept} is kept")):
        save_checkpoint({"step": torch.tensor(2)}, path)
    monkeypatch.undo()
    state, used = load_latest(path)
    assert state["step"] == 1 and used.name == "last.prev.pt"


def test_a_full_disk_at_the_first_write_claims_no_earlier_checkpoint(tmp_path, monkeypatch):
    """A first checkpoint that does not fit on the disk has none before it to go back to: the message must not name
    a last.prev.pt that was never written."""
    monkeypatch.setattr(checkpoint_mod.torch, "save", no_space)
    with pytest.raises(CheckpointError, match=r"last\.pt: the disk is full; there is no earlier checkpoint to keep$"):
        save_checkpoint({"step": torch.tensor(1)}, tmp_path / "last.pt")
    assert not list(tmp_path.iterdir())


def test_an_interrupt_while_a_checkpoint_is_written_leaves_no_temporary_file(tmp_path, monkeypatch):
    """Ctrl-C (no OSError) in the middle of torch.save: the earlier checkpoint stays as it was, and the half-written
    temporary file goes with the interrupt instead of lying beside it."""
    path = tmp_path / "last.pt"
    save_checkpoint({"step": torch.tensor(1)}, path)

    def interrupted(state, handle):
        handle.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_mod.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"step": torch.tensor(2)}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "last.pt.sha256"]


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": os.system}, path)  # a reference to code, not weights
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(path)


def test_a_stop_signal_is_a_flag_a_second_one_stops_at_once_and_the_handlers_are_put_back():
    """The first SIGTERM/SIGINT asks for a checkpoint after the step; a second (an impatient Ctrl-C) interrupts at
    once; the run's end puts back the handlers it found (a notebook's Ctrl-C, the next job of a sweep)."""
    from vision_exp.training.trainer import StopSignals

    for signum in (signal.SIGTERM, signal.SIGINT):
        before = signal.getsignal(signum)
        with StopSignals() as signals:
            signal.raise_signal(signum)
            assert signals.received == signum
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signum)
        assert signal.getsignal(signum) is before, signal.Signals(signum).name


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_checkpoints_exits_quickly_and_resumes_exactly(tiny_folder, tmp_path, reference, signum):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "vision_exp.train", *tiny_overrides(tiny_folder, *RUN_ARGS), f"hydra.run.dir={run}"]
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = run / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.005)
    process.send_signal(signum)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, output  # where it stops: tests/test_trainer.py, stopped_by_a_signal
    assert f"stopped by {signal.Signals(signum).name}" in output and "trainer.resume=auto" in output
    assert "Traceback" not in output
    assert json.loads((run / "metrics.json").read_text())["status"] == "interrupted"
    resumed = subprocess.run(args + ["trainer.resume=auto"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert_same_run(final_state(run), reference)


@pytest.mark.parametrize("loader", ["cached", "folder"])
def test_a_signal_to_the_whole_process_group_stops_cleanly_with_loader_workers(tiny_folder, tmp_path, loader):
    """Ctrl-C and SLURM signal every process of the group, DataLoader workers included: the run
    must still stop with a checkpoint, not fail on a killed worker."""
    run = tmp_path / "run"
    args = [sys.executable, "-m", "vision_exp.train", *tiny_overrides(tiny_folder, *RUN_ARGS),
            "augmentation=randaugment", "data.num_workers=2", f"data.loader={loader}", "data.batch_size=1",
            f"hydra.run.dir={run}"]
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    children = f"/proc/{process.pid}/task/{process.pid}/children"
    deadline = time.time() + 120
    while not (run / "checkpoints" / "last.pt").exists() or not open(children).read().split():
        assert time.time() < deadline and process.poll() is None, "no checkpoint with live loader workers"
        time.sleep(0.001)
    os.killpg(process.pid, signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "stopped by SIGTERM" in output and "Traceback" not in output
    assert f"To continue, run the same command with hydra.run.dir={run} trainer.resume=auto." in output
    assert json.loads((run / "metrics.json").read_text())["status"] == "interrupted"


def test_unwritable_output_folder_is_one_message(tiny_folder, tmp_path):
    from conftest import run_cli

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_cli(tiny_overrides(tiny_folder, f"hydra.run.dir={blocker / 'run'}"))
    assert result.returncode == 2 and "cannot write to the output folder" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_weights_of_another_shape_are_one_message_naming_the_keys():
    """A checkpoint of the same architecture at another width or class count: the keys match but the shapes do not,
    and the CheckpointError names them (torch's own error would be a RuntimeError, a wall of text)."""
    from vision_exp.training.checkpoint import load_model_weights

    model = torch.nn.Linear(4, 3)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"other.pt does not fit this model: 2 shape mismatches "
                                              r"\(e.g. bias \(5,\) vs \(3,\), weight \(5, 4\) vs \(3, 4\)\)"):
        load_model_weights(model, torch.nn.Linear(4, 5).state_dict(), "other.pt")
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())
