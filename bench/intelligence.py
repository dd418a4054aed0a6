"""Intelligence engine figures, each beside its baseline measured in the same run.

- Per-tick inference inside the node, CfC vs LTC vs a GRU of the same size, p50/p99 (target: CfC p99 < 1 ms):
  a real intelligence_engine process per cell, fed by sim_vehicle and an io_engine flying a navigate task with
  `controller: external` (so the policy runs on every odometry message too), its models of that cell (trained
  ones for CfC, same-size fresh ones for LTC and GRU: latency does not depend on the weights); the figures are
  the node's own, read from its /diagnostics: the model's step and the whole tick (features, step, scoring),
  each model's first 20 steps left out (cold caches), with the sample count. Beside them: the same model
  stepped alone in-process the way the node steps it (numpy for a CfC, torch for the others), warm-up left out.
- The intelligence engine's CPU share while the robot idles on the ground, its sensors streaming (target:
  <= 5 % of a core), beside what its models alone cost at the node's tick rates (the alone step time x rate).
- Endurance MAE (s and %) vs the baseline, anomaly precision/recall/delay vs the z-score baseline, the learned
  policy vs the PID on the standard course (completion, time, cross-track error, energy): the shipped models
  on held-out flights (never trained on) in both sets, the training conditions and outside them.
- Training time per model, as recorded in the shipped checkpoints' metadata (with the command that made them).

    nice -n 10 .venv/bin/python bench/intelligence.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from qai_edge.figures import FigureLog
from qai_edge.isolation import isolate

CELLS = ("cfc", "ltc", "gru")
CELL_NAMES = {"cfc": "CfC", "ltc": "LTC", "gru": "GRU"}
TASKS = ("endurance", "anomaly", "policy")


def start(executable: str, namespace: str, parameters: dict, directory: Path) -> subprocess.Popen:
    import yaml

    from qai_edge.paths import installed_executable

    params = directory / f"{executable}.yaml"
    params.write_text(yaml.safe_dump({f"{namespace}/{executable}": {"ros__parameters": parameters}}))
    return subprocess.Popen([str(installed_executable(executable)), "--ros-args", "-r", f"__ns:={namespace}",
                             "--params-file", str(params)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def seed_store(store: Path, cell: str) -> None:
    """Models of `cell` as the active v0001 of each task: shipped ones for cfc, same-size fresh ones otherwise."""
    from qai_intelligence import checkpoint
    from qai_intelligence.models import ModelConfig, build
    from qai_intelligence.store import SHIPPED

    for task in TASKS:
        shipped, _ = checkpoint.load(SHIPPED / task)
        config = shipped.config if cell == "cfc" else ModelConfig(**{**vars(shipped.config), "cell": cell})
        model = shipped if cell == "cfc" else build(config)
        if cell != "cfc":
            statistics = {k: v for k, v in shipped.state_dict().items() if k.startswith(("input_", "output_"))}
            model.load_state_dict(statistics, strict=False)
        checkpoint.save(model, store / "bench" / task / "v0001")
        (store / "bench" / task / "active.json").write_text(json.dumps({"version": "v0001", "history": ["v0001"]}))


def cpu_seconds(pid: int) -> float:
    """Return the CPU time (user + system, s) a process has used so far."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def node_latency(cell: str, seconds: float, idle: float) -> dict:
    """Run sim_vehicle, io_engine (external) and intelligence_engine with `cell` models; idle; fly; read figures.

    Idle: the intelligence engine's CPU share over `idle` s on the ground (3 s after it reported, sensors
    streaming). Then a navigate task; after `seconds` s of flight, its /diagnostics.
    """
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.action import ActionClient

    from qai_edge.qos import ACTION_QOS_ARGUMENTS
    from qai_interfaces.action import RunTask
    from qai_interfaces.msg import Task
    from diagnostic_msgs.msg import KeyValue

    namespace = f"/bench_{cell}"
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        seed_store(directory / "store", cell)
        processes = [start("sim_vehicle", namespace, {}, directory),
                     start("io_engine", namespace, {"controller": "external"}, directory),
                     start("intelligence_engine", namespace, {"model_store": str(directory / "store"),
                                                              "robot_id": "bench"}, directory)]
        rclpy.init()
        node = rclpy.create_node(f"bench_intelligence_{cell}")
        latest: dict[str, dict] = {}

        def on_diagnostics(array):
            for status in array.status:
                latest[status.name] = {kv.key: kv.value for kv in status.values}

        node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 50)
        client = ActionClient(node, RunTask, f"{namespace}/io_engine/run_task", **ACTION_QOS_ARGUMENTS)
        name = f"{namespace}/intelligence_engine"
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not (name in latest and client.server_is_ready()):
                rclpy.spin_once(node, timeout_sec=0.1)
            settle = time.monotonic() + 3.0
            while time.monotonic() < settle:
                rclpy.spin_once(node, timeout_sec=0.1)
            engine = processes[2].pid
            began, used = time.monotonic(), cpu_seconds(engine)
            while time.monotonic() < began + idle:
                rclpy.spin_once(node, timeout_sec=0.1)
            idle_share = (cpu_seconds(engine) - used) / (time.monotonic() - began) * 100
            route = [[0, 0, 4], [30, 0, 4], [30, 30, 6], [0, 30, 4], [0, 0, 4]]
            goal = RunTask.Goal(mission_id="bench", attempt=1, task=Task(id="fly", kind="navigate", parameters=[
                KeyValue(key="waypoints", value=json.dumps(route)), KeyValue(key="speed", value="4.0")]))
            client.send_goal_async(goal)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.1)
            values = latest.get(name, {})
        finally:
            node.destroy_node()
            rclpy.shutdown()
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
    figures = {task: {"p50_ms": float(values.get(f"{task}_latency_p50_ms", "nan")),
                      "p99_ms": float(values.get(f"{task}_latency_p99_ms", "nan")),
                      "samples": int(values.get(f"{task}_latency_samples", "0")),
                      "tick_p50_ms": float(values.get(f"{task}_tick_p50_ms", "nan")),
                      "tick_p99_ms": float(values.get(f"{task}_tick_p99_ms", "nan")),
                      "tick_samples": int(values.get(f"{task}_tick_samples", "0")),
                      "ticks": int(values.get(f"{task}_ticks", "0"))} for task in TASKS}
    return {"tasks": figures, "idle_cpu_percent": idle_share}


def alone_latency(cell: str, steps: int = 3000, warm_up: int = 20) -> dict[str, dict[str, float]]:
    """Step the same models alone in this process as the node steps them (batch 1, state carried).

    A CfC through the numpy step the node runs (qai_intelligence.fast), other cells through torch; the first
    `warm_up` steps left out, as in the node. Also the mean step time, for the models' own CPU share.
    """
    import numpy as np

    from qai_intelligence import checkpoint
    from qai_intelligence.fast import stepper
    from qai_intelligence.models import ModelConfig, build
    from qai_intelligence.store import SHIPPED

    out = {}
    for task in TASKS:
        if cell == "cfc":
            model = checkpoint.load_for_inference(SHIPPED / task)[0]
        else:
            shipped, _ = checkpoint.load(SHIPPED / task)
            model = build(ModelConfig(**{**vars(shipped.config), "cell": cell})).eval()
        step = stepper(model)
        x = np.zeros((1, len(model.config.inputs)), dtype=np.float32)
        state, times = None, []
        for _ in range(steps):
            started = time.perf_counter()
            _, state = step(x, state, 1.0)
            times.append(time.perf_counter() - started)
        kept = np.array(times[warm_up:]) * 1e3
        out[task] = {"p50_ms": float(np.percentile(kept, 50)), "p99_ms": float(np.percentile(kept, 99)),
                     "mean_ms": float(kept.mean()), "samples": len(kept)}
    return out


def held_out(quick: bool) -> dict:
    from qai_intelligence import checkpoint
    from qai_intelligence import data as datagen
    from qai_intelligence.policy import evaluate_course
    from qai_intelligence.store import SHIPPED
    from qai_intelligence.baselines import EnduranceBaseline
    from qai_intelligence.training import (ZScoreDetector, _labels, choose_threshold, evaluate_anomaly,
                                           evaluate_endurance)

    seed, n = 0, (8 if quick else 40)
    results: dict = {}
    endurance, meta = checkpoint.load(SHIPPED / "endurance")
    fitted = meta["metrics"]["baseline"]  # fitted on the model's own training flights, as the node uses it
    baseline = EnduranceBaseline(scale=fitted["scale"], offset=fitted["offset"])
    anomaly, _ = checkpoint.load(SHIPPED / "anomaly")
    train = datagen.anomaly_flights(seed, "train", 12 if quick else 100)
    validation = datagen.anomaly_flights(seed, "validation", 18 if quick else 72, faults=True, clean_share=0.5)
    detector = ZScoreDetector.fit([f.features for f in train])
    detector.calibrate([f.features for f in validation if f.fault is None])
    threshold = choose_threshold([detector.scores(f.features) for f in validation], _labels(validation),
                                 datagen.ANOMALY_TICK)
    policy, _ = checkpoint.load(SHIPPED / "policy")
    for name in ("training", "outside"):
        conditions = datagen.CONDITIONS[name]
        results[name] = {
            "endurance": evaluate_endurance(endurance, datagen.endurance_flights(seed, "test", n, conditions),
                                            baseline),
            "anomaly": evaluate_anomaly(anomaly, datagen.anomaly_flights(
                seed, "test", 18 if quick else 45, conditions, faults=True), detector, threshold),
            "policy": evaluate_course(policy, conditions, 1 if quick else 3, seed)}
    return results


def training_times() -> dict:
    from qai_intelligence.store import SHIPPED

    out = {}
    for task in TASKS:
        meta = json.loads((SHIPPED / task / "meta.json").read_text())
        out[task] = {"seconds": meta.get("training", {}).get("total_seconds"), "command": meta.get("command"),
                     "trainable_parameters": meta.get("training", {}).get("trainable_parameters")}
    return out


def log_held_out(log: FigureLog, name: str, result: dict) -> None:
    """Log the held-out figures of one set of conditions, each model beside its baseline."""
    where = f"held-out, {name} conditions"
    e = result["endurance"]
    log.add(f"endurance MAE, {where}, vs baseline", e["model"]["mae_s"], "s", baseline=e["baseline"]["mae_s"],
            ratio=e["model"]["mae_s"] / e["baseline"]["mae_s"])
    log.add(f"endurance MAE last 5 min, {where}, vs baseline", e["model"]["mae_last_5min_s"], "s",
            baseline=e["baseline"]["mae_last_5min_s"])
    a = result["anomaly"]
    for key, label, unit in (("precision", "precision", ""), ("recall", "recall", ""),
                             ("delay_median_s", "delay p50", "s"),
                             ("false_alarms_per_hour_clean", "false alarms (clean flights)", "/h")):
        log.add(f"anomaly {label}, {where}, vs z-score", a["model"][key], unit, baseline=a["baseline"][key])
    p = result["policy"]
    for key, label, unit in (("completion", "completion", ""), ("duration_s", "time", "s"),
                             ("cross_track_mean_m", "cross-track mean", "m"), ("energy_wh", "energy", "Wh")):
        log.add(f"course, learned policy {label}, {where}, vs PID", p["policy"][key], unit, baseline=p["pid"][key])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer held-out flights and a shorter node run")
    parser.add_argument("--json", help="also write the figures to this file (bench/run_all.py)")
    args = parser.parse_args()
    log = FigureLog(args.json, "intelligence")
    isolate("qai-bench-intelligence-")
    import torch

    torch.set_num_threads(1)
    from qai_intelligence.parameters import PARAMETERS

    defaults = {spec.name: spec.default for spec in PARAMETERS}
    rates = {"endurance": 1 / defaults["endurance_period"], "anomaly": 1 / defaults["anomaly_period"]}  # idle
    print("== Per-tick time, ms (inside the node: its /diagnostics, first 20 steps of each model left out; alone:"
          " the model stepped in-process as the node steps it)")
    print(f"{'model':10} {'cell':4} {'tick p50':>9} {'tick p99':>9} {'step p50':>9} {'step p99':>9} "
          f"{'alone p50':>10} {'alone p99':>10} {'samples':>8}")
    idle = {}
    for cell in CELLS:
        run = node_latency(cell, 15 if args.quick else 40, 10 if args.quick else 30)
        inside, alone = run["tasks"], alone_latency(cell)
        models_alone = sum(rate * alone[task]["mean_ms"] / 10 for task, rate in rates.items())  # % of a core
        idle[cell] = (run["idle_cpu_percent"], models_alone)
        for task in TASKS:
            i, a = inside[task], alone[task]
            print(f"{task:10} {cell:4} {i['tick_p50_ms']:9.3f} {i['tick_p99_ms']:9.3f} {i['p50_ms']:9.3f} "
                  f"{i['p99_ms']:9.3f} {a['p50_ms']:10.3f} {a['p99_ms']:10.3f} {i['tick_samples']:8d}")
            for share in ("p50", "p99") if cell == "cfc" else ("p99",):
                node_ms, alone_ms = i[f"tick_{share}_ms"], a[f"{share}_ms"]
                log.add(f"{task} whole tick in the node, {CELL_NAMES[cell]} {share}, vs the model alone", node_ms,
                        "ms", baseline=alone_ms, ratio=node_ms / alone_ms, samples=i["tick_samples"],
                        alone_samples=a["samples"],
                        **({"target": "< 1 ms", "met": node_ms < 1.0} if (cell, share) == ("cfc", "p99") else {}))
            log.add(f"{task} model step in the node, {CELL_NAMES[cell]} p99, vs the model alone", i["p99_ms"], "ms",
                    baseline=a["p99_ms"], ratio=i["p99_ms"] / a["p99_ms"], samples=i["samples"])
    print("\n== intelligence_engine idle on the ground, % of one core (beside: its models alone at the node's rates)")
    for cell, (share, models_alone) in idle.items():
        print(f"{CELL_NAMES[cell]:4} node {share:5.2f} %   models alone {models_alone:5.3f} %   "
              f"ratio {share / models_alone:.0f}x")
        log.add(f"intelligence_engine idle CPU, {CELL_NAMES[cell]} models, vs the models alone at its rates", share,
                "% core", baseline=models_alone, ratio=share / models_alone, window_s=10 if args.quick else 30,
                **({"target": "<= 5 % core", "met": share <= 5.0} if cell == "cfc" else {}))
    results = held_out(args.quick)
    for name, result in results.items():
        print(f"\n== Held-out flights: {name} conditions")
        log_held_out(log, name, result)
        e = result["endurance"]
        print(f"endurance MAE        model {e['model']['mae_s']:7.1f} s ({e['model']['mae_percent']:5.1f} %)   "
              f"baseline {e['baseline']['mae_s']:7.1f} s ({e['baseline']['mae_percent']:5.1f} %)   "
              f"ratio {e['model']['mae_s'] / e['baseline']['mae_s']:.2f}")
        print(f"  last 5 min         model {e['model']['mae_last_5min_s']:7.1f} s          "
              f"baseline {e['baseline']['mae_last_5min_s']:7.1f} s")
        a = result["anomaly"]
        for who in ("model", "baseline"):
            r = a[who]
            print(f"anomaly {who:9}    precision {r['precision']:.2f} recall {r['recall']:.2f} "
                  f"delay p50 {r['delay_median_s']:.2f} s p90 {r['delay_p90_s']:.2f} s, "
                  f"false alarms/h (clean) {r['false_alarms_per_hour_clean']:.1f}; recall by fault "
                  + ", ".join(f"{k} {v:.2f}" for k, v in r["recall_by_fault"].items()))
        for who in ("policy", "pid"):
            r = result["policy"][who]
            print(f"course {who:7}      completion {r['completion']:.2f}, time {r['duration_s']:6.1f} s, "
                  f"cross-track mean {r['cross_track_mean_m']:.2f} m max {r['cross_track_max_m']:.2f} m, "
                  f"energy {r['energy_wh']:.2f} Wh")
    print("\n== Training time on this machine (from the shipped checkpoints' metadata)")
    for task, info in training_times().items():
        print(f"{task:10} {info['seconds']} s, {info['trainable_parameters']} weights: {info['command']}")
        log.add(f"{task} model training time (shipped checkpoint's metadata, not this run)", info["seconds"], "s")


if __name__ == "__main__":
    main()
