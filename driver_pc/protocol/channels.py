"""Telemetry channel descriptions and the precision each channel travels and is stored at."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class ChannelKind(IntEnum):
    """iRacing's variable types (irsdk_VarType), which every adapter maps onto."""

    CHAR = 0
    BOOL = 1
    INT = 2
    BITFIELD = 3
    FLOAT = 4
    DOUBLE = 5


NUMPY_TYPE: dict[ChannelKind, str] = {
    ChannelKind.CHAR: "u1",
    ChannelKind.BOOL: "u1",
    ChannelKind.INT: "<i4",
    ChannelKind.BITFIELD: "<u4",
    ChannelKind.FLOAT: "<f4",
    ChannelKind.DOUBLE: "<f8",
}

# Precision (quantum) per unit for floating-point channels. Integers and flags are
# always lossless. Chosen to be finer than the sim's own resolution where it
# matters (timing, lap distance) and well below what any analysis can use elsewhere.
# These two tables are the version-1 table: what a channel dictionary that states no
# quanta (every one sent or stored before they were stated) means. Never change them.
UNIT_QUANTUM: dict[str, float] = {
    "s": 1e-4,
    "m/s": 1e-3,
    "m": 1e-3,
    "%": 1e-4,
    "C": 1e-2,
    "kPa": 1e-2,
    "bar": 1e-3,
    "rad": 1e-4,
    "rad/s": 1e-4,
    "m/s^2": 1e-3,
    "l": 1e-4,
    "kg/h": 1e-3,
    "revs/min": 0.1,
    "RPM": 0.1,
    "N*m": 1e-2,
    "V": 1e-3,
    "deg": 1e-7,
    "s/s": 1e-4,
    "fps": 1e-2,
}
NAME_QUANTUM: dict[str, float] = {
    "SessionTime": 1e-6,
    "LapDistPct": 1e-7,
    "Lat": 1e-8,
    "Lon": 1e-8,
    "LapCurrentLapTime": 1e-4,
    "LapLastLapTime": 1e-4,
    "LapBestLapTime": 1e-4,
}
DEFAULT_FLOAT_QUANTUM = 1e-4

# What new dictionaries state: the version-1 table, with any channel whose precision
# is decided otherwise. Only dictionaries carry quanta to a receiver, so an entry here
# changes what is sent from then on, never how a stored body decodes. The quanta of
# docs/decisions.md "Precision of the live channels" (2026-12-03): what the pit wall
# needs of accelerations, angular rates, torques, shock velocities and the opponents'
# RPM, steering and estimated times (the full live set: 24.65 -> 18.68 KB/s per car).
LIVE_UNIT_QUANTUM: dict[str, float] = {
    **UNIT_QUANTUM,
    "m/s^2": 1e-2,
    "rad/s": 1e-3,
    "N*m": 0.1,
    "Nm": 0.1,
    "m/s at 360 Hz": 1e-3,
}
LIVE_NAME_QUANTUM: dict[str, float] = {
    **NAME_QUANTUM,
    "CarIdxRPM": 10.0,
    "CarIdxSteer": 1e-3,
    "CarIdxEstTime": 1e-3,
    "CarIdxF2Time": 1e-3,
}


def version1_quantum(name: str, kind: ChannelKind, unit: str) -> float | None:
    """The quantum of a channel in a dictionary that states none (the version-1 table)."""
    if kind not in (ChannelKind.FLOAT, ChannelKind.DOUBLE):
        return None
    if name in NAME_QUANTUM:
        return NAME_QUANTUM[name]
    return UNIT_QUANTUM.get(unit, DEFAULT_FLOAT_QUANTUM)


def live_quantum(name: str, kind: ChannelKind, unit: str) -> float | None:
    """The quantum a new dictionary states for a channel (None: lossless)."""
    if kind not in (ChannelKind.FLOAT, ChannelKind.DOUBLE):
        return None
    if name in LIVE_NAME_QUANTUM:
        return LIVE_NAME_QUANTUM[name]
    return LIVE_UNIT_QUANTUM.get(unit, DEFAULT_FLOAT_QUANTUM)


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One telemetry channel: name, type, array length, unit and wire precision.

    ``precision`` is the quantum the channel's dictionary states (a received one, or
    one read from storage: the version-1 table's when it states none); a channel
    that states none, as an adapter describes it, is at :func:`live_quantum`.
    """

    name: str
    kind: ChannelKind
    count: int = 1
    unit: str = ""
    description: str = ""
    precision: float | None = None

    @property
    def quantum(self) -> float | None:
        """Step floats are rounded to on the wire; None means lossless."""
        if self.kind not in (ChannelKind.FLOAT, ChannelKind.DOUBLE):
            return None
        if self.precision is not None:
            return self.precision
        return live_quantum(self.name, self.kind, self.unit)

    @property
    def samples_in_tick(self) -> bool:
        """Whether the values are successive samples within one tick, oldest first.

        True for float arrays other than the per-car ``CarIdx*`` ones: iRacing's
        360 Hz channels (6 values a 60 Hz tick). The codec predicts each such sample
        from the ones just before it in time; a wrong guess costs bytes, never values.
        """
        return (
            self.count > 1
            and self.kind in (ChannelKind.FLOAT, ChannelKind.DOUBLE)
            and not self.name.startswith("CarIdx")
        )

    @property
    def version1_quantum(self) -> float | None:
        """The quantum of this channel in a dictionary that states none."""
        return version1_quantum(self.name, self.kind, self.unit)

    @property
    def numpy_type(self) -> str:
        return NUMPY_TYPE[self.kind]


def frame_dtype(
    channels: list[ChannelSpec] | tuple[ChannelSpec, ...],
) -> np.dtype[np.void]:
    """The packed numpy record type of one tick for these channels."""
    return _frame_dtype(tuple(channels))


@functools.lru_cache(maxsize=64)
def _frame_dtype(channels: tuple[ChannelSpec, ...]) -> np.dtype[np.void]:
    fields: list[tuple[str, str] | tuple[str, str, tuple[int]]] = []
    for ch in channels:
        if ch.count == 1:
            fields.append((ch.name, ch.numpy_type))
        else:
            fields.append((ch.name, ch.numpy_type, (ch.count,)))
    return np.dtype(fields)
