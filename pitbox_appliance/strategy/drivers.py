"""Driver-swap advice from live fatigue (or stint time) and fair-share drive-time rules."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pitbox_appliance.strategy.settings import StrategySettings


@dataclass(frozen=True, slots=True)
class SwapAdvice:
    """See docs/strategy.md, ``driver_swap``."""

    advice: str
    driver: str
    stint_s: float
    fatigue: float | None
    fatigue_source: str
    rule: str | None
    reason: str
    next_driver: str | None
    drive_time_s: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def next_driver(
    current: str, drive_time_s: dict[str, float], settings: StrategySettings
) -> str | None:
    """The listed (else seen) driver with the least drive time, not the one driving."""
    names = list(settings.drivers) or list(drive_time_s)
    options = [n for n in names if n != current]
    if not options:
        return None
    return min(options, key=lambda n: (drive_time_s.get(n, 0.0), names.index(n)))


def swap_advice(
    driver: str,
    stint_s: float,
    drive_time_s: dict[str, float],
    race_time_left_s: float | None,
    fatigue: float | None,
    settings: StrategySettings,
) -> SwapAdvice:
    """Swap at the next stop when a rule says so; the first rule that fires is named.

    Rules in order: live ``fatigue`` ≥ ``fatigue_swap``; the stint reached
    ``max_stint_s``; this driver's total reached ``max_total_s``; another driver
    still needs ``min_total_s`` and the race time left is barely enough for it (their
    shortfall ≥ time left less one max stint, so waiting another stint would be late).
    """
    drive_time_s = {k: round(v, 1) for k, v in drive_time_s.items()}
    source = "detector" if fatigue is not None else "stint_time"
    nxt = next_driver(driver, drive_time_s, settings)
    rule: str | None = None
    reason = "no rule asks for a swap"
    if fatigue is not None and fatigue >= settings.fatigue_swap:
        rule = "fatigue"
        reason = f"fatigue {fatigue:.2f} ≥ {settings.fatigue_swap:.2f}"
    elif settings.max_stint_s is not None and stint_s >= settings.max_stint_s:
        rule = "max_stint"
        reason = (
            f"stint {stint_s / 60:.0f} min ≥ max {settings.max_stint_s / 60:.0f} min"
        )
    elif (
        settings.max_total_s is not None
        and drive_time_s.get(driver, 0.0) >= settings.max_total_s
    ):
        rule = "max_total"
        reason = (
            f"{driver} has driven {drive_time_s.get(driver, 0.0) / 60:.0f} min "
            f"≥ max {settings.max_total_s / 60:.0f} min"
        )
    elif (
        settings.min_total_s is not None
        and race_time_left_s is not None
        and nxt is not None
    ):
        short = settings.min_total_s - drive_time_s.get(nxt, 0.0)
        slack = race_time_left_s - (settings.max_stint_s or 0.0)
        if short > 0 and short >= slack:
            rule = "min_total"
            reason = (
                f"{nxt} still needs {short / 60:.0f} min of the minimum "
                f"{settings.min_total_s / 60:.0f} min, {race_time_left_s / 60:.0f} min left"
            )
    return SwapAdvice(
        "swap" if rule and nxt else "stay",
        driver,
        round(stint_s, 1),
        fatigue,
        source,
        rule,
        reason if nxt or not rule else f"{reason}, but no other driver is known",
        nxt,
        drive_time_s,
    )
