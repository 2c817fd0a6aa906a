"""What a run folder's records say when one of them is not what its writer leaves (another tool, a bad copy)."""
import json

import pytest

from vision_exp.reporting.files import read_json
from vision_exp.reporting.records import completed_record, record_failure


@pytest.mark.parametrize("content", ["[]", "null", '"completed"', "3"])
def test_a_metrics_json_that_holds_no_record_is_no_completed_run_and_a_failure_replaces_it(tmp_path, content):
    """A sweep rerun asks each job folder whether it completed: a metrics.json holding a list or null stopped the
    job with an AttributeError, and the record of that failure failed the same way, leaving the file as it was."""
    (tmp_path / "metrics.json").write_text(content)
    assert completed_record(tmp_path) is None
    record_failure(tmp_path, "out of memory")
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert (record["status"], record["error"]) == ("failed", "out of memory")


def test_read_json_gives_the_default_for_content_of_another_type_and_any_content_without_one(tmp_path):
    path = tmp_path / "record.json"
    path.write_text("[1, 2]")
    assert read_json(path, {}) == {} and read_json(path, []) == [1, 2] and read_json(path) == [1, 2]
    path.write_text('{"status": "completed"}')
    assert read_json(path, {}) == {"status": "completed"}
    assert read_json(tmp_path / "missing.json", {"default": 1}) == {"default": 1}
