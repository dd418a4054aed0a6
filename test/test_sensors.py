"""Sensor stream monitoring and scan statistics."""

import math
import statistics

import pytest

from qai_edge.health import Level
from qai_edge.tasks import TaskFailed
from qai_io.sensors import Scans, ScanSummary, StreamMonitor, StreamSpec, scan_result


def monitor(name="imu", min_rate=10.0, stale_after=0.5, stuck_after=5):
    return StreamMonitor(StreamSpec(name, min_rate, stale_after, stuck_after))


def feed(m, count, rate, start=0.0, values=None):
    for i in range(count):
        m.offer(values(i) if values else {"accel_z": 9.8 + i * 1e-3}, start + i / rate)
    return start + (count - 1) / rate


@pytest.mark.parametrize("bad, reason", [({"accel_z": math.nan}, "accel_z is nan"),
                                         ({"accel_z": math.inf}, "accel_z is inf"),
                                         ({"accel_z": 500.0}, "accel_z = 500 is outside [-160, 160]")])
def test_invalid_readings_are_rejected_and_counted(bad, reason):
    m = monitor()
    assert m.offer({"accel_z": 9.8}, 0.0)
    assert not m.offer(bad, 0.1)
    assert (m.received, m.rejected, m.last_reject_reason) == (2, 1, reason)
    assert m.last_values == {"accel_z": 9.8}  # the bad reading is never used


def test_battery_and_gps_ranges():
    battery, gps = monitor("battery"), monitor("gps")
    assert not battery.offer({"voltage": 16.0, "percentage": 1.5}, 0.0)
    assert not gps.offer({"latitude": 91.0, "longitude": 0.0, "altitude": 0.0}, 0.0)
    assert gps.offer({"latitude": 47.4, "longitude": 8.5, "altitude": 488.0}, 0.0)


def test_a_healthy_stream_is_ok_with_its_rate():
    m = monitor()
    end = feed(m, 50, 50.0)
    level, message, values = m.status(end)
    assert level == Level.OK and values["rate_hz"] == "50.0"


def test_a_silent_stream_goes_stale():
    m = monitor(stale_after=0.5)
    end = feed(m, 20, 50.0)
    level, message, _ = m.status(end + 1.0)
    assert level == Level.ERROR and message.startswith("stale: no valid reading for 1.0 s")


def test_a_stream_that_never_spoke_is_an_error_after_the_startup_grace():
    m = monitor()
    assert m.status(1.0)[:2] == (Level.WARN, "waiting for the first reading")
    assert m.status(10.0)[:2] == (Level.ERROR, "no valid reading yet")


def test_a_slow_stream_warns():
    m = monitor(min_rate=10.0, stale_after=5.0)
    end = feed(m, 10, 4.0)
    level, message, _ = m.status(end)
    assert level == Level.WARN and "below 10 Hz" in message


def test_identical_readings_in_a_row_mean_a_stuck_sensor():
    m = monitor(stuck_after=5)
    end = feed(m, 10, 50.0, values=lambda i: {"accel_z": 9.81})
    level, message, _ = m.status(end)
    assert level == Level.WARN and message.startswith("stuck")


def test_no_gps_fix_is_an_error():
    m = monitor("gps")
    feed(m, 5, 5.0, values=lambda i: {"latitude": 47.0 + i * 1e-6, "longitude": 8.0, "altitude": 1.0})
    m.no_fix = True
    assert m.status(0.9)[:2] == (Level.ERROR, "no GPS fix")


def test_many_rejections_warn():
    m = monitor()
    for i in range(20):
        m.offer({"accel_z": 9.8 + i * 1e-3} if i % 3 else {"accel_z": math.nan}, i / 50)
    level, message, values = m.status(19 / 50)
    assert level == Level.WARN and message.endswith("readings rejected") and values["rejected"] == "7"


def test_scan_summary_statistics():
    summary = ScanSummary()
    samples = [1.0, 2.0, 4.0, 7.0]
    for value in samples:
        summary.add("battery", {"voltage": value})
    stats = summary.result()["battery.voltage"]
    assert stats["n"] == 4 and stats["min"] == 1.0 and stats["max"] == 7.0
    assert stats["mean"] == pytest.approx(3.5) and stats["std"] == pytest.approx(statistics.pstdev(samples))


def test_every_open_scan_gets_each_accepted_reading_and_its_result_keeps_the_asked_sensors():
    scans = Scans()
    scans.add("imu", {"accel_z": 1.0})  # before any scan: dropped
    first = scans.open()
    scans.add("imu", {"accel_z": 9.8})
    second = scans.open()
    scans.add("battery", {"voltage": 16.0})
    scans.close(first)
    scans.add("battery", {"voltage": 15.0})
    result = scan_result(first, ["imu"], 1.0, (1.0, 2.0, 3.0), None)
    assert result["samples"] == {"imu": 1} and list(result["summary"]) == ["imu.accel_z"]
    assert result["position"] == [1.0, 2.0, 3.0] and result["gps"] is None and result["duration"] == 1.0
    assert scan_result(second, ["battery"], 1.0, None, None)["summary"]["battery.voltage"]["n"] == 2
    with pytest.raises(TaskFailed, match="scan: no valid reading from gps in 1 s"):
        scan_result(second, ["gps"], 1.0, None, None)
