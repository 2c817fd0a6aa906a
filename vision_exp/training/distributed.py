"""Data-parallel training under torchrun: who am I, and the few collective operations we need.

`torchrun --nproc_per_node=N -m vision_exp.train ...` starts N copies of the entry point with
RANK/WORLD_SIZE/LOCAL_RANK set. Every rank runs the same loop on its shard of each global
batch; gradients are averaged by DistributedDataParallel; metrics are summed across ranks;
rank 0 alone writes logs, checkpoints and metrics.
"""
from __future__ import annotations

import atexit
import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from vision_exp.errors import RankZeroFailed, UserError
from vision_exp.training.runtime import select_device


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> tuple:
        return self.rank, self.world_size


def env_from_torchrun() -> DistEnv:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    return DistEnv(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def setup(device_name: str) -> tuple:
    """(DistEnv, device); joins the process group when started by torchrun (NCCL on GPUs, else gloo)."""
    env = env_from_torchrun()
    if not env.enabled:
        return env, select_device(device_name)
    if device_name in ("auto", "cuda") and torch.cuda.is_available():
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = select_device("cpu" if device_name == "auto" else device_name)
        backend = "gloo"
    if not dist.is_initialized():  # once per process: every job of a sweep under torchrun reuses it
        dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)
        atexit.register(teardown)
    return env, device


def same_on_all_ranks(value):
    """Rank 0's `value` on every rank (e.g. the run folder, so every rank resumes the same checkpoint)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


@contextlib.contextmanager
def main_first(env: DistEnv):
    """Run the block on rank 0 first, then on the other ranks (e.g. building a shared cache once). Rank 0 tells
    the others how it went: where it failed (a missing dataset), they stop with its message; a bare barrier left
    them waiting for a rank that had gone, to end in a broken connection's traceback. Rank 0 alone prints it."""
    if not env.enabled:
        yield
        return
    if env.is_main:
        try:
            yield
        except Exception as exc:
            dist.broadcast_object_list([str(exc) if isinstance(exc, UserError) else
                                        f"rank 0 failed ({type(exc).__name__}; its traceback is above)"], src=0)
            raise
        dist.broadcast_object_list([None], src=0)
        return
    failure = [None]
    dist.broadcast_object_list(failure, src=0)
    if failure[0] is not None:
        raise RankZeroFailed(failure[0])
    yield


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks in place (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    """Maximum over ranks in place (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor
