"""What a sweep job needs from its launcher: one folder for the whole sweep, its own GPU, and
processes of its own under joblib.

Hydra resolves `hydra.sweep.dir` once when the sweep starts and again in every job's config,
in joblib and submitit workers too (other processes). A plain `${now:...}` folder is shared by
two sweeps started in the same second, and `${name}` changes in a job whose preset renames the
run (`experiment=resnet_vs_vit` sweeps whole presets). `sweep_folder` adds a random suffix, and
its resolver is cached by the *text* of its argument, not its value; Hydra copies that cache into
every job's config and carries registered resolvers to its workers (hydra.core.singleton), so
every job resolves the folder that the sweep chose when it started.
"""
from __future__ import annotations

import hashlib
import multiprocessing
import os
import secrets
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from omegaconf import OmegaConf

from vision_exp.reporting.files import exclusive_lock

SWEEP_DIR_RESOLVER = "vision_exp.sweep_dir"
RUN_DIR_RESOLVER = "vision_exp.run_dir"


def launch_time() -> float:
    """When this launch started: under torchrun the start of the torchrun process (the parent of
    every local rank, so all ranks agree on one run folder), else now."""
    if "LOCAL_RANK" in os.environ:
        try:
            fields = open(f"/proc/{os.getppid()}/stat").read().rsplit(")", 1)[1].split()
            boot = next(float(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime"))
            return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError, StopIteration):
            pass
    return time.time()


def run_folder(base: str) -> str:
    """`<base>/<date>_<time>` of a single run (the same folder for every torchrun rank)."""
    return f"{base}/{time.strftime('%Y-%m-%d_%H-%M-%S', time.localtime(launch_time()))}"


def sweep_folder(base: str) -> str:
    """`<base>/multirun_<date>_<time>_<6 hex digits>`: random, or under torchrun the same in every rank.

    torchrun starts one copy of the sweep per rank; its run id (TORCHELASTIC_RUN_ID) is shared by
    the ranks of one launch and differs between launches.
    """
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    suffix = hashlib.sha1(run_id.encode()).hexdigest()[:6] if run_id else secrets.token_hex(3)
    return f"{base}/multirun_{time.strftime('%Y-%m-%d_%H-%M-%S', time.localtime(launch_time()))}_{suffix}"


def register_resolvers() -> None:
    """`${vision_exp.sweep_dir:<base>}` and `${vision_exp.run_dir:<base>}` for conf/hydra/default.yaml;
    call before Hydra composes."""
    for name, resolver in ((SWEEP_DIR_RESOLVER, sweep_folder), (RUN_DIR_RESOLVER, run_folder)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver, use_cache=True)


@contextmanager
def claimed_gpu(lock_dir: Path, job_num: int, gpu_count: int) -> Iterator[Optional[int]]:
    """The GPU a parallel job trains on, held until the job ends (an flock on `<lock_dir>/.gpu<k>.lock`).

    joblib hands each job to whichever worker is free, so job numbers do not say which GPUs are busy
    (a job skipped as already completed frees its worker at once): the job takes the first free GPU,
    trying `job_num mod n` first. With more parallel jobs than GPUs it shares that one. None when
    there is no choice to make.
    """
    if gpu_count <= 1:
        yield None
        return
    lock_dir.mkdir(parents=True, exist_ok=True)
    preferred = [(job_num + offset) % gpu_count for offset in range(gpu_count)]
    for gpu in preferred:
        with exclusive_lock(lock_dir / f".gpu{gpu}.lock") as held:
            if held:
                yield gpu
                return
    yield preferred[0]


def restore_default_start_method() -> None:
    """In a joblib worker, start new processes the platform's way again.

    loky makes itself the default start method inside its workers; a plain multiprocessing
    process started there (a DataLoader worker, the data cache's decoding pool) then fails with
    "'Process' object has no attribute 'env'". The worker's own queues keep their context.
    """
    if multiprocessing.get_start_method(allow_none=True) == "loky":
        multiprocessing.set_start_method(None, force=True)
