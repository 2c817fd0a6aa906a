"""`tensorboard --logdir <sweep dir>` shows a sweep as one comparable HParams table and overlaid curves.

A real TensorBoard server (the venv's, on 127.0.0.1 and a free port, stopped at the end) reads a
finished ResNet-vs-ViT sweep, whose jobs log different hyper-parameter keys (a ResNet has no
`model.embed_dim`); its HTTP API must list every run, the shared scalar tags, every hparam
and each job's final validation accuracy. The endpoints are those of TensorBoard's scalars
and hparams plugins (tensorboard/plugins/{scalar,hparams}/*_plugin.py).
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import run_cli

TENSORBOARD = Path(sys.executable).parent / "tensorboard"
PRESETS = ("cpu_resnet", "cpu_vit")


@pytest.fixture(scope="module")
def resnet_vs_vit_sweep(tiny_folder, tmp_path_factory):
    """experiment=cpu_resnet_vs_vit with the presets that exist, at a few seconds per job."""
    root = tmp_path_factory.mktemp("tb_sweep")
    result = run_cli([
        "-m", "experiment=cpu_resnet_vs_vit", f"+experiment@_global_={','.join(PRESETS)}", "seed=0",
        "data=folder", f"data.root={tiny_folder}", "data.img_size=16", "data.batch_size=8", "data.num_workers=0",
        "data.max_val_per_class=2", "trainer.train_samples=16", "trainer.train_eval_samples=4", "trainer.progress=none",
    ], env_extra={"OMP_NUM_THREADS": "1", "VISION_EXP_OUTPUT": str(root / "outputs"), "VISION_EXP_CACHE": str(root / "cache")})
    assert result.returncode == 0, result.stdout + result.stderr
    sweeps = list((root / "outputs" / "cpu_resnet_vs_vit").iterdir())
    assert len(sweeps) == 1, sweeps  # both jobs in the study's folder, though each preset renames its run
    return sweeps[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TensorBoardServer:
    def __init__(self, logdir: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        # Its own process group: the data server it starts is stopped with it.
        self.process = subprocess.Popen(
            [str(TENSORBOARD), "--logdir", str(logdir), "--host", "127.0.0.1", "--port", self.url.rsplit(":", 1)[1]],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def get(self, route: str):
        with urllib.request.urlopen(self.url + route, timeout=10) as response:
            return json.loads(response.read())

    def post(self, route: str, payload: dict):
        request = urllib.request.Request(self.url + route, data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def wait_for_runs(self, expected: set, timeout_s: float = 90.0) -> list:
        """/data/runs once it lists every expected run (TensorBoard loads the log dir in the background)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"tensorboard exited: {self.process.stdout.read().decode()}")
            try:
                runs = self.get("/data/runs")
                if expected <= set(runs):
                    return runs
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"tensorboard did not list {sorted(expected)} within {timeout_s} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process.stdout.close()


@pytest.fixture
def tensorboard(resnet_vs_vit_sweep):
    server = TensorBoardServer(resnet_vs_vit_sweep)
    try:
        yield server
    finally:
        server.stop()


def test_tensorboard_shows_the_sweep_as_one_table_with_overlaid_curves(resnet_vs_vit_sweep, tensorboard):
    jobs = ("0", "1")
    expected_runs = {f"{job}/tb{sub}" for job in jobs for sub in ("", "/train", "/train_running", "/val")}
    tensorboard.wait_for_runs(expected_runs)

    tags = tensorboard.get("/data/plugin/scalars/tags")
    for job in jobs:  # the same tags in every job and metric family: one chart per tag, every run overlaid
        for family in ("train", "train_running", "val"):
            assert {"loss", "acc"} <= set(tags[f"{job}/tb/{family}"]), (job, family)
        assert "final/val_acc" in tags[f"{job}/tb"]

    experiment = tensorboard.post("/data/plugin/hparams/experiment", {"experimentName": ""})
    hparams = {info["name"]: info for info in experiment["hparamInfos"]}
    assert hparams["name"]["differs"] and set(hparams["name"]["domainDiscrete"]) == set(PRESETS)
    assert hparams["model._target_"]["differs"] and hparams["optimizer.name"]["differs"]
    assert {"model.widths", "model.embed_dim", "seed"} <= set(hparams)  # keys of either model
    assert not any(name.startswith(("paths.", "trainer.resume")) for name in hparams)
    metrics = {(m["name"]["group"], m["name"]["tag"]) for m in experiment["metricInfos"]}
    assert {("val", "acc"), ("train", "acc"), ("train_running", "acc"), ("", "final/val_acc")} <= metrics

    groups = tensorboard.post("/data/plugin/hparams/session_groups", {
        "experimentName": "", "startIndex": 0, "sliceSize": 100,
        "allowedStatuses": ["STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING", "STATUS_UNKNOWN"],
        "colParams": [{"hparam": "name"}, {"hparam": "model._target_"}, {"metric": {"group": "val", "tag": "acc"}}],
    })["sessionGroups"]
    assert len(groups) == 2
    for group in groups:
        (session,) = group["sessions"]
        job = session["name"].split("/")[0]
        final = json.loads((resnet_vs_vit_sweep / job / "metrics.json").read_text())
        config = json.loads((resnet_vs_vit_sweep / job / "overrides.json").read_text())
        assert f"+experiment@_global_={group['hparams']['name']}" in config
        assert session["status"] == "STATUS_SUCCESS"
        (value,) = [m["value"] for m in group["metricValues"] if m["name"] == {"group": "val", "tag": "acc"}]
        assert value == pytest.approx(final["val_acc"], rel=1e-6)
