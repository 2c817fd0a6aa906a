"""The real CLI on the shared Imagenette copy: a small budget learns well above chance."""
import json

import pytest

from conftest import SHARED_DATA, run_cli


@pytest.mark.integration
def test_train_cli_on_imagenette_learns_and_writes_every_output(tmp_path):
    assert (SHARED_DATA / "imagenette2-160" / "train").is_dir(), f"Imagenette expected under {SHARED_DATA}"
    run = tmp_path / "run"
    result = run_cli([
        "data.classes=[n01440764,n03888257]", "data.num_classes=2",  # tench vs parachute
        "data.img_size=32", "data.max_train_per_class=400", "data.max_val_per_class=100",
        "data.batch_size=64", "model.widths=[16,32,64,128]", "model.stem_stride=1",
        "trainer.epochs=3", "trainer.train_eval_samples=200", f"hydra.run.dir={run}",
    ])
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["samples_seen"] == 3 * 800
    assert metrics["val_acc"] > 75.0, metrics  # chance is 50%
    assert metrics["train_acc"] > 70.0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3
    for name in ("config.yaml", "curves.png", "checkpoints/last.pt", "checkpoints/best.pt", "train.log"):
        assert (run / name).is_file(), name
    assert list((run / "tb" / "val").glob("events.out.tfevents.*"))


def test_default_run_folder_is_named_after_the_experiment(tmp_path, tiny_folder):
    from conftest import tiny_overrides

    result = run_cli(tiny_overrides(tiny_folder, "name=smoke"), env_extra={"VISION_EXP_OUTPUT": str(tmp_path / "out")})
    assert result.returncode == 0, result.stdout + result.stderr
    runs = list((tmp_path / "out" / "smoke").iterdir())
    assert len(runs) == 1 and (runs[0] / "metrics.json").is_file()
