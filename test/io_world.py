"""The io_engine's core closed-loop with the vehicle model, in-process on a fake clock.

No ROS and no threads: the core's clocks are the simulation's time, and every wait of a task handler (the
motion loop's, a stop's, a scan's) advances the world: physics at 100 Hz, odometry at 50 Hz, the battery
at 2 Hz, the supervisor's tick at 5 Hz, as the node would deliver them. A handler runs to its end inside
`World.run`, deterministically, in milliseconds. Faults are set on the world (`odom_dropout`) or the model
(`model.battery_sag_v`).
"""

from __future__ import annotations

import math
import threading
from typing import Any, Callable, Mapping

from qai_edge.params import COMMON_PARAMETERS
from qai_edge.tasks import TaskContext, TaskFailed, TaskRequest
from qai_io.core import Clocks, IoCore
from qai_io.motion import Pose
from qai_io.parameters import PARAMETERS
from qai_sim.vehicle_model import VehicleConfig, VehicleModel

START = 1000.0  # s: where both fake clocks start
PHYSICS_DT = 0.01
PERIODS = {"odom": 2, "battery": 50, "tick": 20}  # in physics steps: 50 Hz, 2 Hz, 5 Hz


def default_parameters(**overrides) -> dict[str, Any]:
    values = {spec.name: spec.default for spec in (*COMMON_PARAMETERS, *PARAMETERS)}
    unknown = set(overrides) - set(values)
    assert not unknown, f"not io_engine parameters: {unknown}"
    return {**values, **overrides}


class FakeContext(TaskContext):
    """A task context whose sleep advances the world; `cancel_when` requests a cancel once it holds."""

    def __init__(self, world: "World", cancel_when: Callable[[], bool] | None = None):
        super().__init__(lambda *args: world.feedback.append(args), clock=lambda: world.time)
        self.world = world
        world.cancel_when = (lambda: cancel_when() and (self.request_cancel() or True)) if cancel_when else None

    def sleep(self, seconds: float) -> None:
        self.world.advance(seconds)
        self.check_canceled()


class World:
    def __init__(self, parameters: Mapping[str, Any] | None = None, position=(0.0, 0.0, 0.0),
                 config: VehicleConfig | None = None, home_store=None, **overrides):
        self.parameters = default_parameters(**{**(parameters or {}), **overrides})
        self.model = VehicleModel(config or VehicleConfig(kind=self.parameters["vehicle_kind"], seed=1),
                                  position=position)
        self._steps = 0  # time counts whole physics steps, so periods stay exact
        self.odom_dropout = False
        self.battery_dropout = False
        self.commands: list = []
        self.notices: list = []
        self.feedback: list = []
        self.cancel_when: Callable[[], bool] | None = None
        self._next = dict.fromkeys(PERIODS, 0)
        clocks = Clocks(steady=lambda: self.time, ros=lambda: self.time, sleep=self.advance, wait=self.wait)
        self.core = IoCore(self.parameters.__getitem__, clocks, self._on_command, self.notices.append, home_store)
        self.advance(0.1)  # the first readings

    # -- The world's side --------------------------------------------------------------------------

    def _on_command(self, command) -> None:
        self.commands.append(command)
        self.model.command(*command)

    def _deliver(self, stream: str) -> None:
        if stream == "tick":
            self.core.tick()
        elif stream == "odom" and not self.odom_dropout:
            position, yaw, body, _ = self.model.odometry()
            vx, vy, vz = self.model.state.velocity
            speed = math.sqrt(sum(v * v for v in body))
            self.core.on_odometry({"x": position[0], "y": position[1], "z": position[2], "yaw": yaw, "speed": speed},
                                  Pose(*position, yaw, vx, vy, vz), self.time)
        elif stream == "battery" and not self.battery_dropout:
            voltage, current, fraction = self.model.battery_reading()
            self.core.on_battery({"voltage": voltage, "percentage": fraction, "current": -current})

    @property
    def time(self) -> float:
        return START + self._steps * PHYSICS_DT

    def advance(self, seconds: float) -> None:
        """Step the world by `seconds` (at least one physics step, as a real wait takes some time)."""
        for _ in range(max(1, round(seconds / PHYSICS_DT))):
            self.model.step(PHYSICS_DT)
            self._steps += 1
            for stream, period in PERIODS.items():
                if self._steps >= self._next[stream]:
                    self._next[stream] += period
                    self._deliver(stream)
            if self.cancel_when is not None:
                self.cancel_when()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        if not event.is_set():
            self.advance(seconds)
        return event.is_set()

    # -- The task server's side --------------------------------------------------------------------

    def run(self, kind: str, parameters: Mapping[str, Any] | None = None, timeout: float | None = None,
            cancel_when: Callable[[], bool] | None = None) -> dict:
        """Run one task as the RunTask server would: its schema first, then its handler."""
        served = {served.spec.name: served for served in self.core.served_kinds()}[kind]
        parameters = dict(parameters or {})
        errors = served.spec.parameter_errors(parameters)
        if errors:
            raise TaskFailed("; ".join(errors), retryable=False)
        request = TaskRequest("m", "t", kind, 1, parameters, timeout)
        return served.handler(request, FakeContext(self, cancel_when))

    def events(self, code: str = "battery_reserve") -> list:
        return [n for n in self.notices if n.publish and n.code == code]

    @property
    def position(self) -> tuple[float, float, float]:
        return tuple(self.model.state.position)
