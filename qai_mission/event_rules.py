"""Event rules: an event code on `events` starts a mission from a file. No rclpy import.

A rule is 'code: mission file' (relative paths are in the installed config/). Templates are read once, at
start, with the same bounds and checks as any mission file; their relative deadlines stay relative, so
`deadline_in` counts from when the event fires, not from when the node started. While a mission started
from a file runs, an event asking for the same file starts nothing more (the I/O engine repeats
battery_reserve until a return home runs; battery_reserve and endurance_low may both ask for it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from qai_edge.paths import share_file
from qai_mission.model import MissionSpec


def config_path(path: str) -> Path:
    """Return a rule's mission file: as given when absolute, else in the installed config/."""
    return Path(path) if Path(path).is_absolute() else share_file("config", path)


@dataclass(frozen=True)
class EventRule:
    code: str
    path: Path
    template: MissionSpec


class EventRules:
    def __init__(self, rules: Sequence[EventRule]):
        self.rules = {rule.code: rule for rule in rules}
        self._running: dict[Path, str] = {}  # mission file -> id of the mission it started last

    @classmethod
    def parse(cls, rules: Sequence[str], resolve: Callable[[str], Path],
              load: Callable[[Path], MissionSpec]) -> "EventRules":
        """'code: path' rules; ValueError naming the rule when one is malformed or its file is bad."""
        parsed = []
        for index, rule in enumerate(rules):
            code, separator, path = (part.strip() for part in rule.partition(":"))
            if not separator or not code or not path:
                raise ValueError(f"event_missions[{index}]: expected 'code: mission file', got {rule!r}")
            file = resolve(path)
            try:
                parsed.append(EventRule(code, file, load(file)))
            except ValueError as error:
                raise ValueError(f"event_missions[{index}]: {error}") from None
        return cls(parsed)

    def mission_for(self, code: str, is_running: Callable[[str], bool]) -> MissionSpec | None:
        """Return the mission to start for an event, or None (no rule, or the rule's mission still runs)."""
        rule = self.rules.get(code)
        if rule is None:
            return None
        running = self._running.get(rule.path)
        if running is not None and is_running(running):
            return None
        return MissionSpec(f"{code}-{uuid.uuid4().hex[:6]}", rule.template.name or code, rule.template.tasks)

    def started(self, code: str, mission_id: str) -> None:
        self._running[self.rules[code].path] = mission_id
