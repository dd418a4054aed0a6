"""The mission scheduler core.

Ordering, concurrency, resources, preemption, retries, timeouts, deadlines, result references, cancellation,
lost engines.
"""

import pytest

from mission_sim import ROUTES, Harness, cancels, mission, task
from qai_mission.model import MissionStatus, TaskStatus
from qai_mission.scheduler import Dispatch


def test_independent_tasks_without_shared_resources_start_together():
    h = Harness()
    assert sorted(h.dispatched(h.add(task("a"), task("b"), task("c", "plan")))) == ["a", "b", "c"]


def test_ready_tasks_start_by_priority_then_deadline_then_submission_order():
    h = Harness()
    now = h.clock.now
    order = h.dispatched(h.add(task("low", "move", priority=1), task("late", "move", priority=5, deadline=now + 100),
                               task("soon", "move", priority=5, deadline=now + 50), task("first_of_ties", "move"),
                               task("second_of_ties", "move")))
    started = list(order)
    for _ in range(4):
        started += h.dispatched(h.succeed(started[-1]))
    assert started == ["soon", "late", "low", "first_of_ties", "second_of_ties"]


def test_a_task_starts_only_after_all_its_dependencies_succeeded():
    h = Harness()
    assert sorted(h.dispatched(h.add(task("a"), task("b"), task("c", depends_on=["a", "b"])))) == ["a", "b"]
    assert h.status("c") == "PENDING"
    assert h.dispatched(h.succeed("a")) == []
    assert h.dispatched(h.succeed("b")) == ["c"]


def test_an_exclusive_resource_has_one_holder_and_frees_when_the_attempt_ends():
    h = Harness()
    assert h.dispatched(h.add(task("m1", "move"), task("m2", "move"), task("s", "scan"))) == ["m1", "s"]
    assert h.status("m2") == "READY"
    assert h.dispatched(h.fail("m1", retryable=False)) == []  # mission fails: m2 is skipped, not started
    assert h.status("m2") == "SKIPPED"


def test_task_level_resources_add_to_the_kinds():
    h = Harness()
    assert h.dispatched(h.add(task("a", "scan", resources=["camera"]),
                              task("b", "plan", resources=["camera"]))) == ["a"]
    assert h.dispatched(h.succeed("a")) == ["b"]


def test_higher_priority_task_preempts_cancel_first_then_start_and_requeues_the_preempted():
    h = Harness()
    assert h.dispatched(h.add(task("patrol", "move", priority=1))) == ["patrol"]
    h.scheduler.add_tasks("m1", [task("return_home", "move", priority=10)])
    commands = h.commands()
    assert cancels(commands) == ["patrol"] and h.dispatched(commands) == []  # never both at once
    assert h.status("patrol") == "CANCELING"
    assert h.dispatched(h.confirm_cancel("patrol")) == ["return_home"]
    patrol = h.task("patrol")
    assert patrol.status == TaskStatus.READY and patrol.preemptions == 1 and patrol.retries_used == 0
    assert h.dispatched(h.succeed("return_home")) == ["patrol"]
    assert h.task("patrol").attempt == 2


def test_no_preemption_of_an_equal_or_higher_priority_holder():
    h = Harness()
    h.add(task("a", "move", priority=5))
    h.scheduler.add_tasks("m1", [task("b", "move", priority=5)])
    assert h.commands() == []
    assert h.dispatched(h.succeed("a")) == ["b"]


def test_preemption_waits_when_any_holder_outranks_the_newcomer():
    h = Harness()
    h.add(task("hi", "move", priority=9), task("lo", "scan", priority=1, resources=["camera"]))
    h.scheduler.add_tasks("m1", [task("mid", "move", priority=5, resources=["camera"])])
    assert h.commands() == []  # cancelling 'lo' alone would not let 'mid' start


def test_a_preempted_task_that_finishes_before_the_cancel_lands_succeeds():
    h = Harness()
    h.add(task("patrol", "move", priority=1))
    h.scheduler.add_tasks("m1", [task("urgent", "move", priority=10)])
    h.commands()
    assert h.dispatched(h.succeed("patrol", {"position": [1, 2]})) == ["urgent"]
    assert h.status("patrol") == "SUCCEEDED"


def test_missions_compete_by_task_priority_for_a_shared_resource():
    h = Harness()
    h.add(task("survey", "move", priority=1), id="routine")
    h.scheduler.add_mission(mission("alert", task("intercept", "move", priority=8)))
    assert cancels(h.commands()) == ["survey"]
    assert h.dispatched(h.confirm_cancel("survey", mission_id="routine")) == ["intercept"]


def test_failed_attempts_retry_with_exponential_backoff_then_fail():
    h = Harness()
    h.add(task("flaky", retry={"max_retries": 2, "initial_backoff": 1.0, "backoff_multiplier": 2.0}))
    h.fail("flaky")
    assert h.status("flaky") == "RETRY_WAIT"
    assert "retry 1/2 in 1 s" in h.task("flaky").message
    assert h.dispatched(h.advance(0.99)) == []
    assert h.dispatched(h.advance(0.01)) == ["flaky"]
    h.fail("flaky")
    assert h.dispatched(h.advance(1.99)) == []
    assert h.dispatched(h.advance(0.01)) == ["flaky"]
    h.fail("flaky", "still broken")
    assert h.status("flaky") == "FAILED" and h.task("flaky").attempt == 3
    assert h.mission_status() == "FAILED"
    assert "task 'flaky' failed: still broken" in h.scheduler.missions["m1"].message


def test_backoff_is_capped_by_max_backoff():
    h = Harness()
    h.add(task("t", retry={"max_retries": 5, "initial_backoff": 1.0, "backoff_multiplier": 10.0, "max_backoff": 3.0}))
    h.fail("t")
    h.advance(1.0)
    h.fail("t")
    assert "in 3 s" in h.task("t").message


def test_a_non_retryable_failure_is_final_at_once():
    h = Harness()
    h.add(task("t", retry={"max_retries": 5}))
    h.fail("t", "parameters.speed: must be positive", retryable=False)
    assert h.status("t") == "FAILED" and h.task("t").retries_used == 0


def test_final_failure_skips_dependents_fails_the_mission_and_cancels_what_runs():
    h = Harness()
    h.add(task("nav", "move"), task("scan", depends_on=["nav"]), task("report", depends_on=["scan"]),
          task("calc", "plan"), task("later", "plan", depends_on=["calc"]))
    commands = h.fail("nav", "blocked path", retryable=False)
    assert cancels(commands) == ["calc"]
    assert [h.status(t) for t in ("scan", "report", "later")] == ["SKIPPED"] * 3
    assert h.mission_status() == "RUNNING"  # until the canceled attempt has stopped
    h.confirm_cancel("calc")
    assert h.status("calc") == "CANCELED"
    assert h.mission_status() == "FAILED"


def test_optional_task_failure_skips_its_dependents_but_the_mission_succeeds():
    h = Harness()
    h.add(task("photo", optional=True), task("upload", depends_on=["photo"]), task("nav", "move"))
    h.fail("photo", retryable=False)
    assert h.status("upload") == "SKIPPED"
    h.succeed("nav")
    assert h.mission_status() == "SUCCEEDED"
    assert h.scheduler.missions["m1"].message == "1 succeeded, 1 failed, 1 skipped"


def test_timeout_cancels_the_attempt_then_retries_it():
    h = Harness()
    h.add(task("t", timeout=5.0, retry={"max_retries": 1, "initial_backoff": 0.5}))
    assert cancels(h.advance(5.0)) == ["t"]
    assert h.status("t") == "CANCELING"
    h.confirm_cancel("t")
    assert h.status("t") == "RETRY_WAIT" and "timed out after 5 s" in h.task("t").message
    assert h.dispatched(h.advance(0.5)) == ["t"]
    assert cancels(h.advance(4.9)) == []  # a fresh attempt gets the whole timeout again


def test_feedback_arriving_after_a_timeout_does_not_replace_the_reason():
    h = Harness()
    h.add(task("t", timeout=1.0))
    h.advance(1.0)
    t = h.task("t")
    h.scheduler.task_feedback(t, t.attempt, 0.5, "19.5 s left")  # sent by the engine before it saw the cancel
    h.confirm_cancel("t")
    assert h.status("t") == "FAILED" and h.task("t").message == "timed out after 1 s"


def test_kind_default_timeout_applies_when_the_task_gives_none():
    h = Harness()
    h.add(task("t", "slow"))
    assert cancels(h.advance(10.0)) == ["t"]


def test_deadline_passing_fails_a_running_task_once_it_stopped():
    h = Harness()
    h.add(task("t", deadline=h.clock.now + 3, retry={"max_retries": 3}))
    assert cancels(h.advance(3.0)) == ["t"]
    h.confirm_cancel("t")
    assert h.status("t") == "FAILED" and h.task("t").message == "missed its deadline"
    assert h.scheduler.missed_deadlines == 1


def test_deadline_passing_fails_a_task_that_never_started():
    h = Harness()
    h.add(task("a", "move", priority=1), task("b", "move", deadline=h.clock.now + 2))
    h.advance(2.0)
    assert h.status("b") == "FAILED"
    assert h.scheduler.missed_deadlines == 1


def test_a_result_reference_is_resolved_when_the_task_starts():
    h = Harness()
    h.add(task("plan", "plan"), task("go", "move", depends_on=["plan"],
                                     parameters={"order": {"$result": "plan.order"},
                                                 "first": {"$result": "plan.order.0"}, "speed": 2}))
    [dispatch] = h.succeed("plan", {"order": [2, 0, 1]})
    assert isinstance(dispatch, Dispatch)
    assert dispatch.parameters == {"order": [2, 0, 1], "first": 2, "speed": 2}


def test_a_reference_to_a_missing_result_key_fails_the_task_without_retry():
    h = Harness()
    h.add(task("plan", "plan"), task("go", "move", depends_on=["plan"], retry={"max_retries": 3},
                                     parameters={"order": {"$result": "plan.ordering"}}))
    h.succeed("plan", {"order": [1]})
    assert h.status("go") == "FAILED"
    assert "plan.ordering does not exist in the result of 'plan'" in h.task("go").message


def test_canceling_a_running_task_waits_for_its_engine_and_skips_dependents():
    h = Harness()
    h.add(task("nav", "move"), task("scan", depends_on=["nav"]), task("other"))
    h.scheduler.cancel_task("m1", "nav", "operator")
    assert cancels(h.commands()) == ["nav"]
    assert h.status("nav") == "CANCELING"
    h.confirm_cancel("nav")
    assert h.status("nav") == "CANCELED" and h.status("scan") == "SKIPPED"
    h.succeed("other")
    assert h.mission_status() == "SUCCEEDED"  # a canceled task is dropped, not failed


def test_canceling_a_task_that_has_not_started_takes_effect_at_once():
    h = Harness()
    h.add(task("a", "move"), task("b", "move"))
    h.scheduler.cancel_task("m1", "b")
    assert h.status("b") == "CANCELED" and h.commands() == []


def test_cancel_errors_are_readable():
    h = Harness()
    h.add(task("a"))
    with pytest.raises(LookupError, match="mission 'm1' has no task 'zz'"):
        h.scheduler.cancel_task("m1", "zz")
    with pytest.raises(LookupError, match="no mission 'nope'"):
        h.scheduler.cancel_mission("nope")
    h.succeed("a")
    with pytest.raises(ValueError, match="already ended"):
        h.scheduler.cancel_task("m1", "a")


def test_canceling_a_mission_cancels_every_task_and_ends_canceled():
    h = Harness()
    h.add(task("nav", "move"), task("scan", depends_on=["nav"]), task("calc", "plan", retry={"max_retries": 2}))
    h.fail("calc")  # waiting to retry
    h.scheduler.cancel_mission("m1", "weather")
    assert cancels(h.commands()) == ["nav"]
    assert h.mission_status() == "CANCELING"
    assert h.status("scan") == "CANCELED" and h.status("calc") == "CANCELED"
    h.confirm_cancel("nav")
    assert h.mission_status() == "CANCELED"
    assert h.dispatched(h.advance(60)) == []  # the pending retry does not fire


def test_a_task_whose_engine_is_lost_waits_and_is_redispatched_when_it_returns():
    h = Harness()
    h.add(task("nav", "move", timeout=30), task("scan"))
    h.scheduler.engine_lost("/io")
    assert h.status("nav") == "READY" and "engine /io lost" in h.task("nav").message
    assert h.dispatched(h.advance(10)) == []
    h.scheduler.set_routes(h.scheduler.routes, {"/io", "/quantum"})
    assert sorted(h.dispatched()) == ["nav", "scan"]
    assert h.task("nav").attempt == 2 and h.task("nav").retries_used == 0


def test_a_task_on_a_silent_engine_keeps_running_and_is_not_sent_again_when_the_engine_beats_again():
    h = Harness()
    h.add(task("nav", "move", timeout=30), task("scan"))
    h.commands()
    h.scheduler.engine_silent("/io", "no heartbeat for 5.1 s")
    nav = h.task("nav")
    assert nav.status == TaskStatus.RUNNING and "engine /io lost (no heartbeat for 5.1 s)" in nav.message
    h.add(task("later", "move"), id="m2")
    assert h.dispatched(h.advance(1)) == []  # nothing new goes to it
    h.scheduler.set_routes(h.scheduler.routes, {"/io", "/quantum"})
    assert h.dispatched() == [] and nav.attempt == 1 and "back" in nav.message
    assert h.dispatched(h.succeed("nav")) == ["later"] and h.status("nav") == "SUCCEEDED"


def test_a_silent_engine_that_restarts_or_is_gone_lost_its_attempts_and_they_run_again():
    h = Harness()
    h.add(task("nav", "move", timeout=30))
    h.scheduler.engine_silent("/io", "no heartbeat for 5.1 s")
    h.scheduler.engine_lost("/io")
    assert h.status("nav") == "READY" and h.task("nav").engine_losses == 1
    h.scheduler.set_routes(h.scheduler.routes, {"/io", "/quantum"})
    assert h.dispatched() == ["nav"] and h.task("nav").attempt == 2


def test_a_task_that_times_out_on_a_silent_engine_ends_once_the_engine_is_gone():
    h = Harness()
    h.add(task("nav", "move", timeout=30))
    h.scheduler.engine_silent("/io", "no heartbeat for 5.1 s")
    assert cancels(h.advance(30)) == ["nav"] and h.status("nav") == "CANCELING"
    h.scheduler.engine_lost("/io")
    assert h.status("nav") == "FAILED" and "timed out after 30 s" in h.task("nav").message


def test_an_engine_that_does_not_return_within_the_timeout_fails_the_attempt():
    h = Harness()
    h.add(task("nav", "move", timeout=30))
    h.scheduler.engine_lost("/io")
    h.advance(30)
    assert h.status("nav") == "FAILED"
    assert "engine /io did not return" in h.task("nav").message


def test_a_task_waits_for_an_engine_that_is_not_up_yet():
    h = Harness(engines=("/quantum",))
    assert h.dispatched(h.add(task("nav", "move"), task("p", "plan"))) == ["p"]
    assert h.status("nav") == "READY"
    h.scheduler.set_routes(h.scheduler.routes, {"/io", "/quantum"})
    assert h.dispatched() == ["nav"]


def test_reports_about_an_old_attempt_are_ignored():
    h = Harness()
    h.add(task("t", retry={"max_retries": 1, "initial_backoff": 0}))
    t = h.task("t")
    h.fail("t")
    h.advance(0)
    assert t.attempt == 2
    h.scheduler.task_succeeded(t, 1, {})  # late report from attempt 1
    assert t.status == TaskStatus.RUNNING


def test_tasks_added_to_a_running_mission_can_depend_on_finished_tasks():
    h = Harness()
    h.add(task("plan", "plan"), task("hold", "move"))
    h.succeed("plan", {"order": [3, 1]})
    h.scheduler.add_tasks("m1", [task("go", "move", priority=5, depends_on=["plan"],
                                      parameters={"order": {"$result": "plan.order"}})])
    assert cancels(h.commands()) == ["hold"]
    [dispatch] = h.confirm_cancel("hold")
    assert dispatch.task.id == "go" and dispatch.parameters == {"order": [3, 1]}


def test_tasks_cannot_be_added_to_a_finished_mission():
    h = Harness()
    h.add(task("a"))
    h.succeed("a")
    with pytest.raises(ValueError, match="mission 'm1' is succeeded"):
        h.scheduler.add_tasks("m1", [task("b")])


def test_changes_list_each_changed_task_once():
    h = Harness()
    h.scheduler.take_changes()
    h.add(task("a"), task("b", depends_on=["a"]))
    changes = h.scheduler.take_changes()
    assert [m.id for m in changes.missions] == ["m1"]
    assert sorted(t.id for t in changes.tasks) == ["a", "b"]
    h.succeed("a")
    assert sorted(t.id for t in h.scheduler.take_changes().tasks) == ["a", "b"]
    changes = h.scheduler.take_changes()
    assert (changes.missions, changes.tasks, changes.durable) == ([], [], [])


def test_progress_is_published_but_not_journaled():
    """Feedback (~20 a second per motion task) changes what state messages show, not what a restart needs."""
    h = Harness()
    h.add(task("a"))
    h.scheduler.take_changes()
    t = h.task("a")
    h.scheduler.task_started(t, t.attempt)
    h.scheduler.task_feedback(t, t.attempt, 0.5, "halfway")
    changes = h.scheduler.take_changes()
    assert [c.id for c in changes.tasks] == ["a"] and changes.durable == []
    h.succeed("a")
    assert [c.id for c in h.scheduler.take_changes().durable] == ["a"]


def test_a_task_that_keeps_taking_its_engine_down_fails_instead_of_being_sent_again():
    h = Harness()
    h.scheduler.max_engine_losses = 3
    assert h.dispatched(h.add(task("poison", "plan"), task("after", "plan", depends_on=["poison"]))) == ["poison"]
    for loss in (1, 2):
        h.scheduler.engine_lost("/quantum")
        assert h.status("poison") == "READY"
        h.scheduler.set_routes(ROUTES, {"/io", "/quantum"})
        assert h.dispatched() == ["poison"]
    h.scheduler.engine_lost("/quantum")
    assert h.status("poison") == "FAILED"
    assert "engine lost 3 times while running this task (last: /quantum)" in h.task("poison").message
    assert h.status("after") == "SKIPPED" and h.mission_status() == "FAILED"
    h.scheduler.set_routes(ROUTES, {"/io", "/quantum"})
    assert h.dispatched() == []


def test_an_engine_loss_that_is_not_the_tasks_doing_is_counted_but_forgiven_below_the_limit():
    h = Harness()
    h.scheduler.max_engine_losses = 3
    h.add(task("a", "plan"))
    h.dispatched()
    h.scheduler.engine_lost("/quantum")
    h.scheduler.set_routes(ROUTES, {"/io", "/quantum"})
    assert h.dispatched() == ["a"]
    h.succeed("a")
    assert h.status("a") == "SUCCEEDED" and h.task("a").engine_losses == 1


def test_at_most_max_running_per_engine_attempts_run_on_one_engine_and_the_rest_follow_in_order():
    h = Harness()
    h.scheduler.max_running_per_engine = 2
    retry = {"max_retries": 1, "initial_backoff": 60.0}
    assert h.dispatched(h.add(*(task(f"t{i}", "scan", priority=i, retry=retry) for i in range(6)))) == ["t5", "t4"]
    assert h.scheduler.waiting_for_place() == 4
    assert h.dispatched(h.succeed("t5")) == ["t3"]
    assert h.dispatched(h.fail("t4")) == ["t2"]  # any end of an attempt frees its place
    assert h.dispatched(h.add(task("urgent", "plan"), id="m2")) == ["urgent"]  # another engine: not limited


def test_a_relative_deadline_counts_from_acceptance_on_the_schedulers_clock():
    h = Harness()
    h.clock.now = 5000.0
    h.add(task("a", deadline_in=30.0))
    assert h.task("a").spec.deadline == 5030.0 and h.task("a").spec.deadline_in is None
    h.advance(31.0)
    assert h.status("a") == "CANCELING" and h.task("a").message == "missed its deadline"


def test_mission_status_follows_its_tasks():
    h = Harness(engines=())
    h.add(task("a"))
    assert h.scheduler.missions["m1"].status == MissionStatus.ACCEPTED
    h.scheduler.set_routes(h.scheduler.routes, {"/io"})
    h.commands()
    assert h.mission_status() == "RUNNING"
    h.succeed("a")
    assert h.mission_status() == "SUCCEEDED" and h.scheduler.missions["m1"].finished_at == h.clock.now


# -- Readiness: a kind announced not ready holds its tasks; a refusal as not ready costs no retry --------------

def not_ready(routes, kind: str, why: str):
    from dataclasses import replace

    route = routes[kind]
    return {**routes, kind: replace(route, spec=replace(route.spec, ready=False, not_ready=why))}


def test_a_task_whose_kind_is_not_ready_waits_for_it_then_runs():
    h = Harness(routes=not_ready(ROUTES, "move", "no odometry yet"))
    assert h.dispatched(h.add(task("nav", "move", timeout=30), task("p", "plan"))) == ["p"]
    assert h.status("nav") == "READY" and "no odometry yet" in h.task("nav").message
    h.advance(10)
    h.scheduler.set_routes(ROUTES, {"/io", "/quantum"})
    assert h.dispatched() == ["nav"]
    nav = h.task("nav")
    assert nav.retries_used == 0 and nav.attempt == 1


def test_a_refusal_as_not_ready_uses_no_retry_and_the_task_runs_once_the_kind_is_ready():
    """Hold a task refused as not ready, with no retry used, and send it once its kind is ready.

    The finding: a restarted io_engine announced its kinds, took return_home within 70 ms and failed it at once
    ("no fresh odometry"); the mission failed with the drone in the air.
    """
    h = Harness()
    h.add(task("home", "move", timeout=60))
    nav = h.task("home")
    h.scheduler.set_routes(not_ready(ROUTES, "move", "no odometry yet"), {"/io", "/quantum"})  # as the node does
    h.scheduler.task_not_ready(nav, 1, "not ready: no odometry yet")
    assert nav.status == TaskStatus.READY and nav.retries_used == 0 and h.dispatched() == []
    h.advance(5)
    h.scheduler.set_routes(ROUTES, {"/io", "/quantum"})
    assert h.dispatched() == ["home"]
    assert h.dispatched(h.succeed("home")) == [] and h.mission_status() == "SUCCEEDED"


def test_waiting_for_readiness_is_bounded_by_the_tasks_timeout_and_says_why():
    h = Harness(routes=not_ready(ROUTES, "move", "battery state unknown"))
    h.add(task("nav", "move", timeout=30, retry={"max_retries": 0}))
    h.advance(29)
    assert h.status("nav") == "READY"
    h.advance(1)
    assert h.status("nav") == "FAILED"
    assert "timed out after 30 s waiting for move to be ready on /io: battery state unknown" in h.task("nav").message


def test_a_task_refused_as_not_ready_that_is_canceled_meanwhile_ends_canceled():
    h = Harness()
    h.add(task("nav", "move", timeout=30))
    nav = h.task("nav")
    h.scheduler.cancel_task("m1", "nav", "operator")
    h.scheduler.task_not_ready(nav, 1, "not ready: no odometry yet")
    assert nav.status == TaskStatus.CANCELED


def test_the_scheduler_is_idle_only_when_every_mission_has_finished():
    h = Harness()
    assert h.scheduler.idle()  # nothing at all: the mission engine's tick may sleep
    h.add(task("flaky", retry={"max_retries": 1, "initial_backoff": 1.0}))
    assert not h.scheduler.idle()
    h.fail("flaky")
    assert h.status("flaky") == "RETRY_WAIT" and not h.scheduler.idle()  # a retry waits on the tick
    h.advance(1.0)
    h.succeed("flaky")
    assert h.mission_status() == "SUCCEEDED" and h.scheduler.idle()
