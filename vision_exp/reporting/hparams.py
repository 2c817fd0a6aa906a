"""Session records for TensorBoard's HParams dashboard.

Each run writes a session start (its hyper-parameters) and, once it completes, a session end into
its own tb/ folder and no experiment summary: TensorBoard then builds the sweep's table from all
sessions under the log dir, with every scalar of a run and its sub-runs as a metric column.

The table shows what a run computes, not where its files lie (see `table_hparams`).
"""
from __future__ import annotations

import os
import time
from pathlib import PurePath

from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.plugins.hparams.summary_v2 import hparams_pb

from vision_exp.reporting.records import INCIDENTAL_SETTINGS, flatten

# Settings that hold a file or folder, besides INCIDENTAL_SETTINGS (paths.*, data.cache_dir). The dataset folder and
# a class-list file say which data by their names (imagenette2-160, imagenet100.txt), so the table shows those names;
# where they lie (a Kaggle input, a local copy) is no hyper-parameter. A teacher checkpoint's name says nothing
# (best.pt, last.pt) and its path is where it lies: it is left out (loss.distillation.kind says whether one taught).
SHOWN_BY_NAME = ("data.root", "data.classes")
PATH_SETTINGS = ("loss.distillation.teacher",)


def is_path(value) -> bool:
    """A string that names a file or folder by an absolute, home or relative path."""
    return isinstance(value, str) and (os.path.isabs(value) or value.startswith(("~", "./", "../", ".\\", "..\\")))


def table_hparams(config: dict) -> dict:
    """The flattened config as the HParams table shows it: without the incidental settings (paths, device,
    logging) and without paths; the dataset folder and a class-list file by their names. Any other setting
    whose value is a path (a key added later) is left out too, rather than showing one machine's folders."""
    table = {}
    for key, value in flatten(config).items():
        if key.startswith(INCIDENTAL_SETTINGS + PATH_SETTINGS):
            continue
        if key in SHOWN_BY_NAME and isinstance(value, str):
            value = PurePath(value).name  # a list of class names ("['n01', 'n02']", no slash) or "None" keeps its text
        elif is_path(value):
            continue
        table[key] = value
    return table


def session_start(hparams: dict, trial_id: str) -> summary_pb2.Summary:
    return hparams_pb(hparams, trial_id=trial_id)


def session_end() -> summary_pb2.Summary:
    """The end of a completed run's session (the only kind written: see RunReporter.close)."""
    status = api_pb2.Status.Value("STATUS_SUCCESS")
    data = plugin_data_pb2.HParamsPluginData(
        session_end_info=plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
    )
    summary = summary_pb2.Summary()
    summary.value.add(
        tag=metadata.SESSION_END_INFO_TAG,
        metadata=metadata.create_summary_metadata(data),
        tensor=metadata.NULL_TENSOR,
    )
    return summary
