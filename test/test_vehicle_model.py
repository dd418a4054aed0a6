"""The simulated vehicle.

Commands lead to the expected motion, the battery drains as modelled, and the same seed gives the same run.
"""

import math

import pytest

from qai_sim.vehicle_model import VehicleConfig, VehicleModel

DT = 0.01


def fly(model, command, seconds):
    for _ in range(round(seconds / DT)):
        model.command(*command)
        model.step(DT)


def test_a_climb_command_reaches_its_rate_then_the_altitude_it_implies():
    model = VehicleModel(VehicleConfig(seed=1))
    fly(model, (0, 0, 2.0, 0), 3.0)
    assert model.state.air_velocity[2] == pytest.approx(2.0, abs=0.02)
    # First-order response (0.25 s) under the acceleration limit: about 0.3 s lost on the way up.
    assert 5.2 < model.state.position[2] < 5.6


def test_forward_is_along_the_heading_and_speed_is_capped():
    model = VehicleModel(VehicleConfig(seed=1, max_speed=5.0), position=(0, 0, 10), yaw=math.pi / 2)
    fly(model, (20.0, 0, 0, 0), 4.0)
    vx, vy, _ = model.state.velocity
    assert vx == pytest.approx(0.0, abs=1e-6) and vy == pytest.approx(5.0, abs=0.01)


def test_acceleration_never_exceeds_its_limit():
    model = VehicleModel(VehicleConfig(seed=1, acceleration_limit=2.0, time_constant=0.01), position=(0, 0, 10))
    previous = 0.0
    for _ in range(100):
        model.command(8.0, 0, 0, 0)
        model.step(DT)
        assert (model.state.air_velocity[0] - previous) / DT <= 2.0 + 1e-9
        previous = model.state.air_velocity[0]


def test_the_vehicle_stops_when_commands_stop():
    model = VehicleModel(VehicleConfig(seed=1, cmd_timeout=0.5), position=(0, 0, 10))
    fly(model, (3.0, 0, 0, 0), 2.0)
    for _ in range(round(3.0 / DT)):
        model.step(DT)  # no command
    assert math.hypot(*model.state.velocity[:2]) < 0.01


def test_a_ground_robot_cannot_strafe_or_climb():
    model = VehicleModel(VehicleConfig(kind="ground", seed=1))
    fly(model, (1.0, 2.0, 3.0, 0.5), 3.0)
    assert model.state.position[2] == 0.0
    heading = math.atan2(model.state.velocity[1], model.state.velocity[0])
    assert heading == pytest.approx(model.state.yaw, abs=0.05)  # moving along its heading only


def test_a_landed_multirotor_neither_slides_nor_drifts():
    model = VehicleModel(VehicleConfig(seed=1, wind=(5.0, 0.0)))
    fly(model, (3.0, 0, 0, 0), 2.0)
    assert model.state.position == [0.0, 0.0, 0.0]


def test_wind_drifts_an_airborne_multirotor():
    model = VehicleModel(VehicleConfig(seed=1, wind=(2.0, -1.0)), position=(0, 0, 10))
    fly(model, (0, 0, 0, 0), 5.0)
    assert model.state.position[0] == pytest.approx(10.0, abs=0.1)
    assert model.state.position[1] == pytest.approx(-5.0, abs=0.1)


def test_battery_drains_by_the_power_model():
    config = VehicleConfig(seed=1, hover_power_w=180.0, idle_power_w=8.0, drag_power_coefficient=0.0,
                           battery_capacity_wh=80.0)
    model = VehicleModel(config, position=(0, 0, 10))
    fly(model, (0, 0, 0, 0), 60.0)  # one minute of hovering in still air
    used = 80.0 - model.state.energy_wh
    assert used == pytest.approx((180.0 + 8.0) / 60.0, rel=0.01)
    voltage, current, fraction = model.battery_reading()
    assert fraction == pytest.approx(1.0 - used / 80.0)
    assert 16.0 < voltage < 16.8 and current == pytest.approx(188.0 / (13.2 + 3.6 * fraction), rel=0.01)


def test_payload_and_speed_cost_energy():
    def used(payload, speed):
        model = VehicleModel(VehicleConfig(seed=1, payload=payload), position=(0, 0, 10))
        fly(model, (speed, 0, 0, 0), 30.0)
        return 80.0 - model.state.energy_wh

    assert used(1.0, 0.0) > used(0.0, 0.0)
    assert used(0.0, 6.0) > used(0.0, 0.0)


def test_a_landed_vehicle_draws_only_idle_power():
    model = VehicleModel(VehicleConfig(seed=1, idle_power_w=8.0))
    fly(model, (0, 0, 0, 0), 36.0)
    assert 80.0 - model.state.energy_wh == pytest.approx(8.0 * 36.0 / 3600.0, rel=1e-6)


def test_battery_sag_lowers_the_voltage():
    model = VehicleModel(VehicleConfig(seed=1))
    before = model.battery_reading()[0]
    model.battery_sag_v = 2.5
    assert model.battery_reading()[0] == pytest.approx(before - 2.5)


def trace(seed):
    model = VehicleModel(VehicleConfig(seed=seed, wind=(1.0, 0.5), wind_gust=0.5), position=(0, 0, 5))
    readings = []
    for i in range(500):
        model.command(2.0 * math.sin(i / 50), 1.0, 0.1, 0.2)
        model.step(DT)
        readings.append((tuple(model.state.position), model.odometry(), model.imu(), tuple(model.gps_position())))
    return readings


def test_the_same_seed_gives_the_same_run():
    assert trace(7) == trace(7)


def test_another_seed_gives_other_noise():
    assert trace(7) != trace(8)


def test_non_finite_commands_are_ignored():
    model = VehicleModel(VehicleConfig(seed=1), position=(0, 0, 5))
    model.command(1.0, 0, 0, 0)
    model.command(math.nan, 0, 0, 0)
    fly(model, (math.inf, 0, 0, 0), 1.0)
    assert all(math.isfinite(v) for v in model.state.position + model.state.velocity)


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind: expected 'multirotor' or 'ground'"):
        VehicleModel(VehicleConfig(kind="boat"))
