"""Sweeps as results: a real multirun leaves results.csv, results.md and plots that agree with its
jobs' metrics.json, records a failing job and goes on, stops at a checkpoint on Ctrl-C, skips and
resumes when run again, keeps every job in its own sweep's folder under the parallel launchers;
and the statistics behind the tables match hand-computed values."""
import csv
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import REPO, compose, run_cli
from vision_exp import report, summarize
from vision_exp.errors import ConfigError
from vision_exp.reporting.records import check_same_config
from vision_exp.sweeps.launch import claimed_gpu, register_resolvers
from vision_exp.sweeps.statistics import (Difference, mean, paired_difference, sample_std, t_cdf, t_quantile,
                                         welch_difference)
from vision_exp.sweeps.summary import SweepError, load_sweep, results_markdown, summarize_sweep

# One thread per tiny job: two jobs with two threads each on two cores run ten times slower.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def tiny_sweep(folder: Path, *extra: str) -> list:
    """Jobs of a second: 16 px, two steps of 8 images, a 6-image validation set."""
    return [
        "-m", "data=folder", f"data.root={folder}", "data.img_size=16", "data.batch_size=8", "data.num_workers=0",
        "data.max_val_per_class=2", "trainer.train_samples=16", "trainer.train_eval_samples=4",
        "trainer.progress=none", *extra,
    ]


# resnet_v1/v2 x two seeds train; vit_v1 has no `widths`, so its jobs fail, which must be recorded
# while the others complete. The sweep's check of every job before the first (sweeps/precheck.py)
# is off here, so that they fail inside the task, as a job that runs out of memory does.
MODEL_SWEEP = ("model=resnet_v1,resnet_v2,vit_v1", "seed=0,1", "++model.widths=[8,8,16,16]", "++model.stem_stride=1",
               "~hydra.callbacks.check_sweep_jobs")


def sweep_env(root: Path) -> dict:
    return {**ONE_THREAD, "VISION_EXP_OUTPUT": str(root / "outputs"), "VISION_EXP_CACHE": str(root / "cache")}


@pytest.fixture(scope="module")
def finished_sweep(tiny_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    args = tiny_sweep(tiny_folder, *MODEL_SWEEP)
    result = run_cli([*args, f"hydra.sweep.dir={root / 'sweep'}"], env_extra=sweep_env(root))
    return root / "sweep", args, result


def output(result) -> str:
    return result.stdout + result.stderr


def metrics(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())


def test_a_failing_job_is_recorded_and_the_sweep_goes_on(finished_sweep):
    sweep, _, result = finished_sweep
    assert result.returncode == 1, output(result)  # every job ran; status 1 says one did not complete
    assert "Traceback" not in output(result)
    assert "2 of 6 jobs did not complete" in output(result)
    statuses = [metrics(sweep / str(n))["status"] for n in range(6)]
    assert statuses == ["completed"] * 4 + ["failed"] * 2
    for n in (4, 5):
        assert "model.widths is not a setting of ViT" in metrics(sweep / str(n))["error"]
        assert "model=vit_v1" in json.loads((sweep / str(n) / "overrides.json").read_text())


def test_results_csv_has_a_row_per_job_with_its_metrics(finished_sweep):
    sweep, _, _ = finished_sweep
    rows = list(csv.DictReader((sweep / "results.csv").open()))
    assert [r["job"] for r in rows] == ["0", "1", "2", "3", "4", "5"]
    assert [r["configuration"] for r in rows] == ["model=resnet_v1"] * 2 + ["model=resnet_v2"] * 2 + ["model=vit_v1"] * 2
    assert [r["seed"] for r in rows] == ["0", "1"] * 3
    for row in rows[:4]:
        job = metrics(sweep / row["job"])
        assert row["status"] == "completed" and row["error"] == ""
        for key in ("val_acc", "best_val_acc", "train_acc", "train_running_acc", "wall_time_s", "samples_seen"):
            assert float(row[key]) == job[key], key
        assert row["overrides"] == " ".join(json.loads((sweep / row["job"] / "overrides.json").read_text()))
    for row in rows[4:]:
        assert row["status"] == "failed" and "widths" in row["error"] and row["val_acc"] == ""


def test_results_md_has_mean_std_and_difference_to_the_baseline(finished_sweep):
    sweep, _, _ = finished_sweep
    text = (sweep / "results.md").read_text()
    lines = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    acc = {model: [metrics(sweep / str(n))["val_acc"] for n in jobs] for model, jobs in (("v1", (0, 1)), ("v2", (2, 3)))}
    baseline = lines["| **model=resnet_v1** (baseline)"]
    assert f"| 2 | {statistics.mean(acc['v1']):.2f} ± {statistics.stdev(acc['v1']):.2f} | baseline |" in baseline
    difference = paired_difference(acc["v2"], acc["v1"])  # both ran seeds 0 and 1, in that job order
    other = lines["| model=resnet_v2"]
    assert f"| 2 | {statistics.mean(acc['v2']):.2f} ± {statistics.stdev(acc['v2']):.2f} |" in other
    assert f"{difference.estimate:+.2f} [{difference.low:+.2f}, {difference.high:+.2f}]" in other
    assert "| 0 (+2 not completed) | — | — |" in lines["| model=vit_v1"]
    assert "left out of every mean" in text and "## Jobs that did not complete" in text
    assert "| 4 | model=vit_v1 | 0 | failed |" in text and "| 5 | model=vit_v1 | 1 | failed |" in text
    assert "python -m vision_exp.train -m" in text and "model=resnet_v1,resnet_v2,vit_v1" in text
    for png in ("val_acc_bars.png", "val_acc_curves.png"):
        assert f"]({png})" in text
        assert (sweep / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_skips_completed_jobs_and_resumes_an_interrupted_one(finished_sweep, tmp_path):
    original, args, _ = finished_sweep
    sweep = tmp_path / "sweep"
    shutil.copytree(original, sweep)
    before = metrics(sweep / "2")
    (sweep / "2" / "metrics.json").unlink()  # job 2 was interrupted after its last checkpoint
    mtimes = {n: (sweep / n / "metrics.json").stat().st_mtime_ns for n in ("0", "1", "3")}
    result = run_cli([*args, f"hydra.sweep.dir={sweep}"], env_extra=sweep_env(original.parent))
    log = output(result)
    assert result.returncode == 1, log  # the ViT jobs are retried, and fail again
    assert log.count("skipped: already completed") == 3
    assert f"resumed from {sweep / '2' / 'checkpoints' / 'last.pt'}" in log
    assert {n: (sweep / n / "metrics.json").stat().st_mtime_ns for n in mtimes} == mtimes
    after = metrics(sweep / "2")
    assert after["status"] == "completed"
    assert {k: after[k] for k in ("val_acc", "train_acc", "samples_seen")} == {k: before[k] for k in ("val_acc", "train_acc", "samples_seen")}
    rows = list(csv.DictReader((sweep / "results.csv").open()))
    assert [r["status"] for r in rows] == ["completed"] * 4 + ["failed"] * 2


def test_a_changed_command_over_a_finished_sweep_is_refused_before_any_job_and_the_folder_kept(finished_sweep, tmp_path):
    """Job numbers follow the swept values: a rerun with other or reordered values would point jobs at other
    configurations' folders. Refused as a whole before any job starts: results, summary and multirun.yaml stay."""
    original, args, _ = finished_sweep
    sweep = tmp_path / "sweep"
    shutil.copytree(original, sweep)
    before = {path: path.read_bytes() for path in sweep.rglob("*") if path.is_file()}
    checked = [a for a in args if a != "~hydra.callbacks.check_sweep_jobs"]  # the sweep's own jobs 4-5 fail it too
    changed = [("model=resnet_v1" if a.startswith("model=") else a) for a in checked] + ["data.batch_size=4"]
    result = run_cli([*changed, f"hydra.sweep.dir={sweep}"], env_extra=sweep_env(original.parent))
    assert result.returncode == 2 and "Traceback" not in output(result), output(result)
    (line,) = [line for line in output(result).splitlines() if line.startswith("error: job 0 (")]
    assert "model=resnet_v1 seed=0 " in line and f"{sweep}/0 holds a run of another configuration (data.batch_size: 8 -> 4" in line
    assert "resume a sweep with the command that started it" in output(result)
    assert {path: path.read_bytes() for path in sweep.rglob("*") if path.is_file()} == before
    reordered = ["model=vit_v1,resnet_v2,resnet_v1" if a.startswith("model=") else a for a in checked]
    result = run_cli([*reordered, f"hydra.sweep.dir={sweep}"], env_extra=sweep_env(original.parent))
    assert result.returncode == 2, output(result)
    assert f"{sweep}/0 holds a run of another configuration (model." in output(result)
    assert {path: path.read_bytes() for path in sweep.rglob("*") if path.is_file()} == before
    again = run_cli([*args, f"hydra.sweep.dir={sweep}"], env_extra=sweep_env(original.parent))  # the sweep's own command
    assert output(again).count("skipped: already completed") == 4
    assert [r["status"] for r in csv.DictReader((sweep / "results.csv").open())][:4] == ["completed"] * 4


def test_ctrl_c_stops_the_sweep_at_a_checkpoint(tiny_folder, tmp_path):
    sweep = tmp_path / "sweep"
    args = tiny_sweep(tiny_folder, "seed=0,1", "model.widths=[8,8,16,16]", "model.stem_stride=1", "trainer.train_samples=null",
                      "trainer.epochs=100", "trainer.progress=log", f"hydra.sweep.dir={sweep}")
    process = subprocess.Popen([sys.executable, "-m", "vision_exp.train", *args], cwd=REPO, text=True,
                               env={**os.environ, **sweep_env(tmp_path), "PYTHONUNBUFFERED": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        lines = []
        for line in process.stdout:  # the first job is training: the user presses Ctrl-C
            lines.append(line)
            if "epoch 2/100" in line:
                process.send_signal(signal.SIGINT)
                break
        log = "".join(lines) + process.communicate(timeout=120)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, log
    assert f"The sweep stops; run the same command with hydra.sweep.dir={sweep} to resume it." in log
    assert "trainer.resume=auto" not in log  # a single run's advice: it would take the job out of its sweep
    assert "stopped by SIGINT" in metrics(sweep / "0")["error"] and (sweep / "0" / "checkpoints" / "last.pt").is_file()
    assert not (sweep / "1").exists()
    assert [row["status"] for row in csv.DictReader((sweep / "results.csv").open())] == ["interrupted"]


SIGTERM_WHILE_THE_LAST_EPOCH_EVALUATES = """
import os, signal, sys
from vision_exp.training.trainer import Trainer
end_epoch = Trainer._end_epoch
def signalled(self):
    if self.position.epoch + 1 == self.budget.num_epochs:
        os.kill(os.getpid(), signal.SIGTERM)
    return end_epoch(self)
Trainer._end_epoch = signalled
from vision_exp.train import main
main()
"""


def test_a_signal_as_a_job_ends_stops_the_sweep_after_that_job(tiny_folder, tmp_path):
    """SIGTERM (SLURM preemption, kill) while the first job evaluates its last epoch: that job completes, and
    the sweep ends there rather than running the others as if nothing had been asked."""
    sweep = tmp_path / "sweep"
    args = tiny_sweep(tiny_folder, "seed=0,1", "model.widths=[8,8,16,16]", "model.stem_stride=1",
                      f"hydra.sweep.dir={sweep}")
    result = subprocess.run([sys.executable, "-c", SIGTERM_WHILE_THE_LAST_EPOCH_EVALUATES, *args], cwd=REPO,
                            capture_output=True, text=True, timeout=300, env={**os.environ, **sweep_env(tmp_path)})
    assert result.returncode == 128 + signal.SIGTERM, output(result)
    assert "SIGTERM arrived as the run ended: it completed first" in output(result)
    assert f"The sweep stops; run the same command with hydra.sweep.dir={sweep} to resume it." in output(result)
    assert metrics(sweep / "0")["status"] == "completed" and not (sweep / "1").exists()
    assert f"the jobs so far (1 of 1 completed) are summarized in {sweep / 'results.md'}" in output(result)
    assert [row["status"] for row in csv.DictReader((sweep / "results.csv").open())] == ["completed"]


def test_a_folder_of_another_configuration_is_neither_skipped_nor_resumed(tmp_path):
    saved = {"seed": 0, "model": {"block": "BasicBlock", "num_classes": 3}, "trainer": {"resume": "never", "device": "auto"},
             "paths": {"output_dir": "/a"}, "data": {"num_classes": 3, "root": "/a/data"}}
    (tmp_path / "config.yaml").write_text(json.dumps(saved))  # JSON is YAML
    same = {"seed": 0, "model": {"block": "BasicBlock", "num_classes": None}, "trainer": {"resume": "auto", "device": "cuda:1"},
            "paths": {"output_dir": "/b"}, "data": {"num_classes": None, "root": "/b/data"}}
    check_same_config(tmp_path, same)  # where, how, and what the dataset fills in do not count
    # where the images are gathered (the same pixels reach the augmentation) and how workers live do not either
    check_same_config(tmp_path, {**same, "data": {**same["data"], "on_device": False, "persistent_workers": False}})
    check_same_config(tmp_path, {**same, "loss": {"label_smoothing": 0.1}})  # a setting added to the project since
    removed = {key: value for key, value in same.items() if key != "seed"}
    with pytest.raises(ConfigError, match=r"seed: 0 -> <unset>"):
        check_same_config(tmp_path, removed)
    other = {**same, "model": {"block": "BasicBlockv2", "num_classes": None}}
    with pytest.raises(ConfigError, match=r"another configuration \(model.block: BasicBlock -> BasicBlockv2\)"):
        check_same_config(tmp_path, other)
    elsewhere = {**same, "data": {"num_classes": None, "root": "/kaggle/input/data"}}
    check_same_config(tmp_path, elsewhere)  # the same dataset folder, relocated
    another = {**same, "data": {"num_classes": None, "root": "/a/imagewoof2-320"}}
    with pytest.raises(ConfigError, match=r"another configuration \(data.root: /a/data -> /a/imagewoof2-320\)"):
        check_same_config(tmp_path, another)  # another dataset: its results must not pass for this one's


def test_under_joblib_a_job_trains_on_a_gpu_of_its_own(tmp_path, monkeypatch):
    import torch

    from vision_exp.train import parallel_job_device

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    basic = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
    for launcher, device, expected in ((joblib, "auto", "cuda:1"), (joblib, "cpu", "cpu"), (basic, "auto", "auto")):
        hydra_cfg = SimpleNamespace(launcher=SimpleNamespace(_target_=launcher), job=SimpleNamespace(num=3))
        cfg = compose([f"trainer.device={device}"])
        with parallel_job_device(cfg, tmp_path / "sweep" / "3", hydra_cfg):
            assert cfg.trainer.device == expected, launcher
    assert (tmp_path / "sweep" / ".gpu1.lock").is_file()


def test_a_sweep_job_skips_when_completed_and_resumes_when_begun(tmp_path):
    from omegaconf import OmegaConf

    from vision_exp.train import prepare_sweep_job

    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    hydra_cfg = SimpleNamespace(launcher=SimpleNamespace(_target_=joblib), job=SimpleNamespace(num=3),
                                overrides=SimpleNamespace(task=["model=resnet_v2", "seed=1"]))
    cfg = compose(["model=resnet_v2", "seed=1"])
    assert prepare_sweep_job(cfg, tmp_path, hydra_cfg) is None  # a new job
    assert cfg.trainer.resume == "never"
    assert json.loads((tmp_path / "overrides.json").read_text()) == ["model=resnet_v2", "seed=1"]

    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))  # it began to train
    again = compose(["model=resnet_v2", "seed=1"])
    assert prepare_sweep_job(again, tmp_path, hydra_cfg) is None
    assert again.trainer.resume == "auto"
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "completed", "val_acc": 50.0}))
    assert prepare_sweep_job(compose(["model=resnet_v2", "seed=1"]), tmp_path, hydra_cfg)["val_acc"] == 50.0
    with pytest.raises(ConfigError, match="another configuration"):
        prepare_sweep_job(compose(["model=resnet_v2", "seed=2"]), tmp_path, hydra_cfg)


def test_a_refused_job_records_why_until_a_command_of_its_own_configuration_runs_it(tmp_path):
    """The summary lists a refused job from its refused.json: the file must say why and with which overrides, leave
    the folder's results as they were, and go once the folder's own configuration runs there again."""
    from omegaconf import OmegaConf

    from vision_exp.sweeps.jobs import prepare_job

    own = ["model=resnet_v2", "seed=1"]
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(compose(own), resolve=True))
    finished = {"status": "completed", "val_acc": 50.0}
    (tmp_path / "metrics.json").write_text(json.dumps(finished))
    other = ["model=resnet_v1", "seed=1"]
    with pytest.raises(ConfigError, match="another configuration") as refused:
        prepare_job(compose(other), tmp_path, other)
    assert json.loads((tmp_path / "refused.json").read_text()) == {"error": str(refused.value), "overrides": other}
    assert json.loads((tmp_path / "metrics.json").read_text()) == finished and not (tmp_path / "overrides.json").exists()
    assert prepare_job(compose(own), tmp_path, own) == finished
    assert not (tmp_path / "refused.json").exists()
    on_a_smaller_card = [*own, "trainer.grad_accum_steps=4", "data.eval_batch_size=16"]  # the same computation
    assert prepare_job(compose(on_a_smaller_card), tmp_path, on_a_smaller_card) == finished


def test_a_resumed_job_keeps_a_checkpoint_it_was_told_to_resume_from_until_it_has_its_own(tmp_path):
    """A checkpoint path given on the command line is what the user asked to resume from, while the job's folder
    has no checkpoint (an attempt stopped before its first); once it has one, the same command goes on from it,
    instead of starting again from the other folder over the job's progress."""
    from omegaconf import OmegaConf

    from vision_exp.sweeps.jobs import prepare_job

    own = ["model=resnet_v2", "seed=1"]
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(compose(own), resolve=True))
    elsewhere = f"trainer.resume={tmp_path / 'elsewhere.pt'}"
    cfg = compose([*own, elsewhere])
    assert prepare_job(cfg, tmp_path, own) is None
    assert cfg.trainer.resume == str(tmp_path / "elsewhere.pt")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"its own progress")
    cfg = compose([*own, elsewhere])
    assert prepare_job(cfg, tmp_path, own) is None
    assert cfg.trainer.resume == "auto"


def test_parallel_launchers_and_simultaneous_sweeps_keep_every_job_in_its_own_folder(finished_sweep, tiny_folder, tmp_path):
    """joblib (2 jobs at once; TrivialAugment runs in DataLoader workers inside each joblib worker) and
    submitit_local start at the same moment under the same name: their workers re-resolve the sweep
    folder, which must stay theirs. (The data cache is the finished sweep's: built once, not raced for.)"""
    env = {**sweep_env(tmp_path), "VISION_EXP_CACHE": str(finished_sweep[0].parent / "cache")}
    launchers = {
        "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "augmentation=trivialaugment", "data.num_workers=2"],
        "submitit": ["hydra/launcher=submitit_local"],
    }
    model = ("model.widths=[8,8,16,16]", "model.stem_stride=1")
    processes = {
        name: subprocess.Popen([sys.executable, "-m", "vision_exp.train", *tiny_sweep(tiny_folder, "name=twin", "seed=0,1", *model, *extra)],
                               cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name, extra in launchers.items()
    }
    try:
        logs = {name: process.communicate(timeout=300)[0] for name, process in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    for name, process in processes.items():
        assert process.returncode == 0, logs[name]
    assert "Joblib.Parallel(n_jobs=2" in logs["joblib"]
    sweeps = sorted((tmp_path / "outputs" / "twin").iterdir())
    assert len(sweeps) == 2, sweeps
    by_launcher = {"submitit" if (s / ".submitit").is_dir() else "joblib": s for s in sweeps}
    assert set(by_launcher) == {"joblib", "submitit"}
    for name, sweep in by_launcher.items():
        assert str(sweep) in logs[name]
        jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
        assert jobs == ["0", "1"], (name, jobs)
        assert all(metrics(sweep / job)["status"] == "completed" for job in jobs)
        assert [r["status"] for r in csv.DictReader((sweep / "results.csv").open())] == ["completed", "completed"]


def test_the_enhancement_study_command_sweeps_every_enhancement_against_none(tmp_path):
    """The study's own command, with no dataset so that each job fails at once: the point is what it sweeps."""
    result = run_cli(["-m", "experiment=cpu_vit", "enhancement=glob(*)", "seed=0", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                     env_extra={**ONE_THREAD, "VISION_EXP_DATA": str(tmp_path / "no_data")})
    assert result.returncode == 1, output(result)
    summary = load_sweep(tmp_path / "sweep")
    options = sorted(p.stem for p in (REPO / "conf" / "enhancement").glob("*.yaml"))
    assert [c.label for c in summary.configurations] == [f"enhancement={o}" for o in options]
    assert summary.baseline.label == "enhancement=none"
    assert all(job.status == "failed" and "no_data" in job.error for job in summary.jobs)


# --------------------------------------------------------------------------- summary on files
def write_job(sweep: Path, num: int, overrides: list, val_acc=None, error=None, curve=(20.0, 40.0), train_acc=90.0) -> None:
    job = sweep / str(num)
    job.mkdir(parents=True)
    (job / "overrides.json").write_text(json.dumps(overrides))
    if error:
        (job / "metrics.json").write_text(json.dumps({"status": "failed", "error": error}))
    elif val_acc is not None:
        (job / "metrics.json").write_text(json.dumps({"status": "completed", "val_acc": val_acc, "best_val_acc": val_acc,
                                                      "train_acc": train_acc, "samples_seen": 200, "wall_time_s": 3.0}))
        records = [{"epoch": e + 1, "samples_seen": 100 * (e + 1), "val/acc": v} for e, v in enumerate((*curve[:-1], val_acc))]
        (job / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def sweep_of(tmp_path: Path, *jobs: tuple) -> Path:
    """A sweep folder of completed jobs, each (overrides, val_acc) as write_job writes them."""
    sweep = tmp_path / "multirun"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("{}")
    for number, (overrides, val_acc) in enumerate(jobs):
        write_job(sweep, number, overrides, val_acc)
    return sweep


@pytest.fixture
def enhancement_sweep(tmp_path):
    """What `-m experiment=cpu_vit 'enhancement=glob(*)' seed=0,1,2` leaves, cut to three options."""
    sweep = tmp_path / "multirun"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(json.dumps({"name": "cpu_vit", "hydra": {"overrides": {
        "hydra": ["hydra.mode=MULTIRUN"], "task": ["experiment=cpu_vit", "enhancement=glob(*)", "seed=0,1,2"]}}}))
    accuracy = {"ema": (61.0, 63.0, 62.0), "none": (50.0, 54.0, 52.0), "randaugment": (55.0, None, 57.0)}
    num = 0
    for option, values in accuracy.items():
        for seed, value in enumerate(values):
            overrides = ["experiment=cpu_vit", f"enhancement={option}", f"seed={seed}"]
            write_job(sweep, num, overrides, value, error="Training diverged" if value is None else None)
            num += 1
    write_job(sweep, num, ["experiment=cpu_vit", "enhancement=smaller_patch", "seed=0"])  # still running
    return sweep


def test_the_enhancement_study_is_compared_with_its_no_enhancement_run(enhancement_sweep):
    summary = summarize_sweep(enhancement_sweep)
    assert [c.label for c in summary.configurations] == ["enhancement=ema", "enhancement=none", "enhancement=randaugment",
                                                          "enhancement=smaller_patch"]
    assert summary.baseline.label == "enhancement=none"  # not the first (alphabetical) option
    ema, none, randaugment, unfinished = summary.configurations
    assert ema.values("val_acc") == [61.0, 63.0, 62.0] and randaugment.values("val_acc") == [55.0, 57.0]
    difference = summary.difference(ema)  # seeds 0, 1, 2 on both sides: pairs 11, 9, 10; std 1; df = 2
    assert difference.paired and difference.estimate == pytest.approx(10.0)
    assert difference.df == pytest.approx(2.0)
    half = 4.3026527 / math.sqrt(3)  # paired: t(0.975, df 2) x the differences' std 1 / sqrt(3 pairs)
    assert (difference.low, difference.high) == (pytest.approx(10 - half, abs=1e-6), pytest.approx(10 + half, abs=1e-6))
    unpaired = summary.difference(randaugment)  # seed 1 failed: seeds 0, 2 against 0, 1, 2
    assert not unpaired.paired and unpaired == welch_difference([55.0, 57.0], [50.0, 54.0, 52.0])
    text = (enhancement_sweep / "results.md").read_text()
    assert "| **enhancement=none** (baseline) | 3 | 52.00 ± 2.00 | baseline |" in text
    assert f"| enhancement=ema | 3 | 62.00 ± 1.00 | +10.00 [{10 - half:+.2f}, {10 + half:+.2f}] |" in text
    assert (f"| enhancement=randaugment | 2 (+1 not completed) | 56.00 ± 1.41 | +4.00 [{unpaired.low:+.2f}, "
            f"{unpaired.high:+.2f}] (Welch: other seeds) |") in text
    assert "| enhancement=smaller_patch | 0 (+1 not completed) | — | — |" in text
    assert "| 7 | enhancement=randaugment | 1 | failed | Training diverged |" in text
    assert "| 9 | enhancement=smaller_patch | 0 | unfinished | no metrics.json" in text
    assert "Overrides common to every job: `experiment=cpu_vit`" in text
    assert "python -m vision_exp.train -m experiment=cpu_vit 'enhancement=glob(*)' seed=0,1,2" in text
    rows = list(csv.DictReader((enhancement_sweep / "results.csv").open()))
    assert len(rows) == 10 and [r["status"] for r in rows].count("completed") == 8
    for png in ("val_acc_bars.png", "val_acc_curves.png"):
        assert (enhancement_sweep / png).stat().st_size > 0


def test_baseline_and_metric_can_be_chosen(enhancement_sweep):
    summary = load_sweep(enhancement_sweep, baseline="enhancement=ema", metric="best_val_acc")
    assert summary.baseline.label == "enhancement=ema" and summary.metric == "best_val_acc"
    assert summary.difference(summary.configurations[1]).estimate == pytest.approx(-10.0)
    explained = results_markdown(summary).split("How to read it: ")[1].split(". ")[0]
    assert explained.startswith("`best_val_acc` is the best epoch's validation top-1") and "optimistic" in explained
    with pytest.raises(SweepError, match="matches no configuration.*enhancement=none"):
        load_sweep(enhancement_sweep, baseline="enhancement=mixup_cutmix")
    with pytest.raises(SweepError, match="matches 4 configurations"):
        load_sweep(enhancement_sweep, baseline="experiment=cpu_vit")
    with pytest.raises(SweepError, match="metric 'val_acc9'.*choose one of best_val_acc"):
        load_sweep(enhancement_sweep, metric="val_acc9")


def test_a_baseline_is_matched_on_each_settings_last_value(tmp_path):
    """vision_exp.sweep's runs override `common` (`model.widths=[8,8,16,16] ... model.widths=[8,8,8,8]`): Hydra
    applies the last value, so the baseline must match it, and never a value a later override replaced."""
    common = ["model.widths=[8,8,16,16]", "trainer.epochs=1"]
    sweep = sweep_of(tmp_path, (common, 60.0), ([*common, "trainer.epochs=2", "model.widths=[8,8,8,8]"], 70.0))
    summary = load_sweep(sweep, baseline="model.widths=[8,8,16,16] trainer.epochs=1")
    assert summary.baseline.label == "model.widths=[8,8,16,16] trainer.epochs=1"
    assert summary.difference(summary.configurations[1]).estimate == pytest.approx(10.0)
    assert load_sweep(sweep, baseline="trainer.epochs=2").baseline.label == "model.widths=[8,8,8,8] trainer.epochs=2"
    with pytest.raises(SweepError, match="'model.widths=\\[8,8,8,8\\] trainer.epochs=1' matches no configuration"):
        load_sweep(sweep, baseline="model.widths=[8,8,8,8] trainer.epochs=1")


def test_job_files_that_are_not_what_a_run_writes_are_read_as_missing(tmp_path, capsys):
    """A config.yaml that does not parse, overrides that are not text, a refusal that is not text and metrics.jsonl
    lines that are no records (cut short, edited by hand) give a summary and a report, not a traceback."""
    sweep = sweep_of(tmp_path, (["model=resnet_v1"], 70.0), (["model=resnet_v2", "seed=1"], 75.0),
                     (["model=resnet_v1", "seed=2"], 72.0))
    (sweep / "0" / "config.yaml").write_text("seed: [unclosed\n")
    (sweep / "0" / "metrics.jsonl").write_text('{"samples_seen": 100, "val/acc": "high"}\nnull\n[1, 2]\n')
    (sweep / "1" / "metrics.jsonl").write_text('{"val/acc": 50.0}\n' + (sweep / "1" / "metrics.jsonl").read_text())
    write_job(sweep, 3, ["model=resnet_v2", 4], 80.0)
    write_job(sweep, 4, ["model=resnet_v1", "seed=4"], 71.0)
    (sweep / "4" / "refused.json").write_text(json.dumps({"error": ["the folder", "holds another run"]}))
    summary = summarize_sweep(sweep)
    assert [job.seed for job in summary.jobs] == [None, "1", "2", None, "4"]
    assert [c.label for c in summary.configurations] == ["model=resnet_v1", "model=resnet_v2",
                                                         "(unknown: no overrides.json)"]
    assert summary.jobs[4].status == "refused" and summary.jobs[4].error == "['the folder', 'holds another run']"
    assert summary.configurations[0].values("val_acc") == [70.0, 72.0]
    assert (sweep / "val_acc_curves.png").stat().st_size > 0
    assert report.main([str(sweep), "--output", str(tmp_path / "report.md")]) == 0, capsys.readouterr().err


def test_a_seed_completed_twice_in_a_configuration_is_named_as_a_caution(tmp_path):
    """Two runs of one seed are no independent samples, yet each counts in n: results.md and the report say which."""
    sweep = sweep_of(tmp_path, (["model=resnet_v1", "seed=0"], 70.0), (["model=resnet_v1", "seed=0"], 70.0),
                     (["model=resnet_v2", "seed=0"], 75.0), (["model=resnet_v2", "seed=1"], 76.0))
    caution = ("**Caution**: these seeds completed more than once in one configuration, and each run counts in n, mean "
               "and std, though a repeat of a seed is no independent draw (a deterministic run repeats its numbers): n "
               "overstates the evidence and the intervals are too narrow.\n\n- model=resnet_v1: seed 0 ×2\n")
    summarize_sweep(sweep)
    assert caution in (sweep / "results.md").read_text()
    assert report.main([str(sweep), "--output", str(tmp_path / "report.md")]) == 0
    assert caution in (tmp_path / "report.md").read_text()
    (sweep / "1" / "overrides.json").write_text(json.dumps(["model=resnet_v1", "seed=1"]))
    summarize_sweep(sweep)
    assert "Caution" not in (sweep / "results.md").read_text()


def test_vx_summarize_and_vx_report_end_bad_input_in_one_message(tmp_path, capsys):
    assert summarize.main([str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nowhere'} is not a sweep folder: it does not exist"
    assert report.main([str(tmp_path)]) == 2
    assert "it has no multirun.yaml" in capsys.readouterr().err
    assert not (tmp_path / "results.md").exists()
    sweep = sweep_of(tmp_path, (["seed=0"], 70.0))
    assert summarize.main([str(sweep), "--output", ""]) == 2  # Path("") would be the current folder
    assert capsys.readouterr().err == "error: --output is empty: name the folder for the summary, e.g. --output merged\n"


def test_vx_report_to_a_place_it_cannot_write_is_one_message(enhancement_sweep, tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    output = tmp_path / "a-file" / "report.md"
    assert report.main([str(enhancement_sweep), "--output", str(output)]) == 2
    assert capsys.readouterr().err.startswith(f"error: cannot write {output}: ")
    assert report.main([str(enhancement_sweep), "--output", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: --output {tmp_path} is a folder: name the report's file, e.g. {tmp_path / 'report.md'}\n"


def test_vx_report_writes_again_over_its_own_report_but_over_no_other_markdown(enhancement_sweep, tmp_path, capsys):
    """`-o README.md` or `-o notes.md` by mistake must not replace the user's file; an earlier report is replaced."""
    notes = tmp_path / "notes.md"
    notes.write_text("my notes\n")
    assert report.main([str(enhancement_sweep), "--output", str(notes)]) == 2
    assert capsys.readouterr().err == (f"error: --output {notes} exists and is no report vx-report wrote (it does not "
                                       f"start with '# Study report'): name a new file, e.g. {tmp_path / 'report.md'}, "
                                       "or move it away first\n")
    assert notes.read_text() == "my notes\n"
    output = tmp_path / "report.md"
    output.write_text("# Study report\n\nan earlier one\n")
    assert report.main([str(enhancement_sweep), "--output", str(output)]) == 0
    assert "an earlier one" not in output.read_text() and "## cpu_vit" in output.read_text()
    assert report.main([str(enhancement_sweep), "--output", str(output)]) == 0  # and again
    for blank_or_marked in ("", "\ufeff# Study report\n"):  # an empty file; a report an editor saved with a BOM
        output.write_text(blank_or_marked, encoding="utf-8")
        assert report.main([str(enhancement_sweep), "--output", str(output)]) == 0


def test_vx_summarize_and_vx_report(enhancement_sweep, tmp_path, capsys):
    assert summarize.main([str(enhancement_sweep), "--baseline", "enhancement=ema"]) == 0
    assert "Baseline: **enhancement=ema** (chosen with --baseline)" in (enhancement_sweep / "results.md").read_text()
    chosen_baseline_plot = (enhancement_sweep / "val_acc_bars.png").stat().st_mtime_ns
    output = tmp_path / "write-up" / "report.md"
    assert report.main([str(enhancement_sweep), "--output", str(output)]) == 0
    text = output.read_text()
    assert "## cpu_vit" in text and "**enhancement=none**" in text
    assert "Sweep folder `../multirun`: 10 jobs, 8 completed." in text  # relative to where the report lies
    assert "python -m vision_exp.train -m experiment=cpu_vit 'enhancement=glob(*)' seed=0,1,2" in text
    links = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert links == ["../multirun/report_val_acc_bars.png", "../multirun/report_val_acc_curves.png"]
    assert all((output.parent / link).is_file() for link in links)
    assert (enhancement_sweep / "val_acc_bars.png").stat().st_mtime_ns == chosen_baseline_plot  # results.md's own


def test_a_report_on_a_read_only_sweep_folder_puts_its_plots_beside_the_report(enhancement_sweep, tmp_path,
                                                                                 monkeypatch):
    """A sweep folder attached as a Kaggle input is read-only: the report still comes, with its plots beside it."""
    import errno

    from vision_exp.sweeps import report as report_mod

    def read_only(plot):
        def draw(summary, path):
            if Path(path).parent == enhancement_sweep:
                raise OSError(errno.EROFS, "Read-only file system", str(path))
            plot(summary, path)
        return draw

    monkeypatch.setattr(report_mod, "plot_bars", read_only(report_mod.plot_bars))
    monkeypatch.setattr(report_mod, "plot_curves", read_only(report_mod.plot_curves))
    output = tmp_path / "write-up" / "report.md"
    assert report.main([str(enhancement_sweep), "--output", str(output)]) == 0
    links = [line.split("](")[1].rstrip(")") for line in output.read_text().splitlines() if line.startswith("![")]
    assert links == ["report_multirun_val_acc_bars.png", "report_multirun_val_acc_curves.png"]
    assert all((output.parent / link).is_file() for link in links)


def test_a_report_notes_a_sweep_folder_without_jobs_and_reports_the_others(enhancement_sweep, tmp_path):
    stopped = tmp_path / "stopped_sweep"
    stopped.mkdir()
    (stopped / "multirun.yaml").write_text("hydra: {}\n")  # Hydra writes it before composing the jobs
    output = tmp_path / "report.md"
    assert report.main([str(stopped), str(enhancement_sweep), "--output", str(output)]) == 0
    text = output.read_text()
    assert f"## stopped_sweep\n\nSkipped: {stopped} holds no job yet" in text and "**enhancement=none**" in text



def test_a_reports_section_lists_the_jobs_that_did_not_complete(enhancement_sweep, tmp_path):
    """The means of a report's table leave failed jobs out: the section must list them with their errors, as
    results.md does, or a reader takes two seeds for the three that ran."""
    text = report.build_report([enhancement_sweep], tmp_path / "write-up")
    section = text.split("Jobs that did not complete (left out of the means):")[1]
    assert "| 7 | enhancement=randaugment | 1 | failed | Training diverged |" in section
    assert "| 9 | enhancement=smaller_patch | 0 | unfinished | no metrics.json" in section
    (tmp_path / "all_done").mkdir()
    done = sweep_of(tmp_path / "all_done", (["seed=0"], 70.0))
    assert "did not complete" not in report.build_report([done], tmp_path / "write-up")


def test_sweeps_of_one_name_are_told_apart_by_folder_and_a_folder_named_twice_is_one_section(tmp_path):
    """A rerun or a sweep of more seeds keeps its preset's name: two sections headed alike, with one link anchor,
    could not be told apart. A folder matched by two overlapping globs is one sweep."""
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = sweep_of(tmp_path / "first", (["model=resnet_v1", "seed=0"], 70.0), (["model=resnet_v2", "seed=0"], 72.0))
    second = sweep_of(tmp_path / "second", (["model=resnet_v1", "seed=1"], 71.0), (["model=resnet_v2", "seed=1"], 74.0))
    (first.parent / "other").mkdir()
    other = sweep_of(first.parent / "other", (["model=vit_v1", "seed=0"], 60.0))
    for sweep, name in ((first, "ablation"), (second, "ablation"), (other, "vit")):
        (sweep / "multirun.yaml").write_text(json.dumps({"name": name}))
    output = tmp_path / "report.md"
    assert report.main([str(first), str(second), str(first), str(other), "--output", str(output)]) == 0
    text = output.read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["## ablation (first/multirun)", "## ablation (second/multirun)", "## vit"]
    assert "3 sweep(s)" in text


def test_a_sweep_folder_given_in_two_spellings_is_one_section_of_the_report(tmp_path):
    """`results/multirun` and `results/../results/multirun` (a glob and a path typed by hand) are one sweep: two
    sections would show it twice, as if it were a rerun."""
    sweep = sweep_of(tmp_path, (["model=resnet_v1", "seed=0"], 70.0), (["model=resnet_v2", "seed=0"], 72.0))
    text = report.build_report([sweep, f"{tmp_path}/../{tmp_path.name}/{sweep.name}"], tmp_path / "write-up")
    assert [line for line in text.splitlines() if line.startswith("## ")] == ["## multirun"] and "1 sweep(s)" in text


def test_read_only_sweeps_in_folders_of_one_name_keep_their_own_plots_beside_the_report(tmp_path, monkeypatch):
    """Two Kaggle inputs, /kaggle/input/a/multirun and /kaggle/input/b/multirun: the plots drawn beside the report
    must not overwrite each other, or both sections would show the second sweep's."""
    import errno

    from vision_exp.sweeps import report as report_mod

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sweeps = [sweep_of(tmp_path / "a", (["model=resnet_v1", "seed=0"], 70.0)),
              sweep_of(tmp_path / "b", (["model=resnet_v1", "seed=0"], 40.0))]
    drawn = {}

    def read_only(summary, path):
        if Path(path).parent in sweeps:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        drawn[Path(path).name] = summary.sweep_dir

    monkeypatch.setattr(report_mod, "plot_bars", read_only)
    monkeypatch.setattr(report_mod, "plot_curves", read_only)
    output = tmp_path / "write-up" / "report.md"
    assert report.main([*map(str, sweeps), "--output", str(output)]) == 0
    links = [line.split("](")[1].rstrip(")") for line in output.read_text().splitlines() if line.startswith("![")]
    assert len(set(links)) == 4
    assert [drawn[link] for link in links] == [sweeps[0], sweeps[0], sweeps[1], sweeps[1]]


@pytest.mark.parametrize("content", ["[]", "null", '"completed"', '{"status": "compl'])
def test_a_metrics_json_that_holds_no_record_is_listed_with_the_reason(tmp_path, content):
    """A metrics.json cut short by a copy, or written by another tool, must neither stop the summary nor be
    called missing."""
    sweep = sweep_of(tmp_path, (["model=resnet_v1", "seed=0"], 70.0), (["model=resnet_v1", "seed=1"], 72.0))
    (sweep / "1" / "metrics.json").write_text(content)
    (sweep / "1" / "refused.json").write_text(content)
    summary = summarize_sweep(sweep)
    job = summary.jobs[1]
    assert job.status == "unfinished" and "metrics.json holds no run's record" in job.error
    assert "| 1 | all jobs | 1 | unfinished | metrics.json holds no run's record" in (sweep / "results.md").read_text()


def test_a_failed_job_whose_error_is_null_is_listed(tmp_path):
    sweep = sweep_of(tmp_path, (["seed=0"], 70.0))
    write_job(sweep, 1, ["seed=1"], error="placeholder")
    (sweep / "1" / "metrics.json").write_text(json.dumps({"status": "failed", "error": None}))
    summarize_sweep(sweep)
    assert "| 1 | all jobs | 1 | failed |  |" in (sweep / "results.md").read_text()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "true"])
def test_a_metric_that_is_no_finite_number_is_left_out_of_the_mean(tmp_path, literal):
    """Python's json writes NaN and Infinity unless told not to, and reads them back as floats; one would make the
    configuration's mean, std and interval nan. JSON's true is a Python int."""
    sweep = sweep_of(tmp_path, (["model=resnet_v1", "seed=0"], 70.0), (["model=resnet_v1", "seed=1"], 72.0),
                     (["model=resnet_v2", "seed=0"], 75.0), (["model=resnet_v2", "seed=1"], 77.0))
    text = (sweep / "0" / "metrics.json").read_text()
    (sweep / "0" / "metrics.json").write_text(text.replace('"val_acc": 70.0', f'"val_acc": {literal}'))
    summary = load_sweep(sweep)
    baseline, other = summary.configurations
    assert baseline.values("val_acc") == [72.0]
    assert summary.difference(other) == welch_difference([75.0, 77.0], [72.0])
    assert "| **model=resnet_v1** (baseline) | 1 (+1 without val_acc) | 72.00 | baseline |" in results_markdown(summary)


def test_a_job_without_overrides_json_neither_makes_axes_nor_becomes_the_baseline(tmp_path):
    """A job that failed before it wrote overrides.json says nothing of the sweep's axes: counted as a job without
    overrides, it turned every common override into an axis, labelled every configuration with them, and as job
    0 it was taken for the baseline."""
    sweep = tmp_path / "multirun"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("{}")
    (sweep / "0").mkdir()
    (sweep / "0" / "metrics.json").write_text(json.dumps({"status": "failed", "error": "no space left on device"}))
    for number, (model, value) in enumerate((("resnet_v1", 70.0), ("resnet_v2", 75.0)), start=1):
        write_job(sweep, number, ["experiment=cpu_resnet", f"model={model}", "seed=0"], value)
    summary = load_sweep(sweep)
    assert list(summary.axes) == ["model"] and summary.common == ["experiment=cpu_resnet"]
    assert [c.label for c in summary.configurations] == ["model=resnet_v1", "model=resnet_v2", "(unknown: no overrides.json)"]
    assert summary.baseline.label == "model=resnet_v1"
    assert "| 0 | (unknown: no overrides.json) | — | failed | no space left on device |" in results_markdown(summary)


def test_vx_summarize_on_a_read_only_sweep_folder_is_one_message(enhancement_sweep, monkeypatch, capsys):
    """A sweep attached as a Kaggle input cannot take results.csv: one line that says so and what reports it."""
    import errno

    from vision_exp.sweeps import summary as summary_mod

    def read_only(path, text):
        raise PermissionError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(summary_mod, "write_text_atomic", read_only)
    assert summarize.main([str(enhancement_sweep)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: cannot write the results into {enhancement_sweep}: Read-only file system; "
                            f"vx-report {enhancement_sweep} --output") and "Traceback" not in error


def test_a_sweep_of_seeds_alone_compares_nothing(tmp_path):
    """`-m seed=0,1,2` is one configuration: its mean ± std, with no baseline named and no Δ against itself."""
    sweep = sweep_of(tmp_path, (["experiment=cpu_vit", "seed=0"], 58.0), (["experiment=cpu_vit", "seed=1"], 60.0),
                     (["experiment=cpu_vit", "seed=2"], 62.0))
    summarize_sweep(sweep)
    text = (sweep / "results.md").read_text()
    assert "One configuration: nothing to compare it with; its seeds give the mean ± std." in text
    assert "Baseline:" not in text and "(baseline)" not in text
    assert "| all jobs | 3 | 60.00 ± 2.00 | — |" in text


def test_a_refused_job_is_listed_with_why_and_its_folders_results_are_not_counted(tmp_path):
    """A refused job's folder keeps the metrics.json of the configuration that ran there before: those numbers are
    another experiment's, so they must stay out of the mean and of results.csv, and the refusal must be shown."""
    sweep = sweep_of(tmp_path, (["model=resnet_v1", "seed=0"], 70.0), (["model=resnet_v1", "seed=1"], 72.0),
                     (["model=resnet_v1", "seed=2"], 99.0))
    why = "the folder holds another configuration (model.block: BasicBlock -> BasicBlockv2)"
    (sweep / "2" / "refused.json").write_text(json.dumps({"error": why, "overrides": ["model=resnet_v1", "seed=2"]}))
    summary = summarize_sweep(sweep)
    refused = summary.jobs[2]
    assert refused.status == "refused" and refused.error == why and not refused.completed
    assert summary.configurations[0].values("val_acc") == [70.0, 72.0]
    assert summary.unsuccessful == [refused]
    text = (sweep / "results.md").read_text()
    assert "3 jobs: 2 completed, 1 not completed (listed below; they are left out of every mean)." in text
    assert f"| 2 | all jobs | 2 | refused | {why} |" in text
    row = list(csv.DictReader((sweep / "results.csv").open()))[2]
    assert (row["status"], row["val_acc"], row["error"]) == ("refused", "", why)


def test_a_jobs_seed_is_its_last_seed_override_else_the_one_in_its_config_yaml(tmp_path):
    """Hydra applies the last of repeated overrides, and a sweep over presets alone takes the seed from its config:
    the seed column and the pairing by seed must name the seed the job ran with."""
    sweep = sweep_of(tmp_path, (["seed=0", "model=resnet_v1", "seed=3"], 70.0), (["model=resnet_v2"], 75.0),
                     (["model=resnet_v3"], 76.0))
    (sweep / "1" / "config.yaml").write_text("seed: 7\nmodel:\n  name: resnet_v2\n")
    summary = summarize_sweep(sweep)
    assert [job.seed for job in summary.jobs] == ["3", "7", None]
    assert [row["seed"] for row in csv.DictReader((sweep / "results.csv").open())] == ["3", "7", ""]


def test_the_baseline_has_no_difference_to_itself_and_a_single_seed_has_no_interval(tmp_path):
    """One seed on a side gives an estimate but no interval: results.md must say why rather than show a bare
    number that reads like a resolved difference."""
    sweep = sweep_of(tmp_path, (["model=resnet_v1", "seed=0"], 70.0), (["model=resnet_v2", "seed=0"], 75.5))
    summary = load_sweep(sweep)
    baseline, other = summary.configurations
    assert summary.difference(baseline) is None
    difference = summary.difference(other)
    assert difference.estimate == pytest.approx(75.5 - 70.0) and not difference.has_interval
    assert f"| model=resnet_v2 | 1 | 75.50 | {75.5 - 70.0:+.2f} (no interval: n < 2) |" in results_markdown(summary)


def test_a_hidden_folder_or_an_overrides_json_that_is_no_list_makes_no_configuration(tmp_path):
    """A hidden folder (a backup, a tool's state) is no job even with an overrides.json; an overrides.json that
    holds no list (cut short, written by hand) is an unknown configuration, not one made of its characters."""
    sweep = sweep_of(tmp_path, (["model=resnet_v1", "seed=0"], 70.0), (["model=resnet_v2", "seed=0"], 75.0))
    write_job(sweep, 2, ["model=resnet_v1", "seed=1"], 72.0)
    (sweep / "2" / "overrides.json").write_text(json.dumps("model=resnet_v1 seed=1"))
    (sweep / ".backup").mkdir()
    (sweep / ".backup" / "overrides.json").write_text(json.dumps(["model=resnet_v9", "seed=0"]))
    summary = load_sweep(sweep)
    assert [job.name for job in summary.jobs] == ["0", "1", "2"]
    assert [c.label for c in summary.configurations] == ["model=resnet_v1", "model=resnet_v2", "(unknown: no overrides.json)"]
    assert list(summary.axes) == ["model"]


def test_a_failed_jobs_error_shows_its_first_line_cut_to_300_characters_and_a_pipe_keeps_the_table(tmp_path):
    """A traceback's first line says what failed; a longer message or a `|` in it must not break results.md's
    table (each row keeps its five cells)."""
    sweep = sweep_of(tmp_path, (["seed=0"], 70.0))
    long_line = "x" * 400
    write_job(sweep, 1, ["seed=1"], error="ValueError: a|b\n  File 'train.py', line 3\n")
    write_job(sweep, 2, ["seed=2"], error=long_line + "\nmore")
    rows = results_markdown(load_sweep(sweep)).split("## Jobs that did not complete")[1].strip().splitlines()[2:]
    assert rows == ["| 1 | all jobs | 1 | failed | ValueError: a\\|b |", f"| 2 | all jobs | 2 | failed | {'x' * 300} |"]


def test_check_baseline_refuses_a_baseline_no_planned_configuration_matches():
    """vision_exp.sweep checks its baseline before any job trains: a typo must stop it then, not after hours."""
    from vision_exp.sweeps.summary import check_baseline

    planned = [["model=resnet_v1", "seed=0"], ["model=resnet_v1", "seed=1"], ["model=vit_v1", "seed=0"]]
    check_baseline(planned, "model=vit_v1")
    with pytest.raises(SweepError, match="'model=vit_v9' matches no configuration"):
        check_baseline(planned, "model=vit_v9")
    with pytest.raises(SweepError, match="matches 2 configurations"):
        check_baseline([["model=resnet_v1", "optimizer.lr=0.1"], ["model=resnet_v1", "optimizer.lr=0.2"]],
                       "model=resnet_v1")


def test_a_notebook_sweep_names_its_call_as_the_command(tmp_path):
    """vision_exp.sweep() records its runs in multirun.yaml, where a command-line sweep has Hydra's overrides."""
    sweep = sweep_of(tmp_path, (["model=resnet_v1", "seed=0"], 70.0))
    runs, common = ["model=resnet_v1"], ["trainer.epochs=2"]
    (sweep / "multirun.yaml").write_text(json.dumps({"vision_exp_sweep": {"runs": runs, "common": common},
                                                     "hydra": {"overrides": {"task": ["seed=0"]}}}))
    assert load_sweep(sweep).command == f"vision_exp.sweep({runs!r}, common={common!r})"
    (sweep / "multirun.yaml").write_text("{}")
    summary = load_sweep(sweep)
    assert summary.command is None and "Command:" not in results_markdown(summary)


def test_jobs_whose_seed_is_unknown_make_no_pairs(tmp_path):
    """A job with neither a seed override nor a config.yaml has an unknown seed: pairing it with another unknown
    seed would treat two unrelated runs as one seed's pair, so the comparison is Welch's."""
    sweep = sweep_of(tmp_path, (["model=resnet_v1"], 70.0), (["model=resnet_v1", "seed=1"], 74.0),
                     (["model=resnet_v2"], 75.0), (["model=resnet_v2", "seed=1"], 78.0))
    summary = load_sweep(sweep)
    assert summary.configurations[0].by_seed("val_acc") is None
    difference = summary.difference(summary.configurations[1])
    assert not difference.paired and difference == welch_difference([75.0, 78.0], [70.0, 74.0])


def test_deleting_a_setting_and_setting_it_to_null_are_two_configurations(tmp_path):
    """`~key=null` removes the setting (null) from the composed config, `key=null` keeps it as null: Hydra composes
    two configs from the same value, so their seeds must not be averaged together."""
    sweep = sweep_of(tmp_path, (["model=resnet_v1", "~trainer.grad_clip=null", "seed=0"], 70.0),
                     (["model=resnet_v1", "trainer.grad_clip=null", "seed=0"], 75.0))
    assert [c.values("val_acc") for c in load_sweep(sweep).configurations] == [[70.0], [75.0]]
    assert [c.label for c in load_sweep(sweep).configurations] == [  # the deletion reads as one, not as `key=`
        "~trainer.grad_clip=null trainer.grad_clip=(default)", "~trainer.grad_clip=(default) trainer.grad_clip=null"]


def test_once_jobs_completed_the_metric_must_be_one_they_recorded(tmp_path):
    """A known metric no completed job recorded (val_acc5 of runs that did not log it) would give a table of
    dashes: refused with the metrics there are; a metric of the project's own (test_acc) that they did record is
    summarized like val_acc."""
    sweep = sweep_of(tmp_path, (["model=resnet_v1", "seed=0"], 70.0), (["model=resnet_v2", "seed=0"], 75.0))
    for job, test_acc in (("0", 68.0), ("1", 71.0)):
        record = json.loads((sweep / job / "metrics.json").read_text())
        (sweep / job / "metrics.json").write_text(json.dumps({**record, "test_acc": test_acc}))
    with pytest.raises(SweepError, match="metric 'val_acc5' has no numeric value.*choose one of best_val_acc, samples_seen"):
        load_sweep(sweep, metric="val_acc5")
    summary = load_sweep(sweep, metric="test_acc")
    assert summary.difference(summary.configurations[1]).estimate == pytest.approx(71.0 - 68.0)


# ------------------------------------------------------------------------------- statistics
@pytest.mark.parametrize("df, quantile", [  # two-sided 95%: the 0.975 quantile of a printed t table
    (1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (5, 2.5706), (10, 2.2281), (30, 2.0423), (1e9, 1.9600),
])
def test_t_quantile_matches_the_table(df, quantile):
    assert t_quantile(0.975, df) == pytest.approx(quantile, abs=1e-4)
    assert t_quantile(0.025, df) == pytest.approx(-quantile, abs=1e-4)


def test_t_distribution_at_fractional_degrees_of_freedom():
    assert t_cdf(0.0, 3.7) == pytest.approx(0.5)
    assert t_cdf(1.0, 1.0) == pytest.approx(0.75)  # Cauchy: 1/2 + arctan(1)/pi
    assert t_cdf(t_quantile(0.975, 4.0755), 4.0755) == pytest.approx(0.975, abs=1e-12)
    assert t_quantile(0.975, 4) > t_quantile(0.975, 4.0755) > t_quantile(0.975, 5)


@pytest.mark.parametrize("df", [30, 1000, 1e5])
@pytest.mark.parametrize("t", [0.01, 0.3])
def test_t_distribution_near_its_centre_at_many_degrees_of_freedom(t, df):
    """Near t = 0 the beta function's argument is near 1, where its continued fraction converges only through the
    symmetry I_x(a, b) = 1 - I_(1-x)(b, a); there t_cdf must still approach the normal distribution function."""
    normal = 0.5 * (1 + math.erf(t / math.sqrt(2)))
    assert t_cdf(t, df) == pytest.approx(normal, abs=0.5 / df)
    assert t_cdf(-t, df) == pytest.approx(1 - t_cdf(t, df), abs=1e-12)


def test_mean_std_and_welch_interval_by_hand():
    assert mean([1.0, 2.0, 3.0]) == 2.0
    assert sample_std([1.0, 2.0, 3.0]) == 1.0 and sample_std([5.0]) is None
    # equal n and variances: df = 2 (n - 1) = 4, se = sqrt(1/3 + 1/3), t = 2.7764
    difference = welch_difference([4.0, 5.0, 6.0], [1.0, 2.0, 3.0])
    assert (difference.estimate, difference.df) == (3.0, pytest.approx(4.0))
    assert (difference.low, difference.high) == (pytest.approx(3 - 2.7764451 * math.sqrt(2 / 3)),
                                                 pytest.approx(3 + 2.7764451 * math.sqrt(2 / 3)))
    # unequal variances: var 1 (n=3) and 20/3 (n=4): se^2 = 1/3 + 5/3 = 2, df = 4 / (1/18 + 25/27) = 4.0755
    difference = welch_difference([2.0, 4.0, 6.0, 8.0], [1.0, 2.0, 3.0])
    assert difference.df == pytest.approx(4 / (1 / 18 + 25 / 27))
    assert difference.high - difference.estimate == pytest.approx(t_quantile(0.975, difference.df) * math.sqrt(2))
    assert not welch_difference([1.0], [1.0, 2.0]).has_interval
    assert welch_difference([3.0, 3.0], [1.0, 1.0]) == Difference(2.0, 2.0, 2.0)  # no spread: a point


def test_paired_interval_by_hand():
    # pairs 11, 9, 10: mean 10, std 1, se 1/sqrt(3), df 2, t 4.3027; Welch on the same values: [5.88, 14.12]
    difference = paired_difference([61.0, 63.0, 62.0], [50.0, 54.0, 52.0])
    assert (difference.estimate, difference.df, difference.paired) == (pytest.approx(10.0), 2, True)
    assert (difference.low, difference.high) == (pytest.approx(10 - 4.3026527 / math.sqrt(3)),
                                                 pytest.approx(10 + 4.3026527 / math.sqrt(3)))
    assert difference.high - difference.low < 0.7 * (lambda w: w.high - w.low)(welch_difference([61.0, 63.0, 62.0],
                                                                                              [50.0, 54.0, 52.0]))
    assert not paired_difference([2.0], [1.0]).has_interval
    assert paired_difference([3.0, 5.0], [1.0, 3.0]) == Difference(2.0, 2.0, 2.0, paired=True)  # the same gain: a point
    with pytest.raises(ValueError, match="pairs"):
        paired_difference([1.0, 2.0], [1.0])


def test_configurations_run_with_the_same_seeds_are_paired_by_seed_not_by_job_order(tmp_path):
    """A resumed or reordered sweep can list seeds in another order; a seed run twice, or one without a known
    seed, makes no pairs: those fall back to Welch's interval."""
    sweep = tmp_path / "multirun"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("{}")
    for num, (model, seed, acc) in enumerate([("resnet_v1", 0, 70.0), ("resnet_v1", 1, 74.0), ("resnet_v1", 2, 72.0),
                                              ("resnet_v2", 2, 73.5), ("resnet_v2", 0, 71.0), ("resnet_v2", 1, 75.5),
                                              ("resnet_v3", 0, 71.0), ("resnet_v3", 0, 75.0), ("resnet_v3", 1, 73.0)]):
        write_job(sweep, num, [f"model={model}", f"seed={seed}"], acc)
    summary = load_sweep(sweep)
    v1, v2, v3 = summary.configurations
    paired = summary.difference(v2)  # pairs by seed: 1.0, 1.5, 1.5
    assert paired == paired_difference([71.0, 75.5, 73.5], [70.0, 74.0, 72.0])
    assert paired.paired and paired.high - paired.low == pytest.approx(2 * 4.3026527 * sample_std([1.0, 1.5, 1.5]) / math.sqrt(3))
    assert summary.difference(v3) == welch_difference([71.0, 75.0, 73.0], [70.0, 74.0, 72.0])  # seed 0 twice


def test_the_curves_average_seeds_epoch_by_epoch_up_to_the_shortest():
    from vision_exp.sweeps.plots import mean_curve

    longer = [{"samples_seen": 100 * e, "val/acc": 10.0 * e} for e in (1, 2, 3)]
    shorter = [{"samples_seen": 100 * e, "val/acc": 20.0 * e} for e in (1, 2)]  # a job extended by a resume is longer
    x, center, spread = mean_curve([longer, shorter])
    assert x == [100, 200] and center == [15.0, 30.0]
    assert spread == [pytest.approx(math.sqrt(50)), pytest.approx(math.sqrt(200))]
    assert mean_curve([longer])[2] == [0.0, 0.0, 0.0]  # one seed: no band


@pytest.mark.parametrize("p, df", [(0.0, 4), (1.0, 4), (0.975, 0), (0.975, -2)])
def test_t_quantile_refuses_a_probability_or_degrees_of_freedom_it_has_no_answer_for(p, df):
    """p = 0 or 1 is an infinite quantile (the bisection would never end) and df <= 0 no distribution: a clear
    error, rather than a hang or a number."""
    with pytest.raises(ValueError, match="t_quantile needs 0 < p < 1 and df > 0"):
        t_quantile(p, df)


@pytest.mark.parametrize("t", [-25.0, -3.0, -0.5, 0.3, 1.7, 4.0, 60.0])
def test_t_cdf_matches_the_closed_forms_of_small_degrees_of_freedom(t):
    """At 1, 2 and 3 degrees of freedom Student's t has a closed-form distribution function: the continued
    fraction must agree to full precision on both tails, where the interval of 2-4 seeds is read."""
    closed = {1: 0.5 + math.atan(t) / math.pi,
              2: 0.5 + t / (2.0 * math.sqrt(2.0 + t * t)),
              3: 0.5 + (t / math.sqrt(3.0) / (1.0 + t * t / 3.0) + math.atan(t / math.sqrt(3.0))) / math.pi}
    for df, expected in closed.items():
        assert t_cdf(t, df) == pytest.approx(expected, rel=1e-12, abs=1e-14), df


def test_the_curves_leave_out_a_job_that_did_not_complete(tmp_path, monkeypatch):
    """A failed or interrupted job's metrics.jsonl stops early: its epochs must not shorten or bias the mean curve,
    as its final accuracy is left out of the table's mean."""
    from vision_exp.sweeps import plots

    sweep = sweep_of(tmp_path, (["model=resnet_v1", "seed=0"], 70.0), (["model=resnet_v1", "seed=1"], 72.0))
    write_job(sweep, 2, ["model=resnet_v1", "seed=2"], error="out of memory")
    (sweep / "2" / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "samples_seen": 100, "val/acc": 5.0}) + "\n")
    averaged = []
    monkeypatch.setattr(plots, "mean_curve", lambda histories: averaged.append(histories) or ([1], [1.0], [0.0]))
    plots.plot_curves(load_sweep(sweep), tmp_path / "curves.png")
    assert [[record["val/acc"] for record in history] for history in averaged[0]] == [[20.0, 70.0], [20.0, 72.0]]


def test_the_curves_x_axis_is_the_seeds_mean_samples_seen():
    """Seeds of one configuration can see other numbers of samples per epoch (a resumed job with another
    train_samples, a last partial batch dropped): each point sits at their mean, not at the first seed's."""
    from vision_exp.sweeps.plots import mean_curve

    first = [{"samples_seen": 100 * e, "val/acc": 10.0 * e} for e in (1, 2)]
    second = [{"samples_seen": 120 * e, "val/acc": 20.0 * e} for e in (1, 2)]
    x, center, _ = mean_curve([first, second])
    assert x == [statistics.mean([100, 120]), statistics.mean([200, 240])] and center == [15.0, 30.0]


# --------------------------------------------------------------------------- presets, launchers
@pytest.mark.parametrize("preset, base, models", [
    ("ablation_resnet_blocks", "e2_resnet", "resnet_v1,resnet_v2,resnet_v3"),
    ("cpu_ablation_resnet_blocks", "cpu_resnet", "resnet_v1,resnet_v2,resnet_v3"),
    ("ablation_vit_blocks", "e2_vit", "vit_v1,vit_v2,vit_v3"),
    ("cpu_ablation_vit_blocks", "cpu_vit", "vit_v1,vit_v2,vit_v3"),
])
def test_ablation_presets_sweep_blocks_on_one_recipe(preset, base, models):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf"), job_name="test"):
        params = hydra_compose("train", [f"experiment={preset}"], return_hydra_config=True).hydra.sweeper.params
    assert dict(params) == {"model": models, "seed": "0,1,2"}
    for model in models.split(","):  # each job: the base preset's recipe and budget, only the block differs
        job = compose([f"experiment={preset}", f"model={model}"])
        reference = compose([f"experiment={base}", f"model={model}", f"name={preset}"])
        assert job == reference


@pytest.mark.parametrize("preset", ["cpu_resnet", "cpu_vit", "e2_resnet", "e2_vit"])
def test_resnet_vs_vit_composes_each_swept_preset_exactly(preset):
    study = "cpu_resnet_vs_vit" if preset.startswith("cpu") else "resnet_vs_vit"
    job = compose([f"experiment={study}", f"+experiment@_global_={preset}", "seed=2"])
    assert job == compose([f"experiment={preset}", "seed=2"])


def test_enhancement_none_is_the_preset_itself():
    assert compose(["experiment=cpu_vit", "enhancement=none"]) == compose(["experiment=cpu_vit"])


def test_slurm_launcher_extends_the_plugin_config(monkeypatch):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    monkeypatch.setenv("VISION_EXP_SLURM_PARTITION", "gpu-a100")
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf"), job_name="test"):
        launcher = hydra_compose("train", ["hydra/launcher=slurm"], return_hydra_config=True).hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.max_num_timeout) == ("gpu-a100", 1, 3)
    assert launcher.signal_delay_s == 120  # a default of the plugin's own config


def test_the_slurm_launcher_off_a_cluster_is_one_line(tmp_path):
    """Without srun (any machine but a SLURM node) submitit would stop with a 25-line traceback."""
    env = {**os.environ, "PATH": str(tmp_path)}  # no srun there, wherever the tests run
    result = subprocess.run([sys.executable, "-m", "vision_exp.train", "-m", "hydra/launcher=slurm", "debug=fast",
                             "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}"], capture_output=True, text=True,
                            cwd=REPO, env=env, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output, output
    assert "srun is not on this machine's PATH" in output and not (tmp_path / "sweep").exists()  # not even empty


def test_sweep_folder_is_fixed_once_and_unique():
    from omegaconf import OmegaConf

    register_resolvers()
    config = {"base": "out", "name": "a", "dir": "${vision_exp.sweep_dir:${base}/${name}}"}
    first, second = OmegaConf.create(config), OmegaConf.create(config)
    assert first.dir == first.dir and first.dir != second.dir and first.dir.startswith("out/a/multirun_")
    job = OmegaConf.create({**config, "name": "renamed_by_a_preset"})
    OmegaConf.copy_cache(from_config=first, to_config=job)  # what Hydra does for every job of a sweep
    assert job.dir == first.dir


def test_under_torchrun_ranks_started_apart_name_one_run_folder():
    """torchrun starts its ranks a moment apart, maybe on either side of a second: each dates the run folder by
    the start of their parent (torchrun; here the test's process), which is one time, and a past one."""
    import time

    code = "from vision_exp.sweeps.launch import launch_time, run_folder; print(launch_time(), run_folder('out'))"
    printed = []
    for rank in ("0", "1"):
        printed.append(subprocess.run([sys.executable, "-c", code], env={**os.environ, "LOCAL_RANK": rank}, cwd=REPO,
                                      capture_output=True, text=True, check=True).stdout)
        time.sleep(1.1)
    assert printed[0] == printed[1] and printed[0].split()[1].startswith("out/20")
    assert time.time() - 24 * 3600 < float(printed[0].split()[0]) < time.time()


def test_under_torchrun_every_rank_shares_the_folder_and_rank_0_summarizes(enhancement_sweep, monkeypatch):
    from omegaconf import OmegaConf

    from vision_exp.sweeps.callback import SummarizeSweep
    from vision_exp.sweeps.launch import sweep_folder

    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "launch-1")
    assert sweep_folder("out")[-6:] == sweep_folder("out")[-6:]
    sweep = OmegaConf.create({"hydra": {"sweep": {"dir": str(enhancement_sweep)}}})
    (enhancement_sweep / "results.md").unlink(missing_ok=True)
    monkeypatch.setenv("RANK", "1")
    SummarizeSweep().on_multirun_end(sweep)
    assert not (enhancement_sweep / "results.md").exists()
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(SystemExit):  # the fixture's sweep holds a failed and an unfinished job
        SummarizeSweep().on_multirun_end(sweep)
    assert (enhancement_sweep / "results.md").is_file()


def test_a_sweep_whose_summary_cannot_be_written_ends_with_status_1(tmp_path, monkeypatch, caplog):
    """Hydra turns an exception of an end-of-multirun callback into a warning: a full disk at the summary ended the
    sweep with status 0, with no results.md, and a chained cluster job went on as if all were well."""
    import errno

    from omegaconf import OmegaConf

    from vision_exp.sweeps import summary as summary_mod
    from vision_exp.sweeps.callback import SummarizeSweep

    def disk_full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    sweep = sweep_of(tmp_path, (["seed=0"], 70.0), (["seed=1"], 72.0))  # every job completed
    monkeypatch.setattr(summary_mod, "write_text_atomic", disk_full)
    with pytest.raises(SystemExit) as ended:
        SummarizeSweep().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert ended.value.code == 1
    assert f"No space left on device: '{sweep / 'results.csv'}'); rebuild it with: vx-summarize {sweep}" in caplog.text
    assert "Traceback" not in caplog.text
    with pytest.raises(SystemExit):  # hydra.verbose=true: a bug in the summary shows where it is
        SummarizeSweep().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}, "verbose": True}}))
    assert "Traceback" in caplog.text and "disk_full" in caplog.text


def test_a_sweeps_end_names_its_first_five_unsuccessful_jobs_and_counts_the_rest(tmp_path, caplog):
    """The sweep's last log line says which jobs to look at, in a line that stays short for a sweep of hundreds,
    and ends with status 1; a sweep whose jobs all completed ends quietly with status 0."""
    from omegaconf import OmegaConf

    from vision_exp.sweeps.callback import SummarizeSweep

    sweep = sweep_of(tmp_path, (["seed=0"], 70.0))
    for number in range(1, 8):
        write_job(sweep, number, [f"seed={number}"], error="out of memory")
    with pytest.raises(SystemExit) as ended:
        SummarizeSweep().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert ended.value.code == 1
    listed = ", ".join(f"job {number} (failed)" for number in range(1, 6))
    assert f"7 of 8 jobs did not complete: {listed} and 2 more (errors in {sweep / 'results.md'})" in caplog.text
    (tmp_path / "done").mkdir()
    done = sweep_of(tmp_path / "done", (["seed=0"], 70.0))
    SummarizeSweep().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(done)}}}))
    assert (done / "results.md").is_file()


def test_a_sweeps_end_names_the_debug_overfit_jobs_that_did_not_memorise_their_batch(tmp_path, caplog):
    """Jobs of a debug=overfit sweep all complete; those below 100% eval-mode train top-1 failed the check, and the
    sweep says which and ends with status 1. The same accuracy without debug=overfit is a result, not a failure, and
    the last debug= override is the one a job ran with."""
    from omegaconf import OmegaConf

    from vision_exp.sweeps.callback import SummarizeSweep

    sweep = sweep_of(tmp_path)
    for number, (overrides, train_acc) in enumerate([(["debug=overfit", "model=vit_v1"], 100.0),
                                                     (["debug=overfit", "model=vit_v2"], 35.0),
                                                     (["debug=fast", "debug=overfit", "model=vit_v3"], 62.5),
                                                     (["debug=overfit", "debug=fast", "model=resnet_v1"], 50.0),
                                                     (["model=resnet_v2"], 40.0)]):
        write_job(sweep, number, overrides, 30.0, train_acc=train_acc)
    with pytest.raises(SystemExit) as ended:
        SummarizeSweep().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert ended.value.code == 1 and (sweep / "results.md").is_file()
    assert ("the overfit check failed in 2 of 3 completed jobs (their training images were not memorised): "
            "job 1 (train top-1 35.00%), job 2 (train top-1 62.50%); a network wired right fits them") in caplog.text
    assert "did not complete" not in caplog.text
    for number in (1, 2):  # trained again, after a fix
        metrics = json.loads((sweep / str(number) / "metrics.json").read_text())
        (sweep / str(number) / "metrics.json").write_text(json.dumps({**metrics, "train_acc": 100.0}))
    caplog.clear()
    SummarizeSweep().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert "overfit check failed" not in caplog.text
    write_job(sweep, 5, ["debug=overfit", "model=vit_v3"], error="out of memory")  # no verdict: it did not complete
    caplog.clear()
    with pytest.raises(SystemExit):
        SummarizeSweep().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert "1 of 6 jobs did not complete: job 5 (failed)" in caplog.text and "overfit check failed" not in caplog.text


def test_a_parallel_job_takes_a_free_gpu_and_holds_it_until_it_ends(tmp_path):
    """joblib gives job 2 to whichever worker is free: it must not join job 0 on GPU 0 while GPU 1 idles."""
    with claimed_gpu(tmp_path, 0, 2) as first:
        with claimed_gpu(tmp_path, 2, 2) as second:  # prefers GPU 0, which job 0 holds
            assert (first, second) == (0, 1)
            with claimed_gpu(tmp_path, 4, 2) as third:  # more jobs than GPUs: shares its preferred one
                assert third == 0
    with claimed_gpu(tmp_path, 2, 2) as again:  # released when the jobs ended
        assert again == 0
    with claimed_gpu(tmp_path, 3, 4) as gpu:
        assert gpu == 3
    for count in (0, 1):
        with claimed_gpu(tmp_path, 3, count) as gpu:
            assert gpu is None


def test_a_joblib_worker_gives_back_the_platforms_start_method_and_leaves_others_alone(monkeypatch):
    """loky makes itself the default start method inside its workers, and a DataLoader worker started there fails
    ("'Process' object has no attribute 'env'"): the job resets it, and only that one."""
    import multiprocessing

    from vision_exp.sweeps.launch import restore_default_start_method

    calls = []
    monkeypatch.setattr(multiprocessing, "set_start_method", lambda method, force=False: calls.append((method, force)))
    for current in ("fork", None, "loky"):
        monkeypatch.setattr(multiprocessing, "get_start_method", lambda allow_none=False, current=current: current)
        restore_default_start_method()
    assert calls == [(None, True)]


def test_a_job_resumed_on_another_device_or_with_less_memory_stays_in_its_configuration(tmp_path):
    """Where a job ran, and how its batches were split to fit in memory, do not change what it computes."""
    sweep = sweep_of(tmp_path, (["model=resnet_v1", "seed=0"], 70.0),
                     (["model=resnet_v1", "seed=1", "trainer.device=cpu"], 72.0),  # resumed on another machine
                     (["model=resnet_v2", "seed=0", "trainer.grad_accum_steps=2"], 75.0),  # on a smaller card
                     (["model=resnet_v2", "seed=1", "data.eval_batch_size=64"], 77.0))
    summary = load_sweep(sweep)
    assert [(c.label, c.values("val_acc")) for c in summary.configurations] == [
        ("model=resnet_v1", [70.0, 72.0]), ("model=resnet_v2", [75.0, 77.0])]
    assert summary.baseline.label == "model=resnet_v1"


def test_jobs_on_other_datasets_are_other_configurations_and_a_relocated_one_is_not(tmp_path):
    """data.root=A,B compares two ImageFolder datasets: they must not be averaged as if they were seeds. The
    same folder under another parent (a Kaggle input, a local copy) is the same dataset."""
    sweep = sweep_of(tmp_path, (["data=folder", "data.root=/d/setA", "seed=0"], 90.0),
                     (["data=folder", "data.root=/kaggle/input/setA", "seed=1"], 91.0),
                     (["data=folder", "data.root=/d/setB", "seed=0"], 50.0),
                     (["data=folder", "data.root=/d/setB", "seed=1"], 51.0))
    summary = load_sweep(sweep)
    assert [(c.label, c.values("val_acc")) for c in summary.configurations] == [
        ("data.root=setA", [90.0, 91.0]), ("data.root=setB", [50.0, 51.0])]


def test_a_quoted_dataset_path_and_the_platform_do_not_make_another_configuration(tmp_path):
    """A Kaggle job given `data.root='/kaggle/input/setA'` (quoted) and `env=kaggle` and a local one given the bare
    path ran on the same dataset with the same settings: their seeds are one configuration's, not two."""
    sweep = sweep_of(tmp_path, (["env=kaggle", "data.root='/kaggle/input/setA'", "model=a", "seed=0"], 90.0),
                     (["data.root=/d/setA", "model=a", "seed=1"], 91.0),
                     (["data.root=/d/setA", "model=b", "seed=0"], 80.0), (["data.root=/d/setA", "model=b", "seed=1"], 83.0))
    summary = load_sweep(sweep)
    assert list(summary.axes) == ["model"]
    assert [(c.label, c.values("val_acc")) for c in summary.configurations] == [("model=a", [90.0, 91.0]),
                                                                               ("model=b", [80.0, 83.0])]
    assert summary.difference(summary.configurations[1]).estimate == pytest.approx(-9.0)


def test_a_quoted_value_other_than_the_dataset_keeps_its_quotes_and_its_type(tmp_path):
    """Only data.root is read for its folder's name: `x='1e-3'` (text) is not `x=0.001` (a number), `x='a,b'` stays
    one value a baseline can name, and a key that merely starts like `env` is a setting."""
    sweep = sweep_of(tmp_path, (["+x='1e-3'", "seed=0"], 60.0), (["+x=0.001", "seed=0"], 70.0),
                     (["+x='a,b'", "seed=0"], 80.0), (["+x='a,b'", "+envelope=2", "seed=1"], 81.0))
    summary = load_sweep(sweep, baseline="x='a,b' envelope=2")
    assert [c.label for c in summary.configurations] == [
        "x='1e-3' envelope=(default)", "x=0.001 envelope=(default)", "x='a,b' envelope=(default)", "x='a,b' envelope=2"]
    assert summary.baseline.values("val_acc") == [81.0]


def test_a_setting_overridden_again_counts_by_its_last_value_when_jobs_are_grouped(tmp_path):
    """vision_exp.sweep writes `common` then the run's own overrides: `lr=0.1 lr=0.01` is the run of `lr=0.01`, so
    a merged sweep's seeds of that setting are one configuration of n=3."""
    sweep = sweep_of(tmp_path, (["optimizer.lr=0.1", "seed=0"], 60.0), (["optimizer.lr=0.1", "seed=1"], 62.0),
                     (["optimizer.lr=0.1", "optimizer.lr=0.01", "seed=0"], 70.0),
                     (["optimizer.lr=0.1", "optimizer.lr=0.01", "seed=1"], 72.0), (["optimizer.lr=0.01", "seed=2"], 74.0))
    summary = load_sweep(sweep)
    assert [(c.label, c.values("val_acc")) for c in summary.configurations] == [
        ("optimizer.lr=0.1", [60.0, 62.0]), ("optimizer.lr=0.01", [70.0, 72.0, 74.0])]


def test_the_default_baseline_is_found_by_value_however_its_jobs_spell_the_settings(tmp_path):
    """`enhancement=none` is the baseline whether another setting of its jobs is written `[8, 8]` or `[8,8]`, and
    whether `none` is quoted: every difference is taken from it."""
    for number, none in enumerate(("none", "'none'")):
        (tmp_path / str(number)).mkdir()
        sweep = sweep_of(tmp_path / str(number), (["model.patch_sizes=[8,8]", "enhancement=mixup", "seed=0"], 70.0),
                         (["model.patch_sizes=[8,8]", "enhancement=mixup", "seed=1"], 72.0),
                         (["model.patch_sizes=[8, 8]", f"enhancement={none}", "seed=0"], 60.0),
                         (["model.patch_sizes=[8, 8]", f"enhancement={none}", "seed=1"], 62.0),
                         (["model.patch_sizes=[4, 4]", f"enhancement={none}", "seed=0"], 65.0))
        summary = load_sweep(sweep)
        assert summary.baseline.values("val_acc") == [60.0, 62.0], none
        assert summary.baseline_reason.startswith("the first job's value of each swept axis, or its `none`")
        assert summary.difference(summary.configurations[0]).estimate == pytest.approx(10.0)


def test_n_counts_the_values_behind_the_mean_and_an_empty_baseline_is_named(tmp_path):
    sweep = tmp_path / "multirun"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("{}")
    write_job(sweep, 0, ["enhancement=none", "seed=0"], error="out of memory")
    write_job(sweep, 1, ["enhancement=ema", "seed=0"], 60.0)
    write_job(sweep, 2, ["enhancement=ema", "seed=1"], 62.0)
    record = json.loads((sweep / "2" / "metrics.json").read_text())
    (sweep / "2" / "metrics.json").write_text(json.dumps({**record, "val_acc5": None}))
    (sweep / "1" / "metrics.json").write_text(json.dumps({**record, "val_acc5": 95.0}))
    summary = load_sweep(sweep, metric="val_acc5")
    assert summary.baseline.label == "enhancement=none"
    assert "no completed job with val_acc5" in summary.baseline_reason
    from vision_exp.sweeps.summary import results_table

    ema_row = next(line for line in results_table(summary).splitlines() if line.startswith("| enhancement=ema"))
    assert "| 1 (+1 without val_acc5) | 95.00 |" in ema_row


def test_plus_prefixed_and_plain_overrides_of_a_setting_are_one_configuration(tmp_path):
    """A rerun may spell a setting `++model.widths=` where the first run said `model.widths=`: the resolved config
    is the same (the folder check accepts it), so the summary must not split the configuration in two."""
    sweep = sweep_of(tmp_path, (["model=resnet_v1", "++model.widths=[8,8]", "seed=0"], 70.0),
                     (["model=resnet_v1", "model.widths=[8,8]", "seed=1"], 72.0),
                     (["model=resnet_v2", "++model.widths=[8,8]", "seed=0"], 75.0),
                     (["model=resnet_v2", "+model.widths=[8,8]", "seed=1"], 77.0))
    summary = load_sweep(sweep)
    assert [(c.label, c.values("val_acc")) for c in summary.configurations] == [
        ("model=resnet_v1", [70.0, 72.0]), ("model=resnet_v2", [75.0, 77.0])]


def test_one_value_in_two_spellings_is_one_configuration_and_no_axis(tmp_path):
    """A sweep records `[8,8]`, the notebook API `[8, 8]` as typed, a rerun `1e-3` for `0.001`: Hydra composes the
    same config, so the summary shows one configuration per model and neither setting as a swept axis."""
    sweep = sweep_of(tmp_path, (["model=resnet_v1", "model.widths=[8,8]", "optimizer.lr=0.001", "seed=0"], 70.0),
                     (["model=resnet_v1", "model.widths=[8, 8]", "optimizer.lr=1e-3", "seed=1"], 72.0),
                     (["model=resnet_v2", "model.widths=[ 8,8 ]", "optimizer.lr=0.001", "seed=0"], 75.0),
                     (["model=resnet_v2", "model.widths=[8,8]", "optimizer.lr=1e-3", "seed=1"], 77.0),
                     (["model=resnet_v2", "model.widths=[8,16]", "optimizer.lr=0.001", "seed=0"], 79.0))
    summary = load_sweep(sweep)
    assert [(c.label, c.values("val_acc")) for c in summary.configurations] == [
        ("model=resnet_v1 model.widths=[8,8]", [70.0, 72.0]), ("model=resnet_v2 model.widths=[ 8,8 ]", [75.0, 77.0]),
        ("model=resnet_v2 model.widths=[8,16]", [79.0])]


def test_a_baseline_names_a_dataset_by_its_folder_as_given_or_by_its_name(tmp_path):
    sweep = sweep_of(tmp_path, (["data.root=/d/setA", "seed=0"], 90.0), (["data.root=/d/setB", "seed=0"], 50.0))
    for given in ("data.root=/d/setB", "data.root=setB", "data.root=/elsewhere/setB"):
        assert load_sweep(sweep, baseline=given).baseline.label == "data.root=setB", given


def test_a_baseline_matches_its_configuration_however_hydra_lets_it_be_spelled(tmp_path):
    """Jobs record an override as it was given (a sweep `[8,8]`, the notebook API `[8, 8]` as typed): a baseline
    names the same value in any spelling Hydra reads alike, and a list with spaces inside is one override."""
    sweep = sweep_of(tmp_path, (["model=vit_v1", "model.patch_sizes=[8, 8]", "optimizer.lr=0.001", "seed=0"], 60.0),
                     (["model=vit_v1", "model.patch_sizes=[16,16]", "optimizer.lr=0.001", "seed=0"], 50.0),
                     (["model=vit_v1", "model.patch_sizes=[16,16]", "optimizer.lr=0.01", "seed=0"], 40.0))
    for given in ("model.patch_sizes=[8,8]", "model.patch_sizes=[8, 8]", "model='vit_v1' model.patch_sizes=[ 8,  8 ]"):
        assert load_sweep(sweep, baseline=given).baseline.values("val_acc") == [60.0], given
    for given, val_acc in (("model.patch_sizes=[16, 16] optimizer.lr=1e-3", 50.0), ("optimizer.lr=1e-2", 40.0)):
        assert load_sweep(sweep, baseline=given).baseline.values("val_acc") == [val_acc], given
    with pytest.raises(SweepError, match=r"baseline 'model.patch_sizes=\[8\]' matches no configuration"):
        load_sweep(sweep, baseline="model.patch_sizes=[8]")
    with pytest.raises(SweepError, match=r"matches no configuration"):
        load_sweep(sweep, baseline="optimizer.lr='0.01'")  # a string, not the number 0.01
    with pytest.raises(SweepError, match=r"baseline 'model.patch_sizes=\[8, 8' is not overrides Hydra can read"):
        load_sweep(sweep, baseline="model.patch_sizes=[8, 8")


def test_another_run_kept_in_a_sweep_folder_is_no_job(tmp_path):
    """A teacher trained into the sweep's folder has metrics.json but no overrides.json and no job number."""
    sweep = sweep_of(tmp_path, (["model=resnet_v1", "seed=0"], 70.0), (["model=resnet_v2", "seed=0"], 75.0))
    (sweep / "teacher_run").mkdir()
    (sweep / "teacher_run" / "metrics.json").write_text(json.dumps({"status": "completed", "val_acc": 88.0}))
    (sweep / "2").mkdir()  # a job that failed before it wrote its overrides
    (sweep / "2" / "metrics.json").write_text(json.dumps({"status": "failed", "error": "no dataset"}))
    assert [job.name for job in load_sweep(sweep).jobs] == ["0", "1", "2"]


@pytest.mark.parametrize("content, phrase", [("model: [unclosed", "cannot be read"), ("- a list", "holds no sweep's config")])
def test_a_sweep_folder_with_a_broken_multirun_yaml_is_one_message(tmp_path, content, phrase):
    sweep = tmp_path / "multirun"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(content)
    write_job(sweep, 0, ["seed=0"], 70.0)
    with pytest.raises(SweepError, match=phrase):
        load_sweep(sweep)


def test_a_metric_no_job_records_is_refused_before_any_job_completed(tmp_path):
    sweep = tmp_path / "multirun"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("{}")
    write_job(sweep, 0, ["seed=0"], error="out of memory")
    assert load_sweep(sweep, metric="best_val_acc").metric == "best_val_acc"
    with pytest.raises(SweepError, match="metric 'val_acc9' has no numeric value.*choose one of val_acc, best_val_acc"):
        load_sweep(sweep, metric="val_acc9")


def test_the_same_overrides_in_another_order_are_one_configuration(tmp_path):
    """A job's configuration is the set of its overrides: a rerun that spells them in another order adds seeds to
    it rather than a configuration of its own."""
    sweep = sweep_of(tmp_path, (["model=resnet_v1", "optimizer.lr=0.1", "seed=0"], 70.0),
                     (["optimizer.lr=0.1", "model=resnet_v1", "seed=1"], 72.0),
                     (["model=resnet_v2", "optimizer.lr=0.1", "seed=0"], 75.0))
    summary = load_sweep(sweep)
    assert [(c.label, c.values("val_acc")) for c in summary.configurations] == [
        ("model=resnet_v1", [70.0, 72.0]), ("model=resnet_v2", [75.0])]


def test_jobs_past_the_tenth_are_in_job_number_order(tmp_path):
    """Job 10 comes after job 9, not after job 1, in results.csv and wherever job order counts."""
    sweep = sweep_of(tmp_path, *[([f"seed={n}"], 60.0 + n) for n in range(12)])
    summary = summarize_sweep(sweep)
    assert [job.name for job in summary.jobs] == [str(n) for n in range(12)]
    assert [row["job"] for row in csv.DictReader((sweep / "results.csv").open())] == [str(n) for n in range(12)]


def test_configurations_with_as_many_but_other_seeds_are_compared_by_welch(tmp_path):
    """Seeds 0, 1 against seeds 1, 2 make no pairs (seed 0 and 2 have no partner): Welch's interval, not an error."""
    sweep = sweep_of(tmp_path, (["model=resnet_v1", "seed=0"], 70.0), (["model=resnet_v1", "seed=1"], 74.0),
                     (["model=resnet_v2", "seed=1"], 75.0), (["model=resnet_v2", "seed=2"], 78.0))
    summary = load_sweep(sweep)
    difference = summary.difference(summary.configurations[1])
    assert not difference.paired and difference == welch_difference([75.0, 78.0], [70.0, 74.0])
    assert "(Welch: other seeds)" in results_markdown(summary)


def test_each_results_md_column_shows_its_own_metric(tmp_path):
    """The columns under best_val_acc and train_acc hold those metrics' mean ± std (std 0.00 shown, not left
    out, when the seeds agree), samples seen its mean and wall time its mean."""
    from vision_exp.sweeps.summary import results_table

    sweep = sweep_of(tmp_path, (["model=resnet_v1", "seed=0"], 70.0), (["model=resnet_v1", "seed=1"], 72.0))
    for job, (best, train, wall) in (("0", (71.0, 80.0, 3.0)), ("1", (74.0, 84.0, 5.0))):
        record = json.loads((sweep / job / "metrics.json").read_text())
        record.update(best_val_acc=best, train_acc=train, wall_time_s=wall)
        (sweep / job / "metrics.json").write_text(json.dumps(record))
    header, _, row = results_table(load_sweep(sweep)).splitlines()
    cells = dict(zip([c.strip() for c in header.strip("|").split("|")], [c.strip() for c in row.strip("|").split("|")]))
    assert cells["val_acc mean ± std"] == f"{statistics.mean([70.0, 72.0]):.2f} ± {statistics.stdev([70.0, 72.0]):.2f}"
    assert cells["best_val_acc"] == f"{statistics.mean([71.0, 74.0]):.2f} ± {statistics.stdev([71.0, 74.0]):.2f}"
    assert cells["train_acc"] == f"{statistics.mean([80.0, 84.0]):.2f} ± {statistics.stdev([80.0, 84.0]):.2f}"
    assert cells["samples seen"] == "200" and cells["wall time (s)"] == "4.0"
    header, _, row = results_table(load_sweep(sweep, metric="best_val_acc")).splitlines()
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns.count("best_val_acc") == 0 and "best_val_acc mean ± std" in columns  # not a second time beside it
    cells = dict(zip(columns, [c.strip() for c in row.strip("|").split("|")]))
    assert cells["val_acc"] == f"{statistics.mean([70.0, 72.0]):.2f} ± {statistics.stdev([70.0, 72.0]):.2f}"
    (tmp_path / "same").mkdir()
    same = sweep_of(tmp_path / "same", (["seed=0"], 70.0), (["seed=1"], 70.0))
    assert "| 70.00 ± 0.00 |" in results_table(load_sweep(same))


def test_metrics_results_csv_does_not_know_come_last_in_alphabetical_order(tmp_path):
    """results.csv: the known metrics in reading order, then any others alphabetically, the same in every run."""
    sweep = sweep_of(tmp_path, (["seed=0"], 70.0))
    extra = ["zeta", "alpha", "mu", "beta", "omega", "kappa", "delta"]
    record = json.loads((sweep / "0" / "metrics.json").read_text())
    (sweep / "0" / "metrics.json").write_text(json.dumps({**record, **{key: 1.0 for key in extra}}))
    summarize_sweep(sweep)
    header = next(csv.reader((sweep / "results.csv").open()))
    assert header == ["job", "status", "configuration", "seed", "val_acc", "best_val_acc", "train_acc",
                      "samples_seen", "wall_time_s", *sorted(extra), "error", "overrides", "run_dir"]


def test_a_refused_folder_names_three_differences_and_counts_the_rest(tmp_path):
    """The message shows the first three differences and says how many more there are, only when there are."""
    (tmp_path / "config.yaml").write_text("a: 1\nb: 1\nc: 1\nd: 1\n")
    with pytest.raises(ConfigError) as three:
        check_same_config(tmp_path, {"a": 2, "b": 2, "c": 2, "d": 1})
    assert "a: 1 -> 2; b: 1 -> 2; c: 1 -> 2)" in str(three.value) and "more" not in str(three.value)
    with pytest.raises(ConfigError, match="c: 1 -> 2; and 1 more\\)"):
        check_same_config(tmp_path, {"a": 2, "b": 2, "c": 2, "d": 2})


def test_a_report_says_why_its_baseline_gives_no_difference(tmp_path):
    """The baseline's only job failed: every Δ of the section is "—", and the section says why, as results.md does."""
    sweep = sweep_of(tmp_path)
    write_job(sweep, 0, ["model=resnet_v1", "seed=0"], error="Training diverged")
    write_job(sweep, 1, ["model=resnet_v2", "seed=0"], 70.0)
    text = report.build_report([sweep], tmp_path / "write-up")
    assert "Baseline: **model=resnet_v1** (" in text and "so no Δ can be computed (choose another with --baseline)" in text


def test_a_stopped_sweeps_summary_is_written_by_rank_0_only(tmp_path, monkeypatch):
    """Under torchrun every rank of a stopped multirun stops: only rank 0 writes results.md, as at a sweep's end
    (ranks writing the same plots at once would race on their temporary files)."""
    from vision_exp.train import summarize_stopped_sweep

    sweep = sweep_of(tmp_path, (["seed=0"], 70.0))
    monkeypatch.setenv("RANK", "1")
    summarize_stopped_sweep(sweep)
    assert not (sweep / "results.md").exists()
    monkeypatch.setenv("RANK", "0")
    summarize_stopped_sweep(sweep)
    assert (sweep / "results.md").is_file()


def test_a_report_compares_the_metric_asked_for_and_skips_a_sweep_without_it(tmp_path, capsys):
    """vx-report --metric, as vx-summarize has: a sweep whose jobs did not record it gets a line saying so, and a
    metric no sweep of the report has (a typo) is refused with the ones there are, nothing written."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = sweep_of(tmp_path / "a", (["model=resnet_v1", "seed=0"], 70.0), (["model=resnet_v2", "seed=0"], 72.0))
    second = sweep_of(tmp_path / "b", (["model=vit_v1", "seed=0"], 60.0))
    for number, top5 in enumerate((91.5, 93.25)):
        record = json.loads((first / str(number) / "metrics.json").read_text())
        (first / str(number) / "metrics.json").write_text(json.dumps({**record, "val_acc5": top5}))
    output = tmp_path / "report.md"
    assert report.main([str(first), str(second), "--output", str(output), "--metric", "val_acc5"]) == 0
    text = output.read_text()
    assert "The tables compare `val_acc5`" in text
    assert "| val_acc5 mean ± std | Δ val_acc5 vs baseline [95% CI] | val_acc | best_val_acc | train_acc |" in text
    assert "| model=resnet_v2 | 1 | 93.25 | +1.75 (no interval: n < 2) | 72.00 | 72.00 | 90.00 | 200 | 3.0 |" in text
    assert "Skipped: metric 'val_acc5' has no numeric value" in text.split("## b/multirun")[1]
    output.unlink()
    assert report.main([str(first), str(second), "--output", str(output), "--metric", "val_acc_5"]) == 2
    assert not output.exists()
    refusal = capsys.readouterr().err  # the metrics of every sweep, the first one's val_acc5 too
    assert "metric 'val_acc_5' has no numeric value" in refusal and "train_acc, val_acc, val_acc5, wall_time_s" in refusal
