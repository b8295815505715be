"""The live pit-wall page ``/``: one car's speed, lap, fuel, times, pedals and laps."""

from __future__ import annotations

import html
from typing import Any

from nicegui import ui

from pitbox_appliance.dashboard import formatting as fmt
from pitbox_appliance.dashboard.context import PageContext
from pitbox_appliance.dashboard.live_state import (
    STALE_AFTER_S,
    CarState,
    LapRow,
    ShimInfo,
)
from pitbox_appliance.dashboard.widgets import tid as _tid
from pitbox_appliance.dashboard.widgets import tile as _tile

#: Page refresh period, the core's publish period: a tick with no new state costs a
#: comparison; waiting 100 ms would spend the whole sim-to-screen budget of DESIGN §6.
REFRESH_S = 0.05
THROTTLE_COLOR = "#22c55e"
BRAKE_COLOR = "#ef4444"
_SHIM_TONES = {"streaming": "pb-ok", "waiting_for_sim": "pb-warn"}

PAGE_CSS = """
.pb-row { display: flex; align-items: baseline; gap: 10px; min-width: 0; }
.pb-gear { color: var(--pb-accent); margin-left: auto; }
.pb-strip { position: relative; flex: 1 1 auto; height: 18px; border-radius: 9px;
            background: #2a3038; overflow: hidden; }
.pb-fill { position: absolute; left: 0; top: 0; bottom: 0; background: var(--pb-accent); }
.pb-pit { font-size: 16px; font-weight: 800; padding: 0 8px; border-radius: 4px;
          background: var(--pb-warn); color: #000; }
.pb-laps { width: 100%; border-collapse: collapse; font-size: 18px;
           font-variant-numeric: tabular-nums; }
.pb-laps th { font-size: 13px; color: var(--pb-muted); text-align: right; font-weight: 700; }
.pb-laps td { text-align: right; padding: 2px 4px; border-top: 1px solid #262c34; }
.pb-laps th:first-child, .pb-laps td:first-child { text-align: left; }
.pb-laps .pb-best td:nth-child(2) { color: #c084fc; font-weight: 700; }
.pb-laps .pb-pitlap td { color: var(--pb-warn); }
.pb-chart { flex: 1 1 auto; min-height: 0; width: 100%; height: auto; }
"""


def create(ctx: PageContext) -> None:
    """Build the page for one browser tab; a timer refreshes it from the live state."""
    view = PitwallView(ctx)
    ui.timer(REFRESH_S, view.refresh)


class PitwallView:
    """The elements of one tab's pit-wall page and the car it shows."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx
        self.state = ctx.state
        self.car: str | None = None
        self._shown_seq = -1
        self._shown_laps: tuple[tuple[LapRow, ...], float | None] | None = None
        self._stale: bool | None = None
        with _tid(ui.element("div"), "page-live").classes("pb-grid") as self.root:
            with _tile("Speed km/h", "speed-tile"):
                with ui.element("div").classes("pb-row"):
                    self.speed = _tid(ui.label(fmt.UNKNOWN), "speed").classes(
                        "pb-num pb-big"
                    )
                    self.gear = _tid(ui.label(fmt.UNKNOWN), "gear").classes(
                        "pb-num pb-big pb-gear"
                    )
            with _tile("Lap"):
                self.lap = _tid(ui.label(fmt.UNKNOWN), "lap").classes("pb-num pb-big")
                self.lap_sub = _tid(ui.label(""), "lap-sub").classes(
                    "pb-num pb-sub pb-muted"
                )
            with _tile("Fuel L"):
                self.fuel = _tid(ui.label(fmt.UNKNOWN), "fuel").classes("pb-num pb-mid")
                self.fuel_laps = _tid(ui.label(""), "fuel-laps").classes(
                    "pb-num pb-sub"
                )
            with _tile("Last lap"):
                self.last = _tid(ui.label(fmt.UNKNOWN), "last").classes("pb-num pb-mid")
            with _tile("Best lap"):
                self.best = _tid(ui.label(fmt.UNKNOWN), "best").classes("pb-num pb-mid")
            with _tile("Shim"):
                self.shim = _tid(ui.label("NO STATUS"), "shim").classes(
                    "pb-sub pb-muted font-bold"
                )
                self.shim_sub = ui.label("").classes("pb-cap")
            with (
                ui.element("div")
                .classes("pb-tile")
                .style("grid-column: 1 / 3; flex-direction: row; align-items: center;")
                .style("gap: 10px; padding: 4px 10px")
            ):
                ui.label("Track").classes("pb-cap")
                with ui.element("div").classes("pb-strip"):
                    self.fill = ui.element("div").classes("pb-fill").style("width: 0%")
                self.pct = (
                    _tid(ui.label("0 %"), "track-pct")
                    .classes("pb-num pb-sub")
                    .style("min-width: 64px; text-align: right")
                )
                self.pit = ui.label("PIT").classes("pb-pit")
                self.pit.set_visibility(False)
            with _tile("Laps").style("grid-column: 3; grid-row: 3 / 5;"):
                self.laps = ui.html("", sanitize=True).classes("w-full grow")
                self.laps.style("overflow-y: auto; min-height: 0")
            with (
                ui.element("div")
                .classes("pb-tile pb-trace")
                .style("grid-column: 1 / 3; grid-row: 4; justify-content: flex-start")
            ):
                _trace_caption()
                self.chart = ui.echart(_chart_options()).classes("pb-chart")
        self._show_empty()
        ctx.selection.on_change(self.refresh, self.root)

    def refresh(self) -> None:
        """Show the selected car's newest state; cheap when nothing changed."""
        car_id = self.ctx.selection.sync()
        if car_id != self.car:
            self.car = car_id
            self._shown_seq = -1
            self._shown_laps = None
        car = self.state.car(car_id) if car_id is not None else None
        if car is None:
            return
        stale = car.age_s() > STALE_AFTER_S
        if car.seq == self._shown_seq and stale == self._stale:
            return
        self._shown_seq = car.seq
        self._stale = stale
        self._show(car)

    # ---- helpers ------------------------------------------------------------------------
    def _show_empty(self) -> None:
        self.chart.options["dataset"]["source"] = ()
        self.laps.set_content(_laps_html((), None))

    def _show(self, car: CarState) -> None:
        self.speed.set_text(fmt.speed(car.speed_kmh))
        self.gear.set_text(fmt.gear(car.gear))
        self.lap.set_text(str(car.lap))
        self.lap_sub.set_text(
            f"{fmt.running_time(car.lap_current_time)} · stint {car.stint}"
        )
        self.fuel.set_text(fmt.litres(car.fuel_l))
        per_lap = fmt.litres(car.fuel_per_lap)
        self.fuel_laps.set_text(f"{fmt.laps(car.laps_of_fuel)} laps · {per_lap}/lap")
        self.last.set_text(fmt.lap_time(car.last_lap_time))
        self.best.set_text(fmt.lap_time(car.best_lap_time))
        self._show_shim(car.shim)
        self.fill.style(f"width: {car.lap_dist_pct * 100:.1f}%")
        self.pct.set_text(f"{car.lap_dist_pct * 100:.0f} %")
        self.pit.set_visibility(car.on_pit_road)
        laps_key = (car.recent_laps, car.best_lap_time)
        if laps_key != self._shown_laps:
            self._shown_laps = laps_key
            self.laps.set_content(_laps_html(car.recent_laps, car.best_lap_time))
        # A tuple of tuples, not lists: NiceGUI would wrap every list in an observable
        # and socket.io would walk every number looking for bytes (3 ms a tick).
        self.chart.options["dataset"]["source"] = self.state.trace(car.car).rows
        self.chart.update()

    def _show_shim(self, shim: ShimInfo | None) -> None:
        if shim is None:
            self.shim.set_text("NO STATUS")
            self.shim.classes(replace="pb-sub font-bold pb-muted")
            self.shim_sub.set_text("")
            return
        tone = _SHIM_TONES.get(shim.state, "pb-bad")
        self.shim.set_text(shim.state.replace("_", " ").upper())
        self.shim.classes(replace=f"pb-sub font-bold {tone}")
        self.shim_sub.set_text(f"{shim.adapter} · spool {shim.spool_depth}")


def _trace_caption() -> None:
    with ui.element("div").classes("pb-cap"):
        ui.label("Throttle").style(f"color: {THROTTLE_COLOR}; display: inline")
        ui.label(" / ").style("display: inline")
        ui.label("Brake").style(f"color: {BRAKE_COLOR}; display: inline")
        ui.label(" · last 10 s").style("display: inline")


def _chart_options() -> dict[str, Any]:
    axis_label = {"color": "#8b949e", "fontSize": 12}
    split = {"lineStyle": {"color": "#262c34"}}

    def series(column: int, color: str, name: str) -> dict[str, Any]:
        return {
            "type": "line",
            "name": name,
            "encode": {"x": 0, "y": column},
            "showSymbol": False,
            "lineStyle": {"width": 2, "color": color},
            "itemStyle": {"color": color},
            "areaStyle": {"color": color, "opacity": 0.12},
        }

    return {
        "animation": False,
        "grid": {"left": 34, "right": 8, "top": 6, "bottom": 20},
        "dataset": {"source": []},
        "xAxis": {
            "type": "value",
            "min": -10,
            "max": 0,
            "interval": 2,
            "axisLabel": axis_label,
            "splitLine": split,
        },
        "yAxis": {
            "type": "value",
            "min": 0,
            "max": 100,
            "interval": 50,
            "axisLabel": axis_label,
            "splitLine": split,
        },
        "series": [
            series(1, THROTTLE_COLOR, "Throttle"),
            series(2, BRAKE_COLOR, "Brake"),
        ],
    }


def _laps_html(laps: tuple[LapRow, ...], best: float | None) -> str:
    rows = []
    for lap in laps:
        kind = "pb-pitlap" if lap.pit else ""
        if best is not None and lap.time == best:
            kind = "pb-best"
        fuel = "" if lap.fuel is None else f"{lap.fuel:.2f}"
        rows.append(
            f'<tr class="{kind}" title="{html.escape(lap.driver)}">'
            f"<td>{lap.lap}{' P' if lap.pit else ''}</td>"
            f"<td>{fmt.lap_time(lap.time)}</td><td>{fuel}</td></tr>"
        )
    if not rows:
        rows.append('<tr><td colspan="3">no laps yet</td></tr>')
    return (
        '<table class="pb-laps" data-testid="laps"><tr><th>LAP</th><th>TIME</th>'
        f"<th>FUEL L</th></tr>{''.join(rows)}</table>"
    )
