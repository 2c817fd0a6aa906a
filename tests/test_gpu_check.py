"""scripts/gpu_check.sh, the one call a lent GPU gets: its plan runs, each step within the time
budget, and its results come back as JSON. Dry-run on the CPU with tiny runs."""
import contextlib
import copy
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = ("data.num_classes=3 data.batch_size=8 data.num_workers=0 data.max_val_per_class=2 trainer.train_samples=16 "
        "trainer.train_eval_samples=4 model.widths=[8,8,16,16] data.img_size=16 data.cache_size=16")


def call_env(tmp_path, tiny_folder, budget=300, out="out", parallel=1, run_limit=240, overrides=TINY) -> dict:
    data = tmp_path / "data"
    if not data.exists():
        data.mkdir()
        (data / "imagenette2-64").symlink_to(tiny_folder)
    return {**os.environ, "OUT": str(tmp_path / out), "WORK": str(tmp_path / "work"), "PYTHON": sys.executable,
            "VISION_EXP_DATA": str(data), "BUDGET_S": str(budget), "GPU_CHECK_OVERRIDES": overrides,
            "PARALLEL": str(parallel), "RUN_LIMIT": str(run_limit)}


def dry_run(tmp_path, tiny_folder, *runs, budget=300, out="out", parallel=1, run_limit=240, **env):
    env = {**call_env(tmp_path, tiny_folder, budget, out, parallel, run_limit), **env}
    result = subprocess.run(["bash", "scripts/gpu_check.sh", *runs], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout, json.loads((tmp_path / out / "results.json").read_text()), tmp_path / out


def test_ad_hoc_runs_report_metrics_wall_times_and_logs(tmp_path, tiny_folder):
    stdout, results, out = dry_run(tmp_path, tiny_folder, "plain e2_resnet", "autotune e2_resnet trainer.cudnn_benchmark=true")
    assert list(results) == ["plain", "autotune"]
    for entry in results.values():
        assert entry["exit_code"] == 0 and entry["process_wall_s"] > 0
        assert entry["metrics"]["status"] == "completed" and entry["metrics"]["samples_seen"] == 16
        assert len(entry["epochs"]) == entry["metrics"]["epochs"]
    with tarfile.open(out / "logs.tar.gz") as archive:
        names = set(archive.getnames())
        config = {name: yaml.safe_load(archive.extractfile(f"runs/{name}/config.yaml"))["trainer"]["cudnn_benchmark"]
                  for name in results}
    assert {"logs/plain.log", "runs/plain/metrics.jsonl", "runs/autotune/train.log"} <= names
    assert config == {"plain": False, "autotune": True}, "the words after the preset reach the run"
    assert "plain" in stdout.splitlines()[-3] and (out / "env.txt").is_file()
    assert sorted(path.name for path in out.iterdir()) == ["env.txt", "log.txt", "logs.tar.gz", "results.json",
                                                           "results.md"], "nothing left over: a lease sends back 8 files"
    table = (out / "results.md").read_text().splitlines()
    assert [row.split(" | ")[0] for row in table[2:]] == ["| plain", "| autotune"]
    assert f"**{results['plain']['metrics']['val_acc']:.2f}**" in table[2], "the final val top-1, from the run itself"


def test_a_second_call_on_the_same_machine_reports_its_own_runs(tmp_path, tiny_folder):
    """A warm machine keeps $WORK and $OUT between calls: rerunning a step by name must train it again, not fail
    on the first call's folder and show that call's metrics; and $OUT must hold this call's log alone, and no
    benchmark JSON of an earlier call that this one did not write."""
    _, first, out = dry_run(tmp_path, tiny_folder, "again e2_resnet")
    (out / "benchmark.json").write_text('{"meta": {}}')  # as a plan's call leaves it
    _, second, _ = dry_run(tmp_path, tiny_folder, "again e2_resnet", "other e2_resnet")
    assert list(second) == ["again", "other"]
    assert all(entry["exit_code"] == 0 and entry["metrics"]["status"] == "completed" for entry in second.values())
    assert second["again"]["process_wall_s"] != first["again"]["process_wall_s"]
    log = (out / "log.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in log if ": exit " in line] == ["again", "other"]
    assert not (out / "benchmark.json").exists(), "an earlier call's benchmark would pass for this call's"


def test_a_run_whose_teacher_failed_is_skipped_not_started(tmp_path, tiny_folder):
    """A student names its teacher's checkpoint ({runs}/...): when the teacher wrote none, the student would only
    fail after its start-up, 10-30 s of the lease for each of the plan's four students."""
    _, results, out = dry_run(tmp_path, tiny_folder, "teacher no_such_preset",
                              "student e2_resnet loss.distillation.kind=hard "
                              "loss.distillation.teacher={runs}/teacher/checkpoints/best.pt", "after e2_resnet")
    assert list(results) == ["teacher", "after"] and results["teacher"]["exit_code"] != 0
    assert results["after"]["metrics"]["status"] == "completed", "the runs that need no teacher still run"
    skipped = [line for line in (out / "log.txt").read_text().splitlines() if line.startswith("student:")]
    assert len(skipped) == 1 and skipped[0].startswith("student: skipped") and "/teacher/checkpoints/best.pt" in skipped[0]
    assert not list((tmp_path / "work").glob("call-*/logs/student.log")), "never started"


@pytest.mark.parametrize("case", ["out_under_a_file", "python_without_torch", "no_data", "same_name_twice",
                                  "no_preset"])
def test_a_set_up_every_run_would_fail_on_ends_the_call_before_any_run(tmp_path, tiny_folder, case):
    """Found out run by run, a broken set-up costs the lease a start-up per run and ends with exit status 0;
    found at once, it costs seconds and says what to fix."""
    env = call_env(tmp_path, tiny_folder)
    runs, message = ["one e2_resnet"], None
    if case == "out_under_a_file":
        (tmp_path / "file").write_text("")
        env["OUT"], message = str(tmp_path / "file" / "out"), "cannot make OUT="
    elif case == "python_without_torch":
        python = tmp_path / "python"
        # Hydra is there (so a .device/whl prepared in this checkout is not installed), torch is not
        python.write_text("#!/bin/sh\ncase \"$*\" in *'import hydra') exit 0;; esac\n"
                          "echo 'No module named torch' >&2\nexit 1\n")
        python.chmod(0o755)
        env["PYTHON"], message = str(python), f"{python} cannot import what the runs need"
    elif case == "no_data":
        (tmp_path / "empty").mkdir()
        env["VISION_EXP_DATA"], message = str(tmp_path / "empty"), f"no train/ and val/ in {tmp_path}/empty/imagenette2-64"
    elif case == "same_name_twice":
        runs, message = ["one e2_resnet", "one e2_resnet trainer.seed=1"], "two runs named one"
    else:
        runs, message = ["one e2_resnet", "lonely"], '"lonely": each run is "NAME PRESET [override ...]"'
    result = subprocess.run(["bash", "scripts/gpu_check.sh", *runs], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1 and f"error: {message}" in result.stderr, result.stdout + result.stderr
    assert not list((tmp_path / "work").glob("call-*/logs/*.log")), "no run started"


def test_a_run_past_its_own_limit_is_stopped_and_the_next_still_runs(tmp_path, tiny_folder):
    """RUN_LIMIT keeps one stuck run from taking the whole lease. Each run is given far more samples than it can
    train in its 3 s, so that it overruns on a fast machine too."""
    endless = TINY.replace("trainer.train_samples=16", "trainer.train_samples=10000000")
    _, results, _ = dry_run(tmp_path, tiny_folder, "slow e2_resnet", "next e2_resnet", run_limit=3,
                            GPU_CHECK_OVERRIDES=endless)
    assert [entry["exit_code"] for entry in results.values()] == [124, 124]
    assert all(entry["process_wall_s"] < 3 + 20 + 5 for entry in results.values()), "SIGTERM, then SIGKILL 20 s later"


def test_a_training_run_is_not_started_in_its_last_minute(tmp_path, tiny_folder):
    """With under 60 s left a run would be stopped within an epoch or two: no use to anyone."""
    _, results, out = dry_run(tmp_path, tiny_folder, "late e2_resnet", budget=59)
    assert results == {} and "late: skipped (budget spent)" in (out / "log.txt").read_text()


def test_a_run_is_capped_by_what_is_left_of_the_budget(tmp_path, tiny_folder):
    """RUN_LIMIT is the most a run gets: with less of BUDGET_S left, it is stopped when the budget ends."""
    # a budget under RUN_LIMIT (240 s) that leaves the 60 s a run needs after a set-up of 10-30 s, up to 140 s
    _, results, out = dry_run(tmp_path, tiny_folder, "capped e2_resnet", budget=200)
    limit = int(re.search(r"^capped: exit 0 in [0-9.]+ s \(limit (\d+) s\)$", (out / "log.txt").read_text(), re.M)[1])
    assert 60 <= limit <= 200 and results["capped"]["exit_code"] == 0


def test_a_call_cut_short_still_sends_back_the_steps_it_finished(tmp_path, tiny_folder):
    """A lease can end mid-call (a command's limit shorter than BUDGET_S, a hung step): each finished step's
    results and logs are in $OUT as soon as it ends, not only when the whole call does."""
    env = call_env(tmp_path, tiny_folder, overrides=TINY.replace("trainer.train_samples=16 ", ""))
    call = subprocess.Popen(["bash", "scripts/gpu_check.sh", "done e2_resnet trainer.train_samples=16",
                             "long e2_resnet trainer.train_samples=10000000"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:  # the second step has started (so the first has ended): cut the call as a lease's end does
        deadline = time.monotonic() + 300
        while not list((tmp_path / "work").glob("call-*/logs/long.log")) and call.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert call.poll() is None, "the long step was meant to be running"
    finally:  # timeout puts each step in a process group of its own, in the call's session
        session = subprocess.run(["ps", "-o", "pid=", "-s", str(call.pid)], capture_output=True, text=True).stdout
        for pid in map(int, session.split()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        call.wait()
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["done"] and results["done"]["metrics"]["status"] == "completed"
    assert "| done |" in (out / "results.md").read_text()
    with tarfile.open(out / "logs.tar.gz") as archive:
        assert {"logs/done.log", "runs/done/metrics.jsonl"} <= set(archive.getnames())


def test_the_cores_are_counted_whatever_omp_num_threads_says(tmp_path, tiny_folder):
    """nproc answers OMP_NUM_THREADS when it is set (and the script sets it for the runs): the loader benchmark,
    meant for all cores, got the runs' share of them."""
    cores = len(os.sched_getaffinity(0))
    # Too little budget for any training run (60 s): the plan goes straight to its benchmarks, which start while
    # 20 s are left (45: the set-up's imports take 10-20 s on a busy 2-core machine).
    _, results, out = dry_run(tmp_path, tiny_folder, budget=45, parallel=2, OMP_NUM_THREADS="1", BENCH_ARGS="--quick")
    assert "benchmark_data" in results and results["benchmark_data"]["exit_code"] == 0, (out / "log.txt").read_text()
    assert json.loads((out / "benchmark_data.json").read_text())["meta"]["workers"] == cores
    assert f"cores {cores}," in (out / "env.txt").read_text()
    assert len(list(out.iterdir())) <= 8, "a lease sends back 8 files at most"


def test_runs_side_by_side_all_report_in_the_order_given(tmp_path, tiny_folder):
    """PARALLEL runs share the GPU; each still gets its own folder, metrics and one unbroken log entry."""
    names = ["first", "second", "third"]
    stdout, results, out = dry_run(tmp_path, tiny_folder, *(f"{name} e2_resnet" for name in names), parallel=2)
    assert list(results) == names
    assert all(entry["metrics"]["status"] == "completed" for entry in results.values())
    log = (out / "log.txt").read_text().splitlines()
    headers = [i for i, line in enumerate(log) if line.split(":")[0] in names]
    assert len(headers) == 3 and all(b - a == 5 for a, b in zip(headers, headers[1:])), "a run's 4 tail lines follow it"
    assert "PARALLEL=2" in (out / "env.txt").read_text()


def planned_runs() -> list:
    import shlex

    script = (ROOT / "scripts" / "gpu_check.sh").read_text()
    block = script[script.index("PLAN=(") + len("PLAN=("):]
    return [shlex.split(shlex.split(line)[0]) for line in block[:block.index("\n)")].splitlines() if line.strip()]


def test_results_keep_the_order_steps_were_dispatched_in_not_their_start_times(tmp_path):
    """Side by side, the second run's own clock may read earlier than the first's: the order comes
    from the number the script gave each step as it launched it."""
    call = tmp_path / "call"
    call.mkdir()
    (call / "times.txt").write_text("second 0 100.2 150.0 2\nfirst 0 100.3 140.0 1\nthird 124 151.0 190.0 3\n")
    done = subprocess.run([sys.executable, "scripts/gpu_results.py", str(call), str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results) == ["first", "second", "third"]
    assert results["third"] == {"exit_code": 124, "process_wall_s": 39.0}


def test_a_run_killed_mid_write_still_reports_its_finished_epochs(tmp_path):
    """SIGKILL, 20 s after a SIGTERM the run did not answer, can cut metrics.jsonl's last line short: the
    table must still be written, from the epochs that were whole."""
    call, run = tmp_path / "call", tmp_path / "call" / "runs" / "killed"
    run.mkdir(parents=True)
    (call / "times.txt").write_text("killed 137 100.0 360.0 1\n")
    (run / "metrics.jsonl").write_text('{"epoch": 1, "val/acc": 40.0}\n{"epoch": 2, "val/acc": 45.0}\n{"epoch": 3, "val/a')
    done = subprocess.run([sys.executable, "scripts/gpu_results.py", str(call), str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    entry = json.loads((tmp_path / "results.json").read_text())["killed"]
    assert [epoch["epoch"] for epoch in entry["epochs"]] == [1, 2] and "metrics" not in entry
    assert "| killed | 137 | 2 (stopped) |" in (tmp_path / "results.md").read_text()


def test_every_run_of_the_plan_composes():
    """A lease is too short to lose a step to a misspelt override: each planned run's config must compose."""
    from vision_exp.api import compose_config

    planned = [[word.replace("{runs}", "/call/runs") for word in spec] for spec in planned_runs()]
    assert len(planned) >= 5 and len({name for name, *_ in planned}) == len(planned)
    assert [name for name, *_ in planned[:7]] == ["e2_resnet", "distill_wide8", "distill_wide8_mixup", "distill_mixup",
                                                  "distill_no_ls", "e2_vit_distilled", "e2_vit_enhanced"], \
        "the teacher, candidates on its student, the student as it is, then the goal's other runs"
    assert planned[-1][0] == "e2_vit", "measured twice, epoch by epoch the same: last"
    runs = {name: compose_config([f"experiment={preset}", *overrides]) for name, preset, *overrides in planned}
    assert [cfg.name for cfg in runs.values()] == [preset for _, preset, *_ in planned]
    distilled = copy.deepcopy(runs["e2_vit_distilled"])
    assert (distilled.loss.distillation.kind, distilled.loss.distillation.teacher) == (
        "soft", "/call/runs/e2_resnet/checkpoints/best.pt"), "taught by the plan's first run"
    assert distilled.data.num_workers == 15, "one core left to the trainer: a speed question, the same computation"
    distilled.data.num_workers = runs["distill_no_ls"].data.num_workers

    assert runs["e2_vit_enhanced"].model.stem == "conv", "the best recipe found"
    assert runs["enh_ema"].trainer.ema_decay > 0 and not runs["e2_vit_enhanced"].trainer.ema_decay
    mixing = copy.deepcopy(runs["distill_mixup"])
    assert (mixing.augmentation.mixup_alpha, mixing.augmentation.cutmix_alpha) == (0.8, 1.0)
    assert (distilled.augmentation.mixup_alpha, distilled.augmentation.cutmix_alpha) == (0.0, 0.0)
    mixing.augmentation.mixup_alpha = mixing.augmentation.cutmix_alpha = 0.0
    assert mixing == distilled, "mixup/cutmix on, nothing else"
    plain_labels = copy.deepcopy(runs["distill_no_ls"])
    assert (plain_labels.loss.label_smoothing, distilled.loss.label_smoothing) == (0.0, 0.1)
    plain_labels.loss.label_smoothing = distilled.loss.label_smoothing
    assert plain_labels == distilled, "label smoothing off, nothing else"
    wide = copy.deepcopy(runs["distill_wide8"])
    assert (wide.model.patch_size, wide.model.embed_dim, wide.model.num_heads) == (8, 384, 16)
    assert (distilled.model.patch_size, distilled.model.embed_dim) == (4, 192)
    wide.model.patch_size, wide.model.embed_dim = distilled.model.patch_size, distilled.model.embed_dim
    assert wide == distilled, "coarser tokens and twice the width, nothing else"
    wide_mixing = copy.deepcopy(runs["distill_wide8_mixup"])
    wide_mixing.augmentation = runs["distill_wide8"].augmentation
    assert wide_mixing == runs["distill_wide8"], "the wide ViT with mixup/cutmix, nothing else"
    assert runs["distill_wide8_mixup"].augmentation == runs["distill_mixup"].augmentation
    cfg = runs["enh_adamw"]
    assert (cfg.optimizer.name, cfg.optimizer.weight_decay) == ("adamw", 0.05), "Adam's 1e-4 must not stay"


def test_the_resume_check_continues_the_teacher_for_exactly_one_epoch():
    """After the teacher, its last.pt goes on in a folder of its own: a resume on the GPU, which only an
    epoch-aligned longer budget allows (a resume that changed the batches or had no budget left is refused)."""
    import shlex

    from vision_exp.api import compose_config

    script = (ROOT / "scripts" / "gpu_check.sh").read_text()
    name, preset, *overrides = shlex.split(re.search(r'pool 60 "(resume_on_gpu [^"]+)"', script).group(1))
    resumed = compose_config([f"experiment={preset}", *(word.replace("{runs}", "/call/runs") for word in overrides)])
    teacher = compose_config([f"experiment={planned_runs()[0][1]}"])
    assert resumed.trainer.resume == "/call/runs/e2_resnet/checkpoints/last.pt"
    assert resumed.trainer.train_samples - teacher.trainer.train_samples == 9469, "one more epoch of Imagenette"
    assert (resumed.data.batch_size, resumed.model) == (teacher.data.batch_size, teacher.model)
    assert script.index('pool "$RUN_LIMIT" "${PLAN[0]}"') < script.index("pool 60 \"resume_on_gpu") < script.index(
        'pool "$RUN_LIMIT" "${PLAN[@]:1}"'), "right after the teacher, before the plan can spend the budget"


def test_a_run_is_taught_by_a_teacher_trained_earlier_in_the_same_call(tmp_path, tiny_folder):
    """{runs} names this call's run folders, which only the script knows (a fresh one per call)."""
    _, results, out = dry_run(tmp_path, tiny_folder, "teacher e2_resnet",
                              "student e2_resnet loss.distillation.kind=hard "
                              "loss.distillation.teacher={runs}/teacher/checkpoints/best.pt")
    assert [entry["metrics"]["status"] for entry in results.values()] == ["completed", "completed"]
    with tarfile.open(out / "logs.tar.gz") as archive:
        log = archive.extractfile("runs/student/train.log").read().decode()
    assert "distilling from " in log and "/runs/teacher/checkpoints/best.pt (ResNet, hard distillation" in log


def test_the_table_of_a_kept_results_json_shows_a_stopped_runs_last_epoch(tmp_path):
    """`gpu_results.py --json` rebuilds results.md from what a lease sent back; a run stopped by its
    limit is marked so and shows its last finished epoch, not a blank."""
    epochs = [{"epoch": i + 1, "val/acc": 50.0 + i, "val/acc_best": 50.0 + i, "val/acc5": 90.0, "train/acc": 60.0 + i,
               "train_running/acc": 55.0, "images_per_s": 1000.0} for i in range(52)]
    results = {"done": {"exit_code": 0, "process_wall_s": 80.0, "epochs": epochs[:12],
                        "metrics": {"status": "completed", "train_images_per_s": 900.0}},
               "cut": {"exit_code": 124, "process_wall_s": 30.0, "epochs": epochs[:3],
                       "metrics": {"status": "interrupted"}},
               "resumed": {"exit_code": 0, "process_wall_s": 20.0, "epochs": epochs[44:],  # a checkpoint's new folder
                           "metrics": {"status": "completed"}},
               "refused": {"exit_code": 2, "process_wall_s": 9.0},
               "killed": {"exit_code": 137, "process_wall_s": 260.0},
               "benchmark": {"exit_code": 0, "process_wall_s": 5.0}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    done = subprocess.run([sys.executable, "scripts/gpu_results.py", "--json", str(tmp_path / "results.json")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = {row.split(" | ")[0][2:]: row.split(" | ") for row in (tmp_path / "results.md").read_text().splitlines()[2:]}
    assert rows["done"][2:6] == ["12", "59.00 / - / - / - / -", "**61.00**", "61.00"]
    assert rows["done"][-1] == "900 |", "the whole run's speed, not the last epoch's"
    assert rows["cut"][2:5] == ["3 (interrupted)", "- / - / - / - / -", "**52.00**"]
    assert rows["benchmark"][3:5] == ["-", "**-**"]
    assert rows["resumed"][2:5] == ["52", "- / - / - / - / 99.00", "**101.00**"], "epochs by number, not by position"
    assert rows["refused"][2] == "0 (failed, exit 2)" and rows["killed"][2] == "0 (stopped)"
