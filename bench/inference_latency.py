"""Latency of one on-device model call (target ≤ 0.5 ms p99, DESIGN §6), per model.

Measures, for every model of the registry, the bare TFLite call (``TFLiteModel.run``:
input checks, set_tensor, invoke, get_tensor) and the whole predictor call (model +
baseline + output transform), plus the advisor's work for one completed lap (feature
extraction and three predictions). Inputs are feature rows of the model's own
held-out-like range, drawn from a fixed seed.

    .venv/bin/python bench/inference_latency.py [--calls 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import machine, pct

from pitbox_appliance.models.advisor import ModelAdvisor
from pitbox_appliance.models.features import LapRecord
from pitbox_appliance.models.predictors import (
    IncidentClassifier,
    Predictor,
    load_incident_classifier,
    load_predictor,
)
from pitbox_appliance.models.registry import MODEL_NAMES


def timed(call: Callable[[int], Any], n: int) -> np.ndarray:
    """Wall-clock duration of each of ``n`` calls, in ms (after 200 warm-up calls)."""
    for i in range(200):
        call(i)
    out = np.empty(n)
    clock = time.perf_counter_ns
    for i in range(n):
        start = clock()
        call(i)
        out[i] = (clock() - start) / 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(machine())
    rng = np.random.default_rng(7)
    rows: list[tuple[str, str, list[float], list[float]]] = []
    for name in MODEL_NAMES:
        runner: Predictor | IncidentClassifier
        if name == "incident":
            runner = load_incident_classifier()
            model = runner.model
            n = len(runner.entry.features)
            x = np.abs(rng.normal(size=(args.calls, n))).astype(np.float32)
            classify = runner.classify

            def whole(i: int, x: np.ndarray = x, f: Any = classify) -> Any:
                return f(x[i])
        else:
            runner = load_predictor(name)
            model = runner.model
            n = len(runner.entry.features)
            x = rng.normal(scale=0.2, size=(args.calls, n)).astype(np.float32)
            predict = runner.predict

            def whole(i: int, x: np.ndarray = x, f: Any = predict) -> Any:
                return f(x[i], 1.0, 1.0)

        assert model is not None, f"{name}: no TFLite runtime"
        run = model.run

        def bare(i: int, x: np.ndarray = x, f: Any = run) -> Any:
            return f(x[i])

        p50s, p99s = [], []
        w50s, w99s = [], []
        for _ in range(args.repeats):
            t = timed(bare, args.calls)
            p50s.append(pct(t, 50))
            p99s.append(pct(t, 99))
            t = timed(whole, args.calls)
            w50s.append(pct(t, 50))
            w99s.append(pct(t, 99))
        rows.append((name, model.runtime, p50s + w50s, p99s + w99s))
        print(
            f"{name:13s} runtime={model.runtime} file={model.path.stat().st_size} B "
            f"| model.run p50 {np.median(p50s):.4f} ms p99 {np.median(p99s):.4f} ms "
            f"(worst repeat {max(p99s):.4f}) | predictor p50 {np.median(w50s):.4f} ms "
            f"p99 {np.median(w99s):.4f} ms (worst repeat {max(w99s):.4f})"
        )
    advisor = ModelAdvisor(lambda car, predictions: None)
    history = [
        LapRecord(n, 26.4 + 0.05 * float(rng.normal()), 0.4, n % 40 == 0, "A")
        for n in range(1, 61)
    ]
    laps = [history[: 20 + (i % 40)] for i in range(1000)]
    t = timed(lambda i: advisor.predict(laps[i % len(laps)]), 5000)
    print(
        f"advisor, one completed lap (features + 3 predictions): "
        f"p50 {pct(t, 50):.4f} ms p99 {pct(t, 99):.4f} ms"
    )


if __name__ == "__main__":
    main()
