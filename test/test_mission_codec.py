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
                           "parameters": {"waypoints": {"$result": "plan.order"}}})
    assert spec.priority == 4 and spec.depends_on == ("plan",) and spec.timeout == 120.0
    assert spec.deadline is None and spec.deadline_in == 600.0  # relative until the mission engine accepts it
    assert spec.accepted_at(1000.0).deadline == 1600.0
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
        mission_from_dict(document)
    assert str(raised.value).startswith(error), str(raised.value)


def test_relative_deadlines_stay_relative_in_every_form():
    """Files, hub commands and messages keep `deadline_in`: only the mission engine's clock resolves it."""
    from qai_mission.messages import mission_from_msg, mission_to_msg

    spec = mission_from_dict({"tasks": [{"id": "a", "kind": "scan", "deadline_in": 5}]})
    assert mission_from_msg(mission_to_msg(spec)) == spec and spec.tasks[0].deadline_in == 5.0


def test_yaml_errors_give_the_line(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("tasks:\n  - {id: a, kind: scan\n")
    with pytest.raises(MissionFormatError, match=r"m\.yaml: line 3, column \d+: not valid YAML"):
        load_mission_file(path)


def test_file_errors_start_with_the_file(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent("""\
        tasks:
          - id: a
            kind: scan
            timeout: soon
        """))
    with pytest.raises(MissionFormatError, match=r"m\.yaml: tasks\[0\] \(a\)\.timeout: expected a finite number"):
        load_mission_file(path)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_missions_parse(path):
    assert load_mission_file(path).tasks


# -- Hostile documents: each refused with the field, never a traceback, never a wrapped number -------------

BILLION_LAUGHS = "\n".join(["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"] + [
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(8)]) + "\ntasks: []\n"


@pytest.mark.parametrize("text, error", [
    (BILLION_LAUGHS, "values (aliases expanded), the limit"),
    ("tasks:\n  - {id: a, kind: scan}\ntasks: []\n", "duplicate key 'tasks'"),
    ("", "empty document"),
    ("# only a comment\n", "empty document"),
    ("[" * 200 + "]" * 200, "nested more than"),
    ("tasks:\n  - {id: a, kind: scan, parameters: {x: .nan}}\n", "is not a finite number"),
    ("tasks:\n  - {id: a, kind: scan, parameters: {x: .inf}}\n", "is not a finite number"),
    ("tasks:\n  - {id: a, kind: scan, priority: 1000000000000}\n", "priority: 1000000000000 is outside"),
    ("tasks:\n  - {id: a, kind: scan, priority: 2.5}\n", "priority: expected an integer, got 2.5"),
    ("tasks:\n  - {id: a, kind: scan, deadline_in: 1.0e+30}\n", "more than a time message holds"),
    ("tasks:\n  - {id: a, kind: scan, timeout: 1.0e+12}\n", "more than a time message holds"),
    ("tasks:\n  - {id: a, kind: scan, retry: {max_retries: -1}}\n", "max_retries: -1 is outside [0, 1000]"),
    ("tasks:\n  - {id: a, kind: scan, retry: {initial_backoff: -1}}\n", "initial_backoff: -1 is outside"),
    ("tasks:\n  - {id: a, kind: scan, parameters: {blob: '" + "x" * 300_000 + "'}}\n", "the limit is 262144"),
])
def test_hostile_documents_are_refused_with_the_reason(tmp_path, text, error):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(MissionFormatError) as raised:
        load_mission_file(path)
    assert error in str(raised.value), str(raised.value)
    assert len(str(raised.value)) < 400  # a value is shown shortened, never echoed whole


def test_non_utf8_bytes_are_refused_with_where(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_bytes(b"tasks:\n  - {id: a, kind: \xff\xfe}\n")
    with pytest.raises(MissionFormatError, match=r"m\.yaml: not UTF-8 text \(byte 25"):
        load_mission_file(path)


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    from qai_mission.model import MissionLimits

    path = tmp_path / "m.yaml"
    path.write_text("tasks: []\n" + "#" * 5000)
    with pytest.raises(MissionFormatError, match=r"5010 bytes, the limit \(max_mission_bytes\) is 4096"):
        load_mission_file(path, MissionLimits(max_mission_bytes=4096))


def test_more_tasks_than_the_limit_are_refused_before_any_is_read():
    from qai_mission.model import MissionLimits

    with pytest.raises(MissionFormatError, match=r"tasks: 11 tasks, the limit \(max_tasks_per_mission\) is 10"):
        mission_from_dict({"tasks": [{"id": f"t{i}", "kind": "scan"} for i in range(11)]}, MissionLimits(max_tasks=10))


def test_a_message_with_oversized_parameters_is_refused_before_decoding():
    from diagnostic_msgs.msg import KeyValue

    from qai_interfaces.msg import Mission, Task
    from qai_mission.messages import mission_from_msg
    from qai_mission.model import MissionLimits

    msg = Mission(tasks=[Task(id="a", kind="scan", parameters=[KeyValue(key="blob", value='"' + "x" * 5000 + '"')])])
    with pytest.raises(MissionFormatError, match=r"tasks\[0\] \(a\)\.parameters: 5006 bytes, the limit"):
        mission_from_msg(msg, MissionLimits(max_task_parameter_bytes=4096))
    msg.tasks[0].parameters = [KeyValue(key="deep", value="[" * 100 + "]" * 100)]
    with pytest.raises(MissionFormatError, match="nested more than 16 levels deep"):
        mission_from_msg(msg)
