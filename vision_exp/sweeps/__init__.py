"""Sweeps as results: what a multirun leaves in its folder and how it is read back.

The summary (`summary`, `statistics`, `plots`, `report`) works on plain files, so it can be rebuilt at
any time from a sweep folder (`vx-summarize`, or `load_sweep` in a notebook), or from several as one
(`load_sweeps`: a sweep and the one that added seeds to it). Hydra sees `precheck` (every
job checked before the first trains), `callback` (the end of a multirun) and `launch` (the sweep folder's
name, a GPU per job, the workers' start method); `jobs` skips, resumes or refuses a job from its folder.
"""
from vision_exp.sweeps.summary import (Configuration, Job, SweepSource, SweepSummary, load_sweep, load_sweeps,
                                       summarize_sweep, summarize_sweeps, write_results)

__all__ = ["Configuration", "Job", "SweepSource", "SweepSummary", "load_sweep", "load_sweeps", "summarize_sweep",
           "summarize_sweeps", "write_results"]
