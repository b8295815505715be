"""Driving mistakes from the ``events`` table: parsing, filtering by stint/driver, heat per section."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

KINDS = ("braking", "throttle", "line", "spin")
#: Lap-distance bins of the heat layer drawn along the track outline.
HEAT_BINS = 60


@dataclass(frozen=True, slots=True)
class Mistake:
    """One detected mistake as stored by the core (event kind ``"mistake"``)."""

    kind: str
    lap: int
    lap_dist_pct: float
    section: int
    severity: float
    driver: str
    session_time: float


@dataclass(frozen=True, slots=True)
class MistakeLog:
    """A session's mistakes in time order, and how many stored rows were unreadable."""

    mistakes: tuple[Mistake, ...]
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class SectionHeat:
    """All mistakes in one track section: how many of each kind and their weight."""

    section: int
    count: int
    severity: float
    kinds: tuple[tuple[str, int], ...]
    #: Where along the lap the section's mistakes are (their mean lap distance).
    pct: float


def parse_mistake(payload: Any, session_time: float) -> Mistake | None:
    """A stored payload as a Mistake; None when a field is missing or out of range."""
    if not isinstance(payload, Mapping):
        return None
    kind = payload.get("mistake")
    pct = _finite(payload.get("lap_dist_pct"))
    severity = _finite(payload.get("severity"))
    lap, section = payload.get("lap"), payload.get("section")
    if not isinstance(lap, int) or not isinstance(section, int):
        return None
    if (
        kind not in KINDS
        or pct is None
        or not 0.0 <= pct <= 1.0
        or severity is None
        or severity < 0
        or not _is_int(lap)
        or not _is_int(section)
    ):
        return None
    return Mistake(
        kind=str(kind),
        lap=int(lap),
        lap_dist_pct=pct,
        section=int(section),
        severity=severity,
        driver=str(payload.get("driver") or ""),
        session_time=session_time,
    )


def in_window(
    mistakes: Iterable[Mistake], start: float, end: float | None
) -> tuple[Mistake, ...]:
    """The mistakes made between two session times (an open stint: ``end`` None)."""
    return tuple(
        m
        for m in mistakes
        if m.session_time >= start and (end is None or m.session_time <= end)
    )


def by_driver(mistakes: Iterable[Mistake], driver: str) -> tuple[Mistake, ...]:
    return tuple(m for m in mistakes if m.driver == driver)


def heat(mistakes: Iterable[Mistake], bins: int = HEAT_BINS) -> tuple[float, ...]:
    """Summed severity per lap-distance bin, scaled so the hottest bin is 1."""
    sums = [0.0] * bins
    for m in mistakes:
        sums[min(bins - 1, int(m.lap_dist_pct * bins))] += max(m.severity, 0.05)
    top = max(sums) if sums else 0.0
    return tuple(s / top if top > 0 else 0.0 for s in sums)


def sections(mistakes: Iterable[Mistake]) -> tuple[SectionHeat, ...]:
    """Sections with mistakes, worst (summed severity) first."""
    grouped: dict[int, list[Mistake]] = {}
    for m in mistakes:
        grouped.setdefault(m.section, []).append(m)
    out = []
    for section, group in grouped.items():
        kinds = Counter(m.kind for m in group)
        out.append(
            SectionHeat(
                section=section,
                count=len(group),
                severity=round(sum(m.severity for m in group), 3),
                kinds=tuple((k, kinds[k]) for k in KINDS if kinds[k]),
                pct=_mean_pct([m.lap_dist_pct for m in group]),
            )
        )
    out.sort(key=lambda s: (-s.severity, -s.count, s.section))
    return tuple(out)


def heat_color(level: float) -> str:
    """Amber to red as the heat rises (0..1)."""
    level = min(1.0, max(0.0, level))
    green = round(200 * (1.0 - level))
    return f"#ff{green:02x}00"


def _mean_pct(values: list[float]) -> float:
    """Mean position on a loop (a section across the line averages near 0, not 0.5)."""
    angle = math.atan2(
        sum(math.sin(2 * math.pi * v) for v in values),
        sum(math.cos(2 * math.pi * v) for v in values),
    )
    return (angle / (2 * math.pi)) % 1.0


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
