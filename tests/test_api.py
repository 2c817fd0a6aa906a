"""The notebook API: run() and sweep() on Hydra's compose API, the same files as the CLI."""
import json
import re

import pytest

import vision_exp
from conftest import sigterm_at_step, tiny_overrides
from vision_exp.errors import ConfigError


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
    runs = [["model.widths=[8,8,16,16]"], ["model.widths=[8,8,8,8]"]]
    with pytest.raises(ConfigError, match=r"baseline 'model.widths=\[4,4,4,4\]' matches no configuration"):
        vision_exp.sweep(runs, common=tiny_overrides(tiny_folder), sweep_dir=str(tmp_path / "sweep"),
                         baseline="model.widths=[4,4,4,4]")
    assert not (tmp_path / "sweep").exists(), "no run trained for a summary that could not be written"
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "1").write_text("")
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'taken' / '1'} is a file, where run 1's folder goes"):
        vision_exp.sweep([["seed=0"], ["seed=1"]], common=tiny_overrides(tiny_folder), sweep_dir=str(tmp_path / "taken"))
    assert sorted(path.name for path in (tmp_path / "taken").iterdir()) == ["1"]  # no run trained before it


def test_an_override_hydra_cannot_compose_is_a_config_error_naming_the_run(tiny_folder, tmp_path):
    import pytest

    from vision_exp.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^run 1 \(model=resnet_v9\): model=resnet_v9 is not an option \(did you mean resnet_v"):
        vision_exp.sweep([["model=resnet_v1"], ["model=resnet_v9"]], common=tiny_overrides(tiny_folder),
                         sweep_dir=str(tmp_path / "sweep"))
    with pytest.raises(ConfigError, match=r"^trainer.epochz is not a setting \(did you mean trainer.epochs\?\)$"):
        vision_exp.run(["trainer.epochz=3"], run_dir=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match=r"^trainr.epochz is not a setting \(did you mean trainer.epochs\?\)$"):
        vision_exp.run(["trainr.epochz=3"], run_dir=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match=r"^run 1 \(trainer.epochz=3\): trainer.epochz is not a setting \(did you mean "
                                          r"trainer.epochs\?\)$"):
        vision_exp.sweep([["seed=0"], ["trainer.epochz=3"]], common=tiny_overrides(tiny_folder),
                         sweep_dir=str(tmp_path / "sweep"))
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "run").exists()


def test_a_run_that_crashes_is_recorded_and_the_sweep_goes_on(tiny_folder, tmp_path, monkeypatch):
    """As in a multirun: a bug or out-of-memory in one run leaves a failed metrics.json with the traceback."""
    import vision_exp.experiment

    original = vision_exp.experiment.run_experiment

    def crash_on_seed_1(cfg, run_dir, overrides, choices):
        if cfg.seed == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return original(cfg, run_dir, overrides, choices)

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
    everything = {p: p.read_bytes() for p in sweep_dir.rglob("*") if p.is_file()}
    for changed in ([["seed=0"], ["seed=1", "model.widths=[8,8,8,8]"]], [["seed=1"], ["seed=0"]]):
        with pytest.raises(ConfigError) as refused:
            vision_exp.sweep(changed, common=tiny_overrides(tiny_folder), sweep_dir=str(sweep_dir))
        assert f"{sweep_dir / '1'} holds a run of another configuration" in str(refused.value)
        assert str(refused.value).endswith("none of the sweep's 2 jobs was started: fix the values above and run it again")
        assert {p: p.read_bytes() for p in sweep_dir.rglob("*") if p.is_file()} == everything
    assert json.loads((sweep_dir / "1" / "metrics.json").read_text())["val_acc"] == first.jobs[1].metrics["val_acc"]


def test_a_sweeps_baseline_is_one_string_and_a_wrong_one_a_config_error(tiny_folder, tmp_path):
    """Every other argument is a list, so baseline=['seed=0'] is a likely slip; refusals are ConfigErrors, as
    documented."""
    for baseline, message in ((["model=resnet_v1"], "^baseline names one configuration by its overrides in one string"),
                              ("model=vit_v9", "^baseline 'model=vit_v9' matches no configuration")):
        with pytest.raises(ConfigError, match=message):
            vision_exp.sweep([["seed=0"]], common=tiny_overrides(tiny_folder), sweep_dir=str(tmp_path / "sweep"),
                             baseline=baseline)
    assert not (tmp_path / "sweep").exists()


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
    with pytest.raises(ConfigError, match="data.batch_size=0 must be positive"):
        vision_exp.run(tiny_overrides(tiny_folder, "data.batch_size=0"), run_dir=str(tmp_path / "on" / ".." / "way" / "run"))
    assert not (tmp_path / "on").exists() and not (tmp_path / "way").exists()  # `on` made by mkdir on the way

    def out_of_memory(cfg, run_dir, overrides, choices):
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

    def failing_run(cfg, run_dir, overrides, choices):
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


# evaluate() and predict(): the command lines' configs, checks, files and folders, from a notebook.

@pytest.fixture(scope="module")
def trained_run(tiny_folder, tmp_path_factory):
    """A tiny run, trained once; each test evaluates a copy of it (`checkpoints_of`), so folders start empty."""
    from conftest import compose
    from vision_exp.experiment import run_experiment

    base = tmp_path_factory.mktemp("notebook_eval")
    overrides = tiny_overrides(tiny_folder, "trainer.epochs=2", f"data.cache_dir={base / 'cache'}")
    run_experiment(compose(overrides), base / "run", [])
    return base / "run"


def checkpoints_of(trained_run, tmp_path):
    import shutil

    return shutil.copytree(trained_run, tmp_path / "run") / "checkpoints"


def command(module, *args):
    import subprocess
    import sys

    from conftest import REPO

    result = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_evaluate_writes_what_the_command_line_writes_in_the_same_folder(trained_run, tiny_folder, tmp_path):
    checkpoints = checkpoints_of(trained_run, tmp_path)
    result = vision_exp.evaluate(checkpoints / "best.pt")
    ours = checkpoints / "best-eval-run-data"
    written = json.loads((ours / "metrics.json").read_text())
    assert result == {**written, "out_dir": str(ours)}
    assert written["top1"] == pytest.approx(json.loads((trained_run / "metrics.json").read_text())["best_val_acc"], abs=1e-6)
    assert "top-1" in (ours / "evaluate.log").read_text()

    command("vision_exp.evaluate", f"ckpt={checkpoints / 'best.pt'}")
    theirs = checkpoints / "best-eval-run-data-2"  # the default folder, taken by the notebook's result
    assert json.loads((theirs / "metrics.json").read_text()) == written
    assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in theirs.iterdir())
    for name in ("per_class.csv", "confusion.csv"):
        assert (ours / name).read_bytes() == (theirs / name).read_bytes()

    other = vision_exp.evaluate(str(checkpoints / "last.pt"), ["data=folder", f"data.root={tiny_folder}",
                                                               "data.max_val_per_class=2", "data.num_workers=0"])
    assert other["out_dir"] == str(checkpoints / "last-eval-folder") and other["images"] == 6
    chosen = vision_exp.evaluate(checkpoints / "best.pt", out_dir=tmp_path / "mine")
    assert chosen == {**written, "out_dir": str(tmp_path / "mine")}


def test_predict_writes_the_command_lines_csv_and_returns_its_rows(trained_run, tiny_folder, tmp_path):
    import csv

    checkpoints = checkpoints_of(trained_run, tmp_path)
    images = tiny_folder / "val" / "n01440764"
    result = vision_exp.predict(checkpoints / "best.pt", images, ["topk=2"])
    ours = checkpoints / "best-predictions"
    assert (result["csv"], result["out_dir"]) == (str(ours / "predictions.csv"), str(ours))
    assert sorted(p.name for p in ours.iterdir()) == ["predict.log", "predictions.csv"]

    command("vision_exp.predict", f"ckpt={checkpoints / 'best.pt'}", f"images={images}", "topk=2")
    assert (ours / "predictions.csv").read_bytes() == (checkpoints / "best-predictions-2" / "predictions.csv").read_bytes()
    with (ours / "predictions.csv").open() as table:
        rows = list(csv.DictReader(table))
    assert len(rows) == len(result["predictions"]) == 4
    assert rows == [{key: f"{value:.4f}" if key.startswith("p") else value for key, value in row.items()}
                    for row in result["predictions"]]
    from vision_exp.predict import predict as top_classes  # the function the command line calls

    assert [[(row["top1"], row["p1"]), (row["top2"], row["p2"])] for row in result["predictions"]] == [
        top for _, top in top_classes(checkpoints / "best.pt", images, topk=2)]


def test_bad_input_is_one_error_and_leaves_no_folder_behind(trained_run, tiny_folder, tmp_path):
    from vision_exp.errors import ConfigError, DataError, UserError

    checkpoints = checkpoints_of(trained_run, tmp_path)
    ckpt, images = checkpoints / "best.pt", tiny_folder / "val"
    before = sorted(checkpoints.iterdir())
    refused = [
        (lambda: vision_exp.evaluate(tmp_path / "none.pt"), ConfigError, "checkpoint not found: "),
        (lambda: vision_exp.predict(tmp_path / "none.pt", images), ConfigError, "checkpoint not found: "),
        (lambda: vision_exp.predict(ckpt, images, ["+top_k=1"]), ConfigError, r"^top_k is not a setting \(did you mean topk\?\)$"),
        (lambda: vision_exp.predict(ckpt, images, ["env=kaggle"]), ConfigError, r"data is not a setting \(env=kaggle"),
        (lambda: vision_exp.evaluate(ckpt, ["trainer.epochs=3"]), ConfigError, "^trainer is not a setting$"),
        (lambda: vision_exp.evaluate(ckpt, ["data=nope"]), ConfigError, "^data=nope is not an option: data is one of folder, "),
        (lambda: vision_exp.evaluate(ckpt, [f"ckpt={ckpt}"]), ConfigError, r"ckpt is evaluate\(\)'s argument"),
        (lambda: vision_exp.predict(ckpt, images, ["topk=0"]), ConfigError, "topk=0 must be a positive integer"),
        (lambda: vision_exp.predict(ckpt, tmp_path / "none"), DataError, "no such file or folder"),
        (lambda: vision_exp.evaluate(ckpt, ["data=folder", f"data.root={tmp_path / 'nope'}"]), DataError,
         "dataset folder not found"),
        (lambda: vision_exp.evaluate(ckpt, ["data=folder", f"data.root={tmp_path / 'nope'}"],
                                     out_dir=tmp_path / "made" / "for" / "it"), DataError, "dataset folder not found"),
        # a string for a list was read character by character: "Error parsing override 'd'"
        (lambda: vision_exp.evaluate(ckpt, "data=folder"), ConfigError,
         r"^overrides must be a list of overrides, e.g. \['seed=1'\]; got 'data=folder'$"),
        (lambda: vision_exp.run("seed=1"), ConfigError, r"^overrides must be a list of overrides, e.g. \['seed=1'\]; got 'seed=1'$"),
        (lambda: vision_exp.run(None), ConfigError, "^overrides must be a list of overrides, e.g. .*; got None$"),
        (lambda: vision_exp.run([1]), ConfigError, "^overrides must be a list of strings such as 'seed=1'; it holds 1$"),
        (lambda: vision_exp.sweep(["seed=0", "seed=1"]), ConfigError,
         r"^runs must be a list of override lists, e.g. \[\['seed=0'\], \['seed=1'\]\]; got \['seed=0', 'seed=1'\]$"),
        (lambda: vision_exp.sweep([["seed=0"]], common="seed=1"), ConfigError, "^common must be a list of overrides"),
        # a file where the folder goes: FileExistsError's traceback, after a failed attempt to record it
        (lambda: vision_exp.run(tiny_overrides(tiny_folder), run_dir=ckpt), ConfigError,
         f"^cannot write to the output folder {ckpt}: File exists$"),
        (lambda: vision_exp.sweep([["seed=0"]], common=tiny_overrides(tiny_folder), sweep_dir=ckpt), ConfigError,
         f"^cannot write to the output folder {ckpt}: File exists$"),
    ]
    for call, error, phrase in refused:
        with pytest.raises(error, match=phrase) as raised:
            call()
        assert "Config search path" not in str(raised.value) and "Traceback" not in str(raised.value)
        assert sorted(checkpoints.iterdir()) == before, phrase
    assert not (tmp_path / "made").exists()

    kept = tmp_path / "kept"  # a folder that was there: kept, and its log says why, as the command line's
    kept.mkdir()
    with pytest.raises(UserError, match="dataset folder not found"):
        vision_exp.evaluate(ckpt, ["data=folder", f"data.root={tmp_path / 'nope'}"], out_dir=kept)
    assert kept.is_dir() and "dataset folder not found" in (kept / "evaluate.log").read_text()
    (kept / "notes.txt").write_text("mine")  # a file of the user's own: not written beside, nor over
    with pytest.raises(ConfigError, match=f"^{kept} already holds results \\(notes.txt\\), which this command would replace"):
        vision_exp.evaluate(ckpt, out_dir=kept)
    assert sorted(path.name for path in kept.iterdir()) == ["evaluate.log", "notes.txt"]


def test_vision_exp_evaluate_and_predict_are_the_commands_modules_and_the_calls():
    """A package's attribute becomes its submodule once that is imported: the modules themselves are callable."""
    import inspect
    import subprocess
    import sys

    import vision_exp.evaluate
    import vision_exp.predict

    assert callable(vision_exp.evaluate) and callable(vision_exp.evaluate.main)
    assert list(inspect.signature(vision_exp.predict).parameters) == ["ckpt", "images", "overrides", "out_dir"]
    fresh = subprocess.run([sys.executable, "-c", "import sys, vision_exp; print(callable(vision_exp.predict), "
                            "callable(vision_exp.evaluate), 'torch' in sys.modules)"], capture_output=True, text=True)
    assert fresh.stdout.split() == ["True", "True", "False"], fresh.stdout + fresh.stderr


def test_a_checkpoint_shared_without_its_run_folder_evaluates_and_predicts_as_in_it(trained_run, tiny_folder, tmp_path):
    """best.pt alone (a Kaggle dataset of one file) carries the run's config: the same model, the same numbers."""
    import shutil

    checkpoints = checkpoints_of(trained_run, tmp_path)
    alone = tmp_path / "shared"
    alone.mkdir()
    shutil.copy(checkpoints / "best.pt", alone / "best.pt")
    images = tiny_folder / "val" / "n01440764"
    in_run = vision_exp.predict(checkpoints / "best.pt", images, ["topk=2"])["predictions"]
    assert vision_exp.predict(alone / "best.pt", images, ["topk=2"])["predictions"] == in_run
    evaluated = vision_exp.evaluate(checkpoints / "best.pt")
    shared = vision_exp.evaluate(alone / "best.pt", [f"data.root={tiny_folder}"])
    assert {k: shared[k] for k in ("top1", "top5", "loss")} == {k: evaluated[k] for k in ("top1", "top5", "loss")}


def test_debug_overfit_in_a_notebook_raises_when_the_batch_is_not_memorised(tiny_folder, tmp_path, caplog):
    """vision_exp.run(["debug=overfit", ...]) gives the command line's verdict: a line when the network memorised
    its batch, NotMemorised (a UserError) when it did not, with the run's completed metrics.json kept."""
    from vision_exp.debug import NotMemorised

    small = ["data=folder", f"data.root={tiny_folder}", "data.num_classes=3", "data.batch_size=6", "data.img_size=16",
             "data.num_workers=0", "model.widths=[8,8,16,16]", "model.stem_stride=1", "trainer.progress=none",
             "debug=overfit", "trainer.epochs=30"]
    assert vision_exp.run(small, run_dir=str(tmp_path / "fits"))["train_acc"] == 100.0
    assert "overfit check passed: the training images were memorised (train top-1 100.00%" in caplog.text
    with pytest.raises(NotMemorised, match=r"overfit check failed: .*after 30 steps\); a network wired right fits them"):
        vision_exp.run([*small, "optimizer.lr=1e-9"], run_dir=str(tmp_path / "stuck"))
    assert json.loads((tmp_path / "stuck" / "metrics.json").read_text())["status"] == "completed"
    assert "[ERROR] - overfit check failed" in (tmp_path / "stuck" / "train.log").read_text()
    assert "[INFO] - overfit check passed" in (tmp_path / "fits" / "train.log").read_text()
