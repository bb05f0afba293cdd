"""Load: 100 runs (no generation round: one training each) submitted all at once are all accepted,
wait in the queue, and all finish, never more of them running at once than
``ORCHESTRATOR_MAX_CONCURRENT_RUNS`` (2 here). ``bench/reliability.py runs`` does it with full runs."""

from __future__ import annotations

import pytest

from services.testing.load import flood
from services.testing.stack import FAULT_SPEC

pytestmark = pytest.mark.slow
COUNT = 100


def test_runs_submitted_at_once_all_finish_with_bounded_concurrency(system, dataset):
    spec = {**FAULT_SPEC, "dataset": dataset, "iterations": 0, "train": {**FAULT_SPEC["train"], "max_epochs": 1}}
    result = flood(system, spec, COUNT)
    assert result["accepted"] == COUNT and result["http_statuses"] == {"201": COUNT}, result
    assert result["statuses"] == {"completed": COUNT} and result["lost"] == 0, result
    assert result["queue_peak"] >= COUNT // 2, result  # most of them really waited in the queue
    assert result["most_running_at_once"] == 2, result
