"""Which engines are up and which kinds they serve: the mission engine's routing table. No rclpy import.

An engine announces itself on `engine_capabilities` (its kinds, its RunTask action, the time it started)
and beats on /diagnostics. It counts as up while its heartbeat is fresh and its action server is
reachable (a goal sent before the server is discovered would be lost). An engine that falls silent is
"lost": no new work goes to it, but what it runs is not given up, since a process stalled by a loaded CPU
beats again with its goals still running. Only a new start stamp (it restarted) or a silence of
GONE_AFTER_TIMEOUTS timeouts ("gone") says that whatever it was running is gone. A kind belongs to the
first engine that announced it. A kind may be announced not ready (an I/O engine without odometry yet);
an engine that refuses a task as not ready marks its kind so until its next announcement says otherwise.

The node feeds announcements and heartbeats in, asks `check(now, reachable)` on a steady timer, and acts on
the transitions it returns. If that timer itself ran late (the process was stalled: heartbeats queued
but not yet read), no engine is declared lost until a full timeout after the stall, so a busy mission
engine does not mistake its own stall for every engine dying.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

from qai_edge.stall import StallHold
from qai_edge.tasks import TaskKindSpec
from qai_mission.model import KindRoute

UNREACHABLE_REPORT_AFTER = 10.0  # s: an announced engine still not reachable is worth a warning
GONE_AFTER_TIMEOUTS = 3  # a lost engine silent this many timeouts is gone: its goals are given up


@dataclass
class EngineInfo:
    name: str
    task_action: str = ""
    kinds: list[TaskKindSpec] = field(default_factory=list)
    stamp: tuple[int, int] | None = None  # start stamp of the announcement: a new one means a restart
    last_heartbeat: float | None = None  # steady seconds
    announced_at: float = 0.0
    up: bool = False
    lost: bool = False  # it was up and fell silent: its goals may still run; "gone" or a restart settles them
    unreachable_reported: bool = False


@dataclass(frozen=True)
class Announced:
    """What an announcement changed."""

    new: bool  # first time this engine was heard
    restarted: bool  # a new start stamp from an engine that was up or lost: its running tasks are gone
    action_changed: bool  # its RunTask action name changed (or appeared)
    kinds_changed: bool = False  # what it serves changed: a kind came or went, or became ready or not


@dataclass(frozen=True)
class Transition:
    engine: str
    kind: str  # "up", "lost" (silent: its goals may still run), "gone" (they are given up), "unreachable"
    detail: str = ""


class EngineRegistry:
    def __init__(self, timeout: float):
        self.timeout = timeout  # s without a heartbeat after which an engine counts as lost
        self.engines: dict[str, EngineInfo] = {}
        self._stall = StallHold(gap=timeout / 2, hold=timeout)  # we were stalled, not (necessarily) the engines

    def announce(self, engine: str, task_action: str, kinds: Sequence[TaskKindSpec], stamp: tuple[int, int],
                 now: float) -> Announced:
        info = self.engines.get(engine)
        new = info is None
        if new:
            info = self.engines[engine] = EngineInfo(engine)
        restarted = info.stamp is not None and stamp != info.stamp and (info.up or info.lost)
        action_changed = task_action != info.task_action
        kinds_changed = list(kinds) != info.kinds
        info.stamp, info.kinds, info.task_action = stamp, list(kinds), task_action
        info.announced_at = info.last_heartbeat = now
        if restarted:
            info.up = info.lost = info.unreachable_reported = False
        return Announced(new, restarted, action_changed, kinds_changed)

    def heartbeat(self, engine: str, now: float) -> None:
        info = self.engines.get(engine)
        if info is not None:
            info.last_heartbeat = now

    def check(self, now: float, reachable: Callable[[str], bool]) -> list[Transition]:
        """Return the up/lost/gone transitions since the last check.

        `reachable(engine)` says whether its action server is discovered.
        """
        self._stall.gap, self._stall.hold = self.timeout / 2, self.timeout
        self._stall.step(now)
        transitions = []
        for info in self.engines.values():
            fresh = info.last_heartbeat is not None and now - info.last_heartbeat < self.timeout
            alive = fresh and bool(info.task_action) and reachable(info.name)
            if alive and not info.up:
                info.up, info.lost = True, False
                info.unreachable_reported = True  # reachable: from now on, what is to say is lost or gone
                transitions.append(Transition(info.name, "up", ", ".join(k.name for k in info.kinds)))
            elif not alive and info.up and not self._stall.holding(now):
                info.up, info.lost = False, True
                age = now - info.last_heartbeat if info.last_heartbeat is not None else 0.0
                why = f"no heartbeat for {age:.1f} s" if not fresh else "its action server is gone"
                transitions.append(Transition(info.name, "lost", why))
            elif (info.lost and not fresh and not self._stall.holding(now)
                  and now - info.last_heartbeat >= GONE_AFTER_TIMEOUTS * self.timeout):
                info.lost = False
                transitions.append(Transition(info.name, "gone", f"no heartbeat for {now - info.last_heartbeat:.1f} s"))
            elif (not alive and not info.up and info.kinds and not info.unreachable_reported
                  and now - info.announced_at > UNREACHABLE_REPORT_AFTER):
                info.unreachable_reported = True
                transitions.append(Transition(info.name, "unreachable", (
                    f"announced kinds {UNREACHABLE_REPORT_AFTER:g} s ago but is not reachable (heartbeat "
                    f"{'fresh' if fresh else 'missing'}, action server "
                    f"{'found' if info.task_action and reachable(info.name) else 'not found'})")))
        return transitions

    def mark_not_ready(self, engine: str, kind: str, why: str) -> bool:
        """Note that `engine` refused a task of `kind` as not ready, until it announces the kind ready again.

        Return True when that changed the routes (the kind was taken as ready).
        """
        info = self.engines.get(engine)
        if info is None:
            return False
        for index, spec in enumerate(info.kinds):
            if spec.name == kind and spec.ready:
                info.kinds[index] = replace(spec, ready=False, not_ready=why)
                return True
        return False

    def not_ready(self) -> dict[str, str]:
        """Kinds of engines that are up which cannot be served now, and why."""
        return {kind: route.spec.not_ready for kind, route in self.routes().items() if not route.spec.ready}

    def routes(self, include_down: bool = False) -> dict[str, KindRoute]:
        """Kinds served by engines that are up; a kind announced by two engines stays with the first.

        A kind that is not ready is routed all the same (missions using it are accepted): the scheduler holds
        its tasks until it is. `include_down`: also the kinds of engines that were heard and are down now (a
        fail-safe mission is accepted for an engine that is coming back, and waits for it).
        """
        routes: dict[str, KindRoute] = {}
        for info in self.engines.values():
            if info.up or include_down:
                for kind in info.kinds:
                    routes.setdefault(kind.name, KindRoute(kind, info.name, info.task_action))
        return routes

    def conflicts(self) -> list[str]:
        """'kind: engine (kept), engine (ignored)' for kinds more than one engine that is up announces."""
        owners: dict[str, list[str]] = {}
        for info in self.engines.values():
            if info.up:
                for kind in info.kinds:
                    owners.setdefault(kind.name, []).append(info.name)
        return [f"{kind}: {engines[0]} keeps it, {', '.join(engines[1:])} ignored"
                for kind, engines in owners.items() if len(engines) > 1]

    def up(self) -> set[str]:
        return {info.name for info in self.engines.values() if info.up}

    def announced_kinds(self) -> set[str]:
        return {kind.name for info in self.engines.values() for kind in info.kinds}
