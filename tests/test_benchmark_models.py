"""scripts/benchmark.py --sections models runs end to end (tiny --quick mode) and writes its JSON."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW_KEYS = {
    "reference",
    "ours_s_per_step",
    "reference_s_per_step",
    "ours_images_per_s",
    "reference_images_per_s",
    "ratio_ours_over_reference",
}


def test_models_section_quick(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "scripts/benchmark.py", "--sections", "models", "--quick", "--json", str(out)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=120)
    results = json.loads(out.read_text())
    assert set(results) == {"meta", "models"}
    assert results["meta"]["quick"] is True
    assert set(results["models"]) == {"vit_v1", "resnet_v1", "resnet_v1_channels_last"}
    for row in results["models"].values():
        assert set(row) == ROW_KEYS
        assert row["ratio_ours_over_reference"] > 0
