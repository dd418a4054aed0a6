"""The safety supervisor (qai_io.safety) on a fake clock: the battery latch, its event, and motion stops."""

import pytest

from io_world import default_parameters
from qai_edge.health import Level
from qai_edge.tasks import TaskFailed
from qai_io.motion import Pose
from qai_io.safety import SafetySupervisor

GOOD = {"voltage": 16.2, "percentage": 0.8}
LOW_CHARGE = {"voltage": 15.0, "percentage": 0.15}
LOW_VOLTAGE = {"voltage": 13.5, "percentage": 0.6}
AIRBORNE, LANDED = Pose(0.0, 0.0, 5.0, 0.0), Pose(0.0, 0.0, 0.0, 0.0)


class Clock:
    def __init__(self):
        self.now = 100.0


@pytest.fixture
def clock():
    return Clock()


def supervisor(clock, pose=LANDED, **overrides):
    parameters = default_parameters(**overrides)
    safety = SafetySupervisor(parameters.__getitem__, parameters["vehicle_kind"], clock.now)
    safety.home = (0.0, 0.0, 0.0)
    safety.on_pose(pose)
    return safety


def feed(safety, clock, values, seconds, period=0.5):
    """Feed readings every `period` s for `seconds`, ticking between, and return the notices.

    `values` None feeds rejected readings.
    """
    notices = []
    for _ in range(round(seconds / period)):
        clock.now += period
        notices += safety.on_battery(values, "voltage = -3.2 is outside [0, 1000]" if values is None else "",
                                     clock.now)
        notices += safety.tick(clock.now)
    return notices


def published(notices):
    return [n for n in notices if n.publish]


def test_a_low_charge_on_the_ground_enters_the_reserve_refuses_navigate_and_sends_no_event(clock):
    safety = supervisor(clock)
    notices = feed(safety, clock, LOW_CHARGE, 1.0)
    assert safety.in_reserve and safety.reason == "charge 15% is below battery_reserve 20%"
    assert published(notices) == []  # on the ground: taking off to come home would be worse
    assert "on the ground" in notices[0].message
    with pytest.raises(TaskFailed, match="battery at its reserve") as refused:
        safety.admit("navigate", clock.now)
    assert not refused.value.retryable
    for kind in ("return_home", "land", "hold", "hover"):
        safety.admit(kind, clock.now)  # these still run
    assert safety.status()[0] == Level.ERROR


def test_low_voltage_in_flight_sends_the_event_at_once_and_repeats_it(clock):
    safety = supervisor(clock, AIRBORNE, battery_event_period=2.0)
    events = published(feed(safety, clock, LOW_VOLTAGE, 0.5))
    assert [e.code for e in events] == ["battery_reserve"]
    assert events[0].message == ("battery at its reserve: 13.50 V is below battery_min_voltage 13.8 V; "
                                 "bring the vehicle home")
    assert events[0].values["voltage"] == 13.5 and events[0].values["repeat"] == 0
    events = published(feed(safety, clock, LOW_VOLTAGE, 6.0))
    assert [e.values["repeat"] for e in events] == [1, 2, 3]  # every 2 s


def test_the_event_pauses_while_return_home_or_land_runs_and_resumes_if_it_ends_in_the_air(clock):
    safety = supervisor(clock, AIRBORNE, battery_event_period=1.0)
    assert published(feed(safety, clock, LOW_VOLTAGE, 0.5))
    watch = safety.begin_motion("return_home", "return_home", None, clock.now, clock.now)
    assert published(feed(safety, clock, LOW_VOLTAGE, 5.0)) == []
    safety.end_motion(watch)  # it failed, still airborne: the mission engine must hear again
    assert published(feed(safety, clock, LOW_VOLTAGE, 1.0))
    watch = safety.begin_motion("hold", "hold", None, clock.now, clock.now)
    assert published(feed(safety, clock, LOW_VOLTAGE, 2.0))  # a hold does not bring the vehicle home


def test_readings_driven_out_of_range_in_flight_enter_the_reserve_after_battery_timeout(clock):
    safety = supervisor(clock, AIRBORNE)
    feed(safety, clock, GOOD, 1.0)
    early = feed(safety, clock, None, 2.5)
    assert not safety.in_reserve and early == []  # one bad reading is not yet a dead battery
    events = published(feed(safety, clock, None, 1.0))
    assert safety.in_reserve and len(events) == 1
    assert safety.reason.startswith("no valid battery reading for 3.")
    assert "rejected, the last: voltage = -3.2 is outside [0, 1000]" in safety.reason


def test_readings_that_stop_in_flight_enter_the_reserve(clock):
    safety = supervisor(clock, AIRBORNE)
    feed(safety, clock, GOOD, 1.0)
    events = []
    for _ in range(7):
        clock.now += 0.5
        events += published(safety.tick(clock.now))
    assert safety.in_reserve and safety.reason == "no valid battery reading for 3.5 s" and events


def test_a_stall_of_the_engine_itself_is_not_taken_for_a_silent_battery(clock):
    """After a stall, the late tick runs before the readings queued meanwhile: they are waited for."""
    safety = supervisor(clock, AIRBORNE)
    feed(safety, clock, GOOD, 1.0)
    clock.now += 3.5  # stalled: no tick, no reading read
    assert safety.tick(clock.now) == [] and not safety.in_reserve
    assert feed(safety, clock, GOOD, 2.0) == [] and not safety.in_reserve  # the queued readings arrive
    clock.now += 0.5
    assert safety.tick(clock.now) == [] and not safety.in_reserve
    for _ in range(6):  # a real silence after a stall still counts, STALL_GAP late at most
        clock.now += 0.5
        safety.tick(clock.now)
    assert safety.in_reserve and safety.reason == "no valid battery reading for 3.5 s"


def test_bad_or_missing_readings_on_the_ground_do_not_enter_the_reserve_but_keep_navigate_grounded(clock):
    safety = supervisor(clock)
    feed(safety, clock, GOOD, 1.0)
    feed(safety, clock, None, 5.0)
    assert not safety.in_reserve
    with pytest.raises(TaskFailed, match=r"no valid battery reading for 5.0 s; 10 rejected.*: navigate needs a "
                                         r"battery known to be good") as refused:
        safety.admit("navigate", clock.now)
    assert refused.value.retryable


def test_a_vehicle_without_a_battery_topic_is_not_held_to_it(clock):
    parameters = default_parameters()
    safety = SafetySupervisor(parameters.__getitem__, "multirotor", clock.now, battery_expected=False)
    safety.on_pose(AIRBORNE)
    clock.now += 60.0
    assert safety.tick(clock.now) == [] and not safety.in_reserve
    safety.admit("navigate", clock.now)


def test_the_reserve_holds_in_flight_when_the_readings_recover(clock):
    safety = supervisor(clock, AIRBORNE)
    feed(safety, clock, LOW_VOLTAGE, 1.0)
    feed(safety, clock, GOOD, 20.0)
    assert safety.in_reserve


def test_the_reserve_clears_only_after_landing_with_healthy_readings_for_the_recover_time(clock):
    safety = supervisor(clock, AIRBORNE, battery_recover_time=3.0)
    feed(safety, clock, None, 4.0)
    assert safety.in_reserve
    safety.on_pose(LANDED)
    feed(safety, clock, None, 10.0)  # landed, but still no valid reading
    assert safety.in_reserve
    feed(safety, clock, GOOD, 2.0)
    feed(safety, clock, LOW_VOLTAGE, 0.5)  # one low reading starts the count again
    feed(safety, clock, GOOD, 2.5)
    assert safety.in_reserve
    notices = feed(safety, clock, GOOD, 1.0)
    assert not safety.in_reserve and notices[-1].code == "battery_reserve_cleared" and not notices[-1].publish
    safety.admit("navigate", clock.now)


def test_an_operator_clears_the_reserve_only_on_the_ground_and_not_while_it_reads_low(clock):
    safety = supervisor(clock, AIRBORNE)
    feed(safety, clock, LOW_VOLTAGE, 1.0)
    done, message, _ = safety.clear_reserve(clock.now)
    assert not done and message == ("refused: the vehicle is airborne (at 5.00 m, above landed_altitude 0.3 m); "
                                    "land it first")
    safety.on_pose(LANDED)
    done, message, _ = safety.clear_reserve(clock.now)
    assert not done and message == "refused: the battery still reads low (13.50 V is below battery_min_voltage 13.8 V)"
    clock.now += 10.0  # that reading is old now: the operator knows better than a silent sensor
    done, message, notices = safety.clear_reserve(clock.now)
    assert done and message == "battery reserve cleared" and not safety.in_reserve
    assert notices[0].message == "battery reserve cleared: cleared by an operator"


def test_a_ground_robot_is_airborne_when_away_from_home(clock):
    safety = supervisor(clock, Pose(20.0, 0.0, 0.0, 0.0), vehicle_kind="ground")
    assert safety.airborne()
    assert published(feed(safety, clock, LOW_CHARGE, 0.5))  # away from home: it must come back
    safety.on_pose(Pose(0.2, 0.1, 0.0, 0.0))
    assert not safety.airborne()


# -- Motion ---------------------------------------------------------------------------------------


def test_one_motion_task_at_a_time(clock):
    safety = supervisor(clock)
    feed(safety, clock, GOOD, 0.5)
    watch = safety.begin_motion("hold", "hold", None, clock.now, clock.now)
    with pytest.raises(TaskFailed, match="another motion task is running") as refused:
        safety.begin_motion("navigate", "navigate", None, clock.now, clock.now)
    assert refused.value.retryable
    safety.end_motion(watch)
    safety.begin_motion("navigate", "navigate", None, clock.now, clock.now)


def test_a_running_motion_stops_on_cancel_stale_odometry_timeout_and_for_navigate_the_reserve(clock):
    safety = supervisor(clock, AIRBORNE)
    feed(safety, clock, GOOD, 0.5)
    start = clock.now
    watch = safety.begin_motion("navigate", "navigate", 10.0, start, 50.0)
    assert safety.check_motion(watch, start + 0.3, 50.3, False, start + 0.28) is None
    assert safety.check_motion(watch, start + 0.3, 50.3, True, start + 0.28).canceled
    stop = safety.check_motion(watch, start + 1.0, 51.0, False, start + 0.4)
    assert stop.message == "navigate: odometry stale for 0.60 s; stopped the vehicle" and stop.retryable
    assert stop.notice.code == "odometry_stale" and stop.notice.values == {"age": 0.6}
    # The task's timeout counts on the ROS clock (simulated time), not the steady one.
    assert safety.check_motion(watch, start + 100.0, 59.0, False, start + 100.0) is None
    stop = safety.check_motion(watch, start + 0.5, 60.5, False, start + 0.5)
    assert stop.message == "navigate: not done after 10 s" and stop.retryable
    feed(safety, clock, LOW_VOLTAGE, 0.5)
    stop = safety.check_motion(watch, clock.now, 50.5, False, clock.now)
    assert not stop.retryable and stop.message.startswith("navigate: battery at its reserve (13.50 V")
    hold = safety.begin_motion("hold", "hold", None, clock.now, 50.5) if safety.end_motion(watch) is None else None
    assert safety.check_motion(hold, clock.now, 50.5, False, clock.now) is None  # a hold goes on


def test_the_stale_odometry_age_is_never_negative_when_odometry_never_came_during_the_task(clock):
    safety = supervisor(clock)
    feed(safety, clock, GOOD, 0.5)
    watch = safety.begin_motion("hold", "hold", None, clock.now, 0.0)
    assert safety.check_motion(watch, clock.now + 0.4, 0.4, False, None) is None
    stop = safety.check_motion(watch, clock.now + 0.7, 0.7, False, None)
    assert stop.message == "hold: odometry stale for 0.70 s; stopped the vehicle"


def test_an_endurance_low_prediction_enters_the_reserve_so_the_flight_is_not_resumed(clock):
    """Enter the reserve on an endurance_low prediction, so the flight is not resumed.

    The intelligence engine says the way home needs more time than the battery has left: navigate is
    refused from now on (a survey preempted by return_home does not fly again once home), the event goes out.
    """
    safety = supervisor(clock, pose=AIRBORNE)
    feed(safety, clock, GOOD, 1.0)
    notices = safety.on_endurance_low("intelligence_engine: predicted 40 s, the way home needs 55 s", clock.now)
    assert safety.in_reserve and safety.reason.startswith("predicted endurance low (intelligence_engine")
    assert [n.code for n in published(notices)] == ["battery_reserve"]
    with pytest.raises(TaskFailed, match="battery at its reserve"):
        safety.admit("navigate", clock.now)
    safety.admit("return_home", clock.now)
    safety.on_pose(LANDED)  # home, with healthy readings: it clears as a battery reserve does
    feed(safety, clock, GOOD, 30.0)
    assert not safety.in_reserve
