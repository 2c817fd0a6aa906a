"""scripts/gpu_check.sh, the one call a lent GPU gets: its plan runs, each step within the time
budget, and its results come back as JSON. Dry-run on the CPU with tiny runs."""
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ("data.num_classes=3 data.batch_size=8 data.num_workers=0 data.max_val_per_class=2 trainer.train_samples=16 "
        "trainer.train_eval_samples=4 model.widths=[8,8,16,16] data.img_size=16 data.cache_size=16")


def dry_run(tmp_path, tiny_folder, *runs, budget=300):
    data = tmp_path / "data"
    data.mkdir()
    (data / "imagenette2-64").symlink_to(tiny_folder)
    env = {**os.environ, "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work"), "PYTHON": sys.executable,
           "VISION_EXP_DATA": str(data), "BUDGET_S": str(budget), "GPU_CHECK_OVERRIDES": TINY}
    result = subprocess.run(["bash", "scripts/gpu_check.sh", *runs], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout, json.loads((tmp_path / "out" / "results.json").read_text()), tmp_path / "out"


def test_ad_hoc_runs_report_metrics_wall_times_and_logs(tmp_path, tiny_folder):
    stdout, results, out = dry_run(tmp_path, tiny_folder, "plain e2_resnet", "no_autotune e2_resnet trainer.cudnn_benchmark=true")
    assert list(results) == ["plain", "no_autotune"]
    for entry in results.values():
        assert entry["exit_code"] == 0 and entry["process_wall_s"] > 0
        assert entry["metrics"]["status"] == "completed" and entry["metrics"]["samples_seen"] == 16
        assert len(entry["epochs"]) == entry["metrics"]["epochs"]
    with tarfile.open(out / "logs.tar.gz") as archive:
        names = set(archive.getnames())
    assert {"logs/plain.log", "runs/plain/metrics.jsonl", "runs/no_autotune/train.log"} <= names
    assert "plain" in stdout.splitlines()[-3] and (out / "env.txt").is_file()


def test_steps_past_the_budget_are_skipped_not_started(tmp_path, tiny_folder):
    stdout, results, out = dry_run(tmp_path, tiny_folder, "first e2_resnet", "second e2_resnet", budget=19)
    assert results == {}
    assert "first: skipped (budget spent)" in (out / "log.txt").read_text()
