"""The held-out evaluation's statistics (qai_intelligence.statistics) and its reports (qai_intelligence.heldout)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from qai_intelligence.statistics import mean_interval, paired_difference, poisson_upper, wilson


def test_wilson_intervals_match_the_textbook_values():
    seven = wilson(7, 10)
    assert (round(seven["low"], 3), round(seven["high"], 3)) == (0.397, 0.892)
    assert wilson(30, 30)["high"] == 1.0 and wilson(30, 30)["low"] == pytest.approx(0.8865, abs=1e-4)
    assert wilson(0, 10)["low"] == 0.0 and wilson(0, 10)["high"] == pytest.approx(0.2775, abs=1e-4)
    assert math.isnan(wilson(0, 0)["share"])
    with pytest.raises(ValueError, match="11 successes of 10"):
        wilson(11, 10)


@given(st.integers(0, 500), st.integers(1, 500))
def test_a_wilson_interval_holds_its_share_inside_zero_and_one(successes, n):
    successes = min(successes, n)
    w = wilson(successes, n)
    assert 0.0 <= w["low"] <= w["share"] <= w["high"] <= 1.0


def test_the_poisson_upper_bound_is_the_exact_one_sided_95_percent_one():
    assert poisson_upper(0, 1.0) == pytest.approx(2.9957, abs=1e-3)  # -ln 0.05
    assert poisson_upper(1, 1.0) == pytest.approx(4.7439, abs=1e-3)
    assert poisson_upper(5, 2.0) == pytest.approx(10.5130 / 2, abs=1e-3)
    with pytest.raises(ValueError):
        poisson_upper(1, 0.0)


@settings(max_examples=50)
@given(st.integers(0, 60), st.floats(0.1, 100.0))
def test_the_poisson_upper_bound_rises_with_the_count_and_falls_with_the_exposure(count, hours):
    assert poisson_upper(count + 1, hours) > poisson_upper(count, hours) > count / hours
    assert poisson_upper(count, hours * 2) < poisson_upper(count, hours)


def test_a_paired_difference_resamples_units_and_says_when_it_excludes_zero():
    rng = np.random.default_rng(1)
    baseline = rng.normal(100, 20, 200)
    better = baseline - 5 + rng.normal(0, 2, 200)  # per flight 5 s better: real, though flights vary by 20 s
    d = paired_difference(better, baseline)
    assert d["n"] == 200 and d["low"] < d["mean"] < d["high"] < 0 and d["excludes_zero"]
    same = paired_difference(baseline + rng.normal(0, 2, 200), baseline)
    assert same["low"] < 0 < same["high"] and not same["excludes_zero"]
    assert paired_difference(better, baseline) == d  # seeded: the same inputs, the same interval
    gaps = paired_difference([1.0, np.nan, 3.0], [0.0, 1.0, np.nan])
    assert gaps["n"] == 1 and gaps["mean"] == 1.0  # only units both sides have
    with pytest.raises(ValueError, match="paired"):
        paired_difference([1.0, 2.0], [1.0])
    assert mean_interval([])["n"] == 0


# -- The reports, on real models and flights (small sizes) ---------------------------------------------------

torch = pytest.importorskip("torch")


def test_the_course_report_sets_the_policy_beside_the_tuned_pid_through_the_same_path_and_in_its_own():
    from qai_intelligence import checkpoint, data as datagen, heldout
    from qai_intelligence.store import SHIPPED

    policy, _ = checkpoint.load(SHIPPED / "policy")
    report = heldout.course(policy, datagen.TRAINING, 2, seed=90_001)
    assert report["runs"] == 2 and report["pid_external"]["completion"]["n"] == 2
    assert report["pid"]["completion"]["successes"] == 2  # the PID flies calm weather in either path
    versus = report["policy_vs_pid_external"]
    assert versus["runs_both_finished"] == versus["duration_s"]["n"] <= 2
    tuning = report["pid_vs_pid_hand_set"]  # the tuned PID beside the hand-set one, on the same runs
    assert tuning["runs_both_finished"] == 2 and report["pid_hand_set"]["completion"]["n"] == 2


def test_the_endurance_report_pairs_each_flight_with_the_estimate_on_the_same_flight():
    from qai_intelligence import checkpoint, data as datagen, heldout
    from qai_intelligence.baselines import EnduranceBaseline, LinearEndurance
    from qai_intelligence.store import SHIPPED

    model, meta = checkpoint.load(SHIPPED / "endurance")
    fitted = meta["metrics"]["baseline"]
    estimate = EnduranceBaseline(scale=fitted["scale"], offset=fitted["offset"])
    regressor = LinearEndurance(estimate)
    train, validation = (datagen.endurance_flights(0, split, 8) for split in ("train", "validation"))
    regressor.fit_tuned([(f.features, f.remaining) for f in train], [(f.features, f.remaining) for f in validation],
                        datagen.ENDURANCE_TICK)
    report = heldout.endurance(model, estimate, datagen.TRAINING, 6, seed=90_001, regressor=regressor)
    d = report["difference_s"]
    assert d["n"] == 6 and d["mean"] == pytest.approx(report["model_mae_s"]["mean"] - report["baseline_mae_s"]["mean"])
    assert report["sag"]["n"] + report["no_sag"]["n"] == 6 == report["sag"]["n"] + (6 - report["sag_flights"])
    assert set(report["buckets"]) == {"0-120 s", "120-300 s", "300-600 s", "600-inf s"}
    versus = report["difference_vs_regressor_s"]
    assert versus["n"] == 6 and versus["mean"] == pytest.approx(
        report["model_mae_s"]["mean"] - report["regressor_mae_s"]["mean"])


def test_the_ridge_baseline_is_tuned_on_validation_flights_and_beats_a_constant_guess():
    from qai_intelligence import data as datagen
    from qai_intelligence.baselines import EnduranceBaseline, LinearEndurance

    train, validation, test = (datagen.endurance_flights(0, split, 12) for split in ("train", "validation", "test"))
    regressor = LinearEndurance(EnduranceBaseline())
    pairs = [(f.features, f.remaining) for f in train]
    regressor.fit_tuned(pairs, [(f.features, f.remaining) for f in validation], datagen.ENDURANCE_TICK,
                        alphas=(0.1, 1e9))
    assert regressor.alpha == 0.1  # an absurd strength (every weight ~0: the training mean) loses on validation
    mean = np.concatenate([r for _, r in pairs]).mean()
    fitted = np.mean([np.abs(regressor.flight(f.features, 1.0) - f.remaining).mean() for f in test])
    constant = np.mean([np.abs(mean - f.remaining).mean() for f in test])
    assert fitted < constant and all((regressor.flight(f.features, 1.0) >= 0).all() for f in test)
