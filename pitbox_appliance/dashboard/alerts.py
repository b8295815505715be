"""One line of text per live event, for the pit wall's alert list (newest first)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pitbox_appliance.dashboard import formatting as fmt
from pitbox_appliance.dashboard.live_state import CarState, LiveEvent

#: Events that are not alerts: every lap shows in the lap table already.
NOT_ALERTS = frozenset({"lap.completed"})
#: Alerts needing the engineer's attention now (shown in the warning colour).
URGENT = frozenset({"damage_alert", "incident_detected", "mistake"})
NOT_AVAILABLE = "not available yet"


def alert_text(event: LiveEvent) -> str:
    """A short sentence about one event; unknown kinds list their first fields."""
    get = event.get
    kind = event.kind
    if kind == "strategy_recommendation":
        return "Strategy: " + recommendation(dict(event.payload))
    if kind == "incident_detected":
        return (
            f"Incident: {str(get('incident')).replace('_', ' ')} at "
            f"{_pct(get('lap_dist_pct'))} of lap {get('lap')}"
        )
    if kind == "mistake":
        return (
            f"Mistake: {get('mistake')} in section {get('section')}, lap {get('lap')}"
            f" ({get('driver') or 'driver ?'})"
        )
    if kind == "damage_alert":
        loss = get("lap_time_loss_s")
        extra = f", +{loss:.1f} s/lap" if isinstance(loss, int | float) else ""
        return f"Damage {get('severity')}{extra}"
    if kind == "driver.change":
        return f"Driver change: {get('user_name')}"
    if kind == "command.result":
        return f"Shim {'confirmed' if get('ok') else 'failed'}: {get('detail')}"
    if kind == "driver_fatigue_update":
        advice = get("advice")
        return f"Fatigue {get('driver')}: {_pct(get('fatigue'))}" + (
            f", {advice}" if advice else ""
        )
    if kind == "drafting_opportunity":
        return f"Draft: #{get('other_car')} {get('direction')} {get('gap_s')} s"
    fields = ", ".join(f"{k} {v}" for k, v in event.payload[:3])
    return f"{kind.replace('_', ' ').replace('.', ' ')}: {fields}"


def recommendation(strategy: Mapping[str, Any]) -> str:
    """The strategy in one line: the advice, stops, pit window, fuel to add."""
    parts = []
    advice = strategy.get("recommendation")
    if isinstance(advice, Mapping) and isinstance(advice.get("action"), str):
        parts.append(str(advice["action"]).replace("_", " ").upper())
        if advice.get("reason"):
            parts.append(str(advice["reason"]))
    stops = strategy.get("stops_needed")
    if isinstance(stops, int):
        parts.append("no stop needed" if stops == 0 else f"{stops} stop(s)")
    opens, closes = (
        strategy.get("pit_window_open_lap"),
        strategy.get("pit_window_close_lap"),
    )
    if isinstance(opens, int) or isinstance(closes, int):
        parts.append(f"window L{opens or '?'}–{closes or '?'}")
    add = strategy.get("fuel_to_add")
    if isinstance(add, int | float) and add > 0:
        parts.append(f"+{add:.1f} L")
    save = strategy.get("save_per_lap_to_skip_stop")
    if isinstance(save, int | float) and save > 0:
        parts.append(f"save {save:.2f} L/lap to skip a stop")
    tyres, swap = strategy.get("tyres"), strategy.get("driver_swap")
    if isinstance(tyres, Mapping) and tyres.get("advice") == "change":
        parts.append("change tyres")
    if isinstance(swap, Mapping) and swap.get("advice") == "swap":
        parts.append(f"swap to {swap.get('next_driver') or 'next driver'}")
    return " · ".join(parts) if parts else NOT_AVAILABLE


def car_recommendation(car: CarState | None) -> str:
    return recommendation(dict(car.strategy)) if car is not None else fmt.UNKNOWN


def _pct(value: Any) -> str:
    return f"{value * 100:.0f} %" if isinstance(value, int | float) else fmt.UNKNOWN
