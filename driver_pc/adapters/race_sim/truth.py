"""Ground-truth labels the simulator generates (all simulated), for scoring detectors and models."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

TruthValue = float | int | str | bool


class TruthKind(StrEnum):
    """What a ground-truth event records; see docs/simulator.md for each payload."""

    INCIDENT = (
        "incident"  # one stage of an incident sequence (off_track, spin, contact)
    )
    DAMAGE = "damage"  # repair time a contact or spin caused
    PIT_REQUEST = "pit_request"  # the team decided to stop, with its reasons
    PIT_ENTRY = "pit_entry"
    PIT_SERVICE = "pit_service"  # the stop itself: service time, fuel, tyres, repairs
    PIT_EXIT = "pit_exit"
    DRIVER_CHANGE = "driver_change"
    FATIGUE = "fatigue"  # the driving player's fatigue level crossed a 0.1 step
    FCY_START = "fcy_start"
    FCY_END = "fcy_end"
    PASS = "pass"  # the player car passed, or was passed by, a car on track
    LAP = "lap"  # per completed player lap: its time and every hidden cause
    CHECKERED = "checkered"


@dataclass(frozen=True, slots=True)
class TruthEvent:
    """One simulated label: when, what, which car (CarIdx), on which lap, and details."""

    session_time: float
    kind: TruthKind
    car_idx: int
    lap: int
    data: Mapping[str, TruthValue] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form."""
        return {
            "session_time": round(self.session_time, 6),
            "kind": str(self.kind),
            "car_idx": self.car_idx,
            "lap": self.lap,
            "data": dict(self.data),
        }
