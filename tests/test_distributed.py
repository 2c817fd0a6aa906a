"""torchrun with two CPU processes (gloo) trains like one process with the same global batch, and its ranks agree."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, run_cli, tiny_overrides

TOLERANCE = 1e-4  # float sums in another order; stated in the README


def vit_args(folder):
    # A ViT (LayerNorm, no BatchNorm): per-rank batch statistics would be the one legitimate difference.
    return ["data=folder", f"data.root={folder}", "data.img_size=16", "data.batch_size=8", "data.num_workers=0",
            "model=vit_v1", "model.embed_dim=16", "model.depth=1", "model.num_heads=2", "trainer.epochs=2",
            "trainer.deterministic=true", "trainer.progress=none", "trainer.train_samples=60"]


def torchrun_command(*overrides: str) -> list:
    """`torchrun` with two CPU ranks running `python -m vision_exp.train <overrides>`."""
    return [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node=2", "-m",
            "vision_exp.train", *overrides]


def torchrun_env() -> dict:
    return dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")  # one thread per rank on 2 cores


def on_two_ranks(*overrides: str) -> subprocess.CompletedProcess:
    """The two-rank run to its end, its output captured."""
    return subprocess.run(torchrun_command(*overrides), capture_output=True, text=True, env=torchrun_env(), cwd=REPO,
                          timeout=300)


@pytest.mark.parametrize("parts", [(), ("trainer.grad_accum_steps=3",)])
def test_two_process_run_matches_one_process_run(tiny_folder, tmp_path, parts):
    """Also with each rank's share of the batch (4 samples, 2 in the last batch) in parts, whose gradients
    the ranks average once per step."""
    single = run_cli(vit_args(tiny_folder) + [f"hydra.run.dir={tmp_path / 'one'}"])
    assert single.returncode == 0, single.stdout + single.stderr
    multi = on_two_ranks(*vit_args(tiny_folder), *parts, f"hydra.run.dir={tmp_path / 'two'}")
    assert multi.returncode == 0, multi.stdout + multi.stderr
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["samples_seen"] == one["samples_seen"] == 60 and two["steps"] == one["steps"]
    for key in ("val_loss", "train_loss", "train_running_loss", "val_acc", "train_acc", "train_running_acc"):
        assert two[key] == pytest.approx(one[key], abs=TOLERANCE), key
    # rank 0 alone wrote: one record per epoch, one TensorBoard events file and one of its session
    assert len((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()) == 2
    events = (tmp_path / "two" / "tb").glob("events.out.tfevents.*")
    assert sorted(path.name.endswith(".session") for path in events) == [False, True]


def test_a_batch_smaller_than_the_ranks_stops_before_training(tiny_folder, tmp_path):
    """37 samples of a 36-image set: the second epoch is one batch of 1, and one of two ranks would get nothing."""
    run = tmp_path / "run"
    result = on_two_ranks(*vit_args(tiny_folder), "trainer.train_samples=37", f"hydra.run.dir={run}")
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "the last training batch holds 1 sample(s), fewer than the 2 ranks" in output
    assert not (run / "checkpoints").exists()


def test_sync_bn_without_cuda_stops_before_any_image_is_read(tiny_folder, tmp_path):
    result = on_two_ranks(*tiny_overrides(tiny_folder), "trainer.sync_bn=true", f"data.cache_dir={tmp_path / 'cache'}",
                          f"hydra.run.dir={tmp_path / 'run'}")
    output = result.stdout + result.stderr
    assert result.returncode != 0 and output.count("trainer.sync_bn=true needs CUDA devices") == 1, output  # rank 0's
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run" / "checkpoints").exists()


def test_a_misspelt_setting_is_refused_once_for_all_ranks(tiny_folder, tmp_path):
    """Every rank composes the same config and refuses it before the ranks meet: rank 0 alone prints the line."""
    result = on_two_ranks(*vit_args(tiny_folder), "trainer.epoch=3", f"hydra.run.dir={tmp_path / 'run'}")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert output.count("trainer.epoch is not a setting (did you mean trainer.epochs?)") == 1, output
    assert not (tmp_path / "run").exists()


def test_a_dataset_rank_0_cannot_find_stops_every_rank_with_its_message(tmp_path):
    """Rank 0 indexes (or downloads) the data first while the others wait: when it stops, they stop with it, not with
    a traceback of the broken connection to a rank that has gone; its message is printed and recorded once."""
    result = on_two_ranks(*vit_args(tmp_path / "nowhere"), f"hydra.run.dir={tmp_path / 'run'}")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert output.count(f"dataset folder not found: {tmp_path / 'nowhere'}") == 1, output  # rank 0's line alone
    assert "Error executing job" not in output and "Connection reset" not in output, output
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["error"].startswith(f"dataset folder not found: {tmp_path / 'nowhere'}")


def test_rank_0_tells_the_others_whether_the_block_they_wait_for_failed(monkeypatch):
    """main_first's message from rank 0: nothing when its block ran; a user error's own message; for a bug, a line
    that points at rank 0's traceback. The others raise it as a user error that rank 0 printed (exit 2, no line of
    their own) without running the block."""
    from vision_exp.errors import DataError, RankZeroFailed
    from vision_exp.training import distributed

    sent = []
    monkeypatch.setattr(distributed.dist, "broadcast_object_list", lambda holder, src: sent.append(list(holder)))
    main = distributed.DistEnv(rank=0, world_size=2)
    with distributed.main_first(main):
        pass
    with pytest.raises(DataError), distributed.main_first(main):
        raise DataError("dataset folder not found: /nowhere")
    with pytest.raises(ZeroDivisionError), distributed.main_first(main):
        1 / 0
    assert sent == [[None], ["dataset folder not found: /nowhere"], ["rank 0 failed (ZeroDivisionError; its traceback is above)"]]

    def receive(message):
        def broadcast(holder, src):
            holder[0] = message
        return broadcast

    ran = []
    other = distributed.DistEnv(rank=1, world_size=2)
    monkeypatch.setattr(distributed.dist, "broadcast_object_list", receive("dataset folder not found: /nowhere"))
    with pytest.raises(RankZeroFailed, match="^dataset folder not found: /nowhere$"), distributed.main_first(other):
        ran.append(1)
    monkeypatch.setattr(distributed.dist, "broadcast_object_list", receive(None))
    with distributed.main_first(other):
        ran.append(2)
    assert ran == [2]


def exchange(rank: int, world_size: int, store: str, results) -> None:
    """One rank of test_two_ranks_agree_on_rank_0s_values_sums_and_maxima, in a process of its own."""
    import torch
    import torch.distributed as dist

    from vision_exp.training import distributed

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    folder = distributed.same_on_all_ranks(f"outputs/run-of-rank-{rank}")
    count = distributed.all_reduce_sum(torch.tensor([rank + 1.0])).item()
    worst = distributed.all_reduce_max(torch.tensor([10.0 * (rank + 1)])).item()
    results.put((rank, folder, count, worst))
    distributed.teardown()


def test_two_ranks_agree_on_rank_0s_values_sums_and_maxima(tmp_path):
    """Over a real gloo group of two processes: each rank gets rank 0's run folder (a folder named from the clock
    could differ by rank), the sum (of sample counts) and the maximum (of losses or signals)."""
    import torch.multiprocessing as mp

    results = mp.get_context("spawn").SimpleQueue()
    mp.spawn(exchange, args=(2, str(tmp_path / "store"), results), nprocs=2)
    assert sorted(results.get() for _ in range(2)) == [
        (0, "outputs/run-of-rank-0", 3.0, 20.0), (1, "outputs/run-of-rank-0", 3.0, 20.0)]


def rank_pid(run_dir: Path, rank: int):
    """The pid of the torchrun worker of `rank` training into `run_dir`, or None."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if f"hydra.run.dir={run_dir}".encode() in cmdline and f"RANK={rank}".encode() in environ:
            return int(proc.name)
    return None


def test_a_signal_to_one_rank_stops_every_rank_and_is_named_right(tiny_folder, tmp_path):
    """SLURM or a user may signal one worker only: all ranks stop at the same step, rank 0 checkpoints,
    and the message names the signal received (a sum over ranks once turned SIGTERM into SIGBUS)."""
    run, log = tmp_path / "run", tmp_path / "torchrun.log"
    with log.open("w") as output:
        job = subprocess.Popen(torchrun_command(*vit_args(tiny_folder), "trainer.train_samples=36000",
                                                f"hydra.run.dir={run}"),
                               stdout=output, stderr=subprocess.STDOUT, env=torchrun_env(), cwd=REPO)
        deadline = time.monotonic() + 120
        while "training ViT" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(rank_pid(run, 1), signal.SIGTERM)
        job.wait(timeout=120)
    text = log.read_text()
    assert "stopped by SIGTERM" in text and "SIGBUS" not in text, text
    assert json.loads((run / "metrics.json").read_text())["status"] == "interrupted"
    assert (run / "checkpoints" / "last.pt").is_file()


def test_a_rank_is_global_and_its_device_index_local(monkeypatch):
    """On two nodes of two GPUs, the second node's first process is rank 2 of 4 (its shard of each batch) on that
    node's GPU 0; one process, whatever torchrun set, is the single-process run."""
    from vision_exp.training.distributed import DistEnv, env_from_torchrun

    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    env = env_from_torchrun()
    assert env == DistEnv(rank=2, world_size=4, local_rank=0)
    assert env.enabled and not env.is_main and env.shard == (2, 4)
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert env_from_torchrun() == DistEnv() and not DistEnv().enabled and DistEnv().is_main


def test_torchrun_without_cuda_trains_on_the_cpu_even_where_mps_is_there(monkeypatch):
    """gloo, the backend without CUDA, moves CPU tensors only: trainer.device=auto under torchrun on a Mac is
    the CPU, where a single process would take MPS."""
    import torch

    from vision_exp.training import distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: True)  # the process group exists: join nothing
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert distributed.setup("auto")[1] == torch.device("cpu")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.setup("auto")[1] == torch.device("mps")


def test_ranks_after_the_first_draw_their_masks_from_streams_of_their_own():
    """Dropout, drop-path and random erasing use the global RNGs: with one seed on every rank, sample i of
    each rank's shard would get the same masks. Rank 0 keeps a single process's stream; a resumed rank
    (another step) gets a fresh one, the same every time."""
    import random

    import numpy as np
    import torch

    from vision_exp.experiment import seed_rank

    def draws(rank: int, step: int = 0) -> tuple:
        torch.manual_seed(7)
        random.seed(7)
        np.random.seed(7)
        seed_rank(7, rank, step)
        return tuple(torch.rand(3).tolist()), np.random.rand(), random.random()

    torch.manual_seed(7)
    random.seed(7)
    np.random.seed(7)
    single_process = (tuple(torch.rand(3).tolist()), np.random.rand(), random.random())
    assert draws(0) == single_process
    streams = [draws(0), draws(1), draws(2), draws(1, step=40)]
    assert len({stream[0] for stream in streams}) == len({stream[1] for stream in streams}) == 4
    assert len({stream[2] for stream in streams}) == 4
    assert draws(1, step=40) == streams[3]



def test_the_ranks_score_the_model_the_checkpoint_saves(tiny_folder, tmp_path):
    """A ResNet without sync_bn: after its last step each rank holds its own shard's BatchNorm statistics (its
    EMA too), so the ranks used to score different models, none of them the saved one. The run's val loss is
    that of last.pt evaluated alone."""
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    run = tmp_path / "run"
    args = ["data=folder", f"data.root={tiny_folder}", "data.img_size=16", "data.batch_size=8", "data.num_workers=0",
            "model.widths=[8,8,16,16]", "trainer.train_samples=60", "trainer.ema_decay=0.9", "trainer.progress=none",
            f"hydra.run.dir={run}"]
    trained = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "vision_exp.train", *args],
                             capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    evaluated = subprocess.run([sys.executable, "-m", "vision_exp.evaluate", f"ckpt={run / 'checkpoints' / 'last.pt'}"],
                               capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    alone = json.loads((run / "checkpoints" / "last-eval-run-data" / "metrics.json").read_text())
    reported = json.loads((run / "metrics.json").read_text())
    assert alone["loss"] == pytest.approx(reported["val_loss"], abs=TOLERANCE)


SIGTERM_AS_THE_RUN_ENDS = """
import os, signal
from vision_exp.training.trainer import Trainer
end_epoch = Trainer._end_epoch
def signalled(self):
    if os.environ["RANK"] in os.environ["SIGNALLED_RANKS"] and self.position.epoch + 1 == self.budget.num_epochs:
        os.kill(os.getpid(), signal.SIGTERM)
    return end_epoch(self)
Trainer._end_epoch = signalled
from vision_exp.train import main
main()
"""


def run_signalled_as_the_run_ends(folder, tmp_path, signalled_ranks: str, *args) -> str:
    """torchrun's output, each rank in `signalled_ranks` sending itself SIGTERM as the last epoch ends."""
    torchrun = Path(sys.executable).with_name("torchrun")
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(SIGTERM_AS_THE_RUN_ENDS)
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO),
               SIGNALLED_RANKS=signalled_ranks)
    done = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", str(wrapper), *args, *vit_args(folder)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert done.returncode != 0
    return done.stdout + done.stderr


def test_a_signal_as_a_sweep_job_ends_stops_every_rank(tiny_folder, tmp_path):
    """One rank signalled while the last epoch evaluates: the job completes, and no rank starts the next job (rank
    0, not signalled, started it alone; the signalled rank went on as if nothing had come)."""
    sweep = tmp_path / "sweep"
    output = run_signalled_as_the_run_ends(tiny_folder, tmp_path, "1", "-m", "seed=0,1", f"hydra.sweep.dir={sweep}")
    assert "SIGTERM arrived as the run ended: it completed first" in output, output
    assert json.loads((sweep / "0" / "metrics.json").read_text())["status"] == "completed"
    assert not (sweep / "1").exists(), output


def test_the_same_signal_to_every_rank_is_named_as_sent(tiny_folder, tmp_path):
    """SLURM signals every task: SIGTERM on both ranks is SIGTERM (15), not the sum of the two (30, SIGPWR)."""
    output = run_signalled_as_the_run_ends(tiny_folder, tmp_path, "01", f"hydra.run.dir={tmp_path / 'run'}")
    assert "SIGTERM arrived as the run ended: it completed first" in output and "SIGPWR" not in output, output
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "completed"
