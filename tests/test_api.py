"""The notebook API: run() and sweep() on Hydra's compose API, the same files as the CLI."""
import json

import vision_exp
from conftest import tiny_overrides


def test_run_returns_metrics_and_writes_the_run_folder(tiny_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = vision_exp.run(tiny_overrides(tiny_folder, "name=notebook"))
    assert result["status"] == "completed"
    run_dir = tmp_path / "outputs" / "notebook"
    assert result["run_dir"].startswith(str(run_dir))
    on_disk = json.loads((next(run_dir.iterdir()) / "metrics.json").read_text())
    assert on_disk["val_acc"] == result["val_acc"]


def test_sweep_runs_every_list_records_failures_and_summarizes(tiny_folder, tmp_path):
    summary = vision_exp.sweep([["seed=0"], ["seed=1"], ["data.batch_size=0"]],
                               common=tiny_overrides(tiny_folder), sweep_dir=str(tmp_path / "sweep"))
    statuses = {job.name: job.status for job in summary.jobs}
    assert statuses == {"0": "completed", "1": "completed", "2": "failed"}
    assert (tmp_path / "sweep" / "results.md").is_file() and (tmp_path / "sweep" / "results.csv").is_file()
    assert "data.batch_size=0 must be positive" in json.loads((tmp_path / "sweep" / "2" / "metrics.json").read_text())["error"]
