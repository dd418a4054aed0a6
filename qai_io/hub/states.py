"""Mission and task state names for the hub side, which has no ROS. No rclpy import.

A test keeps them equal to qai_interfaces' MissionState and TaskState constants.
"""

MISSION_STATES = {0: "ACCEPTED", 1: "RUNNING", 2: "CANCELING", 10: "SUCCEEDED", 11: "FAILED", 12: "CANCELED",
                  13: "REJECTED"}
TASK_STATES = {0: "PENDING", 1: "READY", 2: "RUNNING", 3: "CANCELING", 4: "RETRY_WAIT", 10: "SUCCEEDED",
               11: "FAILED", 12: "CANCELED", 13: "SKIPPED"}
TERMINAL = 10  # states >= this are final, for missions and tasks alike
DIAGNOSTIC_LEVELS = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}


def mission_state_name(state) -> str:
    return MISSION_STATES.get(state, str(state))


def task_state_name(state) -> str:
    return TASK_STATES.get(state, str(state))
