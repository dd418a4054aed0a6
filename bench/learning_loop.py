"""The learning loop on recorded flights: record flights in a new condition, fine-tune, compare on held-out ones.

One simulated drone (`qai-edge up` on a profile derived from config/edge.yaml: sim_vehicle, io_engine,
mission_engine and the recorder, each its own process) flies `--flights` random missions (take off, two or
three legs at 2-5 m/s, land) carrying `--payload` kg, a load the shipped anomaly model never trained on (its
flights carry 0-0.5 kg), in light wind; the recorder writes each mission as its own rosbag2 (MCAP) bag. The
first `--train` flights fine-tune the shipped anomaly model exactly as a user would (`qai-train anomaly
--from-recordings DIR`, which holds a quarter of them out for its own validation); the other flights are held
out, read by nothing but the comparison, and every second one of them carries a fault the simulator injects
2 s into its survey leg (sim_vehicle's fault parameters, set over ROS; the kinds in turn: a stuck odometry
or IMU, a dead IMU, battery or GPS stream, vibration), its onset taken on the same clock the recorder
stamps with. Figures: each clean held-out flight's mean next-tick NLL (the model's own loss, lower
is better) under the shipped and the fine-tuned model, their paired difference with its bootstrap 95 %
interval; and each model's detection on the held-out flights (recall of the faults within 5 s, false alarms
on clean flights and before onsets, with the 95 % upper bound of their rate).

    .venv/bin/python bench/learning_loop.py [--flights 30] [--train 20] [--payload 1.0] [--seed 5]
                                            [--json PATH] [--keep-dir]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from qai_edge.figures import FigureLog
from qai_edge.isolation import isolate

ROOT = Path(__file__).resolve().parent.parent
HEALTHY = re.compile(r"\[qai-edge\] all \d+ nodes healthy")
NAMESPACE = "flyer"
FAULT_SECONDS = 20.0  # a fault is cleared after this, if its mission has not ended
STREAMS_BACK = 5.0  # s after a fault is cleared: the io_engine refuses a take-off while a stream is stale
# Fault kind (qai_intelligence.data.FAULT_KINDS) -> sim_vehicle's parameters that make it, and clear it.
FAULTS = {"stuck_odom": ({"fault_stuck": "odom"}, {"fault_stuck": ""}),
          "dropout_imu": ({"fault_dropout": "imu"}, {"fault_dropout": ""}),
          "vibration": ({"fault_vibration": 1.0}, {"fault_vibration": 0.0}),
          "stuck_imu": ({"fault_stuck": "imu"}, {"fault_stuck": ""}),
          "dropout_battery": ({"fault_dropout": "battery"}, {"fault_dropout": ""}),
          "dropout_gps": ({"fault_dropout": "gps"}, {"fault_dropout": ""})}
# Not a battery sag: the io_engine's battery reserve trips and stays tripped (as it should), so every later
# flight of the run would be refused its take-off.


def profile(workdir: Path, payload: float, seed: int) -> Path:
    base = yaml.safe_load((ROOT / "config" / "edge.yaml").read_text())
    base["namespace"], base["robot_id"] = NAMESPACE, NAMESPACE
    base.pop("broker", None)
    nodes = base["nodes"]
    for name in ("hub_link", "quantum_bridge", "intelligence_engine"):
        nodes[name]["enabled"] = False
    data = str(workdir / "data")
    nodes["mission_engine"]["parameters"]["data_dir"] = data
    nodes["io_engine"]["parameters"]["data_dir"] = data
    nodes["recorder"]["enabled"] = True
    nodes["recorder"]["parameters"].update(data_dir=data, profile_name="learning_loop", record_idle=False)
    nodes["sim_vehicle"]["parameters"].update(payload=payload, seed=seed, wind=[1.0, 0.5], wind_gust=0.5,
                                              battery_capacity_wh=400.0)
    path = workdir / "profile.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def mission(rng: random.Random, index: int) -> dict:
    x, y = rng.uniform(-5, 5), rng.uniform(-5, 5)
    tasks = [{"id": "takeoff", "kind": "navigate", "parameters": {"waypoints": [[x, y, rng.uniform(3, 6)]],
                                                                  "speed": 2.0}}]
    waypoints = []
    for _ in range(rng.randint(2, 3)):
        x, y = max(-25.0, min(25.0, x + rng.uniform(-15, 15))), max(-25.0, min(25.0, y + rng.uniform(-15, 15)))
        waypoints.append([round(x, 2), round(y, 2), round(rng.uniform(3, 8), 2)])
    tasks.append({"id": "fly", "kind": "navigate", "depends_on": ["takeoff"],
                  "parameters": {"waypoints": waypoints, "speed": round(rng.uniform(2, 5), 2)}})
    tasks.append({"id": "land", "kind": "land", "depends_on": ["fly"]})
    return {"id": f"flight-{index:03d}", "name": f"recorded flight {index}", "tasks": tasks}


class SimFaults:
    """Set sim_vehicle's fault parameters over ROS (SetParameters), from a node of its own."""

    def __init__(self):
        import rclpy
        from rcl_interfaces.srv import SetParameters
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        self.context = rclpy.Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("learning_loop_faults", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.client = self.node.create_client(SetParameters, f"/{NAMESPACE}/sim_vehicle/set_parameters")

    def set(self, values: dict) -> None:
        import rclpy
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        if not self.client.wait_for_service(timeout_sec=10):
            raise RuntimeError("sim_vehicle's set_parameters is not there")
        future = self.client.call_async(SetParameters.Request(
            parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]))
        rclpy.spin_until_future_complete(self.node, future, executor=self.executor, timeout_sec=10)
        if not future.done() or not all(r.successful for r in future.result().results):
            raise RuntimeError(f"sim_vehicle refused {values}")

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def fault_of(args, index: int) -> str | None:
    """Return the fault of flight `index`: every second held-out flight carries one, the kinds in turn."""
    held = index - args.train
    return list(FAULTS)[held // 2 % len(FAULTS)] if held >= 0 and held % 2 == 1 else None


def fly_with_fault(missions, faults: SimFaults, spec: dict, fault: str) -> tuple[int, str]:
    """Fly a mission and inject `fault` 2 s into its survey leg; return the onset (ns, wall clock) and outcome."""
    from qai_mission.model import TaskStatus

    mission_id = missions.submit(spec)
    deadline = time.monotonic() + 120
    while True:
        snapshot = missions.feedback(mission_id)
        if snapshot is not None and any(t.id == "fly" and t.state == TaskStatus.RUNNING for t in snapshot.tasks):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{mission_id}: its survey leg did not start")
        time.sleep(0.05)
    time.sleep(2.0)
    onset = time.time_ns()
    faults.set(FAULTS[fault][0])
    try:  # the fault lasts until the mission ends, or FAULT_SECONDS (a vehicle holding for its sensor may wait)
        deadline = time.monotonic() + FAULT_SECONDS
        while not missions.is_complete(mission_id) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        faults.set(FAULTS[fault][1])
    outcome = missions.wait(mission_id, 300).outcome.name
    time.sleep(STREAMS_BACK)  # the stream the fault stopped flows again before the next take-off is asked for
    return onset, outcome


def record(args, workdir: Path) -> tuple[Path, dict]:
    from qai_mission.client import MissionClient, MissionOutcome

    up_log = workdir / "up.log"  # a file, not a pipe: a pipe nobody reads would stop the supervisor when full
    with open(up_log, "wb") as output:
        up = subprocess.Popen([sys.executable, "-m", "qai_edge.cli", "up", "--profile", str(profile(
            workdir, args.payload, args.seed))], stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not HEALTHY.search(up_log.read_text(errors="replace")):
            if time.monotonic() > deadline or up.poll() is not None:
                raise RuntimeError(f"the robot did not come up healthy within 120 s (see {up_log})")
            time.sleep(0.2)
        rng = random.Random(args.seed)
        onsets: dict[str, tuple[str, int]] = {}
        faults = SimFaults()
        with MissionClient(namespace=f"/{NAMESPACE}") as missions:
            for index in range(args.flights):
                spec, fault = mission(rng, index), fault_of(args, index)
                if fault is None:
                    result = missions.run(spec, timeout=300)
                    outcome = result.outcome.name
                    if result.outcome is not MissionOutcome.SUCCEEDED:
                        raise RuntimeError(f"flight {index}: {outcome}: {result.message}")
                else:  # the fault may end the mission (the safety supervisor): land, whatever happened
                    onset, outcome = fly_with_fault(missions, faults, spec, fault)
                    onsets[spec["id"]] = (fault, onset)
                    if outcome != "SUCCEEDED":
                        missions.run({"id": f"land-{index:03d}", "tasks": [{"id": "land", "kind": "land"}]},
                                     timeout=120)
                print(f"flight {index + 1}/{args.flights}: {outcome}{' with ' + fault if fault else ''}", flush=True)
        faults.close()
        time.sleep(2.0)  # the last bag closes 0.1 s after its mission's final state
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
    return workdir / "data" / NAMESPACE / "recordings", onsets


def compare(args, recorded: tuple[Path, dict], workdir: Path, log: FigureLog) -> None:
    import numpy as np
    import torch

    from qai_intelligence import checkpoint
    from qai_intelligence.features import ANOMALY
    from qai_intelligence.finetune import nll_per_flight
    from qai_intelligence.metrics import FlightLabel, detection_metrics
    from qai_intelligence.recordings import find_bags, read_flight
    from qai_intelligence.statistics import paired_difference
    from qai_intelligence.store import SHIPPED
    from qai_intelligence.training import anomaly_scores

    recordings, onsets = recorded
    bags = [bag for bag in find_bags([recordings]) if not bag.name.split("_", 2)[-1].startswith("land-")]
    if len(bags) != args.flights:
        raise RuntimeError(f"{len(bags)} mission bags recorded, {args.flights} flown")
    train_dir = workdir / "train"
    train_dir.mkdir()
    for bag in bags[:args.train]:
        shutil.copytree(bag, train_dir / bag.name)
    out = workdir / "tuned"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "qai_intelligence.cli", "anomaly", "--from-recordings",
                           str(train_dir), "--seed", str(args.seed), "--out", str(out)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"qai-train failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    tuning_s = time.perf_counter() - started
    torch.set_num_threads(1)
    held = [read_flight(bag) for bag in bags[args.train:]]

    def label(flight) -> FlightLabel:
        if flight.mission_id not in onsets:
            return FlightLabel(None, None)
        fault, onset_ns = onsets[flight.mission_id]
        return FlightLabel(fault, max(0, round((onset_ns - flight.start_ns) * 1e-9 / 0.05)))

    labels = [label(f) for f in held]
    clean = [f for f, label in zip(held, labels) if label.fault is None]
    models = {"shipped": checkpoint.load(SHIPPED / "anomaly", "anomaly", ANOMALY.features)[0],
              "fine-tuned": checkpoint.load(out, "anomaly", ANOMALY.features)[0]}
    nll = {name: nll_per_flight(model, [f.features for f in clean]) for name, model in models.items()}
    difference = paired_difference(nll["fine-tuned"], nll["shipped"])
    n = len(clean)
    log.add(f"clean held-out recorded flights' next-tick NLL, fine-tuned (n={n} flights of {args.payload:g} kg; "
            f"trained on {args.train}; lower is better)", float(np.mean(nll["fine-tuned"])), "nats",
            baseline=float(np.mean(nll["shipped"])))
    log.add(f"fine-tuned minus shipped NLL, paired over the n={n} clean held-out flights (95 % CI "
            f"[{difference['low']:.3f}, {difference['high']:.3f}])", difference["mean"], "nats",
            target="interval below 0", met=bool(difference["high"] < 0))
    detections = {}
    for name, model in models.items():
        extra = model.config.extra
        scores = anomaly_scores(model, [f.features for f in held], np.array(extra["residual_std"]),
                                extra["smoothing"])
        found = detections[name] = detection_metrics(scores, labels, extra["threshold"], 0.05)
        upper = 0.5 * _chi2_upper(found["false_alarms"]) / found["fault_free_hours"]  # exact Poisson 95 %
        log.add(f"{name} model: faults detected within 5 s, of the {found['faulted_flights']} faulted held-out "
                f"flights (by kind: {found['recall_by_fault']})", found["detected"], "faults")
        log.add(f"{name} model: false alarms in {found['fault_free_hours'] * 60:.1f} min without a fault "
                f"(clean flights, and faulted ones before the onset; 95 % upper bound {upper:.0f}/h)",
                found["false_alarms"], "alarms")
    log.add("fine-tuning on the recorded training flights, wall time", tuning_s, "s")
    meta = checkpoint.read_meta(out)
    print(json.dumps({"recordings_used": len(meta["data"]["recordings"]), "nll": nll, "difference": difference,
                      "detection": detections, "onsets": onsets,
                      "training": {k: v for k, v in meta["training"].items() if k != "history"}}, indent=1))


def _chi2_upper(count: int) -> float:
    """Return the 97.5th percentile of chi-squared with 2(count+1) degrees of freedom (Poisson upper bound x2)."""
    from scipy.stats import chi2

    return float(chi2.ppf(0.975, 2 * (count + 1)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flights", type=int, default=30, help="missions recorded (30)")
    parser.add_argument("--train", type=int, default=20, help="of which the first fine-tune the model (20)")
    parser.add_argument("--payload", type=float, default=1.0, help="kg carried: outside the training's 0-0.5 (1.0)")
    parser.add_argument("--seed", type=int, default=5, help="seed of the missions, the vehicle and training (5)")
    parser.add_argument("--json", help="also write the figures to this file (bench/run_all.py)")
    parser.add_argument("--keep-dir", action="store_true", help="keep the recordings and the fine-tuned model")
    args = parser.parse_args()
    if not (2 <= args.train < args.flights and 0 <= args.payload <= 5):
        parser.error("--train: at least 2 and fewer than --flights; --payload 0 to 5")
    log = FigureLog(args.json, "learning_loop")
    environment = isolate("qai-edge-bench-learning-")
    workdir = Path(tempfile.mkdtemp(prefix="qai-learning-loop-"))
    print(f"learning loop: {args.flights} flights of {args.payload:g} kg, ROS_DOMAIN_ID="
          f"{environment['ROS_DOMAIN_ID']}, files in {workdir}", flush=True)
    try:
        compare(args, record(args, workdir), workdir, log)
    finally:
        if not args.keep_dir:
            shutil.rmtree(workdir, ignore_errors=True)
    for record_ in log.records:
        value = "-" if record_["value"] is None else f"{record_['value']:.4g}"
        print(f"  {record_['figure']}: {value} {record_['unit']}")
    return 0 if all(math.isfinite(r["value"]) for r in log.records if r["value"] is not None) else 1


if __name__ == "__main__":
    sys.exit(main())
