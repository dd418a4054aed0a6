"""The held-out evaluation: each model beside its baselines, unit by unit, with 95 % intervals.

No rclpy import.

Flights come from the `heldout` block of a seed (`qai_intelligence.data.seed_block`): training, validation,
the promotion gate and the development runs draw from other blocks, so with a seed not used before these are
flights no one has looked at. The unit is the flight (or the course run): differences are paired per unit
(the same flight for the model and its baseline) and their intervals bootstrapped over units
(qai_intelligence.statistics); shares get Wilson intervals; false alarms a one-sided 95 % upper bound over
the time in which an alarm would be false.

  endurance  per-flight MAE of the time left, model minus the autopilot estimate fitted on the model's own
             training flights; also per bucket of time left and for flights with and without a cell sag;
             and model minus a tuned ridge regression on the model's inputs and that estimate
  anomaly    recall and precision (model and z-score baseline, its threshold tuned on validation flights),
             recall per fault group, false alarms an hour
  course     the learned policy and the PID through the same external-controller harness: completion, and
             paired differences of time, cross-track error and energy over runs both finished
"""

from __future__ import annotations

import random
from typing import Any, Sequence

import numpy as np

from qai_intelligence import data as datagen
from qai_intelligence.data import FAULT_GROUPS, FAULT_KINDS
from qai_intelligence.statistics import mean_interval, paired_difference, poisson_upper, wilson

SPLIT = "heldout"
BUCKETS = ((0.0, 120.0), (120.0, 300.0), (300.0, 600.0), (600.0, float("inf")))  # s of flight left


def _flight_mae(predicted: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    error = np.abs(predicted - truth)
    if mask is not None:
        error = error[mask]
    return float(error.mean()) if len(error) else float("nan")


def endurance(model, baseline, conditions: datagen.Conditions, flights: int, seed: int,
              regressor=None) -> dict[str, Any]:
    """Return the endurance report on `flights` held-out flights under `conditions`.

    `baseline`: the fitted autopilot estimate; `regressor` (optional): a stronger baseline with a `flight`
    method (qai_intelligence.baselines.LinearEndurance), reported beside it.
    """
    from qai_intelligence.training import rollout

    held = datagen.endurance_flights(seed, SPLIT, flights, conditions)
    predicted = [np.maximum(0.0, p[:, 0]) for p in rollout(model, [f.features for f in held])]
    estimated = [baseline.flight(f.features, datagen.ENDURANCE_TICK) for f in held]
    truth = [f.remaining for f in held]
    per_flight = {"model": [_flight_mae(p, t) for p, t in zip(predicted, truth)],
                  "baseline": [_flight_mae(b, t) for b, t in zip(estimated, truth)]}
    report: dict[str, Any] = {
        "flights": flights, "ticks": int(sum(len(t) for t in truth)),
        "model_mae_s": mean_interval(per_flight["model"]), "baseline_mae_s": mean_interval(per_flight["baseline"]),
        "difference_s": paired_difference(per_flight["model"], per_flight["baseline"]), "buckets": {},
        "sag_flights": sum(f.sag_at is not None for f in held)}
    for low, high in BUCKETS:
        model_mae, baseline_mae = [], []
        for p, b, t in zip(predicted, estimated, truth):
            mask = (t >= low) & (t < high)
            model_mae.append(_flight_mae(p, t, mask) if mask.any() else np.nan)
            baseline_mae.append(_flight_mae(b, t, mask) if mask.any() else np.nan)
        report["buckets"][f"{low:g}-{high:g} s"] = {"model_mae_s": mean_interval(model_mae),
                                                    "difference_s": paired_difference(model_mae, baseline_mae)}
    for name, keep in (("sag", lambda f: f.sag_at is not None), ("no_sag", lambda f: f.sag_at is None)):
        chosen = [i for i, f in enumerate(held) if keep(f)]
        report[name] = paired_difference([per_flight["model"][i] for i in chosen],
                                         [per_flight["baseline"][i] for i in chosen])
    if regressor is not None:
        fitted = [_flight_mae(regressor.flight(f.features, datagen.ENDURANCE_TICK), t) for f, t in zip(held, truth)]
        report["regressor_mae_s"] = mean_interval(fitted)
        report["difference_vs_regressor_s"] = paired_difference(per_flight["model"], fitted)
    return report


def _detection(metrics: dict[str, Any], labels: Sequence, flights: Sequence) -> dict[str, Any]:
    detected, faulted, false_alarms = metrics["detected"], metrics["faulted_flights"], metrics["false_alarms"]
    groups: dict[str, list[int]] = {}
    for group, share in metrics["recall_by_fault"].items():
        total = sum(1 for f in flights if f.fault and FAULT_GROUPS[f.fault] == group)
        groups[group] = wilson(round(share * total), total)
    return {"recall": wilson(detected, faulted), "precision": wilson(detected, detected + false_alarms),
            "false_alarms": false_alarms, "fault_free_hours": metrics["fault_free_hours"],
            "false_alarms_per_hour": metrics["false_alarms_per_hour_clean"],
            "false_alarms_per_hour_upper95": poisson_upper(false_alarms, metrics["fault_free_hours"]),
            "delay_median_s": metrics["delay_median_s"], "recall_by_group": groups}


def anomaly(model, detector, detector_threshold: float, conditions: datagen.Conditions, per_kind: int,
            clean: int, seed: int, rules=None, rules_threshold: float | None = None) -> dict[str, Any]:
    """Return the anomaly report: `per_kind` flights of every fault kind and `clean` clean flights.

    `detector`: the z-score baseline; `rules` (optional): the failsafe rules (baselines.RuleDetector).
    """
    from qai_intelligence.metrics import detection_metrics
    from qai_intelligence.training import _labels, evaluate_anomaly

    flights = []
    index = 0
    for kind in (*FAULT_KINDS, None):
        for _ in range(per_kind if kind else clean):
            flights.append(datagen.anomaly_flight(datagen.seed_block(seed, SPLIT, 100_000 + index), conditions,
                                                  kind))
            index += 1
    result = evaluate_anomaly(model, flights, detector, detector_threshold)
    labels = _labels(flights)
    report = {"flights": len(flights), "faulted_flights": len(flights) - clean,
              "clean_hours": sum(len(f.features) for f in flights if f.fault is None) * datagen.ANOMALY_TICK / 3600,
              "model": _detection(result["model"], labels, flights),
              "baseline": _detection(result["baseline"], labels, flights)}
    if rules is not None:
        found = detection_metrics([rules.scores(f.features) for f in flights], labels, rules_threshold,
                                  datagen.ANOMALY_TICK)
        report["rules"] = _detection(found, labels, flights)
    return report


def long_flights(model, detector, detector_threshold: float, conditions: datagen.Conditions, count: int,
                 minutes: float, seed: int) -> dict[str, Any]:
    """Return what the anomaly model does over `count` clean flights of `minutes` each: whether it drifts.

    The flights fly waypoints the whole time in `conditions`' weather, on a battery large enough not to run
    down (so what changes over the flight is the model's hidden state, not the pack). Reported: false alarms
    of the model and the z-score baseline, and per flight the model's mean score over the last five minutes
    less the first five (after a minute), with the threshold it is judged against.
    """
    from dataclasses import replace

    from qai_intelligence.training import _labels, anomaly_scores, evaluate_anomaly

    lasting = replace(conditions, name=f"{conditions.name}, long", capacity_wh=(2000.0, 2000.0))
    flights = [datagen.anomaly_flight(datagen.seed_block(seed, SPLIT, 300_000 + i), lasting, None,
                                      duration=minutes * 60.0, legs=(int(minutes * 6), int(minutes * 6)))
               for i in range(count)]
    result = evaluate_anomaly(model, flights, detector, detector_threshold)
    labels = _labels(flights)
    extra = model.config.extra
    scores = anomaly_scores(model, [f.features for f in flights], np.array(extra["residual_std"]),
                            extra["smoothing"])
    window = round(300.0 / datagen.ANOMALY_TICK)
    start = round(60.0 / datagen.ANOMALY_TICK)
    drift = [float(s[-window:].mean() - s[start:start + window].mean()) for s in scores]
    return {"flights": count, "minutes": minutes, "threshold": float(extra["threshold"]),
            "model": _detection(result["model"], labels, flights),
            "baseline": _detection(result["baseline"], labels, flights),
            "drift": mean_interval(drift)}


def course(model, conditions: datagen.Conditions, runs: int, seed: int) -> dict[str, Any]:
    """Return the course report: the policy (through its own path) and the PIDs over the same `runs` weathers.

    "pid" and "pid_external" fly the io_engine's shipped gains (tuned by `qai-train pid`: the bar),
    "pid_hand_set" the PositionController's hand-set ones, to show what the tuning did.
    """
    from qai_intelligence.pid_tuning import default_gains
    from qai_intelligence.policy import course_scenario, policy_path, run_episodes
    from qai_sim.vehicle_model import VehicleConfig

    rng = random.Random(datagen.seed_block(seed, SPLIT, 200_000))
    courses = [course_scenario(datagen.with_conditions(VehicleConfig(seed=rng.randrange(2**31)), conditions, rng))
               for _ in range(runs)]
    summaries = {"policy": run_episodes(model, courses, policy_path(model), seed=0)[1],
                 "pid_external": run_episodes(None, courses, "pid_external", seed=0)[1],
                 "pid": run_episodes(None, courses, "pid", seed=0)[1],
                 "pid_hand_set": run_episodes(None, courses, "pid", seed=0, gains=default_gains())[1]}
    report: dict[str, Any] = {"runs": runs}
    for who, runs_of in summaries.items():
        report[who] = {"completion": wilson(sum(s["finished"] for s in runs_of), runs)}
        for key in ("duration_s", "cross_track_mean_m", "energy_wh"):
            report[who][key] = mean_interval([s[key] for s in runs_of if s["finished"]])
    for who, control in (("policy", "pid_external"), ("policy", "pid"), ("pid", "pid_hand_set")):
        both = [i for i in range(runs) if summaries[who][i]["finished"] and summaries[control][i]["finished"]]
        versus = report[f"{who}_vs_{control}"] = {"runs_both_finished": len(both)}
        for key in ("duration_s", "cross_track_mean_m", "energy_wh"):
            versus[key] = paired_difference([summaries[who][i][key] for i in both],
                                            [summaries[control][i][key] for i in both])
        energy = np.mean([summaries[control][i]["energy_wh"] for i in both]) if both else np.nan
        versus["extra_energy_percent"] = float(100 * versus["energy_wh"]["mean"] / energy) if both else float("nan")
    return report
