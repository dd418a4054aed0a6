"""Mission documents (YAML files, JSON from the hub) to specs and back; errors name the field."""

import textwrap
from pathlib import Path

import pytest

from qai_mission.codec import (MissionFormatError, load_mission_file, mission_from_dict, mission_to_dict,
                               task_from_dict)
from qai_mission.model import RetryPolicy

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "config" / "missions").glob("*.yaml"))


def test_a_full_task_document_becomes_a_spec():
    spec = task_from_dict({"id": "fly", "kind": "navigate", "priority": 4, "depends_on": ["plan"], "timeout": 120,
                           "deadline_in": 600, "retry": {"max_retries": 2, "initial_backoff": 1},
                           "resources": ["camera"], "optional": True,
                           "parameters": {"waypoints": {"$result": "plan.order"}}}, now=1000.0)
    assert spec.priority == 4 and spec.depends_on == ("plan",) and spec.timeout == 120.0
    assert spec.deadline == 1600.0
    assert spec.retry == RetryPolicy(max_retries=2, initial_backoff=1.0)
    assert spec.resources == frozenset({"camera"}) and spec.optional
    assert spec.parameters == {"waypoints": {"$result": "plan.order"}}


def test_round_trip():
    mission = mission_from_dict({"id": "m", "name": "n", "tasks": [
        {"id": "a", "kind": "scan", "deadline": 1234.5, "retry": {"max_retries": 1, "max_backoff": 9}},
        {"id": "b", "kind": "scan", "depends_on": ["a"], "parameters": {"x": [1, 2]}}]})
    assert mission_from_dict(mission_to_dict(mission)) == mission


@pytest.mark.parametrize("document, error", [
    ({"tasks": []}, "tasks: expected a non-empty list of tasks"),
    ({"tasks": [{"kind": "scan"}]}, "tasks[0].id: missing"),
    ({"tasks": [{"id": "a"}]}, "tasks[0] (a).kind: missing"),
    ({"tasks": [{"id": "a", "kind": "scan", "priority": "high"}]},
     "tasks[0] (a).priority: expected an integer, got 'high'"),
    ({"tasks": [{"id": "a", "kind": "scan", "timeout": -3}]},
     "tasks[0] (a).timeout: expected a positive number of seconds, got -3"),
    ({"tasks": [{"id": "a", "kind": "scan", "timeout": float("nan")}]}, "tasks[0] (a).timeout: expected a finite"),
    ({"tasks": [{"id": "a", "kind": "scan", "depends_on": "b"}]},
     "tasks[0] (a).depends_on: expected a list of strings, got 'b'"),
    ({"tasks": [{"id": "a", "kind": "scan", "retry": {"tries": 3}}]},
     "tasks[0] (a).retry.tries: unknown field"),
    ({"tasks": [{"id": "a", "kind": "scan", "prio": 3}]}, "tasks[0] (a).prio: unknown field"),
    ({"tasks": [{"id": "a", "kind": "scan", "deadline": 5, "deadline_in": 5}]},
     "tasks[0] (a).deadline_in: give deadline or deadline_in, not both"),
    ({"tasks": [{"id": "a", "kind": "scan", "optional": "yes"}]},
     "tasks[0] (a).optional: expected true or false"),
    ({"tasks": [{"id": "a", "kind": "scan", "parameters": [1]}]},
     "tasks[0] (a).parameters: expected a mapping"),
    ({"mission": "x", "tasks": [{"id": "a", "kind": "scan"}]}, "mission.mission: unknown field"),
    ([1, 2], "mission: expected a mapping, got list"),
])
def test_bad_documents_name_the_field(document, error):
    with pytest.raises(MissionFormatError) as raised:
        mission_from_dict(document, now=0.0)
    assert str(raised.value).startswith(error), str(raised.value)


def test_relative_deadlines_need_a_submission_time():
    with pytest.raises(MissionFormatError, match="only mission files may give a relative deadline"):
        mission_from_dict({"tasks": [{"id": "a", "kind": "scan", "deadline_in": 5}]})


def test_yaml_errors_give_the_line(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("tasks:\n  - {id: a, kind: scan\n")
    with pytest.raises(MissionFormatError, match=r"m\.yaml: line 3, column \d+: not valid YAML"):
        load_mission_file(path, 0.0)


def test_file_errors_start_with_the_file(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent("""\
        tasks:
          - id: a
            kind: scan
            timeout: soon
        """))
    with pytest.raises(MissionFormatError, match=r"m\.yaml: tasks\[0\] \(a\)\.timeout: expected a finite number"):
        load_mission_file(path, 0.0)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_missions_parse(path):
    assert load_mission_file(path, 0.0).tasks
