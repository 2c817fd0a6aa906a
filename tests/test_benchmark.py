"""scripts/benchmark.py runs every section end to end in its reduced (--quick) mode and writes its JSON; the
other scripts' command lines answer bad input and Ctrl-C in one line."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL_KEYS = {"reference", "ours_s_per_step", "reference_s_per_step", "ours_images_per_s", "reference_images_per_s",
              "ratio_ours_over_reference", "mfu", "params"}
DATA_KEYS = {"reference", "workers", "img_size", "cached_images_per_s", "folder_images_per_s",
             "torchvision_images_per_s", "speedup_cached_over_torchvision"}
RANDAUGMENT_KEYS = {"reference", "workers", "img_size", "epochs", "batches_per_epoch", "kept_workers_images_per_s",
                    "restarted_workers_images_per_s", "speedup_kept_over_restarted", "one_process_images_per_s",
                    "kept_workers_over_one_process"}
TRANSPORT_KEYS = {"reference", "workers", "pieces_per_batch", "batch_size", "batches", "arrays_images_per_s",
                  "tensors_images_per_s", "speedup_arrays_over_tensors"}
E2E_KEYS = {"reference", "steps", "batch_size", "end_to_end_images_per_s", "model_only_images_per_s",
            "fraction_of_model_only", "mfu"}
MEMORY_KEYS = {"reference", "steps", "batch_size", "peak_mib", "fraction_of_whole", "images_per_s"}


def test_every_section_quick(tmp_path):
    out, scratch = tmp_path / "bench.json", tmp_path / "tmp"
    scratch.mkdir()
    cmd = [sys.executable, "scripts/benchmark.py", "--quick", "--device", "cpu", "--json", str(out)]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TMPDIR": str(scratch)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert not list(scratch.glob("bench-*"))  # its caches and run folders (a GB a full run) are gone
    results = json.loads(out.read_text())
    assert set(results) == {"meta", "models", "data", "end_to_end", "memory"}
    assert results["meta"]["quick"] is True and results["meta"]["device"] == "cpu"
    assert results["meta"]["data_img_size"] == results["data"]["train_loader"]["img_size"] == 32
    assert results["meta"]["cores"] >= 1 and results["meta"]["load_average_at_start"] >= 0  # how busy the machine was
    assert set(results["models"]) == {"vit_v1", "resnet_v1", "resnet_v1_channels_last"}
    for row in results["models"].values():
        assert set(row) == MODEL_KEYS and row["ratio_ours_over_reference"] > 0 and row["mfu"] is None
    assert set(results["data"]["train_loader"]) == DATA_KEYS
    assert results["data"]["train_loader"]["cached_images_per_s"] > 0
    assert set(results["data"]["randaugment_epochs"]) == RANDAUGMENT_KEYS
    randaugment = results["data"]["randaugment_epochs"]
    assert randaugment["speedup_kept_over_restarted"] > 0 and randaugment["kept_workers_over_one_process"] > 0
    transport = results["data"]["worker_transport"]
    assert set(transport) == TRANSPORT_KEYS and transport["pieces_per_batch"] == 16
    assert transport["speedup_arrays_over_tensors"] > 0
    row = results["end_to_end"]["resnet_v1"]
    assert set(row) == E2E_KEYS and 0 < row["fraction_of_model_only"]
    assert list(results["memory"]) == ["grad_accum_steps=1", "grad_accum_steps=2", "grad_accum_steps=4"]
    for row in results["memory"].values():  # each setting a run of its own, in a process of its own on the CPU
        assert set(row) == MEMORY_KEYS and row["peak_mib"] > 0 and row["images_per_s"] > 0
    assert results["memory"]["grad_accum_steps=1"]["fraction_of_whole"] == 1.0
    for section in ("models", "data", "end_to_end", "memory"):
        assert f"[{section}]" in result.stdout


def test_e2_scale_times_the_models_of_the_gpu_presets(tmp_path):
    def params(scale):
        out = tmp_path / f"{scale}.json"
        cmd = [sys.executable, "scripts/benchmark.py", "--sections", "models", "--device", "cpu", "--scale", scale,
               "--img-size", "32", "--batch-size", "2", "--repeats", "1", "--steps", "1", "--warmup", "1", "--json", str(out)]
        result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        results = json.loads(out.read_text())
        assert results["meta"]["scale"] == scale
        return {case: row["params"] for case, row in results["models"].items()}

    from hydra.utils import instantiate

    from vision_exp.api import compose_config

    def preset_params(preset):
        model = instantiate(compose_config([f"experiment={preset}", "data.num_classes=10", "data.img_size=32"]).model)
        return sum(p.numel() for p in model.parameters())

    timed = params("e2")
    assert timed["vit_v1"] == preset_params("e2_vit") and timed["resnet_v1"] == preset_params("e2_resnet")
    assert params("cpu")["resnet_v1"] < timed["resnet_v1"] / 5


def test_mfu_peaks_tell_the_h100_parts_and_the_l40s_apart(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from benchmark import peak_16bit

    assert peak_16bit("NVIDIA H100 80GB HBM3") == 989e12 and peak_16bit("NVIDIA H100 PCIe") == 756e12
    assert peak_16bit("NVIDIA H100 NVL") == 835e12 and peak_16bit("NVIDIA H200") == 989e12
    assert peak_16bit("NVIDIA L40S") == 362e12 and peak_16bit("NVIDIA L40") == 181e12
    assert peak_16bit("Tesla T4") == 65e12 and peak_16bit("NVIDIA A100-SXM4-80GB") == 312e12 and peak_16bit("CPU") is None


def test_the_torchvision_loader_keeps_its_workers_and_ends_each_timing_whole(monkeypatch, tiny_folder):
    """Ours keeps its workers between timings: a reference that started its own each time paid their start-up
    in every timing, which the folder-vs-torchvision ratio then counted as our gain."""
    import argparse

    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from benchmark import torchvision_loader

    from vision_exp.recipe.config import AugmentConfig

    args = argparse.Namespace(img_size=16, batch_size=4, workers=1)
    loader = torchvision_loader(tiny_folder, args, AugmentConfig(), pin=False, batches=3)
    assert loader.persistent_workers and len(loader) == 3
    assert torchvision_loader(tiny_folder, argparse.Namespace(img_size=16, batch_size=4, workers=0), AugmentConfig(),
                              pin=False, batches=3).persistent_workers is False, "no workers to keep"


def test_models_are_timed_alternately_after_their_warm_up_and_the_ratio_is_ours_over_the_reference(monkeypatch):
    import argparse

    import torch

    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import benchmark

    ours, reference, calls = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), []

    def fake_steps(model, optimizer, images, labels, steps, rt):
        calls.append(("ours" if model is ours else "reference", steps))
        return 0.2 if model is ours else 0.1  # seconds per step: ours twice as slow

    monkeypatch.setattr(benchmark, "time_training_steps", fake_steps)
    args = argparse.Namespace(warmup=5, steps=3, repeats=3)
    row = benchmark.compare(ours, reference, torch.zeros(8, 2), torch.zeros(8, dtype=torch.long), args, None)
    assert calls == [("ours", 5), ("reference", 5), ("ours", 3), ("reference", 3), ("reference", 3), ("ours", 3),
                     ("ours", 3), ("reference", 3)], "warm-up first, then who goes first swaps each repeat"
    assert row["ratio_ours_over_reference"] == 2.0 and (row["ours_images_per_s"], row["reference_images_per_s"]) == (40, 80)
    times = iter([5.0, 1.0, 1.0, 9.0, 2.0, 1.0])  # a, b; b, a; a, b
    assert benchmark.alternate({"a": lambda: next(times), "b": lambda: next(times)}, 3) == {"a": 5.0, "b": 1.0}, \
        "the median of each timer, not the mean (a = 5, 9, 2)"


def test_a_memory_run_that_fails_shows_why(tiny_folder):
    cmd = [sys.executable, "scripts/benchmark.py", "--sections", "memory", "--device", "cpu", "--data-root", str(tiny_folder),
           "--img-size", "30", "--batch-size", "4", "--workers", "0"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "the memory run with trainer.grad_accum_steps=1 failed" in result.stderr
    assert "img_size 30 is not divisible by patch_size 4" in result.stderr, result.stderr


def test_loaders_that_keep_their_workers_are_timed_after_starting_them():
    """With one repeat (the GPU check's), a kept loader's only timing held its workers' start-up."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import benchmark

    calls = []

    def timer(name):
        return lambda: calls.append(name) or len(calls)

    medians = benchmark.alternate({"kept": timer("kept"), "restarted": timer("restarted")}, 1, warm=("kept",))
    assert calls == ["kept", "kept", "restarted"] and medians == {"kept": 2, "restarted": 3}


TINY_MODELS = ["--device", "cpu", "--img-size", "32", "--batch-size", "2", "--repeats", "1", "--steps", "1",
               "--warmup", "1"]


def test_the_json_holds_every_section_finished_before_one_failed(tmp_path):
    """gpu_check.sh stops a benchmark at its time limit: written only at the end, the JSON lost every section
    measured before."""
    out, empty = tmp_path / "bench.json", tmp_path / "empty"
    empty.mkdir()
    cmd = [sys.executable, "scripts/benchmark.py", "--sections", "models", "data", "--data-root", str(empty),
           "--json", str(out), *TINY_MODELS]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and f"no train/ and val/ folders in {empty}" in result.stderr, result.stderr
    results = json.loads(out.read_text())
    assert set(results) == {"meta", "models"} and results["models"]["resnet_v1"]["ours_images_per_s"] > 0
    assert results["meta"]["models_img_size"] == 32


def test_a_json_path_that_cannot_be_written_is_refused_before_measuring(tmp_path):
    cmd = [sys.executable, "scripts/benchmark.py", "--sections", "models", "--json", str(tmp_path / "no" / "b.json"),
           *TINY_MODELS]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and f"--json {tmp_path}/no/b.json: no folder {tmp_path}/no" in result.stderr
    assert "[models]" not in result.stdout, "nothing measured only to be lost"
    cmd[cmd.index("--json") + 1] = str(tmp_path)
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and f"--json {tmp_path}: a folder" in result.stderr and "[models]" not in result.stdout


def test_model_summary_answers_a_size_a_model_cannot_take_in_one_line():
    result = subprocess.run([sys.executable, "scripts/model_summary.py", "--img-size", "30"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "error: model: img_size 30 is not divisible by patch_size 8"


@pytest.mark.integration
def test_prepare_data_stopped_by_ctrl_c_says_so_in_one_line(tmp_path):
    """Decoding Imagenette takes minutes on a CPU: Ctrl-C then is expected, not a crash to show a traceback for."""
    cache = tmp_path / "cache"
    cmd = [sys.executable, "scripts/prepare_data.py", "--workers", "1",
           f"data.root={Path(os.environ['VISION_EXP_DATA']) / 'imagenette2-160'}"]
    run = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "VISION_EXP_CACHE": str(cache)})
    try:
        first = run.stderr.readline()
        assert first.startswith("decoding "), first  # decoding has begun
        run.send_signal(signal.SIGINT)
        _, rest = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 130 and rest.strip() == "stopped by Ctrl-C", rest
    assert not list(cache.rglob("*.npy")), "no half-written cache left for a run to trust"
