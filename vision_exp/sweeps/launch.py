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
from typing import Optional

from omegaconf import OmegaConf

SWEEP_DIR_RESOLVER = "vision_exp.sweep_dir"


def sweep_folder(base: str) -> str:
    """`<base>/multirun_<date>_<time>_<6 hex digits>`: random, or under torchrun the same in every rank.

    torchrun starts one copy of the sweep per rank; its run id (TORCHELASTIC_RUN_ID) is shared by
    the ranks of one launch and differs between launches.
    """
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    suffix = hashlib.sha1(run_id.encode()).hexdigest()[:6] if run_id else secrets.token_hex(3)
    return f"{base}/multirun_{time.strftime('%Y-%m-%d_%H-%M-%S')}_{suffix}"


def register_resolvers() -> None:
    """`${vision_exp.sweep_dir:<base>}` for conf/hydra/default.yaml; call before Hydra composes."""
    if not OmegaConf.has_resolver(SWEEP_DIR_RESOLVER):
        OmegaConf.register_new_resolver(SWEEP_DIR_RESOLVER, sweep_folder, use_cache=True)


def gpu_for_job(job_num: int, gpu_count: int) -> Optional[int]:
    """The GPU of job `job_num` when parallel jobs share a machine: job k on GPU k mod n.

    With hydra.launcher.n_jobs equal to the number of GPUs, the jobs that run at the same time
    have consecutive numbers and so different GPUs. None when there is no choice to make.
    """
    return job_num % gpu_count if gpu_count > 1 else None


def restore_default_start_method() -> None:
    """In a joblib worker, start new processes the platform's way again.

    loky makes itself the default start method inside its workers; a plain multiprocessing
    process started there (a DataLoader worker, the data cache's decoding pool) then fails with
    "'Process' object has no attribute 'env'". The worker's own queues keep their context.
    """
    if multiprocessing.get_start_method(allow_none=True) == "loky":
        multiprocessing.set_start_method(None, force=True)
