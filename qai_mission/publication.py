"""When mission states go out, and with which tasks. No rclpy import.

A mission's state (on `mission_states`, and as its ExecuteMission feedback) goes out at once when the
mission's own state changes, otherwise at most every `period` seconds while its tasks change (a motion
task reports ~20 times a second). A message carries the tasks that changed since the mission's previous
message, not all of them: a 5,000-task mission costs what changed, not 5,000 task states each time. The
first message of a mission and its last (terminal) one carry every task, so a late subscriber and a
result always see the whole mission; get_mission_state always answers with every task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable


@dataclass
class Update:
    mission: Any  # scheduler Mission
    tasks: list  # the tasks the message carries
    full: bool  # every task (first or terminal message)


@dataclass
class _Pending:
    tasks: dict = field(default_factory=dict)  # task id -> task, changed since the last message
    forced: bool = False
    sent_at: float | None = None


class StatePublication:
    def __init__(self, period: float):
        self.period = period
        self._pending: dict[str, _Pending] = {}
        self._sent: dict[str, float] = {}  # mission id -> when its last message went out

    def changed(self, missions: Iterable[Any], tasks: Iterable[Any]) -> None:
        for task in tasks:
            self._pending.setdefault(task.mission.id, _Pending()).tasks[task.id] = task
        for mission in missions:
            self._pending.setdefault(mission.id, _Pending()).forced = True

    def due(self, now: float, missions: dict) -> list[Update]:
        """Return the messages to send now; `missions` maps id -> scheduler Mission (gone ones are dropped)."""
        updates = []
        for mission_id in list(self._pending):
            pending = self._pending[mission_id]
            sent = self._sent.get(mission_id)
            if not pending.forced and sent is not None and now - sent < self.period:
                continue
            del self._pending[mission_id]
            mission = missions.get(mission_id)
            if mission is None:
                continue
            full = sent is None or mission.status.terminal
            updates.append(Update(mission, list(mission.tasks.values()) if full else list(pending.tasks.values()),
                                  full))
            if mission.status.terminal:
                self._sent.pop(mission_id, None)
            else:
                self._sent[mission_id] = now
        return updates

    def next_due(self) -> float | None:
        """When the earliest throttled message falls due (None: nothing waits)."""
        times = [self._sent[m] + self.period for m, p in self._pending.items() if not p.forced and m in self._sent]
        return min(times) if times else None
