"""How the dashboard writes numbers: lap times, speeds, fuel, gears; a dash when unknown."""

from __future__ import annotations

UNKNOWN = "—"
#: Shown for a lap iRacing gave no time (reset, tow): never a number.
INVALID = "INVALID"


def lap_time(seconds: float | None) -> str:
    """``1:02.345`` (or ``58.123`` under a minute); a dash when there is no time."""
    if seconds is None or seconds <= 0:
        return UNKNOWN
    millis = round(seconds * 1000)
    minutes, millis = divmod(millis, 60_000)
    if minutes == 0:
        return f"{millis / 1000:.3f}"
    return f"{minutes}:{millis / 1000:06.3f}"


def running_time(seconds: float | None) -> str:
    """The current lap's clock to a tenth: ``0:42.1``."""
    if seconds is None or seconds < 0:
        return UNKNOWN
    tenths = int(seconds * 10)
    minutes, tenths = divmod(tenths, 600)
    return f"{minutes}:{tenths / 10:04.1f}"


def speed(kmh: float) -> str:
    return f"{kmh:.0f}"


def gear(value: int) -> str:
    """The gear as iRacing counts it: -1 reverse, 0 neutral."""
    if value < 0:
        return "R"
    if value == 0:
        return "N"
    return str(value)


def litres(value: float | None) -> str:
    return UNKNOWN if value is None else f"{value:.1f}"


def laps(value: float | None) -> str:
    return UNKNOWN if value is None else f"{value:.1f}"


def age(seconds: float) -> str:
    """A short age for the staleness badge: ``4 s``, ``3 min``, ``2 h``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def duration(seconds: float | None) -> str:
    """A stint's length: ``1:02:03`` (or ``12:03`` under an hour)."""
    if seconds is None or seconds < 0:
        return UNKNOWN
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def signed(seconds: float | None) -> str:
    """A time difference with its sign: ``+0.123``."""
    return UNKNOWN if seconds is None else f"{seconds:+.3f}"
