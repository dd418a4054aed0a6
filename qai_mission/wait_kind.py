"""The kind the mission engine serves itself: wait a number of seconds on its clock. No rclpy import."""

from __future__ import annotations

from qai_edge.tasks import TaskKindSpec

WAIT_KIND = TaskKindSpec(
    name="wait", description="Wait a number of seconds (on the ROS clock of the mission engine).",
    parameters_schema={"type": "object", "properties": {"seconds": {"type": "number", "minimum": 0,
                                                                    "maximum": 2**31 - 1}},
                       "required": ["seconds"], "additionalProperties": False},
    result_keys=("waited",))


def run_wait(request, context):
    """Wait `seconds` on the engine's clock, reporting what is left."""
    seconds = float(request.parameters["seconds"])
    deadline = context.now() + seconds
    while (left := deadline - context.now()) > 0:
        context.feedback(progress=1.0 - left / seconds if seconds else 1.0, status=f"{left:.1f} s to go")
        context.sleep(min(left, 0.5))
    return {"waited": seconds}
