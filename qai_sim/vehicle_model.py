"""A simulated vehicle: multirotor or ground robot (unicycle), battery, IMU and GPS. No rclpy import.

Commands are body-frame velocities, as `cmd_vel` carries them to Gazebo's multicopter velocity
controller or a diff drive: linear x forward, y left, z up (m/s), angular z yaw rate (rad/s). The vehicle
follows a command with a first-order response (time_constant) under an acceleration limit, and stops
(hovers) when commands stop for cmd_timeout, as autopilots do. A multirotor drifts with the wind; a ground
robot cannot move sideways. All noise comes from one seeded generator: the same seed and commands give
the same run.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from qai_edge.geo import wrap_angle

GRAVITY = 9.81
VIBRATION_HZ = 37.0  # the injected vibration fault's frequency (aliased by a 100 Hz IMU, as on a real one)


@dataclass(frozen=True)
class VehicleConfig:
    kind: str = "multirotor"  # or "ground"
    max_speed: float = 8.0  # m/s, horizontal
    max_climb_rate: float = 3.0  # m/s
    max_yaw_rate: float = 2.0  # rad/s
    acceleration_limit: float = 4.0  # m/s^2
    time_constant: float = 0.25  # s, first-order velocity response
    cmd_timeout: float = 0.5  # s without a command -> stop
    mass: float = 1.5  # kg
    payload: float = 0.0  # kg
    battery_capacity_wh: float = 80.0
    hover_power_w: float = 180.0  # multirotor in still air, at `mass`
    idle_power_w: float = 8.0  # electronics, landed or parked
    drag_power_coefficient: float = 1.2  # W per (m/s)^2 of airspeed
    rolling_power_coefficient: float = 4.0  # ground robot: W per (kg m/s)
    voltage_full: float = 16.8  # 4S LiPo
    voltage_empty: float = 13.2
    internal_resistance: float = 0.02  # ohm
    wind: tuple[float, float] = (0.0, 0.0)  # m/s, world frame (east, north)
    wind_gust: float = 0.0  # m/s, standard deviation of gusts
    position_noise: float = 0.01  # m, odometry
    velocity_noise: float = 0.01  # m/s
    accel_noise: float = 0.05  # m/s^2
    gyro_noise: float = 0.002  # rad/s
    gps_noise: float = 0.5  # m
    seed: int = 0


@dataclass
class VehicleState:
    time: float = 0.0
    position: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # world ENU, m
    velocity: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # world, m/s, over ground
    air_velocity: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # the vehicle's own
    acceleration: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # world, m/s^2
    yaw: float = 0.0
    yaw_rate: float = 0.0
    forward_speed: float = 0.0  # ground robot: along its heading (no lateral slip)
    energy_wh: float = 0.0
    power_w: float = 0.0


class VehicleModel:
    def __init__(self, config: VehicleConfig, position=(0.0, 0.0, 0.0), yaw: float = 0.0):
        if config.kind not in ("multirotor", "ground"):
            raise ValueError(f"kind: expected 'multirotor' or 'ground', got {config.kind!r}")
        self.config = config
        self.state = VehicleState(position=list(position), yaw=yaw, energy_wh=config.battery_capacity_wh)
        self.rng = random.Random(config.seed)
        self._command = (0.0, 0.0, 0.0, 0.0)
        self._command_time = -math.inf
        self._gust = [0.0, 0.0]
        self.battery_sag_v = 0.0  # fault injection: volts lost, as a failing cell would
        self.vibration = 0.0  # fault injection: m/s^2 of vibration on the IMU, as a damaged propeller gives

    # -- Inputs -----------------------------------------------------------------------------------

    def command(self, vx: float, vy: float, vz: float, yaw_rate: float) -> None:
        """Take a velocity order in the body frame; a non-finite value is ignored (the last order stays)."""
        if not all(math.isfinite(v) for v in (vx, vy, vz, yaw_rate)):
            return
        c = self.config
        if c.kind == "ground":
            vy = vz = 0.0
        horizontal = math.hypot(vx, vy)
        if horizontal > c.max_speed:
            vx, vy = vx * c.max_speed / horizontal, vy * c.max_speed / horizontal
        vz = max(-c.max_climb_rate, min(c.max_climb_rate, vz))
        yaw_rate = max(-c.max_yaw_rate, min(c.max_yaw_rate, yaw_rate))
        self._command = (vx, vy, vz, yaw_rate)
        self._command_time = self.state.time

    # -- Physics ----------------------------------------------------------------------------------

    @property
    def airborne(self) -> bool:
        return self.config.kind == "multirotor" and self.state.position[2] > 0.02

    def step(self, dt: float) -> None:
        c, s = self.config, self.state
        vx, vy, vz, yaw_rate_cmd = self._command
        if s.time - self._command_time > c.cmd_timeout:
            vx = vy = vz = yaw_rate_cmd = 0.0
        landed = c.kind == "multirotor" and s.position[2] <= 0.02 and vz <= 0.0
        if landed:
            vx = vy = 0.0
        cos_yaw, sin_yaw = math.cos(s.yaw), math.sin(s.yaw)
        desired = [cos_yaw * vx - sin_yaw * vy, sin_yaw * vx + cos_yaw * vy, vz]

        # First-order response toward the command, under the acceleration limit.
        alpha = min(1.0, dt / c.time_constant)
        s.yaw_rate += (yaw_rate_cmd - s.yaw_rate) * alpha
        s.yaw = wrap_angle(s.yaw + s.yaw_rate * dt)
        if c.kind == "ground":  # a unicycle: speed along the heading, no lateral slip
            change = (vx - s.forward_speed) * alpha
            limit = c.acceleration_limit * dt
            s.forward_speed += max(-limit, min(limit, change))
            air = [s.forward_speed * math.cos(s.yaw), s.forward_speed * math.sin(s.yaw), 0.0]
        else:
            change = [(d - v) * alpha for d, v in zip(desired, s.air_velocity)]
            norm = math.sqrt(sum(x * x for x in change))
            if norm > c.acceleration_limit * dt:
                change = [x * c.acceleration_limit * dt / norm for x in change]
            air = [v + dv for v, dv in zip(s.air_velocity, change)]
            if landed:
                air[0] = air[1] = 0.0  # on the ground: no sliding

        ground = list(air)
        if self.airborne:
            if c.wind_gust > 0:  # gusts: a random walk pulled back to zero
                self._gust = [0.95 * g + self.rng.gauss(0.0, c.wind_gust * 0.3) for g in self._gust]
            ground[0] += c.wind[0] + self._gust[0]
            ground[1] += c.wind[1] + self._gust[1]
        position = [p + v * dt for p, v in zip(s.position, ground)]
        if c.kind == "multirotor" and position[2] <= 0.0:  # touched down
            position[2] = 0.0
            air[2] = ground[2] = max(air[2], 0.0)
        if c.kind == "ground":
            position[2] = s.position[2]
        s.acceleration = [(g - v) / dt for g, v in zip(ground, s.velocity)]
        s.air_velocity, s.velocity, s.position = air, ground, position

        s.power_w = self._power()
        s.energy_wh = max(0.0, s.energy_wh - s.power_w * dt / 3600.0)
        s.time += dt

    def _power(self) -> float:
        c, s = self.config, self.state
        total_mass = c.mass + c.payload
        airspeed2 = sum(v * v for v in s.air_velocity)
        if c.kind == "multirotor":
            if not self.airborne and s.air_velocity[2] <= 0:
                return c.idle_power_w
            climb = max(0.0, s.air_velocity[2]) * total_mass * GRAVITY / 0.6  # 60% efficient climb
            return c.idle_power_w + c.hover_power_w * (total_mass / c.mass) ** 1.5 + \
                c.drag_power_coefficient * airspeed2 + climb
        speed = math.sqrt(airspeed2)
        return c.idle_power_w + c.rolling_power_coefficient * total_mass * speed

    # -- Sensors (with noise) ---------------------------------------------------------------------

    @property
    def battery_fraction(self) -> float:
        return self.state.energy_wh / self.config.battery_capacity_wh

    def battery_reading(self) -> tuple[float, float, float]:
        """(voltage V, current A, fraction 0..1)."""
        c = self.config
        open_circuit = c.voltage_empty + (c.voltage_full - c.voltage_empty) * self.battery_fraction
        current = self.state.power_w / max(open_circuit, 1.0)
        voltage = open_circuit - current * c.internal_resistance - self.battery_sag_v
        return voltage, current, self.battery_fraction

    def odometry(self) -> tuple[list[float], float, list[float], float]:
        """(position, yaw, body-frame velocity [forward, left, up], yaw rate)."""
        s, rng, c = self.state, self.rng, self.config
        position = [p + rng.gauss(0.0, c.position_noise) for p in s.position]
        cos_yaw, sin_yaw = math.cos(s.yaw), math.sin(s.yaw)
        vx, vy, vz = s.velocity
        body = [cos_yaw * vx + sin_yaw * vy, -sin_yaw * vx + cos_yaw * vy, vz]
        body = [v + rng.gauss(0.0, c.velocity_noise) for v in body]
        return position, s.yaw, body, s.yaw_rate + rng.gauss(0.0, c.gyro_noise)

    def imu(self) -> tuple[list[float], list[float], float]:
        """(specific force in the body frame m/s^2, angular velocity rad/s, yaw)."""
        s, rng, c = self.state, self.rng, self.config
        ax, ay, az = s.acceleration
        az += GRAVITY  # an accelerometer at rest reads +g upward
        cos_yaw, sin_yaw = math.cos(s.yaw), math.sin(s.yaw)
        force = [cos_yaw * ax + sin_yaw * ay, -sin_yaw * ax + cos_yaw * ay, az]
        force = [f + rng.gauss(0.0, c.accel_noise) for f in force]
        gyro = [rng.gauss(0.0, c.gyro_noise), rng.gauss(0.0, c.gyro_noise), s.yaw_rate + rng.gauss(0.0, c.gyro_noise)]
        if self.vibration > 0:  # a propeller imbalance at VIBRATION_HZ, on every axis with its own phase
            phase = 2 * math.pi * VIBRATION_HZ * s.time
            force = [f + self.vibration * math.sin(phase + 2.1 * i) for i, f in enumerate(force)]
            gyro = [g + 0.1 * self.vibration * math.sin(phase + 1.0 + 2.1 * i) for i, g in enumerate(gyro)]
        return force, gyro, s.yaw

    def gps_position(self) -> list[float]:
        return [p + self.rng.gauss(0.0, self.config.gps_noise) for p in self.state.position]
