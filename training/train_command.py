"""The ``pitbox train`` subcommand: builds each model's data, trains it with Keras, converts it to TFLite.

TensorFlow is imported only inside this module's functions (the ``[train]`` extra);
the appliance runs the converted files through LiteRT. Training is seeded and
single-threaded, so the same data gives the same weights: ``--compare-to DIR``
retrains and checks every model's outputs against the files in DIR.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pitbox_appliance.models.baselines import (
    fatigue_baseline,
    fit_incident_thresholds,
    incident_baseline,
    linear_fit,
)
from pitbox_appliance.models.features import (
    FATIGUE_FEATURES,
    FUEL_FEATURES,
    INCIDENT_CLASSES,
    INCIDENT_FEATURES,
    LAP_TIME_FEATURES,
)
from pitbox_appliance.models.registry import MODEL_NAMES, save_registry
from training.datasets import (
    IMSA_HELD_OUT_SEASONS,
    IMSA_TRAIN_SEASONS,
    SIM_HELD_OUT,
    SIM_TRAIN,
    Dataset,
    SimRace,
    SimRaceSpec,
    fatigue_dataset,
    ibt_fuel_dataset,
    imsa_races,
    incident_dataset,
    lap_time_dataset,
    real_data_dir,
    sim_fuel_dataset,
    simulate,
)

logger = logging.getLogger(__name__)

SEED = 20261126
HIDDEN_UNITS = 8
EPOCHS = 60
BATCH = 64
# A retrained model matches a committed one when outputs differ by less than this.
REPRODUCE_TOLERANCE = 1e-4
# Fewer held-out real rows than this cannot make a model the default.
MIN_REAL_ROWS = 20
# A model wins only if it cuts its baseline's held-out error by at least this share
# (or raises accuracy by this much): a tie within noise keeps the simpler baseline.
MIN_IMPROVEMENT = 0.01


def add_command(sub: Any) -> None:
    parser = sub.add_parser(
        "train",
        help="train the on-device models and write .tflite files and registry.json",
        description=(
            "Builds each model's data (IMSA timing, real .ibt files, simulated races "
            "from fixed seeds), trains it (seeded), converts it to TFLite and scores "
            "it beside its baseline on held-out races. Needs the [train] extra."
        ),
    )
    parser.add_argument(
        "model", nargs="?", default="all", choices=(*MODEL_NAMES, "all")
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--cache", type=Path, help="simulated-race cache (default: OUT/.sim-cache)"
    )
    parser.add_argument(
        "--compare-to",
        type=Path,
        help="check the retrained models reproduce the .tflite files in this directory",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    data = real_data_dir()
    if not (data / "imsa").is_dir():
        _say(
            f"pitbox train: real data not found in {data} (set PITBOX_REAL_DATA)",
            error=True,
        )
        return 2
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        _say(
            "pitbox train: TensorFlow is missing: pip install 'pitbox[train]'",
            error=True,
        )
        return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    cache = args.cache or out / ".sim-cache"
    names = MODEL_NAMES if args.model == "all" else (args.model,)
    registry_path = out / "registry.json"
    entries: dict[str, Any] = (
        json.loads(registry_path.read_text())["models"]
        if registry_path.is_file()
        else {}
    )
    sims = _SimRaces(cache)
    trainers: dict[str, Callable[[Path, Path, _SimRaces], dict[str, Any]]] = {
        "lap_time": train_lap_time,
        "fuel_per_lap": train_fuel,
        "fatigue": train_fatigue,
        "incident": train_incident,
    }
    failed = 0
    for name in names:
        entry = trainers[name](data, out, sims)
        entries[name] = entry
        logger.warning("%s: %s", name, json.dumps(entry["held_out"]))
        _say(
            f"{name}: winner={entry['winner']} default={entry['default']} held_out={json.dumps(entry['held_out'])}"
        )
        if args.compare_to is not None:
            diff = compare_models(
                out / entry["file"],
                args.compare_to / entry["file"],
                len(entry["features"]),
            )
            ok = diff <= REPRODUCE_TOLERANCE
            failed += not ok
            _say(
                f"{name}: max output difference to {args.compare_to}: {diff:.2e} {'OK' if ok else 'MISMATCH'}"
            )
    save_registry(
        dict(sorted(entries.items(), key=lambda kv: MODEL_NAMES.index(kv[0]))),
        registry_path,
    )
    return 1 if failed else 0


# -- models ------------------------------------------------------------------------------


def train_lap_time(data: Path, out: Path, sims: _SimRaces) -> dict[str, Any]:
    """Next lap time on IMSA: trained on the 2021-2022 races, held out: 2023-2024.

    The model wins only if it beats both the issue's naive baseline (median of
    the last five green laps, the registry's ``baseline``) and the timing
    engine's pace rule it would replace, on the held-out races pooled.
    """
    train_files = imsa_races(IMSA_TRAIN_SEASONS, data)
    test_files = imsa_races(IMSA_HELD_OUT_SEASONS, data)
    train = lap_time_dataset(train_files)
    test = lap_time_dataset(test_files)
    _fit_and_convert(train, out / "lap_time.tflite", regression=True)
    model = _predict(out / "lap_time.tflite", test.x)[:, 0] + test.reference
    mae_model = _mae(model, test.truth)
    mae_naive = _mae(test.baselines["median_last_five"], test.truth)
    mae_engine = _mae(test.baselines["engine"], test.truth)
    groups = np.array(test.groups)
    per_race = {
        name: {
            "rows": int(np.sum(groups == name)),
            "mae_model_s": _mae(model[groups == name], test.truth[groups == name]),
            "mae_median_last_five_s": _mae(
                test.baselines["median_last_five"][groups == name],
                test.truth[groups == name],
            ),
        }
        for name in sorted(set(test.groups))
    }
    held_out = {
        "data": "real: IMSA races of "
        + ", ".join(IMSA_HELD_OUT_SEASONS)
        + f" ({len(test_files)}); trained on "
        + ", ".join(IMSA_TRAIN_SEASONS)
        + f" ({len(train_files)})",
        "rows": len(test),
        "train_rows": len(train),
        "mae_model_s": mae_model,
        "mae_median_last_five_s": mae_naive,
        "mae_engine_s": mae_engine,
        "mae_last_lap_s": _mae(test.baselines["last_lap"], test.truth),
        "per_race": per_race,
    }
    won = (
        len(test) >= MIN_REAL_ROWS
        and _beats(mae_model, mae_naive)
        and _beats(mae_model, mae_engine)
    )
    return _entry(
        "lap_time",
        LAP_TIME_FEATURES,
        "add_reference",
        "median_last_five",
        "real",
        won,
        held_out,
    )


def train_fuel(data: Path, out: Path, sims: _SimRaces) -> dict[str, Any]:
    """Fuel per lap: trained on simulated races, held out: the real .ibt sessions."""
    train = sim_fuel_dataset(sims.get(SIM_TRAIN))
    test_sim = sim_fuel_dataset(sims.get(SIM_HELD_OUT))
    test = ibt_fuel_dataset(data)
    path = out / "fuel_per_lap.tflite"
    _fit_and_convert(train, path, regression=True)

    def scores(ds: Dataset) -> dict[str, float]:
        model = ds.reference * (1 + _predict(path, ds.x)[:, 0])
        return {
            "mae_model_l": _mae(model, ds.truth),
            "mae_rolling_median_l": _mae(ds.baselines["rolling_median"], ds.truth),
            "mae_last_lap_l": _mae(ds.baselines["last_lap"], ds.truth),
        }

    real = scores(test)
    held_out = {
        "data": "real: .ibt sessions " + ", ".join(sorted(set(test.groups))),
        "rows": len(test),
        "train_rows": len(train),
        **real,
        "simulated_held_out": {"rows": len(test_sim), **scores(test_sim)},
    }
    # Too few real laps are no evidence either way: the baseline stays.
    won = len(test) >= MIN_REAL_ROWS and _beats(
        real["mae_model_l"], real["mae_rolling_median_l"]
    )
    return _entry(
        "fuel_per_lap",
        FUEL_FEATURES,
        "ratio_of_reference",
        "rolling_median",
        "real",
        won,
        held_out,
    )


def train_fatigue(data: Path, out: Path, sims: _SimRaces) -> dict[str, Any]:
    """Fatigue level: simulated only (no real labels exist); held out: other seeds."""
    train = fatigue_dataset(sims.get(SIM_TRAIN))
    test = fatigue_dataset(sims.get(SIM_HELD_OUT))
    intercept, slope = linear_fit(train.x[:, 0].tolist(), train.y.tolist())
    path = out / "fatigue.tflite"
    _fit_and_convert(train, path, regression=True)
    model = _predict(path, test.x)[:, 0]
    baseline = np.array(
        [fatigue_baseline(float(h), intercept, slope) for h in test.x[:, 0]]
    )
    mae_model = _mae(model, test.truth)
    mae_baseline = _mae(baseline, test.truth)
    held_out = {
        "data": "simulated: seeds " + ", ".join(str(s.seed) for s in SIM_HELD_OUT),
        "rows": len(test),
        "train_rows": len(train),
        "mae_model": mae_model,
        "mae_stint_time_linear": mae_baseline,
    }
    won = _beats(mae_model, mae_baseline)
    entry = _entry(
        "fatigue",
        FATIGUE_FEATURES,
        "identity",
        "stint_time_linear",
        "simulated",
        won,
        held_out,
    )
    entry["baseline_params"] = {"intercept": intercept, "slope": slope}
    return entry


def train_incident(data: Path, out: Path, sims: _SimRaces) -> dict[str, Any]:
    """Incident type (off-track / spin / contact): simulated only; held out: other seeds."""
    train = incident_dataset(sims.get(SIM_TRAIN))
    test = incident_dataset(sims.get(SIM_HELD_OUT))
    path = out / "incident.tflite"
    _fit_and_convert(train, path, regression=False)
    model = np.argmax(_predict(path, test.x), axis=1)
    thresholds = fit_incident_thresholds(
        train.x, [INCIDENT_CLASSES[int(k)] for k in train.y]
    )
    baseline = np.array(
        [
            INCIDENT_CLASSES.index(incident_baseline(row.tolist(), **thresholds))
            for row in test.x
        ]
    )
    truth = test.y.astype(int)
    accuracy_model = _accuracy(model, truth)
    accuracy_rules = _accuracy(baseline, truth)
    held_out = {
        "data": "simulated: seeds " + ", ".join(str(s.seed) for s in SIM_HELD_OUT),
        "rows": len(test),
        "train_rows": len(train),
        "accuracy_model": accuracy_model,
        "accuracy_threshold_rules": accuracy_rules,
        "class_counts": {
            c: int(np.sum(truth == i)) for i, c in enumerate(INCIDENT_CLASSES)
        },
    }
    won = accuracy_model >= accuracy_rules + MIN_IMPROVEMENT
    entry = _entry(
        "incident",
        INCIDENT_FEATURES,
        "classes",
        "threshold_rules",
        "simulated",
        won,
        held_out,
    )
    entry["classes"] = list(INCIDENT_CLASSES)
    entry["baseline_params"] = thresholds
    return entry


# -- helpers -------------------------------------------------------------------------------


def _entry(
    name: str,
    features: tuple[str, ...],
    output: str,
    baseline: str,
    evidence: str,
    won: bool,
    held_out: dict[str, Any],
) -> dict[str, Any]:
    winner = "model" if won else "baseline"
    held_out = _json_safe(held_out)
    return {
        "file": f"{name}.tflite",
        "features": list(features),
        "output": output,
        "baseline": baseline,
        "evidence": evidence,
        "winner": winner,
        # Only a win on held-out real data makes the model the default.
        "default": "model" if won and evidence == "real" else "baseline",
        "held_out": held_out,
        "seed": SEED,
    }


class _SimRaces:
    """Simulated races by spec, cached as pickles (they take a while to generate)."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache

    def get(self, specs: tuple[SimRaceSpec, ...]) -> list[SimRace]:
        races = []
        for spec in specs:
            path = (
                self.cache
                / f"sim-{spec.seed}-{spec.laps}-{spec.opponents}-{spec.fatigue}-{spec.incidents}-{spec.stints_per_driver}.pkl"
            )
            if path.is_file():
                race = pickle.loads(path.read_bytes())
            else:
                logger.warning(
                    "simulating race seed %d (%d laps)", spec.seed, spec.laps
                )
                race = simulate(spec)
                self.cache.mkdir(parents=True, exist_ok=True)
                path.write_bytes(pickle.dumps(race))
            races.append(race)
        return races


def _fit_and_convert(ds: Dataset, path: Path, *, regression: bool) -> None:
    """Seeded single-threaded Keras fit of a tiny MLP, converted to a float32 .tflite."""
    import tensorflow as tf

    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.threading.set_intra_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised by an earlier model of this run
    tf.keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    if len(ds) == 0:
        raise SystemExit(f"pitbox train: no training rows for {path.stem}")
    n = ds.x.shape[1]
    norm = tf.keras.layers.Normalization()
    norm.adapt(ds.x)
    if regression:
        head = tf.keras.layers.Dense(1)
        loss = "mae"
        y = ds.y
    else:
        head = tf.keras.layers.Dense(len(INCIDENT_CLASSES), activation="softmax")
        loss = "sparse_categorical_crossentropy"
        y = ds.y.astype(np.int32)
    model = tf.keras.Sequential(
        [
            tf.keras.Input((n,)),
            norm,
            tf.keras.layers.Dense(HIDDEN_UNITS, activation="tanh"),
            head,
        ]
    )
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss=loss)
    model.fit(ds.x, y, epochs=EPOCHS, batch_size=BATCH, shuffle=True, verbose=0)

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    path.write_bytes(converter.convert())


def _predict(path: Path, x: np.ndarray) -> np.ndarray:
    """Outputs of a .tflite file for every row, through the appliance's runtime."""
    from pitbox_appliance.models.runtime import TFLiteModel

    model = TFLiteModel(path)
    return (
        np.stack([model.run(row) for row in x])
        if len(x)
        else np.zeros((0, model.n_outputs))
    )


def compare_models(new: Path, old: Path, n_features: int) -> float:
    """Largest output difference of two model files over a fixed set of probe inputs."""
    rng = np.random.default_rng(SEED)
    probes = rng.normal(size=(64, n_features)).astype(np.float32)
    return float(np.max(np.abs(_predict(new, probes) - _predict(old, probes))))


def _say(text: str, error: bool = False) -> None:
    (sys.stderr if error else sys.stdout).write(text + "\n")


def _mae(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute error; NaN without rows (then nothing wins; written as null)."""
    if len(truth) == 0:
        return float("nan")
    return _round(float(np.mean(np.abs(np.asarray(pred) - np.asarray(truth)))))


def _beats(model_error: float, baseline_error: float) -> bool:
    """The model's error is at least MIN_IMPROVEMENT below the baseline's."""
    return model_error <= (1 - MIN_IMPROVEMENT) * baseline_error


def _accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    return _round(float(np.mean(pred == truth))) if len(truth) else float("nan")


def _round(value: float) -> float:
    return round(value, 5)


def _json_safe(value: Any) -> Any:
    """NaN → None, recursively (registry.json stays strict JSON)."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value
