"""Mission validation: every error names the task and the field, and says why."""

import math

import pytest

from mission_sim import task
from qai_edge.tasks import TaskKindSpec
from qai_mission.model import KindRoute, RetryPolicy
from qai_mission.validation import MissionInvalid, check_tasks, find_cycle

NAVIGATE_SCHEMA = {
    "type": "object",
    "properties": {"waypoints": {"type": "array", "minItems": 1},
                   "speed": {"type": "number", "exclusiveMinimum": 0}},
    "required": ["waypoints"],
    "additionalProperties": False,
}
KINDS = {
    "navigate": KindRoute(TaskKindSpec("navigate", parameters_schema=NAVIGATE_SCHEMA, result_keys=("position",)),
                          "/io", "/io/run_task"),
    "plan_route": KindRoute(TaskKindSpec("plan_route", result_keys=("order", "cost")), "/q", "/q/run_task"),
    "scan": KindRoute(TaskKindSpec("scan"), "/io", "/io/run_task"),
}
NOW = 1000.0


def errors_of(*tasks, existing=None):
    with pytest.raises(MissionInvalid) as error:
        check_tasks(tasks, KINDS, NOW, existing)
    return error.value.errors


def nav(id="go", **fields):
    fields.setdefault("parameters", {"waypoints": [[0, 0, 1]]})
    return task(id, "navigate", **fields)


def test_a_valid_mission_passes():
    check_tasks([task("plan", "plan_route"),
                 nav(depends_on=["plan"], parameters={"waypoints": {"$result": "plan.order"}, "speed": 2.0})],
                KINDS, NOW)


def test_empty_mission():
    assert errors_of() == ["tasks: a mission needs at least one task"]


@pytest.mark.parametrize("bad_id", ["", "has space", "x" * 65, "semi;colon"])
def test_bad_task_id(bad_id):
    assert errors_of(task(bad_id))[0].endswith("id: must be 1-64 letters, digits, '_' or '-'")


def test_duplicate_ids():
    assert errors_of(task("a"), task("a")) == ["task 'a': id: duplicate task id"]


def test_duplicate_of_an_existing_task_when_adding():
    assert errors_of(task("a"), existing={"a": task("a")}) == ["task 'a': id: duplicate task id"]


def test_unknown_dependency():
    assert errors_of(task("a", depends_on=["ghost"])) == ["task 'a': depends_on: unknown task 'ghost'"]


def test_self_dependency():
    assert errors_of(task("a", depends_on=["a"])) == ["task 'a': depends_on: a task cannot depend on itself"]


def test_cycle_is_named():
    errors = errors_of(task("a", depends_on=["c"]), task("b", depends_on=["a"]), task("c", depends_on=["b"]))
    assert len(errors) == 1
    assert errors[0].startswith("task 'a': depends_on: dependency cycle a -> c -> b -> a")


def test_find_cycle_none_on_a_dag():
    assert find_cycle({"a": task("a"), "b": task("b", depends_on=["a"])}) is None


def test_kind_no_running_engine_serves():
    assert errors_of(task("a", "teleport")) == [
        "task 'a': kind: 'teleport' is not served by any running engine (served: navigate, plan_route, scan)"]


def test_parameters_that_fail_the_kinds_schema():
    errors = errors_of(nav(parameters={"waypoints": [], "speed": -1, "sped": 3}))
    assert "task 'go': parameters.waypoints: [] should be non-empty" in errors
    assert "task 'go': parameters.speed: -1 is less than or equal to the minimum of 0" in errors
    assert any(e.startswith("task 'go': parameters: Additional properties are not allowed ('sped'") for e in errors)


def test_missing_required_parameter():
    assert errors_of(nav(parameters={})) == ["task 'go': parameters: 'waypoints' is a required property"]


def test_nan_parameter():
    assert "task 'go': parameters.speed: NaN or infinity is not a valid value" in errors_of(
        nav(parameters={"waypoints": [[0, 0, 0]], "speed": math.nan}))


def test_deadline_in_the_past():
    assert errors_of(task("a", deadline=NOW - 2.5)) == ["task 'a': deadline: is in the past (2.500 s ago)"]


def test_non_positive_timeout():
    assert errors_of(task("a", timeout=-1.0)) == ["task 'a': timeout: must be a positive duration, got -1.0"]


def test_bad_retry_policy():
    errors = errors_of(task("a", retry=RetryPolicy(max_retries=-1, initial_backoff=-1, backoff_multiplier=0.5)))
    assert errors == ["task 'a': retry.max_retries: must be >= 0, got -1",
                      "task 'a': retry.initial_backoff: must be >= 0, got -1",
                      "task 'a': retry.backoff_multiplier: must be >= 1, got 0.5"]


def test_reference_to_a_task_that_is_not_a_dependency():
    errors = errors_of(task("plan", "plan_route"), nav(parameters={"waypoints": {"$result": "plan.order"}}))
    assert errors == ["task 'go': parameters.waypoints: refers to task 'plan', which this task does not depend on "
                      "(add it to depends_on)"]


def test_reference_through_an_indirect_dependency_is_fine():
    check_tasks([task("plan", "plan_route"), task("mid", depends_on=["plan"]),
                 nav(depends_on=["mid"], parameters={"waypoints": {"$result": "plan.order"}})], KINDS, NOW)


def test_reference_to_a_result_key_the_kind_does_not_have():
    errors = errors_of(task("plan", "plan_route"),
                       nav(depends_on=["plan"], parameters={"waypoints": {"$result": "plan.route"}}))
    assert errors == ["task 'go': parameters.waypoints: plan_route results have no key 'route' "
                      "(they have: order, cost)"]


def test_reference_to_an_unknown_task():
    assert "task 'go': parameters.waypoints: refers to unknown task 'nope'" in errors_of(
        nav(parameters={"waypoints": {"$result": "nope.order"}}))


def test_every_problem_is_reported_and_the_message_is_readable():
    with pytest.raises(MissionInvalid) as error:
        check_tasks([task("a", "teleport"), task("b", depends_on=["zz"])], KINDS, NOW)
    assert str(error.value) == ("task 'a': kind: 'teleport' is not served by any running engine "
                                "(served: navigate, plan_route, scan); task 'b': depends_on: unknown task 'zz'")
