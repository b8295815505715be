"""One line of text per live event, for the pit wall's alert list (newest first)."""

from __future__ import annotations

from typing import Any

from driver_pc.protocol.events import (
    CommandResultEvent,
    DamageAlert,
    DraftingOpportunity,
    DriverChanged,
    DriverFatigueUpdate,
    EventKind,
    IncidentDetected,
)
from driver_pc.protocol.live import StrategySnapshot
from pitbox_appliance.dashboard import formatting as fmt
from pitbox_appliance.dashboard.live_state import CarState, LiveEvent

#: Events that are not alerts: every lap shows in the lap table already.
NOT_ALERTS = frozenset({EventKind.LAP_COMPLETED.value})
#: Alerts needing the engineer's attention now (shown in the warning colour).
URGENT = frozenset({EventKind.DAMAGE_ALERT.value, EventKind.INCIDENT_DETECTED.value})
NOT_AVAILABLE = "not available yet"


def alert_text(event: LiveEvent) -> str:
    """A short sentence about one event; other kinds list their first fields."""
    p = event.payload
    if isinstance(p, StrategySnapshot):
        return "Strategy: " + recommendation(p)
    if isinstance(p, IncidentDetected):
        return (
            f"Incident: {p.incident.replace('_', ' ')} at "
            f"{_pct(p.lap_dist_pct)} of lap {p.lap}"
        )
    if isinstance(p, DamageAlert):
        loss = p.lap_time_loss_s
        extra = f", +{loss:.1f} s/lap" if loss is not None else ""
        return f"Damage {p.severity}{extra}"
    if isinstance(p, DriverChanged):
        return f"Driver change: {p.user_name}"
    if isinstance(p, CommandResultEvent):
        return f"Shim {'confirmed' if p.ok else 'failed'}: {p.detail}"
    if isinstance(p, DriverFatigueUpdate):
        advice = f", {p.advice}" if p.advice else ""
        return f"Fatigue {p.driver}: {_pct(p.fatigue)}{advice}"
    if isinstance(p, DraftingOpportunity):
        return f"Draft: #{p.other_car} {p.direction} {p.gap_s} s"
    # Mistakes are stored for /heatmap, never published: one per corner per lap would
    # bury the alerts that need the engineer now (docs/dashboard.md).
    fields = p.model_dump()
    first = ", ".join(f"{k} {v}" for k, v in list(fields.items())[:3])
    return f"{event.kind.replace('_', ' ').replace('.', ' ')}: {first}"


def recommendation(strategy: StrategySnapshot | None) -> str:
    """The strategy in one line: the advice, stops, pit window, fuel to add."""
    if strategy is None:
        return NOT_AVAILABLE
    parts = []
    advice = strategy.recommendation
    if advice is not None:
        parts.append(advice.action.replace("_", " ").upper())
        if advice.reason:
            parts.append(advice.reason)
    stops = strategy.stops_needed
    if stops is not None:
        parts.append("no stop needed" if stops == 0 else f"{stops} stop(s)")
    opens, closes = strategy.pit_window_open_lap, strategy.pit_window_close_lap
    if opens is not None or closes is not None:
        parts.append(f"window L{opens or '?'}–{closes or '?'}")
    add = strategy.fuel_to_add
    if add is not None and add > 0:
        parts.append(f"+{add:.1f} L")
    save = strategy.save_per_lap_to_skip_stop
    if save is not None and save > 0:
        parts.append(f"save {save:.2f} L/lap to skip a stop")
    tyres, swap = strategy.tyres, strategy.driver_swap
    if tyres is not None and tyres.advice == "change":
        parts.append("change tyres")
    if swap is not None and swap.advice == "swap":
        parts.append(f"swap to {swap.next_driver or 'next driver'}")
    return " · ".join(parts) if parts else NOT_AVAILABLE


def car_recommendation(car: CarState | None) -> str:
    return recommendation(car.strategy) if car is not None else fmt.UNKNOWN


def _pct(value: Any) -> str:
    return f"{value * 100:.0f} %" if isinstance(value, int | float) else fmt.UNKNOWN
