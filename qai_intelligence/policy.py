"""The learned flight policy: its environment, imitation of the PID, then CMA-ES over the CfC's weights.

A Gymnasium environment of the I/O engine's external-controller path; imitation (and DAgger) of its PID
controller; CMA-ES (the `cma` library) over the CfC's weights. No rclpy import.

The environment is what the policy meets in the node, built on the simulator's own model: the vehicle
(qai_sim.vehicle_model, with wind, gusts and sensor noise) publishes odometry at 50 Hz; on each message the I/O
engine steps its motion plan (qai_io.motion: waypoints, hold or landing), forwards the policy's latest command
(clipped to the task's speed, as its ExternalController does) and publishes the plan's target; the policy
answers with a body-frame velocity, which the I/O engine forwards on the next odometry message (one period of
delay, as over DDS). An episode is one motion task; it ends when the plan is done or time runs out.

Why CMA-ES and not PPO: the policy is a recurrent CfC whose state must be carried through a whole flight, which
stable-baselines3's policies do not support (sb3-contrib's RecurrentPPO is LSTM-only); CMA-ES optimises the
episode's cost directly (time, cross-track error, failure), needs no gradient through the ODE cell and no value
function, and with ~1,000 weights it fits in CPU minutes. Imitation of the PID first gives it a flying start.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import gymnasium
import numpy as np
import torch

from qai_intelligence import data as datagen
from qai_intelligence.features import POLICY, POLICY_OUTPUTS, PolicyFeatureBuilder
from qai_intelligence.models import ModelConfig, SequenceModel, build, trainable_parameters
from qai_intelligence.training import NoProgress, Progress, TrainResult, _fit
from qai_io.motion import (STOP, GroundSpeedLimit, HoldPlan, LandPlan, MotionRun, Pose, PositionController,
                           ResidualController, WaypointPlan, shipped_gains)
from qai_sim.simulation import STANDARD_COURSE, cross_track_errors
from qai_sim.vehicle_model import VehicleConfig, VehicleModel

with warnings.catch_warnings():  # cma warns that matplotlib (for its plots) is missing
    warnings.simplefilter("ignore")
    import cma

ODOM_RATE = 50.0
PHYSICS_RATE = 100.0
MAX_COMMAND = 8.0  # m/s: the policy's outputs are clipped to this (the I/O engine's default max_speed)
RESIDUAL_LIMIT = 2.0  # m/s a component: a residual policy's correction (the io_engine's residual_limit)
COMMAND_TIMEOUT = 0.3  # s: the io_engine's external_command_timeout
EXPERT_SPEED = MAX_COMMAND  # the PID labels ask for full speed; the external path clips to the task's speed
# The pursuit law the CfC learns a residual over (qai_intelligence.models: extra["prior"]).
PRIOR = {"horizontal": 1.5, "vertical": 1.0, "max_speed": MAX_COMMAND, "max_climb": 3.0}


@dataclass(frozen=True)
class Scenario:
    """One motion task: a plan (waypoints, hold or land), its speed, where the vehicle starts, the weather."""

    kind: str  # navigate, hold, land
    start: tuple[float, float, float]
    waypoints: tuple[tuple[float, float, float], ...]  # navigate: the waypoints; hold: the point; land: unused
    speed: float
    config: VehicleConfig
    start_yaw: float = 0.0
    duration: float = 4.0  # hold: seconds

    def plan(self):
        if self.kind == "navigate":
            return WaypointPlan(self.waypoints, 0.5)
        if self.kind == "hold":
            return HoldPlan(self.waypoints[0], self.duration)
        return LandPlan(self.start, 0.8)

    @property
    def path(self) -> list[tuple[float, float, float]]:
        """Return the line the vehicle should keep to (cross-track error is measured from it)."""
        if self.kind == "navigate":
            return [self.start, *self.waypoints]
        if self.kind == "hold":
            return [self.waypoints[0], self.waypoints[0]]
        return [self.start, (self.start[0], self.start[1], 0.0)]

    @property
    def nominal_duration(self) -> float:
        """Seconds a good flight takes: the path at the task's speed, plus time to accelerate and settle."""
        if self.kind == "hold":
            return self.duration
        if self.kind == "land":
            return self.start[2] / 0.8 + 1.0
        length = sum(math.dist(a, b) for a, b in zip(self.path, self.path[1:]))
        return length / self.speed + 2.0 + 0.5 * len(self.waypoints)

    @property
    def limit(self) -> float:
        return 2.0 * self.nominal_duration + 10.0


def random_scenario(rng: random.Random, conditions: datagen.Conditions = datagen.TRAINING) -> Scenario:
    config = datagen.with_conditions(VehicleConfig(seed=rng.randrange(2**31)), conditions, rng)
    kind = rng.choices(("navigate", "hold", "land"), (0.7, 0.15, 0.15))[0]
    on_ground = kind == "navigate" and rng.random() < 0.2
    start = (rng.uniform(-10, 10), rng.uniform(-10, 10), 0.0 if on_ground else rng.uniform(2.0, 10.0))
    yaw = rng.uniform(-math.pi, math.pi)
    if kind == "hold":
        point = tuple(s + rng.uniform(-3, 3) for s in start[:2]) + (max(1.0, start[2] + rng.uniform(-2, 2)),)
        return Scenario(kind, start, (point,), rng.uniform(2.0, 5.0), config, yaw, rng.uniform(3.0, 6.0))
    if kind == "land":
        return Scenario(kind, start, (), 3.0, config, yaw)
    waypoints, position = [], start
    heading = rng.uniform(-math.pi, math.pi)
    for _ in range(rng.randint(1, 3)):
        heading += rng.choice((0.0, rng.uniform(-math.pi, math.pi)))
        length = rng.uniform(6.0, 25.0)
        position = (position[0] + length * math.cos(heading), position[1] + length * math.sin(heading),
                    rng.uniform(2.0, 15.0))
        waypoints.append(position)
    return Scenario(kind, start, tuple(waypoints), rng.uniform(2.0, 7.0), config, yaw)


def course_scenario(config: VehicleConfig, speed: float = 5.0) -> Scenario:
    """Return the tracking benchmark's standard course (qai_sim.simulation.STANDARD_COURSE), from the ground."""
    return Scenario("navigate", (0.0, 0.0, 0.0), STANDARD_COURSE, speed, config)


class _ExternalCommand:
    """The I/O engine's ExternalController without its clock: the latest command, under the same limit.

    The task's speed over the ground with the PID's own wind estimate (qai_io.motion.GroundSpeedLimit).
    """

    def __init__(self, wind_filter_time: float | None = None):
        self.latest = STOP
        self.limit = GroundSpeedLimit(wind_filter_time=wind_filter_time)

    def reset(self) -> None:
        self.limit.reset()

    def command(self, pose, target, goal_distance, speed, dt):
        return self.limit.clip(self.latest, pose, speed, dt)


def _odom_reading(model: VehicleModel) -> dict[str, float]:
    position, yaw, body, yaw_rate = model.odometry()
    return {"x": position[0], "y": position[1], "z": position[2], "yaw": yaw, "vx": body[0], "vy": body[1],
            "vz": body[2], "yaw_rate": yaw_rate}


def _pose(odom: dict[str, float]) -> Pose:
    cos_yaw, sin_yaw = math.cos(odom["yaw"]), math.sin(odom["yaw"])
    return Pose(odom["x"], odom["y"], odom["z"], odom["yaw"], cos_yaw * odom["vx"] - sin_yaw * odom["vy"],
                sin_yaw * odom["vx"] + cos_yaw * odom["vy"], odom["vz"])


class ExternalPathEnv(gymnasium.Env):
    """One motion task through the I/O engine's external-controller path (see the module docstring).

    Observations are the policy's features (qai_intelligence.features.POLICY); actions are body-frame velocity
    commands (forward, left, up; m/s). The reward is minus the episode's cost, spread over its steps: time
    against the nominal time, cross-track error, and a penalty for not finishing. `controller="pid"` flies the
    I/O engine's own PID instead (actions ignored), for comparison in the identical harness.
    """

    metadata = {"render_modes": []}

    def __init__(self, scenario: Scenario | None = None, conditions: datagen.Conditions = datagen.TRAINING,
                 controller: str = "external", gains: dict[str, float] | None = None):
        self.observation_space = gymnasium.spaces.Box(np.array(POLICY.low, np.float32),
                                                      np.array(POLICY.high, np.float32))
        self.action_space = gymnasium.spaces.Box(-MAX_COMMAND, MAX_COMMAND, (3,), np.float32)
        self.fixed_scenario = scenario
        self.conditions = conditions
        self.controller = controller
        # The PID's gains: the io_engine's shipped (tuned) ones unless given (qai_intelligence.pid_tuning).
        self.gains = dict(shipped_gains() if gains is None else gains)
        self.scenario: Scenario | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        rng = random.Random(seed)
        self.scenario = self.fixed_scenario or random_scenario(rng, self.conditions)
        s = self.scenario
        self.model = VehicleModel(s.config, position=s.start, yaw=s.start_yaw)
        self.external = _ExternalCommand(self.gains.get("wind_filter_time"))
        self.residual = ResidualController(PositionController(**self.gains), COMMAND_TIMEOUT, lambda: self.time,
                                           RESIDUAL_LIMIT)
        controllers = {"external": self.external, "residual": self.residual}
        self.run = MotionRun(s.plan(), controllers.get(self.controller) or PositionController(**self.gains), s.speed)
        self.expert = PositionController(**self.gains)
        self.builder = PolicyFeatureBuilder()
        self.time, self.path = 0.0, []
        self.energy_start = self.model.state.energy_wh
        self.cross_track_integral = 0.0
        self.command = STOP
        self.applied_world = (0.0, 0.0)
        return self._observe(), {}

    def _observe(self) -> np.ndarray:
        odom = _odom_reading(self.model)
        self.odom = odom
        self.command = self.run.on_odometry(_pose(odom), self.time)
        self.target = self.run.status.target if self.run.status else (odom["x"], odom["y"], odom["z"])
        return np.array(self.builder.build(odom, self.target, 1.0 / ODOM_RATE), np.float32)

    def expert_action(self) -> np.ndarray:
        """Return what the I/O engine's PID would command now, at full speed (the path clips to the task's).

        Its wind observer is told the command that was actually applied (clipped, a tick late), not its own
        label: otherwise the clip looks like wind to it, and its labels run away.
        """
        status = self.run.status
        if status is None or status.done:
            return np.zeros(3, np.float32)
        self.expert._last_air_command = list(self.applied_world)
        command = self.expert.command(_pose(self.odom), status.target, self._goal_distance(), EXPERT_SPEED,
                                      1.0 / ODOM_RATE)
        return np.array(command[:3], np.float32)

    def _goal_distance(self) -> float:
        """Return the distance to where the plan wants the vehicle stopped (what the PID brakes for)."""
        plan, position = self.run.plan, (self.odom["x"], self.odom["y"], self.odom["z"])
        if isinstance(plan, WaypointPlan):
            target = plan.waypoints[plan.index]
            last = plan.index == len(plan.waypoints) - 1
            allowance = 0.0 if last else min(sum(plan._legs[plan.index:]), plan._turn_allowance())
            return math.dist(position, target) + allowance
        return math.dist(position, self.run.status.target)

    def step(self, action):
        action = np.clip(np.nan_to_num(np.asarray(action, np.float64)), -MAX_COMMAND, MAX_COMMAND)
        self.external.latest = (float(action[0]), float(action[1]), float(action[2]), 0.0)
        self.residual.offer(action)
        self.builder.remember_command(action)
        steps = max(1, round(PHYSICS_RATE / ODOM_RATE))
        yaw = self.model.state.yaw
        self.applied_world = (math.cos(yaw) * self.command[0] - math.sin(yaw) * self.command[1],
                              math.sin(yaw) * self.command[0] + math.cos(yaw) * self.command[1])
        for _ in range(steps):
            self.model.command(*self.command)
            self.model.step(1.0 / PHYSICS_RATE)
        dt = steps / PHYSICS_RATE
        self.time += dt
        position = tuple(self.model.state.position)
        self.path.append(position)
        s = self.scenario
        cross = cross_track_errors([position], s.path)[0] if len(s.path) > 1 else 0.0
        self.cross_track_integral += cross * dt
        observation = self._observe()
        done = self.run.finished.is_set()
        truncated = not done and self.time >= s.limit
        reward = -(dt / s.nominal_duration) - 0.5 * cross * dt / s.nominal_duration
        if truncated:
            reward -= 3.0 + 3.0 * min(1.0, self.run.status.remaining / max(self.run.total or 1.0, 1e-6))
        return observation, float(reward), done, truncated, {}

    def summary(self) -> dict[str, Any]:
        """Completion, time, cross-track error and energy of the episode so far."""
        errors = cross_track_errors(self.path, self.scenario.path) if self.path and len(self.scenario.path) > 1 \
            else [0.0]
        return {"finished": self.run.finished.is_set(), "duration_s": self.time,
                "cross_track_mean_m": float(np.mean(errors)), "cross_track_max_m": float(np.max(errors)),
                "energy_wh": self.energy_start - self.model.state.energy_wh}


# -- Running a policy over a batch of episodes -----------------------------------------------------

@torch.inference_mode()
def run_episodes(model: SequenceModel | None, scenarios: Sequence[Scenario], controller: str = "external",
                 seed: int = 0, gains: dict[str, float] | None = None) -> tuple[list[float], list[dict[str, Any]]]:
    """Fly each scenario (the policy batched over them, its state carried); return costs and summaries.

    `controller`: "external" flies `model` through the external-controller path; "residual" the PID with
    `model`'s output as its correction (qai_io.motion.ResidualController; model None: no correction); "pid"
    the I/O engine's own PID (model None); "pid_external" the PID's commands through the external path, with
    the policy's limits and delay (model None): the control a policy is judged beside. `gains`: the PID's
    (default: the io_engine's).
    """
    expert = controller == "pid_external"
    envs = [ExternalPathEnv(s, controller="external" if expert else controller, gains=gains) for s in scenarios]
    observations = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    costs = [0.0] * len(envs)
    active = list(range(len(envs)))
    state = model.initial_state(len(envs)) if model is not None else None
    while active:
        if model is not None:
            x = torch.as_tensor(np.stack(observations))
            actions, state = model.step(x, state)
            actions = actions.numpy()
        else:
            actions = np.zeros((len(envs), 3), np.float32)
            for i in active if expert else ():
                actions[i] = envs[i].expert_action()
        still = []
        for i in active:
            observations[i], reward, done, truncated, _ = envs[i].step(actions[i])
            costs[i] -= reward
            if not (done or truncated):
                still.append(i)
        active = still
    return costs, [env.summary() for env in envs]


# -- The CfC's weights as one vector (for CMA-ES) ------------------------------------------------------

class WeightVector:
    """The trainable weights of a model as one flat vector, leaving out the synapses its NCP wiring masks off."""

    def __init__(self, model: SequenceModel):
        self.model = model
        self.slots: list[tuple[torch.nn.Parameter, torch.Tensor | None]] = []
        masks = {name.rsplit(".", 1)[0]: p for name, p in model.named_parameters() if name.endswith("sparsity_mask")}
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad:
                continue
            layer = name.rsplit(".", 2)[0]
            mask = masks.get(layer)
            if mask is not None and name.endswith(".weight") and mask.shape == parameter.shape:
                self.slots.append((parameter, mask.detach() != 0))
            else:
                self.slots.append((parameter, None))

    def __len__(self) -> int:
        return sum(int(m.sum()) if m is not None else p.numel() for p, m in self.slots)

    def get(self) -> np.ndarray:
        parts = [(p.detach()[m] if m is not None else p.detach().flatten()) for p, m in self.slots]
        return torch.cat(parts).double().numpy()

    @torch.no_grad()
    def set(self, vector: np.ndarray) -> None:
        offset = 0
        for parameter, mask in self.slots:
            n = int(mask.sum()) if mask is not None else parameter.numel()
            values = torch.as_tensor(vector[offset:offset + n], dtype=parameter.dtype)
            if mask is not None:
                parameter[mask] = values
            else:
                parameter.copy_(values.view_as(parameter))
            offset += n


def diagonal_cma(start: np.ndarray, sigma: float, population: int, seed: int):
    """Return a CMA-ES search with a diagonal covariance (the weights are too many for a full one), quiet."""
    return cma.CMAEvolutionStrategy(start, sigma, {"popsize": population, "seed": seed, "CMA_diagonal": True,
                                                   "verbose": -9})


def cma_generation(strategy, weights: WeightVector, cost) -> list[float]:
    """Run one CMA-ES generation over `weights`, every candidate scored by `cost()`; return the costs.

    `cost` flies the same episodes for every candidate (common random numbers: the generation ranks weights,
    not luck).
    """
    candidates = strategy.ask()
    costs = []
    for vector in candidates:
        weights.set(vector)
        costs.append(float(cost()))
    strategy.tell(candidates, costs)
    return costs


# -- Training -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PolicySizes:
    imitation_episodes: int = 120
    imitation_iterations: int = 300
    dagger_episodes: int = 60
    dagger_iterations: int = 200
    chunk: int = 100
    batch: int = 32
    generations: int = 20
    population: int = 8
    episodes_per_candidate: int = 4
    sigma: float = 0.05
    units: int = 16
    motor: int = 4
    validation_episodes: int = 10
    course_runs: int = 3


@torch.inference_mode()
def imitation_data(seed: int, count: int, progress: Progress, learner: SequenceModel | None = None
                   ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Fly episodes through the external path (with its delay), labelled with the PID's commands.

    The PID flies them, or with `learner` the policy being trained (DAgger: labels for the states the policy
    itself reaches).
    """
    observations, labels = [], []
    rng = random.Random(seed)
    for index in range(count):
        env = ExternalPathEnv(random_scenario(rng))
        observation, _ = env.reset(seed=seed * 100_000 + index)
        xs, ys = [], []
        done = truncated = False
        state = None
        while not (done or truncated):
            label = env.expert_action()
            xs.append(observation)
            ys.append(label)
            action = label
            if learner is not None:
                action, state = learner.step(torch.as_tensor(observation[None]), state)
                action = action[0].numpy()
            observation, _, done, truncated, _ = env.step(action)
        observations.append(np.array(xs, np.float32))
        labels.append(np.array(ys, np.float32))
        progress.advance()
    return observations, labels


def scenarios(seed: int, split: str, count: int, conditions: datagen.Conditions = datagen.TRAINING) -> list[Scenario]:
    rng = random.Random(datagen.seed_block(seed, split, 0))
    return [random_scenario(rng, conditions) for _ in range(count)]


def policy_path(model: SequenceModel | None) -> str:
    """Return the io_engine controller a policy flies through: "residual" for a correction, else "external"."""
    return "residual" if model is not None and model.config.extra.get("residual") else "external"


def policy_cost(model: SequenceModel, scenario_list: Sequence[Scenario], seed: int = 0) -> float:
    costs, _ = run_episodes(model, scenario_list, policy_path(model), seed=seed)
    return float(np.mean(costs))


def policy_cost_pid(scenario_list: Sequence[Scenario]) -> float:
    """Return the PID's mean cost on the same episodes: the bar the policy is measured against."""
    return float(np.mean(run_episodes(None, scenario_list, "pid")[0]))


def evaluate_course(model: SequenceModel, conditions: datagen.Conditions, runs: int, seed: int,
                    controller: str = "external") -> dict[str, Any]:
    """Fly the learned policy (through `controller`'s path) and the PID on the standard course, same weather."""
    rng = random.Random(datagen.seed_block(seed, "test", 7))
    results: dict[str, list] = {"policy": [], "pid": []}
    for run in range(runs):
        config = datagen.with_conditions(VehicleConfig(seed=rng.randrange(2**31)), conditions, rng)
        course = course_scenario(config)
        results["policy"].append(run_episodes(model, [course], controller, seed=run)[1][0])
        results["pid"].append(run_episodes(None, [course], "pid", seed=run)[1][0])
    return {name: _mean_summary(summaries) for name, summaries in results.items()}


def _mean_summary(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    finished = [s for s in summaries if s["finished"]]
    out = {"completion": len(finished) / len(summaries), "runs": len(summaries)}
    for key in ("duration_s", "cross_track_mean_m", "cross_track_max_m", "energy_wh"):
        out[key] = float(np.mean([s[key] for s in finished])) if finished else float("nan")
    return out


def train_policy(seed: int = 0, cell: str = "cfc", sizes: PolicySizes = PolicySizes(),
                 progress: Progress = NoProgress()) -> TrainResult:
    torch.manual_seed(seed)
    started = time.perf_counter()
    progress.stage("flying the PID for imitation", sizes.imitation_episodes)
    observations, labels = imitation_data(seed, sizes.imitation_episodes, progress)
    config = ModelConfig("policy", cell, POLICY.features, POLICY_OUTPUTS, units=sizes.units, motor=sizes.motor,
                         seed=seed, extra={"prior": PRIOR})
    model = build(config)
    labels = [model.encode_targets(y, x) for x, y in zip(observations, labels)]
    model.set_normalisation(np.concatenate(observations), np.concatenate(labels))
    validation = scenarios(seed, "validation", sizes.validation_episodes)
    imitation = _fit(model, observations, labels, sizes.imitation_iterations, sizes.chunk, sizes.batch, burn_in=5,
                     seed=seed, progress=progress, validate=lambda: policy_cost(model, validation),
                     validate_every=100)
    # DAgger: the policy flies, the PID labels the states it reaches; retrain on everything.
    progress.stage("DAgger: the policy flies, the PID labels", sizes.dagger_episodes)
    more_x, more_y = imitation_data(seed + 1, sizes.dagger_episodes, progress, learner=model)
    observations += more_x
    labels += [model.encode_targets(y, x) for x, y in zip(more_x, more_y)]
    dagger = _fit(model, observations, labels, sizes.dagger_iterations, sizes.chunk, sizes.batch, burn_in=5,
                  seed=seed + 1, progress=progress, validate=lambda: policy_cost(model, validation),
                  validate_every=100)
    imitation_cost = policy_cost(model, validation)

    # CMA-ES over the weights (diagonal covariance: ~1,000 dimensions), each candidate flown on the same
    # fresh episodes in a generation; the best candidate seen on validation episodes is kept.
    weights = WeightVector(model)
    start = weights.get()
    strategy = diagonal_cma(start, sizes.sigma, sizes.population, seed + 1)
    best_vector, best_cost = start, imitation_cost
    history = []
    progress.stage("CMA-ES over the CfC's weights", sizes.generations)
    rng = random.Random(datagen.seed_block(seed, "train", 999))
    for generation in range(sizes.generations):
        episodes = [random_scenario(rng) for _ in range(sizes.episodes_per_candidate)]
        costs = cma_generation(strategy, weights, lambda: policy_cost(model, episodes, seed=generation))
        weights.set(strategy.result.xfavorite)
        validation_cost = policy_cost(model, validation)
        if validation_cost < best_cost:
            best_vector, best_cost = strategy.result.xfavorite.copy(), validation_cost
        history.append((generation, float(np.min(costs)), float(np.median(costs)), validation_cost))
        progress.advance()
    weights.set(best_vector)
    model.eval()
    progress.stage("flying the standard course (policy and PID)", 2)
    metrics: dict[str, Any] = {"validation_cost": {"imitation": imitation_cost, "after_cma_es": best_cost,
                                                   "pid": policy_cost_pid(validation)}}
    for name in ("training", "outside"):
        metrics[f"held_out_{name}"] = evaluate_course(model, datagen.CONDITIONS[name], sizes.course_runs, seed)
        progress.advance()
    cma_es = {"generations": sizes.generations, "population": sizes.population, "dimensions": len(weights),
              "history": history}
    training = {"imitation": imitation, "dagger": dagger, "cma_es": cma_es,
                "seconds": round(time.perf_counter() - started, 1), "trainable_parameters": trainable_parameters(model)}
    return TrainResult(model, metrics, {"seed": seed, "imitation_episodes": sizes.imitation_episodes,
                                        "algorithm": "imitation of the PID, then CMA-ES (cma, diagonal)"}, training)
