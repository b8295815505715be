"""The detector plugin contract, its registry, and the per-car set that runs every detector."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from driver_pc.protocol.events import EventKind
from driver_pc.protocol.plugins import Registry
from pitbox_appliance.analysis.corners import CornerMap
from pitbox_appliance.analysis.driver_inputs import InputMetrics

logger = logging.getLogger(__name__)

Frames = np.ndarray[Any, np.dtype[np.void]]


@dataclass(frozen=True, slots=True)
class Emission:
    """One thing a detector found: stored as an event row, and published when ``publish``.

    ``kind`` is an ``EventKind`` value when published; stored-only rows (``mistake``)
    use their own kind.
    """

    kind: str
    session_time: float
    payload: dict[str, Any]
    publish: bool = True


@dataclass(slots=True)
class BatchContext:
    """What a detector may know about the car besides the frames of one batch."""

    car: str
    driver: str
    stint_started: float
    lap_times: list[float]  # recent timed laps of the car, newest last
    car_numbers: dict[int, str]


#: A batch's context, or a function that makes it when the detectors look.
Context = BatchContext | Callable[[], BatchContext]


@dataclass(frozen=True, slots=True)
class LapContext:
    """A lap that just completed and was stored, with its input metrics."""

    car: str
    driver: str
    lap_number: int
    start_time: float | None
    end_time: float
    lap_time: float | None
    pit_lap: bool
    fuel_used: float | None
    inputs: InputMetrics | None
    stint_started: float
    #: The track's corners when its outline is known (live channels or GPS), else None.
    corners: CornerMap | None = None


@dataclass(slots=True)
class SharedState:
    """What detectors tell each other: incidents found so far (newest last)."""

    incidents: list[dict[str, Any]] = field(default_factory=list)
    # Start of an incident sequence still open (not yet published), else None.
    incident_open: float | None = None
    incident_open_kind: str | None = None  # its worst stage seen so far
    fatigue: float | None = None

    def incident_between(self, start: float, end: float) -> bool:
        """Whether an incident sequence overlaps [start, end), open ones included."""
        if self.incident_open is not None and self.incident_open < end:
            return True
        return any(
            i["session_time"] < end and i["end_time"] >= start
            for i in reversed(self.incidents[-20:])
        )


class Detector(Protocol):
    """A detector plugin: fed every batch of a car's frames and every completed lap."""

    name: str

    def on_frames(
        self, frames: Frames, ctx: BatchContext, shared: SharedState
    ) -> list[Emission]:
        """Look at one batch (numpy record array, time order); cheap and vectorised."""
        ...

    def on_lap(self, lap: LapContext, shared: SharedState) -> list[Emission]:
        """Look at a completed lap."""
        ...


# The core pools a car's batches until this many frames (500 ms at 60 Hz, the drafting
# detector's shortest window) before the detectors look: their cost is mostly per call,
# not per frame (bench/detector_cost.py); an alert comes at most 450 ms later.
POOL_FRAMES = 30

DetectorFactory = Callable[[], Detector]
_F = TypeVar("_F", bound=DetectorFactory)


@dataclass(frozen=True, slots=True)
class DetectorSpec:
    """A detector plugin as it declares itself with :func:`register_detector`."""

    name: str
    factory: DetectorFactory
    #: Telemetry channels it reads: the core decodes them for it.
    channels: tuple[str, ...]
    #: Event kinds it publishes (payload schemas in driver_pc/protocol/events.py).
    emits: tuple[EventKind, ...]
    #: Kinds it stores as event rows without publishing them.
    stores: tuple[str, ...]
    #: Place in a batch's run, smallest first (others read what earlier ones found).
    order: int


#: Every detector by name; the modules of ``pitbox_appliance.detectors`` register
#: themselves when the package is imported.
DETECTORS: Registry[DetectorSpec] = Registry(
    "detector", package="pitbox_appliance.detectors", skip=("base",)
)


def register_detector(
    name: str,
    *,
    channels: Iterable[str],
    emits: Iterable[EventKind] = (),
    stores: Iterable[str] = (),
    order: int = 100,
) -> Callable[[_F], _F]:
    """Class decorator: the detector ``name``, reading ``channels``, emitting ``emits``.

    It runs unless the appliance config switches it off (``detectors.<name>``).
    """

    def wrap(factory: _F) -> _F:
        spec = DetectorSpec(
            name, factory, tuple(channels), tuple(emits), tuple(stores), order
        )
        DETECTORS.add(name, spec)
        return factory

    return wrap


def detectors_in_order() -> list[DetectorSpec]:
    """Every registered detector in run order."""
    return sorted(DETECTORS.values(), key=lambda d: (d.order, d.name))


def detector_channels() -> tuple[str, ...]:
    """Every channel some registered detector reads, each once."""
    return tuple(dict.fromkeys(c for d in detectors_in_order() for c in d.channels))


class DetectorSet:
    """One car's detectors (all, in run order, unless named); collects what they emit.

    A detector that raises is logged and switched off for this car: one faulty
    plugin never stops ingest.
    """

    def __init__(self, names: Iterable[str] | None = None, min_frames: int = 1) -> None:
        if names is None:
            chosen = [d.name for d in detectors_in_order()]
        else:
            chosen = list(names)
        unknown = [n for n in chosen if n not in DETECTORS]
        if unknown:
            raise ValueError(
                f"unknown detector(s) {unknown}; known: {sorted(DETECTORS)}"
            )
        self.detectors: list[Detector] = [DETECTORS[n].factory() for n in chosen]
        self.shared = SharedState()
        # Batches are pooled until this many frames are in, then looked at as one:
        # the detectors' cost is mostly per call, not per frame (bench/detector_cost.py).
        self.min_frames = min_frames
        self._pending: list[Frames] = []
        self._pending_frames = 0

    def get(self, name: str) -> Detector | None:
        """The detector registered as ``name``, if it is in this set."""
        return next((d for d in self.detectors if d.name == name), None)

    def on_frames(self, frames: Frames, ctx: Context) -> list[Emission]:
        """Feed one batch (pooled up to ``min_frames``); everything the detectors emitted.

        ``ctx`` may be a function that makes the context: it is called only when the
        detectors look, once in ``min_frames`` (the core builds it per batch otherwise).
        """
        if len(frames) == 0:
            return []
        out: list[Emission] = []
        if self._pending and self._pending[0].dtype != frames.dtype:
            out += self.flush(ctx)  # the channel set changed: never mix layouts
        self._pending.append(frames)
        self._pending_frames += len(frames)
        if self._pending_frames >= self.min_frames:
            out += self.flush(ctx)
        return out

    def flush(self, ctx: Context) -> list[Emission]:
        """Look at the pooled frames now (before a lap completes, or when told)."""
        if not self._pending:
            return []
        context = ctx if isinstance(ctx, BatchContext) else ctx()
        pooled = (
            self._pending[0] if len(self._pending) == 1 else join_frames(self._pending)
        )
        self._pending = []
        self._pending_frames = 0
        return self._run(lambda d: d.on_frames(pooled, context, self.shared))

    def on_lap(self, lap: LapContext) -> list[Emission]:
        """Tell every detector a lap completed; everything they emitted."""
        return self._run(lambda d: d.on_lap(lap, self.shared))

    def _run(self, call: Callable[[Detector], list[Emission]]) -> list[Emission]:
        out: list[Emission] = []
        for detector in list(self.detectors):
            try:
                out += call(detector)
            except Exception:
                logger.exception(
                    "detector %s failed; disabled for this car", detector.name
                )
                self.detectors.remove(detector)
        return out


def join_frames(parts: list[Frames]) -> Frames:
    """Batches of one layout as one record array, in order (a writable copy).

    Joined as bytes: ``np.concatenate`` promotes a record dtype field by field, which
    for a live channel set cost ~0.7 ms a call, more than the detectors' own work.
    """
    dtype = parts[0].dtype
    if any(p.dtype != dtype for p in parts):
        raise ValueError("cannot join batches of different channel sets")
    joined = bytearray().join(p.tobytes() for p in parts)
    return np.frombuffer(joined, dtype=dtype)


def channel(frames: Frames, name: str) -> np.ndarray[Any, Any] | None:
    """A column of ``frames``, or None when the batch does not carry it."""
    return frames[name] if name in (frames.dtype.names or ()) else None
