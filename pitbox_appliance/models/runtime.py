"""Loads a .tflite file through LiteRT (``ai-edge-litert``), else ``tflite_runtime``, and runs it.

Imports nothing of PitBox but numpy, so the ``tflite_runtime`` fallback can be checked in an
environment that has only ``tflite-runtime`` and ``numpy<2`` (scripts/test.sh does).
"""

from __future__ import annotations

import importlib
import logging
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# Tried in this order; the first importable one is used.
RUNTIME_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")


class ModelError(ValueError):
    """A model file or a model input is not usable; the message says which and why."""


class RuntimeUnavailable(ModelError):
    """Neither LiteRT nor tflite_runtime can be imported."""


def interpreter_class(modules: Sequence[str] = RUNTIME_MODULES) -> tuple[Any, str]:
    """The ``Interpreter`` class of the first importable runtime, and its module name."""
    errors = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:  # also numpy-ABI failures inside the import
            errors.append(f"{name}: {exc}")
            continue
        return module.Interpreter, name
    raise RuntimeUnavailable(
        "no TFLite runtime: install ai-edge-litert (or tflite-runtime with numpy<2); "
        + "; ".join(errors)
    )


class TFLiteModel:
    """One loaded model: a float32 vector of ``n_features`` in, a float32 vector out.

    ``run`` validates the input (length, finiteness) and raises ModelError naming
    the problem. Calls are serialised by a lock: one interpreter is not re-entrant.
    """

    def __init__(self, path: Path, modules: Sequence[str] = RUNTIME_MODULES) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"model file {self.path} does not exist")
        interpreter_cls, self.runtime = interpreter_class(modules)
        try:
            self._interpreter = interpreter_cls(model_path=str(self.path))
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(
                f"{self.path.name}: not a loadable TFLite model: {exc}"
            ) from exc
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"{self.path.name}: expected one input and one output tensor"
            )
        self._input = inputs[0]
        self._output = outputs[0]
        shape = tuple(int(n) for n in self._input["shape"])
        if len(shape) != 2 or shape[0] != 1:
            raise ModelError(f"{self.path.name}: input shape {shape} is not (1, n)")
        self.n_features = shape[1]
        self.n_outputs = int(np.prod(self._output["shape"]))
        self._lock = threading.Lock()

    def run(
        self, features: Sequence[float] | np.ndarray[Any, Any]
    ) -> np.ndarray[Any, np.dtype[np.float32]]:
        """The model's output for one feature vector."""
        x = check_features(features, self.n_features, self.path.stem)
        with self._lock:
            self._interpreter.set_tensor(self._input["index"], x.reshape(1, -1))
            self._interpreter.invoke()
            out = np.array(self._interpreter.get_tensor(self._output["index"]))
        return out.reshape(-1).astype(np.float32)


def check_features(
    features: Sequence[float] | np.ndarray[Any, Any], n_features: int, name: str
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """``features`` as a float32 vector; ModelError if its length or values are wrong."""
    try:
        x = np.asarray(features, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{name}: features are not numbers: {exc}") from exc
    if x.size != n_features:
        raise ModelError(f"{name}: expected {n_features} features, got {x.size}")
    bad = [i for i, v in enumerate(x.tolist()) if not math.isfinite(v)]
    if bad:
        raise ModelError(f"{name}: feature(s) {bad} are NaN or infinite")
    return x
