"""Scores on held-out data: endurance error, anomaly detection (precision, recall, delay), flight quality.

No rclpy import, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from qai_intelligence.data import FAULT_GROUPS


def endurance_errors(predicted: Sequence[np.ndarray], truth: Sequence[np.ndarray]) -> dict[str, float]:
    """MAE in seconds and as a share of the time left, over all ticks and over the last five minutes."""
    p, t = np.concatenate(predicted), np.concatenate(truth)
    error = np.abs(p - t)
    late = t <= 300.0
    return {"mae_s": float(error.mean()), "mae_percent": float(100.0 * error.mean() / max(t.mean(), 1e-9)),
            "mae_last_5min_s": float(error[late].mean()) if late.any() else float("nan"),
            "bias_s": float((p - t).mean()), "ticks": int(len(t))}


WARM_UP = 20  # ticks after a fresh start (1 s at 20 Hz) in which a detector's state settles and no alarm goes out


def alarms(scores: np.ndarray, threshold: float, refractory: int) -> list[int]:
    """Return the ticks at which the score rises above the threshold (after the warm-up, `refractory` apart)."""
    above = scores > threshold
    above[:WARM_UP] = False
    found, last = [], -refractory
    for tick in np.flatnonzero(above & ~np.concatenate([[False], above[:-1]])):
        if tick - last >= refractory:
            found.append(int(tick))
            last = tick
    return found


@dataclass(frozen=True)
class FlightLabel:
    fault: str | None
    onset: int | None  # tick


def detection_metrics(scores: Sequence[np.ndarray], labels: Sequence[FlightLabel], threshold: float, tick: float,
                      max_delay: float = 5.0, refractory: float = 2.0) -> dict:
    """Score detection by events, not ticks.

    A faulted flight counts as detected when an alarm comes within `max_delay` s of the onset; an alarm
    before the onset, or on a clean flight, is false. Precision = detected / (detected + false alarms);
    delay is from onset to the first alarm after it. The false-alarm rate is over the time in which an
    alarm would be false: clean flights whole and faulted flights before their onset.
    """
    detected, false_alarms, delays, clean_seconds = 0, 0, [], 0.0
    per_group: dict[str, list[int]] = {}
    for flight_scores, label in zip(scores, labels):
        found = alarms(flight_scores, threshold, max(1, round(refractory / tick)))
        if label.fault is None:
            false_alarms += len(found)
            clean_seconds += len(flight_scores) * tick
            continue
        false_alarms += sum(1 for a in found if a < label.onset)
        clean_seconds += min(label.onset, len(flight_scores)) * tick
        after = [a for a in found if a >= label.onset]
        hit = bool(after) and (after[0] - label.onset) * tick <= max_delay
        group = per_group.setdefault(FAULT_GROUPS[label.fault], [0, 0])
        group[1] += 1
        if hit:
            detected += 1
            group[0] += 1
            delays.append((after[0] - label.onset) * tick)
    faulted = sum(1 for label in labels if label.fault is not None)
    precision = detected / (detected + false_alarms) if detected + false_alarms else 0.0
    recall = detected / faulted if faulted else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1,
            "delay_median_s": float(np.median(delays)) if delays else float("nan"),
            "delay_p90_s": float(np.percentile(delays, 90)) if delays else float("nan"),
            "false_alarms": false_alarms, "false_alarms_per_hour_clean": false_alarms / clean_seconds * 3600
            if clean_seconds else float("nan"), "fault_free_hours": clean_seconds / 3600, "detected": detected,
            "recall_by_fault": {group: hit / total for group, (hit, total) in sorted(per_group.items())},
            "threshold": float(threshold), "flights": len(labels), "faulted_flights": faulted}


def choose_threshold(scores: Sequence[np.ndarray], labels: Sequence[FlightLabel], tick: float) -> float:
    """Return the threshold with the best F1 on validation flights (ties: the higher one, fewer false alarms)."""
    pooled = np.concatenate([s[WARM_UP:] for s in scores])
    low, high = max(float(np.quantile(pooled, 0.5)), 1e-6), max(float(pooled.max()), 1e-5)
    candidates = np.unique(np.concatenate([np.geomspace(low, high, 150), np.quantile(pooled, [0.99, 0.999])]))
    best, best_f1 = float(candidates[-1]), -1.0
    for threshold in candidates:
        f1 = detection_metrics(scores, labels, float(threshold), tick)["f1"]
        if f1 >= best_f1:
            best, best_f1 = float(threshold), f1
    return best
