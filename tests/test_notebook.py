"""docs/kaggle_quickstart.ipynb: its code cells run on CPU with a tiny budget.

Lines that are IPython magics or shell escapes (`%...`, `!...`) are left out: they install the
package or start TensorBoard, which the test environment already has or does not need.
"""
import json
import os

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
    assert str(summary.sweep_dir).startswith(os.path.join(str(tmp_path), "outputs", "notebook_blocks"))
