"""MissionClient's view of a mission: it never goes back to an older snapshot than one it showed."""

from qai_interfaces.msg import MissionState, TaskState
from qai_mission.client import MissionClient, _Tracked
from qai_mission.model import MissionStatus, TaskStatus


def state(stamp: float, task_state: int) -> MissionState:
    msg = MissionState(mission_id="m1", state=MissionStatus.RUNNING,
                       tasks=[TaskState(task_id="home", kind="return_home", state=task_state, attempt=1)])
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp), int(stamp % 1 * 1e9)
    return msg


def test_an_older_mission_state_arriving_late_is_not_applied():
    client = MissionClient(node_name="client_under_test")
    try:
        client._missions["m1"] = _Tracked("m1")
        client._on_state(state(100.5, TaskStatus.RUNNING))
        client._on_state(state(100.2, TaskStatus.PENDING))  # delayed, older
        assert client.feedback("m1").tasks[0].state == TaskStatus.RUNNING
        client._on_state(state(100.9, TaskStatus.SUCCEEDED))
        assert client.feedback("m1").tasks[0].state == TaskStatus.SUCCEEDED
    finally:
        client.close()
