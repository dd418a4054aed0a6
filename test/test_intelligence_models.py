"""The intelligence engine's cores in-process.

Models and their state, features and bad input, training, checkpoints and their refusals, the model store's
promotion gate, the runtime's swaps, the baselines.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from qai_intelligence import checkpoint, data as datagen  # noqa: E402
from qai_intelligence.baselines import EnduranceBaseline, ZScoreDetector  # noqa: E402
from qai_intelligence.checkpoint import CheckpointError  # noqa: E402
from qai_intelligence.features import (ANOMALY, ENDURANCE, POLICY, POLICY_OUTPUTS, AnomalyFeatureBuilder,  # noqa: E402
                                       check_reading)
from qai_intelligence.metrics import FlightLabel, alarms, detection_metrics  # noqa: E402
from qai_intelligence.models import CELLS, ModelConfig, build  # noqa: E402
from qai_intelligence.runtime import AnomalyScorer, EnduranceWatch, ModelSlot, ReturnPlan  # noqa: E402
from qai_intelligence.store import ModelStore, StoreError  # noqa: E402
from qai_sim.vehicle_model import VehicleConfig, VehicleModel  # noqa: E402

torch.set_num_threads(1)


def endurance_model(cell="cfc", units=8, seed=0):
    return build(ModelConfig("endurance", cell, ENDURANCE.features, ("remaining_s",), units=units, motor=2, seed=seed))


def some_features(n=1):
    flight = datagen.endurance_flight(1)
    return flight.features[:n]


# -- Models and their state -------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS)
def test_stepping_tick_by_tick_with_the_state_carried_equals_running_the_sequence(cell):
    model = endurance_model(cell).eval()
    x = torch.as_tensor(some_features(12))[None]
    with torch.inference_mode():
        whole, _ = model(x)
        whole = model.decode_outputs(model.denormalise(whole), x)[0]
    state, steps = None, []
    for t in range(x.shape[1]):
        y, state = model.step(x[:, t], state)
        steps.append(y[0])
        assert state.shape == (1, model.state_size)
    assert torch.allclose(torch.stack(steps), whole, atol=1e-5)


def test_a_carried_state_changes_the_answer_and_a_fresh_one_repeats_it():
    model = endurance_model().eval()
    x = torch.as_tensor(some_features(6))
    _, state = model.step(x[:1], None)
    for row in x[1:5]:
        _, state = model.step(row[None], state)
    with_history, _ = model.step(x[5:6], state)
    fresh_a, _ = model.step(x[5:6], None)
    fresh_b, _ = model.step(x[5:6], None)
    assert torch.equal(fresh_a, fresh_b) and not torch.allclose(with_history, fresh_a)


def test_liquid_cells_take_the_time_since_the_last_tick():
    model = endurance_model("cfc").eval()
    x = torch.as_tensor(some_features(2))
    _, state = model.step(x[:1], None)
    late, _ = model.step(x[1:2], state, timespan=3.0)
    on_time, _ = model.step(x[1:2], state, timespan=1.0)
    assert not torch.allclose(late, on_time)


def test_a_config_names_its_field_when_it_is_bad():
    with pytest.raises(ValueError, match="cell: expected one of cfc, ltc, gru, got 'lstm'"):
        ModelConfig("endurance", "lstm", ENDURANCE.features, ("remaining_s",))
    with pytest.raises(ValueError, match="task"):
        ModelConfig("weather", "cfc", ENDURANCE.features, ("remaining_s",))


# -- Features and bad input --------------------------------------------------------------------------

def test_a_reading_with_nan_infinity_or_an_implausible_value_is_refused_with_the_field_named():
    good = {"voltage": 15.0, "current": 12.0, "percentage": 0.5, "capacity_ah": 4.0}
    assert check_reading("battery", good) == ""
    assert check_reading("battery", {**good, "voltage": math.nan}) == "battery.voltage is nan"
    assert check_reading("battery", {**good, "current": math.inf}) == "battery.current is inf"
    assert "battery.percentage = 7 is outside [0, 1]" in check_reading("battery", {**good, "percentage": 7.0})
    assert check_reading("battery", {"voltage": 15.0}) == "battery.current is missing"


def test_the_anomaly_features_of_a_stream_never_heard_from_are_neutral_and_its_age_saturated():
    features = AnomalyFeatureBuilder().build({}, {})
    assert len(features) == len(ANOMALY) and ANOMALY.check_vector(features) == ""
    ages = dict(zip(ANOMALY.features, features))
    assert ages["age_odom"] == ages["age_gps"] == 2.0


def test_bad_features_never_reach_the_model_they_are_counted_and_the_state_is_kept():
    model = endurance_model().eval()
    slot = ModelSlot("endurance", ENDURANCE, model, "v0001", {}, period=1.0, gap=5.0)
    good = list(some_features(1)[0])
    assert slot.step(good, 0.0) is not None
    state = slot.state.copy()
    for bad in (math.nan, math.inf, -1e9):
        assert slot.step([bad, *good[1:]], 1.0) is None
    assert slot.skipped == 3 and slot.ticks == 1 and np.array_equal(slot.state, state)
    assert "endurance.voltage" in slot.last_skip_reason


def test_the_state_starts_afresh_after_a_data_gap():
    slot = ModelSlot("endurance", ENDURANCE, endurance_model().eval(), "v0001", {}, period=1.0, gap=5.0)
    good = list(some_features(1)[0])
    slot.step(good, 0.0)
    slot.step(good, 1.0)
    assert slot.resets == 0
    slot.step(good, 10.0)
    assert slot.resets == 1


def test_a_model_swapped_in_is_warmed_on_recent_inputs_and_no_tick_is_lost():
    rows = [list(r) for r in some_features(30)]
    slot = ModelSlot("endurance", ENDURANCE, endurance_model(seed=0).eval(), "v0001", {}, period=1.0, gap=5.0)
    for t, row in enumerate(rows[:20]):
        slot.step(row, float(t))
    replacement = endurance_model(seed=1).eval()
    prepared = slot.prepare(replacement, "v0002", {})  # a worker thread does this
    for t, row in enumerate(rows[20:25], start=20):  # ticks that arrive while it is prepared
        slot.step(row, float(t))
    slot.swap(prepared)
    assert slot.version == "v0002" and slot.ticks == 25
    reference_state = None
    for row in rows[:25]:
        _, reference_state = replacement.step(torch.tensor([row]), reference_state)
    assert np.allclose(slot.state, reference_state.numpy(), atol=1e-5)
    assert slot.step(rows[25], 25.0) is not None and slot.ticks == 26


def test_latency_leaves_out_the_warm_up_of_each_model_in_service_and_counts_what_it_kept():
    rows = [list(r) for r in some_features(60)]
    slot = ModelSlot("endurance", ENDURANCE, endurance_model(seed=0).eval(), "v0001", {}, period=1.0, gap=5.0)
    slot.latency.warm_up = slot.tick_latency.warm_up = 5
    slot.latency.restart()
    for t, row in enumerate(rows[:30]):
        slot.step(row, float(t))
    assert (slot.latency.samples, slot.latency.discarded) == (25, 5)
    slot.swap(slot.prepare(endurance_model(seed=1).eval(), "v0002", {}))
    for t, row in enumerate(rows[30:40], start=30):
        slot.step(row, float(t))
    assert (slot.latency.samples, slot.latency.discarded) == (30, 10)  # the new model's first 5 left out too
    status = slot.status()
    assert status["endurance_latency_samples"] == "30" and float(status["endurance_latency_p99_ms"]) > 0
    assert status["endurance_tick_samples"] == "0"  # the slot alone: only the engine's ticks time a whole tick


@pytest.mark.parametrize("task", ["endurance", "anomaly", "policy"])
def test_the_numpy_step_of_a_shipped_cfc_model_gives_what_torch_gives(task):
    from pathlib import Path

    from qai_intelligence.fast import CfcStep, stepper

    model, _ = checkpoint.load(Path(__file__).parent.parent / "qai_intelligence" / "models" / task, task=task)
    step = stepper(model)
    assert isinstance(step, CfcStep)  # the engine's models run in numpy
    rng = np.random.default_rng(7)
    mean, std = model.input_mean.numpy(), model.input_std.numpy()
    ours = theirs = None
    for tick in range(200):  # irregular ticks too: the liquid cells integrate the time since the last one
        x = (mean + std * rng.normal(size=mean.shape)).astype(np.float32)[None]
        timespan = 1.0 if tick % 3 == 0 else float(rng.uniform(0.2, 4.0))
        y, ours = step(x, ours, timespan)
        reference, theirs = model.step(torch.from_numpy(x), theirs, timespan)
        np.testing.assert_allclose(y, reference.numpy(), rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("cell", ["ltc", "gru"])
def test_other_cells_step_through_torch(cell):
    from qai_intelligence.fast import TorchStep, stepper

    model = endurance_model(cell=cell).eval()
    step = stepper(model)
    assert isinstance(step, TorchStep)
    x = np.array([some_features(1)[0]], dtype=np.float32)
    y, state = step(x, None, 1.0)
    reference, _ = model.step(torch.from_numpy(x), None, 1.0)
    assert np.array_equal(y, reference.numpy()) and state is not None


# -- Endurance, anomaly decisions --------------------------------------------------------------------

def test_the_return_home_needs_the_climb_the_way_home_and_the_landing_plus_margin():
    plan = ReturnPlan(speed=3.0, climb_rate=2.0, landing_speed=1.0, altitude=10.0, margin=30.0, margin_fraction=0.5)
    # climb 6 m (3 s), 30 m home (10 s), land 10 m (10 s): 23 s, times 1.5, plus 30.
    assert plan.seconds((30.0, 0.0, 4.0), (0.0, 0.0, 0.0)) == pytest.approx(23 * 1.5 + 30)


def test_endurance_low_goes_out_once_and_rearms_only_after_a_sustained_recovery():
    watch = EnduranceWatch(rearm_ratio=1.5, rearm_after=10.0)
    assert not watch.update(300, 100, 0.0)
    assert watch.update(90, 100, 1.0) and watch.low
    assert not watch.update(80, 100, 2.0) and not watch.update(200, 100, 3.0)
    assert not watch.update(200, 100, 12.0) and watch.low  # 9 s above: not yet
    assert not watch.update(200, 100, 14.0) and not watch.low
    assert watch.update(50, 100, 15.0)


def test_the_anomaly_scorer_raises_one_alarm_when_readings_leave_their_prediction():
    scorer = AnomalyScorer(("a", "b"), ("a", "b", "c"), (0.1, 0.1), smoothing=0.3, threshold=5.0, refractory=2.0)
    prediction = np.array([1.0, 2.0])
    events = [scorer.update([1.0 + 0.05 * (-1) ** t, 2.0, 0.0], prediction, t * 0.05) for t in range(40)]
    assert not any(events) and scorer.score < 1.0
    events = [scorer.update([1.0, 4.0, 0.0], prediction, 2.0 + t * 0.05) for t in range(20)]
    assert events.count(True) == 1 and scorer.worst == "b"


def test_the_scorer_says_nothing_is_anomalous_while_it_warms_up():
    """The finding: watch_anomalies failed on a score above the threshold in the warm-up, where no alarm goes out."""
    scorer = AnomalyScorer(("a",), ("a",), (0.1,), smoothing=0.3, threshold=3.0, warm_up=60)
    prediction = np.array([0.0])
    for t in range(60):  # a state that has not settled yet: far off
        assert not scorer.update([1.0], prediction, t * 0.05) and not scorer.above
    assert scorer.score > 3.0
    assert scorer.update([1.0], prediction, 3.0) and scorer.above  # past the warm-up: an alarm, anomalous


def test_detection_metrics_count_hits_misses_false_alarms_and_delays():
    tick = 0.1
    faulted = np.zeros(100)
    faulted[52:] = 10.0  # alarm 0.2 s after the onset at tick 50
    missed = np.zeros(100)
    clean = np.zeros(100)
    clean[5] = 10.0  # in the warm-up: not an alarm
    clean[30] = 10.0  # a false alarm
    labels = [FlightLabel("vibration", 50), FlightLabel("stuck_odom", 50), FlightLabel(None, None)]
    result = detection_metrics([faulted, missed, clean], labels, threshold=5.0, tick=tick)
    assert result["recall"] == 0.5 and result["precision"] == 0.5 and result["false_alarms"] == 1
    assert result["delay_median_s"] == pytest.approx(0.2)
    # One false alarm over the time an alarm would be false: the clean flight (10 s) and the faulted flights
    # before their onsets (5 s each), not the clean flight alone.
    assert result["fault_free_hours"] == pytest.approx(20 / 3600)
    assert result["false_alarms_per_hour_clean"] == pytest.approx(1 / 20 * 3600)
    warm = [0] * 21
    assert alarms(np.array(warm + [0, 9, 9, 0, 9, 0, 0, 0, 9]), 5.0, refractory=4) == [22, 29]


# -- Data and baselines ------------------------------------------------------------------------------

def test_the_same_seed_gives_the_same_flights_and_another_seed_others():
    a = datagen.anomaly_flight(5, fault="battery_sag", duration=3.0, onset_range=(1.0, 2.0))
    b = datagen.anomaly_flight(5, fault="battery_sag", duration=3.0, onset_range=(1.0, 2.0))
    c = datagen.anomaly_flight(6, fault="battery_sag", duration=3.0, onset_range=(1.0, 2.0))
    assert np.array_equal(a.features, b.features) and a.onset == b.onset
    assert not np.array_equal(a.features, c.features)


def test_an_endurance_flight_is_labelled_with_the_time_left_until_the_voltage_cutoff_then_zero():
    flight = datagen.endurance_flight(3)
    flying = flight.remaining > 0
    assert flight.remaining[0] > 100 and flight.remaining[-1] == 0
    assert np.allclose(np.diff(flight.remaining[flying]), -datagen.ENDURANCE_TICK, atol=0.25)
    voltage = flight.features[:, ENDURANCE.features.index("voltage")]
    cut = int(np.argmin(flying))  # the first tick with nothing left
    assert voltage[cut] <= flight.config.voltage_empty + 0.05 and voltage[0] > flight.config.voltage_empty + 0.3


def test_the_baseline_is_fitted_by_least_squares_and_predicts_less_time_on_less_charge():
    flights = [datagen.endurance_flight(i) for i in range(4)]
    baseline = EnduranceBaseline()
    baseline.fit([(f.features, f.remaining) for f in flights], 1.0)
    estimates = baseline.flight(flights[0].features, 1.0)
    assert estimates[5] > estimates[-1]
    assert np.mean(np.abs(estimates - flights[0].remaining)) < flights[0].remaining.mean()


def test_the_zscore_baseline_scores_a_battery_sag_above_the_same_flight_before_it():
    clean = [datagen.anomaly_flight(i, duration=6.0).features for i in range(3)]
    detector = ZScoreDetector.fit(clean)
    sag = datagen.anomaly_flight(9, fault="battery_sag", duration=8.0, onset_range=(4.0, 4.5))
    scores = detector.scores(sag.features)
    assert scores[sag.onset:].max() > 3 * scores[10:sag.onset].max()


@pytest.mark.parametrize("fault", ["battery_sag", "dropout_battery", "stuck_odom", "stuck_imu", "dropout_imu"])
def test_the_failsafe_rules_find_a_sag_a_silent_stream_and_a_stuck_one_and_stay_quiet_before(fault):
    """The rule baseline's score crosses its own limit (1) after the fault and stays well below it before."""
    from qai_intelligence.baselines import RuleDetector

    rules = RuleDetector.fit([datagen.anomaly_flight(i, duration=20.0).features for i in range(3)])
    faulted = datagen.anomaly_flight(11, fault=fault, duration=16.0, onset_range=(6.0, 6.5))
    scores = rules.scores(faulted.features)
    assert scores[faulted.onset:].max() >= 1.0, scores[faulted.onset:].max()
    assert scores[:faulted.onset].max() < 0.5, scores[:faulted.onset].max()


def test_the_rules_cusum_slack_is_what_clean_flights_drop_a_tick_and_a_clean_flight_stays_below_its_limit():
    from qai_intelligence.baselines import RuleDetector

    clean = [datagen.anomaly_flight(i, duration=20.0).features for i in range(4)]
    rules = RuleDetector.fit(clean[:3])
    assert 0.0 < rules.k < 0.1
    assert rules.scores(clean[3]).max() < 1.0


def test_the_vibration_fault_shakes_the_imu_and_nothing_else():
    still, shaken = VehicleModel(VehicleConfig(seed=1)), VehicleModel(VehicleConfig(seed=1))
    shaken.vibration = 2.0
    for model in (still, shaken):
        model.step(0.013)
    (force_a, gyro_a, _), (force_b, gyro_b, _) = still.imu(), shaken.imu()
    assert max(abs(a - b) for a, b in zip(force_a, force_b)) > 0.5
    assert max(abs(a - b) for a, b in zip(gyro_a, gyro_b)) > 0.05
    assert still.odometry() == shaken.odometry()


# -- Training --------------------------------------------------------------------------------------

def test_a_short_training_run_lowers_its_loss():
    from qai_intelligence.training import EnduranceSizes, train_endurance

    result = train_endurance(seed=3, sizes=EnduranceSizes(train=6, validation=2, test=2, iterations=80, chunk=32,
                                                          batch=8, units=8, motor=2))
    assert result.training["last_loss"] < 0.85 * result.training["first_loss"]
    assert set(result.metrics) >= {"held_out_training", "held_out_outside"}
    for name in ("held_out_training", "held_out_outside"):
        assert result.metrics[name]["model"]["mae_s"] > 0 and result.metrics[name]["baseline"]["mae_s"] > 0


def test_the_training_cli_answers_help_without_loading_torch():
    code = ("import sys\nfrom qai_intelligence import cli, parameters\ntry:\n    cli.main(['--help'])\n"
            "except SystemExit:\n    pass\nprint('torch' in sys.modules, 'ncps' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().endswith("False False"), out.stdout + out.stderr
    assert "endurance" in out.stdout


# -- Checkpoints ------------------------------------------------------------------------------------

LOADERS = [pytest.param(checkpoint.load, id="torch"), pytest.param(checkpoint.load_for_inference, id="numpy")]


@pytest.fixture
def saved(tmp_path):
    model = endurance_model()
    return checkpoint.save(model, tmp_path / "ckpt", {"metrics": {"mae_s": 1.0}}), model


def test_a_checkpoint_loads_back_to_the_same_model_with_its_metadata(saved):
    directory, model = saved
    loaded, meta = checkpoint.load(directory, task="endurance", inputs=ENDURANCE.features)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert meta["metrics"] == {"mae_s": 1.0} and "torch" in meta["libraries"] and len(meta["sha256"]) == 64


@pytest.mark.parametrize("load", LOADERS)
def test_a_corrupt_or_truncated_checkpoint_is_refused(saved, load):
    directory, _ = saved
    weights = directory / checkpoint.WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load(directory)
    weights.write_bytes(bytes(data[:100]))
    with pytest.raises(CheckpointError, match="corrupt"):
        load(directory)
    (directory / checkpoint.META_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="meta.json: unreadable"):
        load(directory)


@pytest.mark.parametrize("load", LOADERS)
def test_a_checkpoint_for_another_task_or_other_inputs_is_refused(saved, load):
    directory, _ = saved
    with pytest.raises(CheckpointError, match="a model for task 'endurance', not 'anomaly'"):
        load(directory, task="anomaly")
    with pytest.raises(CheckpointError, match="are not the features this engine feeds"):
        load(directory, task="endurance", inputs=tuple(reversed(ENDURANCE.features)))


@pytest.mark.parametrize("load", LOADERS)
@pytest.mark.parametrize("config", [None, ["cfc"], "cfc", {"task": "endurance"}])
def test_a_meta_json_whose_config_is_not_a_model_s_is_refused_naming_it(saved, load, config):
    directory, _ = saved
    meta = json.loads((directory / checkpoint.META_FILE).read_text())
    meta["config"] = config
    (directory / checkpoint.META_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="meta.json: config: "):
        load(directory, task="endurance")


def _relabel(directory, **changes):
    """Rewrite a checkpoint's config (keeping its weights) and its hash: a well-formed file that lies."""
    weights = directory / checkpoint.WEIGHTS_FILE
    payload = torch.load(weights, weights_only=True)
    payload["config"].update(changes)
    torch.save(payload, weights)
    meta = json.loads((directory / checkpoint.META_FILE).read_text())
    meta["config"].update(changes)
    meta["sha256"] = checkpoint.sha256(weights)
    (directory / checkpoint.META_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize("load", LOADERS)
def test_ltc_weights_under_a_cfc_config_are_refused(tmp_path, load):
    directory = checkpoint.save(endurance_model("ltc"), tmp_path / "ltc")
    _relabel(directory, cell="cfc")
    with pytest.raises(CheckpointError, match="the weights are not a cfc model's"):
        load(directory)


@pytest.mark.parametrize("load", LOADERS)
def test_weights_of_another_size_are_refused_naming_the_tensor(saved, load):
    directory, _ = saved
    _relabel(directory, units=12, motor=3)
    with pytest.raises(CheckpointError, match=r"(shape|not a cfc model's)"):
        load(directory)


def test_a_cfc_checkpoint_loads_for_inference_without_torch_and_steps_as_the_torch_model_does(saved, tmp_path):
    directory, model = saved
    code = (f"import sys, numpy as np; from qai_intelligence import checkpoint; "
            f"m, _ = checkpoint.load_for_inference({str(directory)!r}, task='endurance'); "
            f"y, h = m.step(np.load({str(tmp_path / 'x.npy')!r}), None, 1.0); np.save({str(tmp_path / 'y.npy')!r}, y); "
            f"print(type(m).__name__, 'torch' in sys.modules)")
    x = np.array([some_features(1)[0]], dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["LoadedModel", "False"], out.stdout + out.stderr
    reference, _ = model.eval().step(torch.from_numpy(x), None, 1.0)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), reference.numpy(), rtol=1e-4, atol=1e-4)


def _torch_zip(directory, pickled: bytes, storages: dict[str, bytes] | None = None):
    """Write a model.pt in torch.save's layout holding `pickled` as its data.pkl, and its hash in meta.json."""
    import zipfile

    weights = directory / checkpoint.WEIGHTS_FILE
    with zipfile.ZipFile(weights, "w") as archive:
        archive.writestr("model/data.pkl", pickled)
        archive.writestr("model/byteorder", "little")
        for key, data in (storages or {}).items():
            archive.writestr(f"model/data/{key}", data)
    meta = json.loads((directory / checkpoint.META_FILE).read_text())
    meta["sha256"] = checkpoint.sha256(weights)
    (directory / checkpoint.META_FILE).write_text(json.dumps(meta))


def test_a_model_pt_that_would_run_code_is_refused_unrun_by_the_reader_without_torch(saved, tmp_path):
    import pickle

    directory, _ = saved
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    _torch_zip(directory, pickle.dumps({"format": checkpoint.FORMAT, "x": Exploit()}, protocol=2))
    with pytest.raises(CheckpointError, match="posix.system: not part of a state dict of tensors, refused"):
        checkpoint.load_for_inference(directory, task="endurance")
    assert not marker.exists()


def test_a_tensor_reaching_past_its_storage_is_refused(saved):
    from qai_intelligence import weights

    directory, model = saved
    state = {key: value.numpy() for key, value in model.state_dict().items()}
    payload = weights.read(directory / checkpoint.WEIGHTS_FILE)
    assert set(payload["state_dict"]) == set(state)  # the reader gives what torch saved
    for key, value in payload["state_dict"].items():
        assert np.array_equal(value, state[key]), key
    import collections
    import io
    import pickle

    import torch._utils

    storage = object()

    class Tensor:  # pickles as torch.save pickles a tensor, claiming 100 floats of a 4-float storage
        def __reduce__(self):
            return torch._utils._rebuild_tensor_v2, (storage, 0, (100,), (1,), False, collections.OrderedDict())

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", 4) if obj is storage else None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump({"format": checkpoint.FORMAT, "state_dict": {"input_mean": Tensor()}})
    body = buffer.getvalue()
    _torch_zip(directory, body, {"0": np.zeros(4, np.float32).tobytes()})
    with pytest.raises(weights.WeightsError, match="reaches element 99 of a 4-element storage"):
        weights.read(directory / checkpoint.WEIGHTS_FILE)


# -- The store and its promotion gate ----------------------------------------------------------------

def scored(scores):
    """Return an evaluation that reads each checkpoint's score from its metadata (the gate's contract, no data)."""
    return lambda directory: (json.loads((directory / "meta.json").read_text())["score"], {})


@pytest.fixture
def store(tmp_path):
    shipped = tmp_path / "shipped"
    checkpoint.save(endurance_model(seed=0), shipped / "endurance", {"score": 10.0})
    return ModelStore(tmp_path / "store", shipped=shipped), tmp_path


def test_an_empty_store_starts_from_the_shipped_model(store):
    models, _ = store
    version, path = models.active("endurance")
    assert version == "v0001" and (path / "model.pt").is_file()
    assert [e["action"] for e in models.history()] == ["added", "activated"]


def test_the_gate_refuses_a_worse_candidate_and_the_active_model_stays(store):
    models, tmp_path = store
    worse = checkpoint.save(endurance_model(seed=1), tmp_path / "worse", {"score": 12.0})
    version = models.add("endurance", worse)
    decision = models.promote("endurance", version, scored(None))
    assert not decision.activated and "refused" in decision.message
    assert models.active("endurance")[0] == "v0001"
    assert models.history()[-1]["action"] == "refused" and models.history()[-1]["metrics"]["candidate"]["score"] == 12.0


def test_a_candidate_better_than_the_active_model_but_not_than_its_bar_is_refused(store):
    """A policy must beat the tuned PID on the gate's episodes too (its details carry the bar)."""
    models, tmp_path = store
    better = checkpoint.save(endurance_model(seed=2), tmp_path / "better", {"score": 8.0})
    version = models.add("endurance", better)

    def with_bar(bar):
        return lambda directory: (json.loads((directory / "meta.json").read_text())["score"],
                                  {"bar": {"name": "tuned PID", "score": bar}})

    decision = models.promote("endurance", version, with_bar(7.5))
    assert not decision.activated and "the tuned PID 7.5" in decision.message, decision.message
    assert models.active("endurance")[0] == "v0001"
    assert models.promote("endurance", version, with_bar(9.0)).activated


def test_a_better_candidate_is_activated_and_rollback_returns_to_the_one_before(store):
    models, tmp_path = store
    better = checkpoint.save(endurance_model(seed=2), tmp_path / "better", {"score": 8.0})
    version = models.add("endurance", better)
    assert not models.promote("endurance", version, scored(None), margin=0.3).activated  # not better by 30 %
    decision = models.promote("endurance", version, scored(None), margin=0.1)
    assert decision.activated and models.active("endurance")[0] == "v0002" and decision.previous == "v0001"
    assert models.rollback("endurance").active == "v0001" and models.active("endurance")[0] == "v0001"
    with pytest.raises(StoreError, match="nothing to roll back to"):
        models.rollback("endurance")
    actions = [e["action"] for e in models.history()]
    assert actions[-3:] == ["refused", "activated", "rolled_back"]


def test_the_store_refuses_a_model_for_another_task_and_an_unknown_version(store):
    models, tmp_path = store
    policy = checkpoint.save(build(ModelConfig("policy", "cfc", POLICY.features, POLICY_OUTPUTS, units=8, motor=2)),
                             tmp_path / "policy")
    with pytest.raises(CheckpointError, match="not 'endurance'"):
        models.add("endurance", policy)
    with pytest.raises(StoreError, match="no version 'v0009'"):
        models.promote("endurance", "v0009", scored(None))


def test_the_real_gate_scores_a_trained_model_better_than_an_untrained_one(tmp_path):
    from qai_intelligence.evaluation import evaluate_checkpoint
    from qai_intelligence.store import SHIPPED

    untrained = checkpoint.save(build(ModelConfig("endurance", "cfc", ENDURANCE.features, ("remaining_s",),
                                                  units=16, motor=4, extra={"anchor": "charge_time"})),
                                tmp_path / "untrained")
    trained_score, _ = evaluate_checkpoint("endurance", SHIPPED / "endurance", size=3)
    untrained_score, _ = evaluate_checkpoint("endurance", untrained, size=3)
    assert trained_score < untrained_score


def test_the_gate_scores_in_one_low_priority_child_and_a_bad_checkpoint_is_refused_there(tmp_path):
    from qai_intelligence.evaluation import GATE_SEED, evaluate_checkpoint
    from qai_intelligence.gate_process import scoring
    from qai_intelligence.store import SHIPPED

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for name in ("model.pt", "meta.json"):
        (corrupt / name).write_bytes((SHIPPED / "endurance" / name).read_bytes())
    (corrupt / "model.pt").write_bytes((corrupt / "model.pt").read_bytes()[:-4] + b"oops")
    with scoring("endurance", size=3, seed=GATE_SEED) as evaluate:
        score, details = evaluate(SHIPPED / "endurance")
        again, second = evaluate(SHIPPED / "endurance")
        with pytest.raises(CheckpointError, match="corrupt"):
            evaluate(corrupt)
    assert details["scored_in_pid"] == second["scored_in_pid"] != os.getpid() and details["niceness"] >= 10
    assert score == again == evaluate_checkpoint("endurance", SHIPPED / "endurance", size=3)[0]  # as in-process


def test_each_gate_decision_draws_its_own_flights_and_scores_every_checkpoint_of_it_on_them():
    from qai_intelligence.gate_process import scoring
    from qai_intelligence.store import SHIPPED

    seeds = []
    for _ in range(2):
        with scoring("endurance", size=2) as evaluate:
            _, first = evaluate(SHIPPED / "endurance")
            _, second = evaluate(SHIPPED / "endurance")
        assert first["gate_seed"] == second["gate_seed"] and first["units"] == second["units"]
        seeds.append(first["gate_seed"])
    assert seeds[0] != seeds[1]


def test_a_paired_gate_refuses_a_candidate_whose_interval_reaches_the_margin_and_says_so(store):
    models, tmp_path = store
    version = models.add("endurance", checkpoint.save(endurance_model(seed=2), tmp_path / "c"))
    units = {"v0001": [10.0, 10.0, 10.0, 10.0], version: [9.0, 11.0, 8.0, 10.5]}  # better on average, not surely

    def evaluate(directory):
        values = units[directory.name]
        return float(np.mean(values)), {"units": values}

    decision = models.promote("endurance", version, evaluate, margin=0.02)
    assert not decision.activated and "95 % interval" in decision.message and "4 items" in decision.message
    units[version] = [8.0, 8.5, 8.2, 8.1]
    assert models.promote("endurance", version, evaluate, margin=0.02).activated


def test_the_gate_s_scorer_dies_with_an_engine_killed_mid_gate(tmp_path):
    """Killed mid-gate (SIGKILL), the engine takes its scorer with it; it used to run on, orphaned, to its end."""
    import signal
    import time

    script = tmp_path / "engine.py"
    script.write_text(
        "import time\nfrom concurrent.futures import ThreadPoolExecutor\n"
        "from qai_intelligence.gate_process import scoring\nfrom qai_intelligence.store import SHIPPED\n"
        "def gate():\n    with scoring('policy', size=500) as evaluate:\n        evaluate(SHIPPED / 'policy')\n"
        "if __name__ == '__main__':\n    ThreadPoolExecutor(1).submit(gate)\n    time.sleep(600)\n")
    engine = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def scorers():
        found = subprocess.run(["pgrep", "-P", str(engine.pid), "-f", "spawn_main"], capture_output=True, text=True)
        return [int(pid) for pid in found.stdout.split()]

    try:
        deadline = time.monotonic() + 60
        while not scorers():
            assert time.monotonic() < deadline and engine.poll() is None, "the gate's scorer did not start"
            time.sleep(0.1)
        (scorer,) = scorers()
        while "libtorch" not in Path(f"/proc/{scorer}/maps").read_text():  # scoring: torch loaded
            assert time.monotonic() < deadline, "the gate's scorer did not load torch"
            time.sleep(0.1)
    finally:
        engine.send_signal(signal.SIGKILL)
        engine.wait(10)

    def alive(pid):
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 10
    while alive(scorer):
        if time.monotonic() > deadline:
            os.kill(scorer, signal.SIGKILL)
            pytest.fail("the scorer outlived its engine by 10 s")
        time.sleep(0.1)


# -- The policy's environment ------------------------------------------------------------------------

def test_the_pid_completes_scenarios_in_the_policy_environment():
    from qai_intelligence.policy import run_episodes, scenarios

    costs, summaries = run_episodes(None, scenarios(1, "validation", 3), controller="pid")
    assert all(s["finished"] for s in summaries) and max(costs) < 3.0


def test_the_pid_through_the_external_path_flies_the_course_outside_the_training_weather_as_the_pid_does():
    """One harness: the external path holds the task's speed over the ground with the PID's wind estimate.

    Clipped to the speed relative to the air (as before), the PID's own commands made no way into winds near
    the course speed and finished none of these runs.
    """
    import random

    from qai_intelligence.policy import course_scenario, run_episodes
    from qai_sim.vehicle_model import VehicleConfig

    rng = random.Random(7)
    courses = [course_scenario(datagen.with_conditions(VehicleConfig(seed=rng.randrange(2**31)),
                                                       datagen.CONDITIONS["outside"], rng)) for _ in range(2)]
    _, external = run_episodes(None, courses, controller="pid_external")
    _, own = run_episodes(None, courses, controller="pid")
    assert all(s["finished"] for s in own) and all(s["finished"] for s in external)
    for mine, theirs in zip(external, own):  # the same limits: no faster than the PID, a tick's delay slower
        assert theirs["duration_s"] * 0.9 <= mine["duration_s"] <= theirs["duration_s"] * 1.5


def test_with_no_correction_the_residual_path_flies_exactly_as_the_pid():
    from qai_intelligence.policy import run_episodes, scenarios

    episodes = scenarios(2, "validation", 4)
    pid_costs, pid = run_episodes(None, episodes, controller="pid")
    residual_costs, residual = run_episodes(None, episodes, controller="residual")
    assert residual_costs == pytest.approx(pid_costs, abs=1e-9)
    assert [s["duration_s"] for s in residual] == pytest.approx([s["duration_s"] for s in pid], abs=1e-9)


def test_pid_gains_round_trip_through_the_search_box_and_are_held_inside_it():
    from qai_intelligence.pid_tuning import BOUNDS, decode, default_gains, encode

    assert decode(encode(default_gains())) == pytest.approx(default_gains())
    outside = decode(np.full(len(BOUNDS), 7.0))
    assert all(outside[name] == high for name, (_, high) in BOUNDS.items())


def test_a_short_pid_tuning_keeps_tuned_gains_only_when_validation_says_they_are_better():
    from qai_intelligence.pid_tuning import TuningSizes, default_gains, tune_pid

    result = tune_pid(0, TuningSizes(generations=2, population=4, episodes=3, validation_episodes=12))
    difference = result["validation"]["tuned_minus_default"]
    assert difference["n"] == 12 and len(result["search"]["history"]) == 2
    better = difference["excludes_zero"] and difference["mean"] < 0
    assert result["tuned"] is better
    assert result["gains"] == (result["searched"] if better else default_gains())


def test_the_io_engine_ships_the_gains_qai_train_pid_tuned_and_validated():
    """qai_io/pid_gains.json is what `qai-train pid` wrote: gains better than the hand-set ones on validation."""
    from qai_io.motion import GAINS_FILE, shipped_gains
    from qai_io.parameters import PARAMETERS

    tuning = json.loads(GAINS_FILE.read_text())
    assert tuning["command"].startswith("qai-train pid") and "--quick" not in tuning["command"]
    difference = tuning["validation"]["tuned_minus_default"]
    assert tuning["tuned"] and difference["high"] < 0 and difference["n"] >= 100
    specs = {spec.name: spec.default for spec in PARAMETERS}
    assert {name: specs[f"pid_{name}"] for name in shipped_gains()} == tuning["gains"] == shipped_gains()


def test_the_weight_vector_leaves_out_masked_synapses_and_round_trips():
    from qai_intelligence.policy import WeightVector

    model = build(ModelConfig("policy", "cfc", POLICY.features, POLICY_OUTPUTS, units=16, motor=4))
    weights = WeightVector(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 0 < len(weights) < trainable
    vector = weights.get() + 0.01
    weights.set(vector)
    assert np.allclose(weights.get(), vector, atol=1e-6)


# -- The node's core ---------------------------------------------------------------------------------

def core_with_shipped_models():
    from qai_intelligence.engine import IntelligenceCore
    from qai_intelligence.evaluation import FEATURES
    from qai_intelligence.store import SHIPPED

    slots = {}
    for task, period in (("endurance", 1.0), ("anomaly", 0.05), ("policy", 0.02)):
        model, meta = checkpoint.load(SHIPPED / task, task=task, inputs=FEATURES[task].features)
        slots[task] = ModelSlot(task, FEATURES[task], model, "v0001", meta, period, gap=5.0 if task == "endurance"
                                else 1.0)
    return IntelligenceCore(slots, ReturnPlan(), payload=lambda: 0.0)


ODOM = {"x": 10.0, "y": 0.0, "z": 5.0, "yaw": 0.0, "vx": 0.0, "vy": 0.0, "vz": 0.0, "yaw_rate": 0.0, "stamp": 0.0}


def test_a_residual_policy_starts_at_zero_and_goes_to_control_residual_a_whole_command_to_control_cmd_vel(tmp_path):
    """The topic follows the active policy, so an io_engine in the other mode never flies a misread output."""
    from qai_intelligence.evaluation import FEATURES
    from qai_intelligence.residual import ResidualSizes, build_residual

    core = core_with_shipped_models()
    assert core.policy_topic() == "control/cmd_vel"
    observations = np.random.default_rng(0).normal(size=(50, len(POLICY.features))).astype(np.float32)
    checkpoint.save(build_residual(0, ResidualSizes(), observations), tmp_path / "residual")
    model, meta = checkpoint.load(tmp_path / "residual", task="policy", inputs=FEATURES["policy"].features)
    core.slots["policy"] = ModelSlot("policy", FEATURES["policy"], model, "v0002", meta, 0.02, gap=1.0)
    assert core.policy_topic() == "control/residual"
    assert core.offer("odom", ODOM, 0.0)
    assert core.policy_command((12.0, 0.0, 5.0), 0.01) == (0.0, 0.0, 0.0, 0.0)  # its output layer is zero


BATTERY = {"voltage": 15.5, "current": 12.0, "percentage": 0.6, "capacity_ah": 4.76}


def test_the_core_counts_bad_readings_and_answers_only_with_fresh_ones():
    core = core_with_shipped_models()
    assert core.endurance_tick(0.0) is None and core.policy_command((12.0, 0.0, 5.0), 0.0) is None
    assert not core.offer("battery", {**BATTERY, "voltage": math.nan}, 0.0)
    assert core.rejected["battery"] == 1 and "battery.voltage is nan" in core.last_rejected
    assert core.offer("odom", ODOM, 0.0) and core.offer("battery", BATTERY, 0.0)
    output = core.endurance_tick(0.5)
    assert output is not None and output.remaining > 0 and output.needed > 30.0
    command = core.policy_command((12.0, 0.0, 5.0), 0.1)
    assert command is not None and all(abs(c) <= 8.0 for c in command)
    assert core.policy_command((math.inf, 0.0, 5.0), 0.12) is None
    assert core.endurance_tick(100.0) is None  # the battery went quiet: no prediction from stale readings


def test_a_sagging_pack_raises_endurance_low_once():
    core = core_with_shipped_models()
    core.slots["endurance"].tick_latency.warm_up = 5
    core.slots["endurance"].tick_latency.restart()
    core.offer("odom", ODOM, 0.0)
    events = []
    for t in range(20):
        sag = 2.5 if t >= 10 else 0.0
        core.offer("battery", {**BATTERY, "voltage": BATTERY["voltage"] - sag}, float(t))
        core.offer("odom", {**ODOM, "stamp": float(t)}, float(t))
        output = core.endurance_tick(float(t))
        events.append(output.event)
    assert events.count(True) == 1 and events.index(True) >= 10 and core.endurance.low
    latency = core.slots["endurance"].tick_latency  # each whole tick timed, past the warm-up (a stopped tick: none)
    assert (latency.samples, latency.discarded) == (15, 5) and latency.percentile_ms(99) > 0


def test_the_endurance_baseline_beside_the_model_is_the_one_fitted_on_its_training_flights():
    core = core_with_shipped_models()
    fitted = core.slots["endurance"].meta["metrics"]["baseline"]
    core.offer("odom", ODOM, 0.0)
    core.offer("battery", BATTERY, 0.0)
    output = core.endurance_tick(0.0)
    reference = EnduranceBaseline(scale=fitted["scale"], offset=fitted["offset"])
    features = core.slots["endurance"]._recent[-1][1]
    assert output.baseline == pytest.approx(reference.predict(features, 1.0)) and fitted["scale"] != 1.0
    assert core.status_values()["endurance_baseline"].startswith(f"fitted: scale {fitted['scale']:.3f}")
    core.slots["endurance"].meta = {}  # a checkpoint made without one (a swap makes the engine look again)
    core.slots["endurance"].swaps += 1
    uncalibrated = core.endurance_tick(1.0)
    assert core.status_values()["endurance_baseline"].startswith("uncalibrated")
    features = core.slots["endurance"]._recent[-1][1]
    assert uncalibrated.baseline == pytest.approx(EnduranceBaseline().predict(features, 1.0))


@pytest.mark.parametrize("metrics", ["x", [], {"baseline": "x"}, {"baseline": {"scale": "1e309", "offset": 0}},
                                     {"baseline": {"scale": -1.0, "offset": 0}}, {"baseline": {"scale": [1]}},
                                     {"baseline": {"scale": float("nan"), "offset": 0}}])
def test_a_checkpoint_whose_fitted_baseline_is_garbage_gets_the_uncalibrated_one_and_the_tick_goes_on(metrics):
    core = core_with_shipped_models()
    core.slots["endurance"].meta = {**core.slots["endurance"].meta, "metrics": metrics}
    core.offer("odom", ODOM, 0.0)
    core.offer("battery", BATTERY, 0.0)
    output = core.endurance_tick(0.0)
    assert output is not None and math.isfinite(output.baseline)
    assert core.status_values()["endurance_baseline"].startswith("uncalibrated")


class Flight:
    """A task context over a vehicle flying the given altitudes, one each 0.1-0.2 s sleep, then on the ground."""

    def __init__(self, core, altitudes, limit=2000):
        self.core, self.altitudes, self.t, self.steps, self.limit = core, iter(altitudes), 0.0, 0, limit
        self.sleep(0.0)

    def now(self):
        return self.t

    def sleep(self, seconds):
        self.steps += 1
        assert self.steps < self.limit, "the watch did not end"
        self.t += seconds
        z = next(self.altitudes, 0.0)
        self.core.offer("odom", {**ODOM, "x": 0.0, "z": z, "stamp": self.t}, self.t)
        self.core.offer("battery", {**BATTERY, "percentage": 0.9}, self.t)
        self.core.endurance_tick(self.t)

    def feedback(self, **values):
        pass


def request(attempt=1, **parameters):
    from types import SimpleNamespace

    return SimpleNamespace(parameters=parameters, attempt=attempt)


FAR = [500.0, 500.0, 5.0]  # an `until` point the vehicle never reaches


@pytest.mark.parametrize("kind, parameters", [
    ("watch_anomalies", {"until": FAR, "duration": 3600}),
    ("check_endurance", {"until": FAR, "watch": True}),
])
def test_a_watch_beside_a_flight_ends_when_the_vehicle_lands_short_of_its_until_point(kind, parameters):
    """A watch re-sent after its engine restarted may start when the vehicle has left its `until` point for good."""
    core = core_with_shipped_models()
    flight = Flight(core, [5.0] * 20)  # 20 steps in the air, then down
    getattr(core, kind)(request(**parameters), flight)
    assert 20 <= flight.steps < 30
    again = Flight(core, [])  # a later attempt that starts with the vehicle down: nothing left to watch
    getattr(core, kind)(request(attempt=2, **parameters), again)
    assert again.steps == 1


def test_a_first_watch_started_on_the_ground_waits_for_the_flight():
    core = core_with_shipped_models()
    flight = Flight(core, [0.0] * 10 + [5.0] * 10)
    core.watch_anomalies(request(until=FAR, duration=3600), flight)
    assert 20 <= flight.steps < 30  # it watched the take-off and the flight, and ended at the landing


@pytest.mark.parametrize("task", ("endurance", "anomaly", "policy"))
def test_the_shipped_models_load_small_and_say_how_they_were_made(task):
    from qai_intelligence.evaluation import FEATURES
    from qai_intelligence.store import SHIPPED

    model, meta = checkpoint.load(SHIPPED / task, task=task, inputs=FEATURES[task].features)
    assert model.config.cell == "cfc" and (SHIPPED / task / "model.pt").stat().st_size < 100_000
    assert meta["command"].startswith(f"qai-train {task} --seed 0") and meta["data"]["seed"] == 0
    assert {"torch", "ncps"} <= set(meta["libraries"]) and meta["training"]["total_seconds"] > 0
    assert {"held_out_training", "held_out_outside"} <= set(meta["metrics"])


def hover_with_a_stall(core, stall_at: float, stall: float, seconds: float = 14.0) -> list[float]:
    """Feed the core a hovering vehicle's streams at the simulator's rates and tick it every 0.05 s.

    From `stall_at` for `stall` s this process does not run: no reading is read and no tick runs; then, as an
    executor does, the late tick runs first and the readings queued meanwhile (the latest of each stream) after.
    Return the times of the anomaly events.
    """
    from qai_intelligence.data import _PHYSICS_DT, ANOMALY_TICK, STREAM_PERIODS, _read
    from qai_sim.vehicle_model import VehicleConfig, VehicleModel

    model = VehicleModel(VehicleConfig(seed=7), position=(0.0, 0.0, 5.0))
    gps_origin, events, queued = None, [], {}
    next_publish, next_tick = dict.fromkeys(STREAM_PERIODS, 0.0), ANOMALY_TICK
    for step in range(int(seconds / _PHYSICS_DT)):
        model.command(0.0, 0.0, 0.0, 0.0)
        model.step(_PHYSICS_DT)
        t = round((step + 1) * _PHYSICS_DT, 9)
        stalled = stall_at <= t < stall_at + stall
        for stream, period in STREAM_PERIODS.items():
            if t >= next_publish[stream]:
                next_publish[stream] = t + period
                reading = _read(model, stream, 4.76)
                if stream == "gps":
                    gps_origin = gps_origin or tuple(reading.values())
                    reading = {k: v - o for (k, v), o in zip(reading.items(), gps_origin)}
                queued[stream] = {**reading, "stamp": t} if stream == "odom" else reading
        if stalled:
            continue
        if t + 1e-9 >= next_tick:
            next_tick = t + ANOMALY_TICK
            output = core.anomaly_tick(t)
            if output is not None and output.event:
                events.append(t)
        for stream, reading in queued.items():
            core.offer(stream, reading, t)
        queued = {}
    return events


def test_a_tick_late_because_this_process_stalled_is_no_anomaly_but_a_stream_that_stops_is():
    """The finding: a loaded machine stalled the engine 0.6 s; its late tick saw odometry 0.6 s old: an anomaly."""
    assert hover_with_a_stall(core_with_shipped_models(), stall_at=10.0, stall=0.8) == []
    unheld = core_with_shipped_models()
    unheld.stall.hold = 0.0  # as before: the late tick judges the silence of the readings queued behind it
    assert hover_with_a_stall(unheld, stall_at=10.0, stall=0.8)
    # A stream that really stops is still caught, stall or not.
    dead = core_with_shipped_models()
    dead.offer = lambda stream, reading, now, offer=dead.offer: stream == "odom" and now > 10.0 or offer(
        stream, reading, now)
    assert hover_with_a_stall(dead, stall_at=10.0, stall=0.8)


def test_a_model_pt_that_unpacks_to_gigabytes_is_refused_before_it_is_read(saved):
    import zipfile

    from qai_intelligence import weights

    directory, _ = saved
    path = directory / checkpoint.WEIGHTS_FILE
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model/data.pkl", b"\x80\x02}q\x00.")
        archive.writestr("model/byteorder", "little")
        with archive.open("model/data/0", "w", force_zip64=True) as entry:  # 128 MiB of zeros, 128 KiB on disk
            block = bytes(1 << 20)
            for _ in range(128):
                entry.write(block)
    assert path.stat().st_size < checkpoint.MAX_CHECKPOINT_BYTES
    with pytest.raises(weights.WeightsError, match="once unpacked, more than the"):
        weights.read(path)


def test_the_reader_without_torch_answers_any_damaged_model_pt_with_weights_error_only(tmp_path):
    from hypothesis import HealthCheck, example, given, settings, strategies as st

    import zipfile

    from qai_intelligence import weights

    valid = checkpoint.save(endurance_model(), tmp_path / "valid") / checkpoint.WEIGHTS_FILE
    original = valid.read_bytes()
    target = tmp_path / "model.pt"

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(0, 255)), max_size=8),
           st.integers(0, len(original)))
    @example(changes=[(9406, 64)], length=60)  # a zip version zipfile does not read: NotImplementedError
    def damaged(changes, length):
        data = bytearray(original[:length] if length < 60 else original)
        for position, value in changes:
            if position < len(data):
                data[position] = value
        target.write_bytes(bytes(data))
        try:
            weights.read(target)
        except weights.WeightsError:
            pass

    with zipfile.ZipFile(valid) as archive:  # and a well-formed zip around a damaged data.pkl
        entries = {name: archive.read(name) for name in archive.namelist()}
    pickled = next(content for name, content in entries.items() if name.endswith("/data.pkl"))

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.tuples(st.integers(0, len(pickled) - 1), st.integers(0, 255)), min_size=1, max_size=6),
           st.integers(1, len(pickled)))
    @example(changes=[(0, 150)], length=9)  # BYTEARRAY8 with a length of exabytes: MemoryError (a fresh clone)
    def damaged_pickle(changes, length):
        data = bytearray(pickled[:length])
        for position, value in changes:
            if position < len(data):
                data[position] = value
        with zipfile.ZipFile(target, "w") as archive:
            for name, content in entries.items():
                archive.writestr(name, bytes(data) if name.endswith("/data.pkl") else content)
        try:
            weights.read(target)
        except weights.WeightsError:
            pass

    damaged()
    damaged_pickle()
