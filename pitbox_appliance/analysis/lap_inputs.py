"""Buffers one car's pedal and steering traces so each completed lap gets its input metrics."""

from __future__ import annotations

from typing import Any

import numpy as np

from pitbox_appliance.analysis.driver_inputs import InputMetrics, input_metrics

INPUT_CHANNELS = ("SessionTime", "Throttle", "Brake", "SteeringWheelAngle")
MAX_BUFFER_S = 30 * 60  # no lap is longer; bounds memory if laps never complete


class LapInputBuffer:
    """Keeps the input traces since the last lap end; computes metrics per lap."""

    def __init__(self, tick_rate: int = 60) -> None:
        self.tick_rate = tick_rate
        self._chunks: list[np.ndarray[Any, np.dtype[np.float64]]] = []

    def append(self, frames: np.ndarray[Any, np.dtype[np.void]]) -> None:
        names = frames.dtype.names or ()
        if not len(frames) or not all(name in names for name in INPUT_CHANNELS):
            return
        block = np.empty((len(frames), 4), dtype=np.float64)
        for i, name in enumerate(INPUT_CHANNELS):
            block[:, i] = frames[name]
        self._chunks.append(block)
        if len(self._chunks) > 1 and self._span() > MAX_BUFFER_S:
            data = np.concatenate(self._chunks)
            self._chunks = [data[data[:, 0] >= data[-1, 0] - MAX_BUFFER_S]]

    def lap(self, start: float | None, end: float) -> InputMetrics | None:
        """Metrics of the samples in [start, end); drops everything before ``end``."""
        if not self._chunks:
            return None
        data = np.concatenate(self._chunks)
        rest = data[data[:, 0] >= end]
        # A lap that ends at or after the newest sample leaves nothing buffered.
        self._chunks = [rest] if len(rest) else []
        if start is None:
            return None
        window = data[(data[:, 0] >= start) & (data[:, 0] < end)]
        return input_metrics(window[:, 1], window[:, 2], window[:, 3], self.tick_rate)

    def _span(self) -> float:
        return float(self._chunks[-1][-1, 0] - self._chunks[0][0, 0])
