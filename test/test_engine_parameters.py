"""Parameters mean what they say (EngineNode).

A writable one is checked against its spec when set and takes effect; a read-only one is refused; a node that
leaves a writable parameter unhandled does not start.
"""

import pytest

from qai_edge.params import ParamSpec

SPECS = (
    ParamSpec("mode", "fast", "a choice", choices=("fast", "careful")),
    ParamSpec("gain", 1.0, "applied by a callback", min=0.0, max=10.0),
    ParamSpec("limit", 5, "read live", min=1, max=100),
    ParamSpec("frame", "odom", "read once", read_only=True),
)


@pytest.fixture
def engine(ros_probe):
    from qai_edge.engine_node import EngineNode

    class Probe(EngineNode):
        def __init__(self):
            super().__init__("parameter_probe", SPECS, context=ros_probe.context, namespace="/params")
            self.applied = []
            self.on_parameter("mode")
            self.on_parameter("gain", self.applied.append)
            self.on_parameter("limit")
            self.start()

    node = Probe()
    try:
        yield node
    finally:
        node.destroy_node()


def _set(node, name, value):
    from rclpy.parameter import Parameter

    return node.set_parameters([Parameter(name, value=value)])[0]


def test_a_writable_parameter_takes_effect_through_its_callback(engine):
    result = _set(engine, "gain", 2.5)
    assert result.successful, result.reason
    assert engine.applied == [2.5] and engine.param("gain") == 2.5


def test_a_value_outside_the_choices_is_refused_with_the_reason(engine):
    result = _set(engine, "mode", "reckless")
    assert not result.successful
    assert "mode" in result.reason and "fast, careful" in result.reason
    assert engine.param("mode") == "fast"
    assert _set(engine, "mode", "careful").successful


def test_a_value_outside_the_range_is_refused(engine):
    result = _set(engine, "gain", 11.0)
    assert not result.successful
    assert engine.param("gain") == 1.0 and engine.applied == []


def test_a_read_only_parameter_is_refused(engine):
    result = _set(engine, "frame", "map")
    assert not result.successful
    assert engine.param("frame") == "odom"


def test_the_announce_period_is_applied_at_run_time(engine):
    assert _set(engine, "announce_period", 0.25).successful
    assert engine._announce_timer.timer_period_ns == 250_000_000


def test_a_node_that_leaves_a_writable_parameter_unhandled_does_not_start(ros_probe):
    from qai_edge.engine_node import EngineNode

    class Careless(EngineNode):
        def __init__(self):
            super().__init__("careless", SPECS, context=ros_probe.context, namespace="/params")
            self.on_parameter("mode")
            self.start()

    with pytest.raises(RuntimeError, match="gain, limit"):
        Careless()


def test_a_value_given_at_start_outside_its_choices_stops_the_node_naming_it(ros_probe):
    """`ros2 run ... -p mode:=reckless` skips the profile check; the node itself refuses it."""
    from rclpy.parameter import Parameter

    from qai_edge.engine_node import EngineNode

    with pytest.raises(ValueError, match="parameter mode: must be one of: fast, careful; got 'reckless'"):
        EngineNode("started_wrong", SPECS, context=ros_probe.context, namespace="/params",
                   parameter_overrides=[Parameter("mode", value="reckless")])


def test_schema_errors_say_sizes_instead_of_echoing_huge_values():
    from qai_edge.tasks import TaskKindSpec

    spec = TaskKindSpec("navigate", parameters_schema={"type": "object", "properties": {
        "waypoints": {"type": "array", "maxItems": 100}}})
    (error,) = spec.parameter_errors({"waypoints": [[0, 0, 0]] * 100_000})
    assert error == "parameters.waypoints: 100000 items, more than the limit of 100"
