"""On-device models: committed .tflite files through LiteRT, registry choices, baselines, advisor."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from driver_pc.adapters.simulator import RaceSimulatorAdapter, TruthKind
from driver_pc.protocol.mqtt import BrokerAddress, MqttConnection
from pitbox_appliance.models.advisor import LIVE_MODELS, ModelAdvisor
from pitbox_appliance.models.baselines import fatigue_baseline
from pitbox_appliance.models.incidents import (
    COUNT_CHANNEL,
    WINDOW_CHANNELS,
    classify_incidents,
)
from pitbox_appliance.models.predictors import (
    IncidentClassifier,
    Predictor,
    load_predictor,
)
from pitbox_appliance.models.registry import (
    MODEL_NAMES,
    RegistryError,
    load_registry,
)
from pitbox_appliance.models.runtime import ModelError, TFLiteModel
from pitbox_appliance.strategy.predict import predict_race
from pitbox_appliance.strategy.timing import read_timing_csv
from tests.conftest import RunningAppliance, real_file, wait_for
from training.datasets import (
    IMSA_HELD_OUT_SEASONS,
    SimRaceSpec,
    fatigue_dataset,
    imsa_races,
    lap_time_dataset,
    simulate,
)
from training.train_command import MIN_IMPROVEMENT

REGISTRY = load_registry()
# A held-out race of the lap-time model (2024 Watkins Glen 6 h, plain CSV).
HELD_OUT_RACE = "2024_watkins_glen_6h_race_laps.csv"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_committed_model_loads_through_litert(name: str) -> None:
    entry = REGISTRY[name]
    assert entry.path.stat().st_size < 16_000, "models stay a few KB"
    model = TFLiteModel(entry.path)
    assert model.runtime == "ai_edge_litert.interpreter"
    assert model.n_features == len(entry.features)
    rng = np.random.default_rng(1)
    for row in rng.normal(size=(20, model.n_features)):
        out = model.run(row)
        assert out.shape == ((len(entry.classes),) if entry.classes else (1,))
        assert np.all(np.isfinite(out))
        if entry.classes:
            assert out.sum() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ([0.0] * 5, "expected 6 features, got 5"),
        ([0.0, float("nan"), 0.0, 0.0, 0.0, 0.0], r"feature\(s\) \[1\] are NaN"),
        ([0.0, 0.0, float("inf"), 0.0, 0.0, 0.0], r"feature\(s\) \[2\] are NaN"),
        (["fast", 0, 0, 0, 0, 0], "features are not numbers"),
    ],
)
def test_bad_input_raises_a_clear_error(features: list[object], message: str) -> None:
    predictor = load_predictor("lap_time")
    with pytest.raises(ModelError, match=message):
        predictor.predict(features, 90.0, 90.0)  # type: ignore[arg-type]


def test_missing_or_corrupt_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        TFLiteModel(tmp_path / "nope.tflite")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer" * 8)
    with pytest.raises(ModelError, match=r"bad\.tflite: not a loadable TFLite model"):
        TFLiteModel(bad)


def test_predictor_uses_the_registry_choice() -> None:
    entry = REGISTRY["fuel_per_lap"]
    x = [0.05, 0.01, 1.0, 0.1]
    as_registered = Predictor(entry).predict(x, 0.4, 0.4)
    assert as_registered.source == entry.default
    assert as_registered.model_value is not None
    if entry.default == "baseline":
        assert as_registered.value == 0.4
    forced_model = Predictor(dataclasses.replace(entry, default="model"))
    forced_baseline = Predictor(dataclasses.replace(entry, default="baseline"))
    assert forced_model.predict(x, 0.4, 0.4).value == as_registered.model_value
    assert forced_baseline.predict(x, 0.4, 0.4).value == 0.4
    assert forced_baseline.predict(x, 0.4, 0.4).source == "baseline"


def test_incident_classifier_reports_model_and_baseline() -> None:
    classifier = IncidentClassifier(REGISTRY["incident"])
    spin_like = [0.05, 0.8, 1.2, 6.5, 0.6, 3.0]
    result = classifier.classify(spin_like)
    assert result.baseline_label == "spin"
    assert result.probabilities is not None
    assert set(result.probabilities) == {"off_track", "spin", "contact"}
    assert result.label == (
        result.baseline_label
        if REGISTRY["incident"].default == "baseline"
        else max(result.probabilities, key=result.probabilities.__getitem__)
    )


def test_registry_refuses_a_default_model_without_real_evidence(
    tmp_path: Path,
) -> None:
    raw = json.loads(REGISTRY["fatigue"].path.with_name("registry.json").read_text())
    raw["models"]["fatigue"]["default"] = "model"
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(RegistryError, match="'fatigue' is the default without"):
        load_registry(path)
    del raw["models"]["fatigue"]["features"]
    path.write_text(json.dumps(raw))
    with pytest.raises(RegistryError, match="'fatigue': bad or missing 'features'"):
        load_registry(path)


def _beats(model: float, baseline: float) -> bool:
    return model <= (1 - MIN_IMPROVEMENT) * baseline


def test_lap_time_verdict_recomputed_on_held_out_imsa() -> None:
    """The registry's lap-time figures for one held-out race, recomputed from it."""
    path = real_file("imsa", HELD_OUT_RACE)
    assert path.name.startswith(IMSA_HELD_OUT_SEASONS)
    assert path in imsa_races(IMSA_HELD_OUT_SEASONS)
    entry = REGISTRY["lap_time"]
    figures = entry.held_out["per_race"][path.name]
    ds = lap_time_dataset([path])
    model = load_predictor("lap_time")
    predicted = np.array([model.model_output(x)[0] for x in ds.x]) + ds.reference
    mae_model = float(np.mean(np.abs(predicted - ds.truth)))
    naive = float(np.mean(np.abs(ds.baselines["median_last_five"] - ds.truth)))
    assert len(ds) == figures["rows"]
    assert mae_model == pytest.approx(figures["mae_model_s"], abs=1e-4)
    assert naive == pytest.approx(figures["mae_median_last_five_s"], abs=1e-4)
    pooled = entry.held_out
    won = _beats(pooled["mae_model_s"], pooled["mae_median_last_five_s"]) and _beats(
        pooled["mae_model_s"], pooled["mae_engine_s"]
    )
    assert entry.winner == ("model" if won else "baseline")
    assert entry.baseline == "median_last_five"


def test_predict_race_uses_the_lap_time_model_only_when_it_is_the_default() -> None:
    laps = read_timing_csv(real_file("imsa", HELD_OUT_RACE))[:3000]
    engine = predict_race(laps, lap_time_model=None)
    default = predict_race(laps)
    forced = Predictor(dataclasses.replace(REGISTRY["lap_time"], default="model"))
    with_model = predict_race(laps, lap_time_model=forced)
    changed = sum(
        a.next_lap_time_s != b.next_lap_time_s
        for a, b in zip(engine, with_model, strict=True)
    )
    assert changed > 100, "the forced model changes green-flag predictions"
    assert [p.next_pit_lap for p in with_model] == [p.next_pit_lap for p in engine]
    expected = with_model if REGISTRY["lap_time"].default == "model" else engine
    assert default == expected
    with pytest.raises(ValueError, match="'fast' is neither a predictor"):
        predict_race(laps[:10], lap_time_model="fast")


def test_fatigue_model_against_its_baseline_on_a_new_simulated_race() -> None:
    """A simulated race of an unseen seed: the model wins or loses as the registry says."""
    entry = REGISTRY["fatigue"]
    race = simulate(SimRaceSpec(seed=203, laps=40, opponents=0))
    ds = fatigue_dataset([race])
    model = load_predictor("fatigue")
    predicted = np.array([model.model_output(x)[0] for x in ds.x])
    baseline = np.array(
        [fatigue_baseline(float(x[0]), **entry.baseline_params) for x in ds.x]
    )
    mae_model = float(np.mean(np.abs(predicted - ds.truth)))
    mae_baseline = float(np.mean(np.abs(baseline - ds.truth)))
    assert len(ds) > 25
    assert (mae_model < mae_baseline) == (entry.winner == "model")
    assert entry.evidence == "simulated"
    assert entry.default == "baseline"


def _lap(n: int, time_s: float, fuel: float, pit: bool = False) -> dict[str, object]:
    return {"lap": n, "time": time_s, "fuel": fuel, "pit": pit, "driver": "A"}


def _forced(*names: str) -> dict[str, Any]:
    """The registry with ``names`` made the default, as if they had won."""
    return {
        name: dataclasses.replace(
            entry, winner="model", default="model", evidence="real"
        )
        if name in names
        else dataclasses.replace(entry, default="baseline")
        for name, entry in REGISTRY.items()
    }


def _run_advisor(registry: dict[str, Any] | None) -> list[tuple[str, Any, str]]:
    results: list[tuple[str, Any, str]] = []
    done = threading.Event()

    def collect(car: str, predictions: dict[str, object]) -> None:
        results.append((car, predictions, threading.current_thread().name))
        if predictions["lap"] == 12:
            done.set()

    advisor = ModelAdvisor(collect, registry)
    advisor.start()
    try:
        rng = np.random.default_rng(3)
        for n in range(1, 13):
            advisor.submit("42", _lap(n, 26.4 + 0.1 * rng.normal(), 0.40, n == 1))
        done.wait(10)
    finally:
        advisor.stop()
    return results


def test_advisor_predicts_on_its_own_thread() -> None:
    results = _run_advisor(_forced(*LIVE_MODELS.values()))
    assert results, "advisor answered within 10 s"
    car, last, thread = results[-1]
    assert car == "42"
    assert thread == "models"
    for key in LIVE_MODELS:
        prediction = last[key]
        assert isinstance(prediction, dict)
        assert prediction["source"] == "model"
        assert np.isfinite(prediction["value"])
        assert prediction["model"] == prediction["value"]
        assert prediction["baseline"] is not None
    fuel = last["fuel_next_lap_l"]
    assert fuel["baseline"] == pytest.approx(0.40)
    # The lap-time baseline: median of the last five clean laps.
    lap_time = last["next_lap_time_s"]
    assert 26.0 < lap_time["baseline"] < 26.8


@pytest.mark.parametrize(
    "winners", [(), ("lap_time",), ("fatigue",), ("lap_time", "fuel_per_lap")]
)
def test_advisor_computes_only_the_models_that_won(winners: tuple[str, ...]) -> None:
    """A model whose registry default is its baseline is not computed live at all."""
    advisor = ModelAdvisor(lambda car, predictions: None, _forced(*winners))
    assert set(advisor.live_models()) == set(winners)
    rng = np.random.default_rng(4)
    out: dict[str, Any] = {}
    for n in range(1, 13):
        out = advisor.observe("9", _lap(n, 26.4 + 0.1 * rng.normal(), 0.40, n == 1))
    shown = {key for key in LIVE_MODELS if key in out}
    assert shown == {key for key, name in LIVE_MODELS.items() if name in winners}
    if not winners:
        assert out == {}, "nothing to show: no prediction at all"
    for key in shown:
        assert out[key]["source"] == "model"
        assert out[key]["baseline"] is not None


def test_advisor_with_the_committed_registry_runs_only_its_winners() -> None:
    advisor = ModelAdvisor(lambda car, predictions: None)
    winners = {
        name for name in LIVE_MODELS.values() if REGISTRY[name].default == "model"
    }
    assert set(advisor.live_models()) == winners
    for name in winners:
        assert REGISTRY[name].evidence == "real"
        assert REGISTRY[name].winner == "model"


def test_advisor_skips_a_lap_with_bad_values() -> None:
    advisor = ModelAdvisor(lambda car, predictions: None, _forced("lap_time"))
    for n in range(1, 6):
        advisor.observe("7", _lap(n, 26.0, 0.4))
    with pytest.raises(ModelError, match="NaN"):
        advisor.observe("7", _lap(6, float("nan"), 0.4))


def test_train_command_without_tensorflow_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorFlow is installed here; the message is for its absence")
    from pitbox_appliance.cli import main

    real_file("imsa")
    assert main(["train", "fatigue", "--out", str(tmp_path)]) == 2
    assert "TensorFlow is missing" in capsys.readouterr().err


def test_core_publishes_predictions_in_the_live_state(
    appliance: RunningAppliance,
) -> None:
    """Real broker, real core, simulated shim: predictions reach the live-state topic."""
    broker = appliance.broker
    states: list[dict[str, Any]] = []
    watcher = MqttConnection(
        "models-watcher",
        BrokerAddress(
            broker.host, broker.port, broker.appliance_user, broker.appliance_password
        ),
    )
    watcher.subscribe(
        "pitbox/v1/live/+/state", 0, lambda _t, p, _m: states.append(json.loads(p))
    )
    watcher.start()
    try:
        appliance.start_shim(RaceSimulatorAdapter(laps=7, speed=0, seed=4))
        winners = {
            key
            for key, name in LIVE_MODELS.items()
            if REGISTRY[name].default == "model"
        }

        def settled() -> bool:
            # The winners' predictions shown, or (none won) five laps run without.
            if winners:
                return any(
                    winners <= state.get("predictions", {}).keys() for state in states
                )
            return any(state.get("laps_completed", 0) >= 5 for state in states)

        assert wait_for(settled, timeout=60)
    finally:
        watcher.stop()
    for state in states:
        shown = set(LIVE_MODELS) & state.get("predictions", {}).keys()
        assert shown <= winners, "a model that lost to its baseline is never shown"
    if not winners:
        return
    state = next(s for s in states if winners <= s["predictions"].keys())
    predictions = state["predictions"]
    assert predictions["lap"] <= state["laps_completed"]
    for key in winners:
        assert predictions[key]["source"] == "model"
        assert predictions[key]["baseline"] is not None
    if "next_lap_time_s" in winners:
        lap_time = predictions["next_lap_time_s"]["value"]
        assert 20.0 < lap_time < 40.0, "a simulated Martinsville lap is ~26 s"


def test_incidents_found_and_classified_from_simulated_telemetry() -> None:
    """Sequences come from the incident-count steps; labels match the simulated truth."""
    sim = RaceSimulatorAdapter(
        laps=8, speed=0, seed=5, opponents=3, incidents=20.0, yellows=0.0
    )
    frames = np.concatenate(
        [rows[[*WINDOW_CHANNELS, COUNT_CHANNEL]] for rows in sim.ticks()]
    )
    found = classify_incidents(frames)
    sequences: dict[int, list[Any]] = {}
    for event in sim.truth_of(TruthKind.INCIDENT, car_idx=0):
        sequences.setdefault(int(event.data["sequence"]), []).append(event)
    assert sequences, "the seed gives incidents"
    assert sum(i.points for i in found) == sum(
        int(e.data["counted"]) for stages in sequences.values() for e in stages
    )
    truth = {
        round(stages[0].session_time, 1): str(
            max(stages, key=lambda e: int(e.data["points"])).data["type"]
        )
        for stages in sequences.values()
    }
    matched = [truth[round(i.start_s, 1)] == i.label for i in found]
    assert len(matched) >= 2
    assert sum(matched) >= 0.8 * len(matched)
    with pytest.raises(ValueError, match="needs channels"):
        classify_incidents(frames[["SessionTime", "Speed"]])
