"""Strategy ``/strategy``: pit window, fuel save, tyres, driver swap, stint plan, winning models, rejoin, rivals' stops."""

from __future__ import annotations

import html
from typing import Any

from nicegui import ui

from driver_pc.protocol.live import (
    DriverSwapSnapshot,
    ModelValue,
    PitStop,
    Predictions,
    StintPlanEntry,
    StrategySnapshot,
    TyreSnapshot,
)
from pitbox_appliance.dashboard import figures
from pitbox_appliance.dashboard import formatting as fmt
from pitbox_appliance.dashboard.context import PageContext
from pitbox_appliance.dashboard.live_state import CarState, OtherCar
from pitbox_appliance.dashboard.pages import page
from pitbox_appliance.dashboard.widgets import note, tid, tile

#: Strategy changes once a lap; twice a second is plenty.
REFRESH_S = 0.5
NOT_YET = "not available yet"
#: The fuel plan's figures, in the order the pit-window tile lists them.
FUEL_KEYS = (
    "stops_needed",
    "pit_window_open_lap",
    "pit_window_close_lap",
    "fuel_to_add",
    "laps_of_fuel",
    "laps_remaining",
    "fuel_per_lap",
)
#: The figure sets the strategy engine adds, each shown in its own tile.
PARTS = ("race", "pit_loss_s", "tyres", "driver_swap", "stint_plan", "rejoin")
#: The on-device models' predictions: (field of Predictions, label, unit, digits).
MODEL_ROWS = (
    ("next_lap_time_s", "next lap time", "s", 3),
    ("fuel_next_lap_l", "fuel next lap", "L", 3),
    ("fatigue_level", "fatigue level", "", 2),
)

PAGE_CSS = """
.pb-strat-page { display: grid; width: 100%; height: 100%; gap: 8px;
                 grid-template-columns: repeat(3, minmax(0, 1fr));
                 grid-template-rows: minmax(0, 0.9fr) minmax(0, 1fr); }
.pb-strat-page .pb-tile { justify-content: flex-start; gap: 4px; overflow-y: auto; }
.pb-figs { display: grid; grid-template-columns: auto minmax(0, 1fr); gap: 1px 10px;
           margin: 0; font-size: 15px; font-variant-numeric: tabular-nums; }
.pb-figs dt { color: var(--pb-muted); white-space: nowrap; }
.pb-figs dd { margin: 0; font-weight: 700; text-align: right; overflow-wrap: anywhere; }
.pb-figtable { width: 100%; border-collapse: collapse; font-size: 14px;
               font-variant-numeric: tabular-nums; }
.pb-figtable th { font-size: 11px; color: var(--pb-muted); text-align: right;
                  text-transform: uppercase; position: sticky; top: 0;
                  background: var(--pb-tile); }
.pb-figtable td { text-align: right; padding: 2px 4px; border-top: 1px solid #262c34;
                  white-space: nowrap; }
.pb-figtable th:first-child, .pb-figtable td:first-child { text-align: left; }
.pb-advice { font-size: 18px; font-weight: 800; color: var(--pb-accent); }
.pb-advice.pb-calm { color: #cbd5e1; }
.pb-classdot { display: inline-block; width: 10px; height: 10px; border-radius: 5px;
               margin-right: 4px; }
.pb-strat-wide { grid-column: 2 / 4; }
@media (min-width: 1000px) and (min-height: 700px) {
  .pb-figs { font-size: 18px; } .pb-figtable { font-size: 16px; }
}
@media (max-width: 640px) {
  .pb-strat-page { grid-template-columns: minmax(0, 1fr); grid-template-rows: none;
                   height: auto; }
  .pb-strat-wide { grid-column: auto; }
  .pb-strat-page .pb-tile { max-height: 60vh; }
}
"""


@page("/strategy", icon="insights", label="Strategy", order=50, css=PAGE_CSS)
def create(ctx: PageContext) -> None:
    """Build the strategy page for one tab; a timer re-renders what changed."""
    view = StrategyView(ctx)
    view.refresh()
    ui.timer(REFRESH_S, view.refresh)


class StrategyView:
    """The tiles of one tab's strategy page."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx
        self._shown: dict[str, str] = {}
        with tid(ui.element("div"), "page-strategy").classes("pb-strat-page"):
            with tile("Pit window · fuel", "strat-window"):
                self.window = tid(ui.html("", sanitize=True), "strat-window-body")
            with tile("Pit loss · rejoin", "strat-rejoin"):
                self.rejoin = tid(ui.html("", sanitize=True), "strat-rejoin-body")
            with tile("Tyres · driver swap", "strat-tyres"):
                self.tyres = tid(ui.html("", sanitize=True), "strat-tyres-body")
            with tile("Stint plan · models", "strat-plan"):
                self.plan = tid(ui.html("", sanitize=True), "strat-plan-body")
                self.models = tid(ui.html("", sanitize=True), "strat-models-body")
            with tile("Opponents' pit cycles", "strat-opponents").classes(
                "pb-strat-wide"
            ):
                self.opponents = tid(ui.html("", sanitize=True), "strat-opp-body")
                self.source = note("", "strat-source")

    def refresh(self) -> None:
        car = self.ctx.car()
        strategy = car.strategy if car is not None else None
        self._set(self.window, window_html(strategy))
        self._set(self.rejoin, rejoin_html(strategy))
        self._set(self.tyres, tyres_html(strategy))
        self._set(self.plan, plan_html(strategy.stint_plan if strategy else ()))
        self._set(self.models, models_html(car.predictions if car else None))
        others = car.others if car is not None else ()
        self._set(self.opponents, opponents_html(others))
        self._set(self.source, source_text(car))

    def _set(self, element: ui.html | ui.label, content: str) -> None:
        key = str(element.id)
        if self._shown.get(key) == content:
            return
        self._shown[key] = content
        if isinstance(element, ui.html):
            element.set_content(content)
        else:
            element.set_text(content)


# ---- what each tile shows (pure: tested without a browser) -----------------------------
#: Advice that asks nothing of anyone: shown calm, so the accent colour means "act".
CALM_ADVICE = frozenset({"stay_out", "keep", "stay"})


def _advice_class(advice: str) -> str:
    return "pb-advice pb-calm" if advice in CALM_ADVICE else "pb-advice"


def _missing(what: str, testid: str) -> str:
    return f'<div class="pb-note" data-testid="{testid}">{html.escape(what)}: {NOT_YET}</div>'


def window_html(strategy: StrategySnapshot | None) -> str:
    """The recommendation, pit window, stops, fuel to add and the fuel-save target."""
    out = []
    advice = strategy.recommendation if strategy is not None else None
    if advice is not None and advice.action:
        out.append(
            f'<div class="{_advice_class(advice.action)}" data-testid="strat-advice">'
            f"{html.escape(advice.action.replace('_', ' ').upper())}</div>"
        )
        if advice.reason:
            out.append(f'<div class="pb-note">{html.escape(advice.reason)}</div>')
    figs = [(k, getattr(strategy, k)) for k in FUEL_KEYS] if strategy else []
    if strategy is None or all(v is None for _k, v in figs):
        out.append(
            _missing("Fuel plan (needs a few green laps)", "strat-window-missing")
        )
        return "".join(out)
    save = strategy.save_per_lap_to_skip_stop
    if save is not None and save > 0:
        out.append(
            f'<div class="pb-advice" data-testid="strat-save">'
            f"Save {save:.2f} L/lap to skip a stop</div>"
        )
    out.append(figures.pairs_html(figs, "strat-window-figs"))
    return "".join(out)


def rejoin_html(strategy: StrategySnapshot | None) -> str:
    """Time lost by a stop and where we would come out if we pitted now."""
    out = []
    loss = strategy.pit_loss_s if strategy is not None else None
    if strategy is None or loss is None:
        out.append(_missing("Pit loss", "strat-loss-missing"))
    else:
        pairs: list[tuple[str, Any]] = [("pit_loss_s", loss)]
        if strategy.pit_loss is not None:
            detail = strategy.pit_loss.model_dump().items()
            pairs += [(k, v) for k, v in detail if k != "s"]
        out.append(figures.pairs_html(pairs, "strat-loss"))
    rejoin = strategy.rejoin if strategy is not None else None
    if rejoin is not None:
        out.append('<div class="pb-cap">If we pit now</div>')
        rows = list(rejoin.model_dump().items())
        out.append(figures.pairs_html(rows, "strat-rejoin-figs"))
    else:
        out.append(_missing("Rejoin projection", "strat-rejoin-missing"))
    race = strategy.race if strategy is not None else None
    if race is not None:
        out.append('<div class="pb-cap">Race</div>')
        out.append(figures.pairs_html(list(race.model_dump().items()), "strat-race"))
    return "".join(out)


def tyres_html(strategy: StrategySnapshot | None) -> str:
    """Tyre advice and the driver-swap advice, as the strategy engine words them."""
    out = []
    parts: tuple[tuple[str, str, TyreSnapshot | DriverSwapSnapshot | None], ...] = (
        ("tyres", "Tyres", strategy.tyres if strategy else None),
        ("driver_swap", "Driver swap", strategy.driver_swap if strategy else None),
    )
    for key, what, part in parts:
        if part is None:
            out.append(_missing(what, f"strat-{key}-missing"))
            continue
        if part.advice:
            out.append(
                f'<div class="{_advice_class(part.advice)}" '
                f'data-testid="strat-{key}-advice">'
                f"{html.escape(what)}: {html.escape(part.advice.upper())}</div>"
            )
        pairs = [(k, v) for k, v in part.model_dump().items() if k != "advice"]
        out.append(figures.pairs_html(pairs, f"strat-{key}"))
    return "".join(out)


def plan_html(plan: tuple[StintPlanEntry, ...]) -> str:
    """The stint plan: one row per planned stint (columns as the engine sends them)."""
    if not plan:
        return _missing("Stint plan", "strat-plan-missing")
    return figures.table_html(
        [entry.model_dump() for entry in plan], "strat-plan-table"
    )


def models_html(predictions: Predictions | None) -> str:
    """The models' predictions, each beside its baseline.

    The core computes only models that beat their baseline on real held-out races
    (registry.json, docs/accuracy.md), so whatever arrives here earned its place;
    a prediction whose source is the baseline is not shown as a model.
    """
    rows = []
    for key, label, unit, digits in MODEL_ROWS:
        value: ModelValue | None = (
            getattr(predictions, key) if predictions is not None else None
        )
        if value is None or value.source != "model":
            continue
        baseline = (
            fmt.UNKNOWN if value.baseline is None else f"{value.baseline:.{digits}f}"
        )
        rows.append(
            f'<tr data-testid="model-{key}"><td>{html.escape(label)}</td>'
            f"<td>{value.value:.{digits}f} {unit}</td><td>{baseline} {unit}</td></tr>"
        )
    caption = '<div class="pb-cap">Models that beat their baseline</div>'
    if not rows:
        return caption + (
            '<div class="pb-note" data-testid="strat-models-missing">'
            "No model prediction: a model shows here only where it beat its "
            "baseline on real held-out races (docs/accuracy.md).</div>"
        )
    lap = predictions.lap if predictions is not None else None
    after = f" after lap {lap}" if lap is not None else ""
    return (
        f"{caption}"
        f'<table class="pb-figtable" data-testid="strat-models">'
        f"<tr><th>{html.escape('prediction' + after)}</th><th>model</th>"
        f"<th>baseline</th></tr>{''.join(rows)}</table>"
    )


OPPONENT_COLUMNS = ("car", "class", "laps since stop", "stops", "last stop")


def opponents_html(others: tuple[OtherCar, ...]) -> str:
    """Every other car's pit cycle: class, laps since its last stop, stops, last stop."""
    if not others:
        return _missing(
            "Opponents (live iRacing data only; a replayed .ibt has none)",
            "strat-opp-missing",
        )
    head = "".join(f"<th>{c}</th>" for c in OPPONENT_COLUMNS)
    rows = []
    for other in sorted(others, key=lambda o: (o.position or 999, o.idx)):
        dot = (
            f'<span class="pb-classdot" style="background:{other.class_color}"></span>'
            if other.class_color
            else ""
        )
        klass = "" if other.class_id is None else str(other.class_id)
        since = laps_since_stop(other)
        rows.append(
            f'<tr data-testid="opp-{other.idx}"><td>#{html.escape(other.number)}'
            f"{' P' + str(other.position) if other.position else ''}</td>"
            f"<td>{dot}{html.escape(klass) or fmt.UNKNOWN}"
            f"{' P' + str(other.class_position) if other.class_position else ''}</td>"
            f"<td>{fmt.UNKNOWN if since is None else since}</td>"
            f"<td>{fmt.UNKNOWN if other.stops is None else other.stops}</td>"
            f"<td>{html.escape(last_stop_text(other.last_stop))}</td></tr>"
        )
    return (
        f'<table class="pb-figtable" data-testid="strat-opp-table"><tr>{head}</tr>'
        f"{''.join(rows)}</table>"
    )


def laps_since_stop(other: OtherCar) -> int | None:
    """Laps since the car's last stop (its lap now minus the stop's lap)."""
    if other.laps_since_stop is not None:
        return other.laps_since_stop
    lap = other.last_stop.lap if other.last_stop is not None else None
    if other.lap is None:
        return None
    if lap is not None:
        return max(0, other.lap - lap)
    if other.stops == 0:
        return other.lap
    return None


def last_stop_text(stop: PitStop | None) -> str:
    """``service 34.2 s (lap 31)`` from whatever of kind/duration/lap is known."""
    if stop is None:
        return fmt.UNKNOWN
    parts = []
    if stop.kind is not None:
        parts.append(stop.kind.replace("_", " "))
    if stop.duration_s is not None:
        parts.append(f"{stop.duration_s:.1f} s")
    if stop.lap is not None:
        parts.append(f"(lap {stop.lap})")
    return " ".join(parts) or fmt.UNKNOWN


def source_text(car: CarState | None) -> str:
    if car is None:
        return "No live car: strategy is worked out by the core from live laps."
    return (
        f"{car.car}, lap {car.laps_completed} done. Figures from the core's strategy "
        "engine; a missing one says 'not available yet'."
    )
