"""Which telemetry a hub should ask its robots to send again, and when. No rclpy import; no ROS on the hub.

A robot keeps what it sent on disk for a while after the broker acknowledged it (hub_link's history_window),
because a broker can acknowledge a message and then lose it (killed before it delivered or saved it). The hub
notices such a loss as a gap in a stream's sequence numbers that does not close: GapFiller.due() returns, for
each robot and stream, the missing ranges below what arrived `settle` seconds ago (later numbers are still on
their way), each asked for again at most every `retry` seconds and at most `attempts` times; the caller signs
and sends them as `resend` commands. The robot sends what it still has and reports the rest dropped
(not_kept), so every number ends received or reported.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from qai_hub.fleet import Fleet
from qai_hub.protocol import MAX_RESEND_RANGES


@dataclass
class _StreamGaps:
    highest_seen: deque = field(default_factory=lambda: deque(maxlen=64))  # (time, highest) samples
    asked: dict[tuple[int, int], tuple[float, int]] = field(default_factory=dict)  # range -> (last asked, times)


class GapFiller:
    def __init__(self, fleet: Fleet, settle: float = 3.0, retry: float = 10.0, attempts: int = 3,
                 max_requests: int = 20):
        self.fleet = fleet
        self.settle, self.retry, self.attempts, self.max_requests = settle, retry, attempts, max_requests
        self._streams: dict[tuple[str, str], _StreamGaps] = {}
        self.requested = 0  # ranges asked for, in all
        self.given_up = 0  # ranges asked for `attempts` times with no answer

    def due(self, now: float) -> list[tuple[str, str, list[list[int]]]]:
        """Return the (robot, stream, ranges) to ask for now (call it every second or so)."""
        requests: list[tuple[str, str, list[list[int]]]] = []
        for name, robot in self.fleet.robots.items():
            if not robot.online:
                continue
            for stream, tracker in robot.streams.items():
                state = self._streams.setdefault((name, stream), _StreamGaps())
                state.highest_seen.append((now, tracker.highest))
                settled = max((high for t, high in state.highest_seen if now - t >= self.settle), default=0)
                if settled < tracker.first:
                    continue
                ranges = []
                for low, high in tracker.missing_ranges(settled, MAX_RESEND_RANGES):
                    last, times = state.asked.get((low, high), (-float("inf"), 0))
                    if now - last < self.retry:
                        continue
                    if times >= self.attempts:
                        if times == self.attempts:
                            self.given_up += 1
                            state.asked[(low, high)] = (last, times + 1)
                        continue
                    state.asked[(low, high)] = (now, times + 1)
                    ranges.append([low, high])
                if len(state.asked) > 1000:
                    for key in list(state.asked)[:500]:
                        del state.asked[key]
                if ranges:
                    self.requested += len(ranges)
                    requests.append((name, stream, ranges))
                if len(requests) >= self.max_requests:
                    return requests
        return requests
