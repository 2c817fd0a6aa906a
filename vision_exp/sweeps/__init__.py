"""Sweeps as results: what a multirun leaves in its folder and how it is read back.

Everything here works on plain files, so a summary can be rebuilt at any time from a sweep
folder (`vx-summarize`, or `load_sweep` in a notebook); only `callback` (the end of a
multirun) and `launch` (the sweep folder's name, a GPU per job, the workers' start method) are seen by Hydra.
"""
from vision_exp.sweeps.summary import Configuration, Job, SweepSummary, load_sweep, summarize_sweep, write_results

__all__ = ["Configuration", "Job", "SweepSummary", "load_sweep", "summarize_sweep", "write_results"]
