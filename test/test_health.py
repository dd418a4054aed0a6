"""The health board: latest heartbeat per node, stale when overdue."""

from qai_edge.health import HealthBoard, Level, format_table


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_nodes_without_a_heartbeat_are_stale():
    board = HealthBoard({"/a": 1.0, "/b": 1.0})
    assert [n.level for n in board.snapshot()] == [Level.STALE, Level.STALE]
    assert not board.all_ok()


def test_all_ok_once_every_node_reported_ok():
    clock = FakeClock()
    board = HealthBoard({"/a": 1.0, "/b": 1.0}, clock=clock)
    board.update("/a", 0, "running")
    assert not board.all_ok()
    board.update("/b", 0, "running", "robot", {"pid": "7"})
    assert board.all_ok()
    assert board.snapshot()[1].values == {"pid": "7"}


def test_heartbeat_goes_stale_after_three_periods():
    clock = FakeClock()
    board = HealthBoard({"/slow": 2.0, "/fast": 0.1}, clock=clock)
    board.update("/slow", 0, "running")
    board.update("/fast", 0, "running")
    clock.now += 2.5  # /fast: 3 periods is 0.3 s, but never less than 2 s
    assert board.level_of("/fast") == Level.STALE
    assert board.level_of("/slow") == Level.OK
    clock.now += 4.0
    assert board.level_of("/slow") == Level.STALE
    assert "no heartbeat for 6.5 s" in board.snapshot()[0].message


def test_warn_and_error_levels_are_kept_and_unknown_levels_read_as_error():
    board = HealthBoard({"/a": 1.0, "/b": 1.0})
    board.update("/a", 1, "battery low")
    board.update("/b", 9, "??")
    assert [n.level for n in board.snapshot()] == [Level.WARN, Level.ERROR]


def test_other_nodes_are_ignored():
    board = HealthBoard({"/a": 1.0})
    assert board.update("/elsewhere/a", 0, "running") is False
    assert [n.name for n in board.snapshot()] == ["/a"]


def test_table_lists_every_node():
    board = HealthBoard({"/mission_engine": 1.0})
    board.update("/mission_engine", 0, "running", "drone1")
    table = format_table(board.snapshot())
    assert table.splitlines()[1].split() == ["/mission_engine", "OK", "drone1", "running"]


def test_a_stall_holds_judging_silence_for_a_while_after_the_late_step():
    from qai_edge.stall import StallHold

    stall = StallHold(gap=0.25, hold=0.5)
    assert not stall.step(0.0) and not stall.step(0.2) and not stall.holding(0.2)  # on time
    assert stall.step(1.0) and stall.stalls == 1  # 0.8 s between two steps: this process did not run
    assert stall.holding(1.0) and stall.holding(1.49) and not stall.holding(1.5)
    assert not stall.step(1.05) and stall.holding(1.05)  # steps on time again do not end the hold early
