"""Training and evaluation data from the simulator's own vehicle model (qai_sim.vehicle_model), not a ROS graph.

No rclpy import, no torch import: plain Python and numpy, seeded, so the same seed gives the same data.

Two sets of conditions: `TRAINING` (what the models learn from, and the first held-out set: new flights in
the same conditions) and `OUTSIDE` (the second held-out set: stronger wind and gusts, heavier payload, and a
different battery: smaller and aged, so it sags more under load). Held-out flights use seeds the training
flights never use (`seed_block`).

Endurance flights: the vehicle flies a random mission (climbs, cruises, hovers) until its battery's voltage
under load reaches the cutoff, sometimes with a failing cell (a voltage sag) on the way; the label at each
tick is the flight time left. Anomaly flights: the vehicle flies waypoints with the I/O engine's own
controller while the sensor streams are sampled at the simulator's rates, with at most one injected fault
(the simulator's: stuck, dropout, battery sag, GPS loss, vibration), labelled from its onset.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

import numpy as np

from qai_intelligence.features import ENDURANCE, AnomalyFeatureBuilder, endurance_features
from qai_io.motion import HoldPlan, MotionRun, Pose, PositionController, WaypointPlan
from qai_sim.vehicle_model import VehicleConfig, VehicleModel


@dataclass(frozen=True)
class Conditions:
    """Ranges each flight draws its conditions from (uniformly)."""

    name: str
    wind: tuple[float, float]  # m/s, mean wind speed (random direction)
    gust: tuple[float, float]  # m/s, gust standard deviation
    payload: tuple[float, float]  # kg
    capacity_wh: tuple[float, float]
    internal_resistance: tuple[float, float]  # ohm

    def draw(self, rng: random.Random, seed: int) -> VehicleConfig:
        speed, direction = rng.uniform(*self.wind), rng.uniform(0.0, 2 * math.pi)
        return VehicleConfig(wind=(speed * math.cos(direction), speed * math.sin(direction)),
                             wind_gust=rng.uniform(*self.gust), payload=rng.uniform(*self.payload),
                             battery_capacity_wh=rng.uniform(*self.capacity_wh),
                             internal_resistance=rng.uniform(*self.internal_resistance), seed=seed)


TRAINING = Conditions("training", wind=(0.0, 3.0), gust=(0.0, 1.0), payload=(0.0, 0.5), capacity_wh=(60.0, 100.0),
                      internal_resistance=(0.015, 0.025))
OUTSIDE = Conditions("outside", wind=(4.0, 6.0), gust=(1.5, 2.5), payload=(0.7, 1.2), capacity_wh=(40.0, 55.0),
                     internal_resistance=(0.03, 0.04))
CONDITIONS = {c.name: c for c in (TRAINING, OUTSIDE)}

# Seed blocks keep the sets apart: flight i of a set uses seed base + block * 1_000_000 + i.
SEED_BLOCKS = {"train": 0, "validation": 1, "test": 2, "gate": 3, "heldout": 4}  # heldout: qai-eval only


def seed_block(seed: int, split: str, index: int) -> int:
    return seed * 10_000_000 + SEED_BLOCKS[split] * 1_000_000 + index


# -- Endurance ------------------------------------------------------------------------------------

ENDURANCE_TICK = 1.0  # s between endurance model ticks (the node's endurance_period default)
_ENDURANCE_DT = 0.2  # s physics step: plenty for the battery, 5x cheaper than the simulator's 100 Hz
MAX_FLIGHT = 3600.0  # s


@dataclass
class EnduranceFlight:
    features: np.ndarray  # (ticks, len(ENDURANCE)) float32
    remaining: np.ndarray  # (ticks,) s of flight left at each tick
    config: VehicleConfig
    sag_at: float | None  # s, when a cell started failing (None: never)


def loaded_voltage_cutoff(config: VehicleConfig) -> float:
    """Return the voltage under load at which the flight ends (the autopilot lands): the pack's empty one."""
    return config.voltage_empty


def endurance_flight(seed: int, conditions: Conditions = TRAINING, sag_probability: float = 0.3) -> EnduranceFlight:
    """Fly a random mission until the battery's voltage under load reaches the cutoff; label every tick.

    A failing cell, when drawn, loses its volts at once or over up to two minutes. The flight goes on for up to
    a minute past the cutoff (as a vehicle does until it lands), labelled zero: no flight time left.
    """
    rng = random.Random(seed)
    config = conditions.draw(rng, seed)
    model = VehicleModel(config)
    model.state.energy_wh = config.battery_capacity_wh * rng.uniform(0.3, 1.0)
    sag_at = rng.uniform(60.0, 900.0) if rng.random() < sag_probability else None
    sag_volts, sag_ramp = rng.uniform(0.3, 2.5), rng.choice((0.0, rng.uniform(10.0, 120.0)))
    overrun = rng.uniform(0.0, 60.0)
    capacity_ah = config.battery_capacity_wh / config.voltage_full
    cutoff = loaded_voltage_cutoff(config)
    rows, segment_end, command = [], 0.0, (0.0, 0.0, 2.0, 0.0)
    next_tick, t, ended = 0.0, 0.0, None
    while t < MAX_FLIGHT and (ended is None or t < ended + overrun):
        if sag_at is not None and t >= sag_at:
            model.battery_sag_v = sag_volts * (min(1.0, (t - sag_at) / sag_ramp) if sag_ramp else 1.0)
        if t >= segment_end:
            command, length = _next_segment(rng, model)
            segment_end = t + length
        model.command(*command)
        model.step(_ENDURANCE_DT)
        t += _ENDURANCE_DT
        voltage, current, fraction = model.battery_reading()
        if t >= next_tick:
            next_tick += ENDURANCE_TICK
            position, yaw, body, yaw_rate = model.odometry()
            battery = {"voltage": voltage, "current": current, "percentage": fraction, "capacity_ah": capacity_ah}
            odom = {"x": position[0], "y": position[1], "z": position[2], "yaw": yaw, "vx": body[0], "vy": body[1],
                    "vz": body[2], "yaw_rate": yaw_rate}
            rows.append((t, endurance_features(battery, odom, config.payload)))
        if ended is None and (voltage <= cutoff or fraction <= 0.0):
            ended = t
        if fraction <= 0.0:
            break
    ended = t if ended is None else ended
    times = np.array([r[0] for r in rows])
    return EnduranceFlight(np.array([r[1] for r in rows], dtype=np.float32),
                           np.maximum(0.0, ended - times).astype(np.float32), config, sag_at)


def _next_segment(rng: random.Random, model: VehicleModel) -> tuple[tuple[float, float, float, float], float]:
    """Draw a random mission segment: climb or descend, cruise, or hover; head back toward the start when far."""
    x, y, z = model.state.position
    if z < 3.0:
        return (0.0, 0.0, 2.0, 0.0), rng.uniform(2.0, 8.0)
    choice = rng.random()
    if choice < 0.2:
        goal = rng.uniform(5.0, 40.0)
        rate = rng.uniform(0.5, 2.5) * (1 if goal > z else -1)
        return (0.0, 0.0, rate, 0.0), max(1.0, min(30.0, abs(goal - z) / abs(rate)))
    if choice < 0.5:
        return (0.0, 0.0, 0.0, 0.0), rng.uniform(5.0, 60.0)
    speed = rng.uniform(2.0, 8.0)
    heading = math.atan2(-y, -x) + rng.uniform(-0.5, 0.5) if math.hypot(x, y) > 300.0 \
        else rng.uniform(0.0, 2 * math.pi)
    yaw = model.state.yaw  # body-frame command for a world heading
    forward = speed * math.cos(heading - yaw)
    left = speed * math.sin(heading - yaw)
    return (forward, left, 0.0, 0.0), rng.uniform(10.0, 90.0)


def endurance_flights(seed: int, split: str, count: int, conditions: Conditions = TRAINING,
                      progress=None) -> list[EnduranceFlight]:
    flights = []
    for index in range(count):
        flights.append(endurance_flight(seed_block(seed, split, index), conditions))
        if progress:
            progress()
    return flights


# -- Anomaly --------------------------------------------------------------------------------------

ANOMALY_TICK = 0.05  # s between anomaly model ticks (the node's anomaly_period default)
STREAM_PERIODS = {"odom": 1 / 50.0, "imu": 1 / 100.0, "battery": 1 / 2.0, "gps": 1 / 5.0}  # sim_vehicle's rates
_PHYSICS_DT = 0.01
ODOM_TIMEOUT = 0.5  # s: the I/O engine stops the vehicle when odometry is older (its odom_timeout)

FAULT_KINDS = ("stuck_odom", "stuck_imu", "dropout_odom", "dropout_imu", "dropout_battery", "dropout_gps",
               "battery_sag", "gps_loss", "vibration")
# How each kind is grouped in reports (the simulator's fault parameters).
FAULT_GROUPS = {"stuck_odom": "stuck", "stuck_imu": "stuck", "dropout_odom": "dropout", "dropout_imu": "dropout",
                "dropout_battery": "dropout", "dropout_gps": "dropout", "battery_sag": "battery_sag",
                "gps_loss": "gps_loss", "vibration": "vibration"}


@dataclass
class AnomalyFlight:
    features: np.ndarray  # (ticks, len(ANOMALY)) float32
    fault: str | None
    onset: int | None  # tick at which the fault starts (it lasts to the end)
    config: VehicleConfig


def anomaly_flight(seed: int, conditions: Conditions = TRAINING, fault: str | None = None,
                   duration: float = 45.0, onset_range: tuple[float, float] = (12.0, 30.0),
                   legs: tuple[int, int] = (3, 6)) -> AnomalyFlight:
    """Fly random waypoints with the I/O engine's controller and build the anomaly features each tick.

    The sensors are sampled as the simulator publishes them; `fault` (one of FAULT_KINDS) starts at a random
    time and lasts to the end. `legs`: how many waypoints (drawn in that range; a long flight needs many).
    """
    rng = random.Random(seed)
    config = conditions.draw(rng, seed)
    # A third of the flights start on the ground and take off (the current jumps from idle to hover).
    start = (rng.uniform(-20, 20), rng.uniform(-20, 20), 0.0 if rng.random() < 1 / 3 else rng.uniform(3.0, 10.0))
    model = VehicleModel(config, position=start, yaw=rng.uniform(-math.pi, math.pi))
    model.state.energy_wh = config.battery_capacity_wh * rng.uniform(0.3, 1.0)
    onset_time = rng.uniform(*onset_range) if fault else None
    fault_value = {"battery_sag": rng.uniform(0.5, 2.5), "vibration": rng.uniform(0.3, 1.0)}.get(fault or "", 0.0)
    waypoints = [(start[0] + rng.uniform(-50, 50), start[1] + rng.uniform(-50, 50), rng.uniform(3.0, 15.0))
                 for _ in range(rng.randint(*legs))]
    speed = rng.uniform(2.0, 7.0)
    controller = PositionController()
    run = MotionRun(WaypointPlan(waypoints, 0.5, hold=rng.choice((0.0, 0.0, 2.0))), controller, speed)
    capacity_ah = config.battery_capacity_wh / config.voltage_full
    builder = AnomalyFeatureBuilder()
    latest: dict[str, dict[str, float]] = {}
    last_valid = dict.fromkeys(STREAM_PERIODS, -math.inf)
    next_publish = dict.fromkeys(STREAM_PERIODS, 0.0)
    gps_origin = None
    command = (0.0, 0.0, 0.0, 0.0)
    rows, onset_tick = [], None
    t, next_tick = 0.0, ANOMALY_TICK
    active = False
    while t < duration:
        if onset_time is not None and not active and t >= onset_time:
            active = True
            onset_tick = len(rows)
            if fault == "battery_sag":
                model.battery_sag_v = fault_value
            elif fault == "vibration":
                model.vibration = fault_value
        model.command(*command)
        model.step(_PHYSICS_DT)
        t = round(t + _PHYSICS_DT, 9)
        for stream, period in STREAM_PERIODS.items():
            if t < next_publish[stream]:
                continue
            next_publish[stream] = t + period
            if active and fault == f"dropout_{stream}":
                continue
            if active and fault == f"stuck_{stream}" and stream in latest:
                last_valid[stream] = t  # the same reading again, freshly stamped
                reading = latest[stream] = {**latest[stream], **({"stamp": t} if stream == "odom" else {})}
            elif stream == "gps" and active and fault == "gps_loss":
                continue  # no fix: not a valid reading
            else:
                reading = _read(model, stream, capacity_ah)
                if stream == "odom":
                    reading["stamp"] = t
                if stream == "gps":
                    gps_origin = gps_origin or (reading["east"], reading["north"], reading["up"])
                latest[stream] = reading
                last_valid[stream] = t
            if stream == "odom":  # the I/O engine answers each odometry message with a command
                command = _command(run, reading, t)
        if t - last_valid["odom"] > ODOM_TIMEOUT:
            command = (0.0, 0.0, 0.0, 0.0)  # the I/O engine stops a vehicle whose odometry went stale
        if run.finished.is_set():
            run = MotionRun(HoldPlan(waypoints[-1], None), controller, speed)
        if t + 1e-9 >= next_tick:
            next_tick += ANOMALY_TICK
            latest["cmd"] = {"forward": command[0], "left": command[1], "up": command[2], "yaw_rate": command[3]}
            ages = {s: t - last_valid[s] for s in STREAM_PERIODS}
            rows.append(builder.build(latest, ages))
    return AnomalyFlight(np.array(rows, dtype=np.float32), fault, onset_tick, config)


def _read(model: VehicleModel, stream: str, capacity_ah: float) -> dict[str, float]:
    if stream == "odom":
        position, yaw, body, yaw_rate = model.odometry()
        return {"x": position[0], "y": position[1], "z": position[2], "yaw": yaw, "vx": body[0], "vy": body[1],
                "vz": body[2], "yaw_rate": yaw_rate}
    if stream == "imu":
        force, gyro, _ = model.imu()
        return {"accel_x": force[0], "accel_y": force[1], "accel_z": force[2], "gyro_x": gyro[0],
                "gyro_y": gyro[1], "gyro_z": gyro[2]}
    if stream == "battery":
        voltage, current, fraction = model.battery_reading()
        return {"voltage": voltage, "current": current, "percentage": fraction, "capacity_ah": capacity_ah}
    east, north, up = model.gps_position()
    return {"east": east, "north": north, "up": up}


def _command(run: MotionRun, odom: dict[str, float], now: float) -> tuple[float, float, float, float]:
    cos_yaw, sin_yaw = math.cos(odom["yaw"]), math.sin(odom["yaw"])
    vx, vy = cos_yaw * odom["vx"] - sin_yaw * odom["vy"], sin_yaw * odom["vx"] + cos_yaw * odom["vy"]
    return run.on_odometry(Pose(odom["x"], odom["y"], odom["z"], odom["yaw"], vx, vy, odom["vz"]), now)


def anomaly_flights(seed: int, split: str, count: int, conditions: Conditions = TRAINING, faults: bool = False,
                    clean_share: float = 0.25, progress=None) -> list[AnomalyFlight]:
    """`count` flights; with `faults`, all but about `clean_share` of them carry one fault, kinds in turn."""
    flights = []
    clean_every = max(1, round(1 / clean_share)) if clean_share > 0 else 0
    kinds = iter(FAULT_KINDS * (count // len(FAULT_KINDS) + 1))
    for index in range(count):
        fault = None
        if faults and not (clean_every and index % clean_every == clean_every - 1):
            fault = next(kinds)
        flights.append(anomaly_flight(seed_block(seed, split, index), conditions, fault))
        if progress:
            progress()
    return flights


def with_conditions(config: VehicleConfig, conditions: Conditions, rng: random.Random) -> VehicleConfig:
    """`config` with wind, gusts, payload and battery drawn from `conditions`."""
    drawn = conditions.draw(rng, config.seed)
    return replace(config, wind=drawn.wind, wind_gust=drawn.wind_gust, payload=drawn.payload,
                   battery_capacity_wh=drawn.battery_capacity_wh, internal_resistance=drawn.internal_resistance)


__all__ = ["ENDURANCE", "Conditions", "TRAINING", "OUTSIDE", "CONDITIONS", "endurance_flight", "endurance_flights",
           "anomaly_flight", "anomaly_flights", "FAULT_KINDS", "FAULT_GROUPS", "with_conditions"]
