"""An engine's readiness reaches those it refused (EngineNode, TaskServer), in one process over real DDS."""

import pytest

TIMEOUT = 20.0


@pytest.fixture
def engine(ros_probe):
    from rclpy.parameter import Parameter

    from qai_edge.engine_node import EngineNode
    from qai_edge.tasks import ServedKind, TaskKindSpec

    class Shy(EngineNode):
        def __init__(self):
            # No timer of its own in the test's time: the test calls publish_heartbeat().
            super().__init__("shy_engine", context=ros_probe.context, namespace="/readiness", parameter_overrides=[
                Parameter("announce_period", value=600.0), Parameter("heartbeat_period", value=60.0)])
            self.why = ""
            self.serve([ServedKind(TaskKindSpec("shy"), lambda request, context: {}, lambda: self.why)])
            self.start()

    node = Shy()
    ros_probe.executor.add_node(node)
    try:
        yield node
    finally:
        ros_probe.executor.remove_node(node)
        node.destroy_node()


def test_a_not_ready_blip_between_two_heartbeats_is_announced_over_to_the_task_it_refused(engine, ros_probe):
    """Announce again after refusing a task as not ready, even when ready again by the next heartbeat.

    The finding (CI, a loaded machine): odometry went stale for 0.6 s between two heartbeats; the io_engine
    refused the takeoff as not ready, so the mission engine held navigate as not ready until an announcement
    said otherwise, and none came (readiness at each heartbeat was what had been announced): the takeoff
    timed out.
    """
    from rclpy.action import ActionClient

    from qai_edge.convert import kind_from_msg
    from qai_edge.engine_node import CAPABILITIES_TOPIC
    from qai_edge.qos import ACTION_QOS_ARGUMENTS, CAPABILITIES_QOS
    from qai_interfaces.action import RunTask
    from qai_interfaces.msg import EngineCapabilities

    heard = []
    topic = f"/readiness/{CAPABILITIES_TOPIC}"
    ros_probe.node.create_subscription(EngineCapabilities, topic, heard.append, CAPABILITIES_QOS)
    client = ActionClient(ros_probe.node, RunTask, engine.task_action_name(), **ACTION_QOS_ARGUMENTS)
    ros_probe.spin_until(lambda: heard and client.server_is_ready(), TIMEOUT, "the engine's announcement")
    assert [kind_from_msg(k).ready for k in heard[-1].kinds] == [True]

    engine.why = "odometry stale (0.6 s old)"  # a blip: no heartbeat sees it
    goal = RunTask.Goal()
    goal.mission_id, goal.task.id, goal.task.kind = "m", "takeoff", "shy"
    sent = client.send_goal_async(goal)
    ros_probe.spin_until(sent.done, TIMEOUT, "the goal accepted")
    result = sent.result().get_result_async()
    ros_probe.spin_until(result.done, TIMEOUT, "the refusal")
    assert result.result().result.not_ready and "odometry stale" in result.result().result.message
    engine.why = ""

    count = len(heard)
    engine.publish_heartbeat()
    ros_probe.spin_until(lambda: len(heard) > count, TIMEOUT, "an announcement after the refusal")
    assert [kind_from_msg(k).ready for k in heard[-1].kinds] == [True]
    engine.publish_heartbeat()  # and only once
    ros_probe.spin_for(0.3)
    assert len(heard) == count + 1


def test_a_goal_the_engine_has_already_is_followed_to_its_result_not_failed_as_rejected(engine, ros_probe):
    """A second copy of a goal (the same id) is refused by rclpy as a duplicate; the client follows the goal.

    The finding (make test, a loaded machine): after an io_engine restart, a return-home goal came back
    "rejected the goal" and the rescue mission failed: our task servers accept every goal, so the refusal
    could only be rclpy's for an id it tracks already (a request delivered twice). Before the fix the second
    send ended "rejected", not retryable.
    """
    import uuid

    from qai_edge.task_client import TaskClient
    from qai_interfaces.action import RunTask

    outcomes, accepted = {}, []
    client = TaskClient(ros_probe.node, None, accepted.append, lambda *args: None,
                        lambda token, outcome: outcomes.__setitem__(token, outcome))
    client.connect("shy", engine.task_action_name())
    ros_probe.spin_until(lambda: client.reachable("shy"), TIMEOUT, "the engine's task action")
    goal = RunTask.Goal()
    goal.mission_id, goal.task.id, goal.task.kind = "m", "t", "shy"
    goal_id = uuid.uuid4().hex
    client.send("shy", goal_id, goal, "first")
    ros_probe.spin_until(lambda: "first" in outcomes, TIMEOUT, "the first copy's result")
    client.send("shy", goal_id, goal, "again")
    ros_probe.spin_until(lambda: "again" in outcomes, TIMEOUT, "the second copy's outcome")
    assert outcomes["first"].status == "succeeded"
    assert outcomes["again"].status == "succeeded" and outcomes["again"].reattached is False, outcomes["again"]
    assert accepted == ["first", "again"]
    client.destroy()
