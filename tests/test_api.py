"""The notebook API: run() and sweep() on Hydra's compose API, the same files as the CLI."""
import json
import re

import vision_exp
from conftest import sigterm_at_step, tiny_overrides


def test_run_returns_metrics_and_writes_the_run_folder(tiny_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = vision_exp.run(tiny_overrides(tiny_folder, "name=notebook"))
    assert result["status"] == "completed"
    run_dir = tmp_path / "outputs" / "notebook"
    assert result["run_dir"].startswith(str(run_dir))
    on_disk = json.loads((next(run_dir.iterdir()) / "metrics.json").read_text())
    assert on_disk["val_acc"] == result["val_acc"]
    log = (next(run_dir.iterdir()) / "train.log").read_text()
    assert "[vision_exp.training.trainer][INFO] - training ResNet" in log and "val acc" in log


def test_sweep_runs_every_list_and_summarizes(tiny_folder, tmp_path):
    summary = vision_exp.sweep([["seed=0"], ["seed=1"]], common=tiny_overrides(tiny_folder),
                               sweep_dir=str(tmp_path / "sweep"))
    assert {job.name: job.status for job in summary.jobs} == {"0": "completed", "1": "completed"}
    assert (tmp_path / "sweep" / "results.md").is_file() and (tmp_path / "sweep" / "results.csv").is_file()
    call = f"vision_exp.sweep([['seed=0'], ['seed=1']], common={tiny_overrides(tiny_folder)!r})"
    assert summary.command == call and call in (tmp_path / "sweep" / "results.md").read_text()


def test_a_value_that_cannot_work_in_one_run_stops_the_sweep_before_any_run(tiny_folder, tmp_path):
    """As on the command line: every run is checked first, so the mistake is not found after hours of training."""
    import pytest

    from vision_exp.errors import ConfigError

    with pytest.raises(ConfigError, match=r"job 2 \(.*data.batch_size=0\): data.batch_size=0 must be positive"):
        vision_exp.sweep([["seed=0"], ["seed=1"], ["data.batch_size=0"]], common=tiny_overrides(tiny_folder),
                         sweep_dir=str(tmp_path / "sweep"))
    assert not (tmp_path / "sweep").exists()
    from vision_exp.sweeps.summary import SweepError

    runs = [["model.widths=[8,8,16,16]"], ["model.widths=[8,8,8,8]"]]
    with pytest.raises(SweepError, match=r"baseline 'model.widths=\[4,4,4,4\]' matches no configuration"):
        vision_exp.sweep(runs, common=tiny_overrides(tiny_folder), sweep_dir=str(tmp_path / "sweep"),
                         baseline="model.widths=[4,4,4,4]")
    assert not (tmp_path / "sweep").exists(), "no run trained for a summary that could not be written"


def test_an_override_hydra_cannot_compose_is_a_config_error_naming_the_run(tiny_folder, tmp_path):
    import pytest

    from vision_exp.errors import ConfigError

    with pytest.raises(ConfigError, match=r"run 1 \(model=resnet_v9\): .*Could not find 'model/resnet_v9'"):
        vision_exp.sweep([["model=resnet_v1"], ["model=resnet_v9"]], common=tiny_overrides(tiny_folder),
                         sweep_dir=str(tmp_path / "sweep"))
    with pytest.raises(ConfigError, match=r"Could not override 'trainer.epochz'"):
        vision_exp.run(["trainer.epochz=3"], run_dir=str(tmp_path / "run"))
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "run").exists()


def test_a_run_that_crashes_is_recorded_and_the_sweep_goes_on(tiny_folder, tmp_path, monkeypatch):
    """As in a multirun: a bug or out-of-memory in one run leaves a failed metrics.json with the traceback."""
    import vision_exp.experiment

    original = vision_exp.experiment.run_experiment

    def crash_on_seed_1(cfg, run_dir, overrides):
        if cfg.seed == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return original(cfg, run_dir, overrides)

    monkeypatch.setattr(vision_exp.experiment, "run_experiment", crash_on_seed_1)
    summary = vision_exp.sweep([["seed=1"], ["seed=0"]], common=tiny_overrides(tiny_folder),
                               sweep_dir=str(tmp_path / "sweep"))
    assert {job.name: job.status for job in summary.jobs} == {"0": "failed", "1": "completed"}
    failed = json.loads((tmp_path / "sweep" / "0" / "metrics.json").read_text())
    assert failed["error"] == "RuntimeError: CUDA out of memory (simulated)" and "crash_on_seed_1" in failed["traceback"]


def test_a_sweep_called_again_skips_its_runs_and_refuses_another_configuration(tiny_folder, tmp_path):
    """The folder's runs keep their own overrides and results: a changed call must not relabel them."""
    sweep_dir = tmp_path / "sweep"
    first = vision_exp.sweep([["seed=0"], ["seed=1"]], common=tiny_overrides(tiny_folder), sweep_dir=str(sweep_dir))
    written = {p: p.stat().st_mtime_ns for p in sweep_dir.glob("*/*.json")}
    again = vision_exp.sweep([["seed=0"], ["seed=1"]], common=tiny_overrides(tiny_folder), sweep_dir=str(sweep_dir))
    assert [job.status for job in again.jobs] == ["completed", "completed"]
    assert {p: p.stat().st_mtime_ns for p in written} == written
    changed = vision_exp.sweep([["seed=0"], ["seed=1", "model.widths=[8,8,8,8]"]], common=tiny_overrides(tiny_folder),
                               sweep_dir=str(sweep_dir))
    assert [job.status for job in changed.jobs] == ["completed", "refused"]
    assert json.loads((sweep_dir / "1" / "overrides.json").read_text())[-1] == "seed=1"
    assert json.loads((sweep_dir / "1" / "metrics.json").read_text())["val_acc"] == first.jobs[1].metrics["val_acc"]


def test_a_failed_run_raises_after_recording_why_like_the_command_line(tiny_folder, tmp_path, monkeypatch):
    import pytest

    import vision_exp.experiment
    from vision_exp.errors import ConfigError

    with pytest.raises(ConfigError, match="data.batch_size=0 must be positive"):
        vision_exp.run(tiny_overrides(tiny_folder, "data.batch_size=0"), run_dir=str(tmp_path / "bad" / "run"))
    assert not (tmp_path / "bad").exists()  # refused before it started: no folder made for it is left
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "train.log").write_text("an earlier run's log\n")
    with pytest.raises(ConfigError, match="data.batch_size=0 must be positive"):
        vision_exp.run(tiny_overrides(tiny_folder, "data.batch_size=0"), run_dir=str(tmp_path / "new" / ".." / "kept"))
    assert json.loads((tmp_path / "kept" / "metrics.json").read_text())["status"] == "failed"
    assert (tmp_path / "kept" / "train.log").read_text().startswith("an earlier run's log")

    def out_of_memory(cfg, run_dir, overrides):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(vision_exp.experiment, "run_experiment", out_of_memory)
    with pytest.raises(RuntimeError):
        vision_exp.run(tiny_overrides(tiny_folder), run_dir=str(tmp_path / "crash"))
    recorded = json.loads((tmp_path / "crash" / "metrics.json").read_text())
    assert recorded["status"] == "failed" and "out_of_memory" in recorded["traceback"]


def test_a_sweep_job_out_of_memory_goes_on_in_parts_within_its_sweep(tiny_folder, tmp_path, monkeypatch):
    """Memory settings are no part of a job's configuration: the sweep's command again with more parts resumes the
    job that ran out of memory and keeps the others, and the summary still counts all seeds as one configuration."""
    import torch

    from vision_exp.training.trainer import Trainer

    forward_backward = Trainer._forward_backward

    def out_of_memory_in_whole_batches_of_seed_1(self, images, targets, share):
        if self.cfg.grad_accum_steps == 1 and self.hparams["seed"] == 1 and self.position.step == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward_backward(self, images, targets, share)

    monkeypatch.setattr(Trainer, "_forward_backward", out_of_memory_in_whole_batches_of_seed_1)
    sweep_dir = tmp_path / "sweep"
    common = tiny_overrides(tiny_folder, "trainer.checkpoint_every_steps=1")
    first = vision_exp.sweep([["seed=0"], ["seed=1"]], common=common, sweep_dir=str(sweep_dir))
    assert [job.status for job in first.jobs] == ["completed", "failed"]
    assert "trainer.grad_accum_steps=2" in first.jobs[1].error
    kept = (sweep_dir / "0" / "metrics.json").stat().st_mtime_ns
    again = vision_exp.sweep([["seed=0"], ["seed=1"]], common=[*common, "trainer.grad_accum_steps=2"],
                             sweep_dir=str(sweep_dir))
    assert [job.status for job in again.jobs] == ["completed", "completed"]
    assert (sweep_dir / "0" / "metrics.json").stat().st_mtime_ns == kept, "the finished job is skipped"
    assert [len(c.jobs) for c in again.configurations] == [2]
    assert vision_exp.sweep([["seed=0"], ["seed=1"]], common=common, sweep_dir=str(sweep_dir)).jobs[1].status == "completed"


def test_a_sweep_preset_is_refused_where_its_swept_values_would_be_ignored(tiny_folder, tmp_path):
    import pytest

    from vision_exp.errors import ConfigError

    preset = ["experiment=cpu_ablation_resnet_blocks", *tiny_overrides(tiny_folder, "trainer.train_samples=16")]
    for call in (lambda: vision_exp.run(preset, run_dir=str(tmp_path / "run")),
                 lambda: vision_exp.sweep([["seed=0"]], common=preset, sweep_dir=str(tmp_path / "sweep"))):
        with pytest.raises(ConfigError, match=r"cpu_ablation_resnet_blocks is a sweep preset \(model, seed\)"):
            call()
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


def test_a_sweep_stopped_mid_run_resumes_where_it_stopped_when_called_again(tiny_folder, tmp_path, monkeypatch):
    """A notebook session that timed out: the interrupted run is recorded, and the same call finishes the sweep
    without training the completed run again."""
    import pytest

    from vision_exp.errors import Interrupted

    runs, common, sweep_dir = [["seed=0"], ["seed=1"]], tiny_overrides(tiny_folder, "trainer.epochs=2"), tmp_path / "sweep"
    with sigterm_at_step(monkeypatch, 3, only=lambda trainer: trainer.hparams["seed"] == 1), pytest.raises(
            Interrupted, match=re.escape(f"the same vision_exp.sweep call with sweep_dir='{sweep_dir}' resumes it")):
        vision_exp.sweep(runs, common=common, sweep_dir=str(sweep_dir))
    assert json.loads((sweep_dir / "1" / "metrics.json").read_text())["status"] == "interrupted"
    first_run = (sweep_dir / "0" / "metrics.json").stat().st_mtime_ns
    summary = vision_exp.sweep(runs, common=common, sweep_dir=str(sweep_dir))
    assert [job.status for job in summary.jobs] == ["completed", "completed"]
    assert (sweep_dir / "0" / "metrics.json").stat().st_mtime_ns == first_run
    resumed = (sweep_dir / "1" / "train.log").read_text()
    assert "resumed from" in resumed and summary.jobs[1].metrics["samples_seen"] == 72


def test_a_failure_that_cannot_be_recorded_still_raises_the_runs_own_error(tiny_folder, tmp_path, monkeypatch):
    import errno

    import pytest

    import vision_exp.experiment
    import vision_exp.reporting.records
    from vision_exp.errors import CheckpointError

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    def failing_run(cfg, run_dir, overrides):
        raise CheckpointError("could not write checkpoint last.pt: the disk is full")

    monkeypatch.setattr(vision_exp.experiment, "run_experiment", failing_run)
    monkeypatch.setattr(vision_exp.reporting.records, "write_json_atomic", disk_full)
    with pytest.raises(CheckpointError, match="the disk is full"):
        vision_exp.run(tiny_overrides(tiny_folder), run_dir=str(tmp_path / "run"))


def test_a_stopped_notebook_run_says_which_call_continues_it(tiny_folder, tmp_path, monkeypatch):
    """The trainer's message names the checkpoint; the notebook's own advice is the call that resumes the run,
    not a command line, and that call finishes it."""
    import pytest

    from vision_exp.errors import Interrupted

    overrides, run = tiny_overrides(tiny_folder, "trainer.epochs=2"), tmp_path / "run"
    with sigterm_at_step(monkeypatch, 3), pytest.raises(Interrupted) as stopped:
        vision_exp.run(overrides, run_dir=str(run))
    call = f"vision_exp.run({overrides + ['trainer.resume=auto']!r}, run_dir='{run}')"
    assert str(stopped.value).endswith(f"To continue: {call}") and "hydra.run.dir" not in str(stopped.value)
    assert vision_exp.run(overrides + ["trainer.resume=auto"], run_dir=str(run))["samples_seen"] == 72
