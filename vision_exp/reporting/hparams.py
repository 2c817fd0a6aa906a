"""Session records for TensorBoard's HParams dashboard.

Each run writes a session start (its hyper-parameters) and, once it completes, a session end into
its own tb/ folder and no experiment summary: TensorBoard then builds the sweep's table from all
sessions under the log dir, with every scalar of a run and its sub-runs as a metric column.
"""
from __future__ import annotations

import time

from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.plugins.hparams.summary_v2 import hparams_pb


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
