"""docs/kaggle_quickstart.ipynb: its code cells run on CPU with a tiny budget.

Lines that are IPython magics or shell escapes (`%...`, `!...`) are left out: they install the
package or start TensorBoard, which the test environment already has or does not need.
"""
import csv
import json
from pathlib import Path

from conftest import REPO, tiny_overrides

NOTEBOOK = REPO / "docs" / "kaggle_quickstart.ipynb"


def code_cells():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    for cell in cells:
        if cell["cell_type"] == "code":
            lines = [line for line in "".join(cell["source"]).splitlines() if not line.lstrip().startswith(("%", "!"))]
            yield "\n".join(lines)


def test_notebook_code_cells_run(tiny_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VISION_EXP_NOTEBOOK_OVERRIDES", " ".join(tiny_overrides(tiny_folder, "trainer.train_samples=16")))
    namespace = {}
    for source in code_cells():
        exec(compile(source, str(NOTEBOOK), "exec"), namespace)
    assert namespace["result"]["status"] == "completed"
    summary = namespace["summary"]
    assert len(summary.jobs) == 6 and all(job.status == "completed" for job in summary.jobs)
    assert len(summary.configurations) == 3 and (summary.sweep_dir / "results.md").is_file()
    assert namespace["png"].name == "val_acc_curves.png"  # the figures cell showed the sweep's plots
    assert summary.sweep_dir == tmp_path / "outputs" / "notebook_blocks" / "resnet_blocks"

    evaluation, predictions = namespace["evaluation"], namespace["predictions"]
    checkpoints = Path(namespace["result"]["run_dir"]) / "checkpoints"
    assert evaluation == {**json.loads((checkpoints / "best-eval-run-data" / "metrics.json").read_text()),
                          "out_dir": str(checkpoints / "best-eval-run-data")}
    assert Path(predictions["csv"]) == checkpoints / "best-predictions" / "predictions.csv"
    with open(predictions["csv"]) as table:
        assert [row["image"] for row in csv.DictReader(table)] == [row["image"] for row in predictions["predictions"]]
    assert len(predictions["predictions"]) == 4  # one class folder of the tiny validation set

    # A restarted session runs the sweep cell again: its fixed folder is found, its finished runs are not trained again.
    finished = {path: path.stat().st_mtime_ns for path in summary.sweep_dir.glob("*/metrics.json")}
    sweep_cell = next(source for source in code_cells() if "vision_exp.sweep(" in source)
    exec(compile(sweep_cell, str(NOTEBOOK), "exec"), namespace)
    assert namespace["summary"].sweep_dir == summary.sweep_dir and len(finished) == 6
    assert {path: path.stat().st_mtime_ns for path in finished} == finished
    assert all(job.status == "completed" for job in namespace["summary"].jobs)
