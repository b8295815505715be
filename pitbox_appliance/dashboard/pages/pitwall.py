"""The live pit-wall page ``/``: speed, lap, position and gaps, fuel, times, tyres, alerts, strategy."""

from __future__ import annotations

import html
import time
from collections.abc import Mapping
from typing import Any

from nicegui import ui

from driver_pc.protocol.live import PcRole
from pitbox_appliance.dashboard import alerts, race
from pitbox_appliance.dashboard import formatting as fmt
from pitbox_appliance.dashboard.context import PageContext
from pitbox_appliance.dashboard.core_api import HEALTH_POLL_S, CoreHealth
from pitbox_appliance.dashboard.live_state import (
    STALE_AFTER_S,
    CarState,
    LapRow,
    LiveEvent,
    ShimInfo,
)
from pitbox_appliance.dashboard.pages import page
from pitbox_appliance.dashboard.session_data import StintInfo
from pitbox_appliance.dashboard.widgets import tid as _tid
from pitbox_appliance.dashboard.widgets import tile as _tile

#: Page refresh period, half the core's publish period, so that no state is skipped
#: when timer and publisher drift (at 50 ms ~10 % were); a tick with no new state
#: costs a comparison.
REFRESH_S = 0.025
THROTTLE_COLOR = "#22c55e"
BRAKE_COLOR = "#ef4444"
_SHIM_TONES = {"streaming": "pb-ok", "waiting_for_sim": "pb-warn"}
#: The open stint's start comes from the database (cached there for 2 s).
STINT_REFRESH_S = 2.0
ALERTS_SHOWN = 4
#: The core publishes every car it tracks at least once a second: a state older than
#: this means its ingest loop stopped, and the page says so (DESIGN §6: within 2 s).
STALLED_AFTER_S = 2.0

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
.pb-laps .pb-invalid td { color: var(--pb-muted); }
.pb-laps .pb-invalid td:nth-child(2) { text-decoration: line-through; }
.pb-chart { flex: 1 1 auto; min-height: 0; width: 100%; height: auto; }
.pb-live { grid-template-columns: repeat(4, minmax(0, 1fr));
           grid-template-rows: 96px 80px 40px minmax(0, 1fr); }
.pb-live .pb-big { font-size: 52px; }
.pb-live .pb-mid { font-size: 30px; }
.pb-live .pb-laps { font-size: 15px; }
.pb-live .pb-laps td, .pb-live .pb-laps th { white-space: nowrap; padding: 1px 2px; }
.pb-live .pb-sub { font-size: 17px; }
.pb-line { font-size: 14px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.pb-alerts { display: flex; flex-direction: column; gap: 2px; font-size: 14px;
             overflow-y: auto; min-height: 0; flex: 1 1 auto; }
.pb-alerts div { border-top: 1px solid #262c34; padding-top: 2px; }
.pb-alerts .pb-urgent { color: var(--pb-warn); font-weight: 700; }
.pb-rec { font-size: 14px; font-weight: 800; color: var(--pb-accent); line-height: 1.25;
          display: -webkit-box; -webkit-line-clamp: 3; -webkit-box-orient: vertical;
          overflow: hidden; flex: none; }
.pb-stalled { position: fixed; z-index: 1500; left: 50%; top: 45%;
              transform: translate(-50%, -50%); background: var(--pb-bad); color: #fff;
              padding: 18px 28px; border-radius: 10px; text-align: center;
              box-shadow: 0 0 0 9999px rgba(11, 13, 16, .72); max-width: 90vw; }
.pb-stalled .pb-stalled-title { font-size: 44px; font-weight: 900; letter-spacing: .04em; }
.pb-stalled .pb-stalled-why { font-size: 16px; font-weight: 600; }
@media (min-width: 1000px) and (min-height: 700px) {
  .pb-live { grid-template-rows: 140px 110px 48px minmax(0, 1fr); }
  .pb-live .pb-big { font-size: 84px; } .pb-live .pb-mid { font-size: 52px; }
  .pb-live .pb-sub { font-size: 22px; } .pb-line, .pb-alerts { font-size: 17px; }
  .pb-rec { font-size: 18px; }
}
@media (max-width: 640px) {
  .pb-live { grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); grid-template-rows: none;
             grid-auto-rows: minmax(84px, auto); }
  .pb-live > .pb-wide { grid-column: 1 / 3 !important; }
  .pb-live .pb-laps-tile { max-height: 50vh; }
  .pb-live .pb-big { font-size: 48px; }
}
"""


@page("/", icon="speed", label="Live", order=10, css=PAGE_CSS)
def create(ctx: PageContext) -> None:
    """Build the page for one browser tab; a timer refreshes it from the live state."""
    view = PitwallView(ctx)
    ui.timer(REFRESH_S, view.refresh)
    if ctx.services.api is not None:
        ui.timer(0, view.poll_health, once=True)
        ui.timer(HEALTH_POLL_S, view.poll_health)
    ui.timer(0, view.load_stint, once=True)
    ui.timer(STINT_REFRESH_S, view.load_stint)


class PitwallView:
    """The elements of one tab's pit-wall page and the car it shows."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx
        self.state = ctx.state
        self.car: str | None = None
        self._shown_seq = -1
        self._shown_laps: tuple[tuple[LapRow, ...], float | None] | None = None
        self._stale: bool | None = None
        self._events_seen = -1
        self._stint: StintInfo | None = None
        with _tid(ui.element("div"), "page-live").classes(
            "pb-grid pb-live"
        ) as self.root:
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
                    "pb-num pb-line pb-muted"
                )
            with _tile("Position"):
                self.position = _tid(ui.label(fmt.UNKNOWN), "position").classes(
                    "pb-num pb-mid"
                )
                self.gap_ahead = _tid(ui.label(""), "gap-ahead").classes("pb-line")
                self.gap_behind = _tid(ui.label(""), "gap-behind").classes("pb-line")
            with _tile("Fuel L"):
                self.fuel = _tid(ui.label(fmt.UNKNOWN), "fuel").classes("pb-num pb-mid")
                self.fuel_laps = _tid(ui.label(""), "fuel-laps").classes("pb-line")
                self.fuel_add = _tid(ui.label(""), "fuel-add").classes("pb-line")
            with _tile("Last lap"):
                self.last = _tid(ui.label(fmt.UNKNOWN), "last").classes("pb-num pb-mid")
            with _tile("Best lap · delta"):
                self.best = _tid(ui.label(fmt.UNKNOWN), "best").classes("pb-num pb-sub")
                self.delta = _tid(ui.label(fmt.UNKNOWN), "delta").classes(
                    "pb-num pb-sub"
                )
            with _tile("Tyres"):
                self.tyres = (
                    _tid(ui.label(alerts.NOT_AVAILABLE), "tyres")
                    .classes("pb-line")
                    .style("white-space: normal")
                )
            with _tile("Shim"):
                self.shim = _tid(ui.label("NO STATUS"), "shim").classes(
                    "pb-sub pb-muted font-bold"
                )
                self.shim_sub = ui.label("").classes("pb-cap")
            with (
                ui.element("div")
                .classes("pb-tile pb-wide")
                .style("grid-column: 1 / 4; flex-direction: row; align-items: center;")
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
            with (
                _tile("Laps")
                .classes("pb-wide pb-laps-tile")
                .style("grid-column: 4; grid-row: 3 / 5;")
            ):
                self.laps = ui.html("", sanitize=True).classes("w-full grow")
                self.laps.style("overflow-y: auto; min-height: 0")
            with (
                ui.element("div")
                .classes("pb-tile pb-trace pb-wide")
                .style("grid-column: 1 / 3; grid-row: 4; justify-content: flex-start")
            ):
                _trace_caption()
                self.chart = ui.echart(_chart_options()).classes("pb-chart")
            with (
                _tile("Strategy · alerts", "alerts-tile")
                .classes("pb-wide")
                .style(
                    "grid-column: 3; grid-row: 4; justify-content: flex-start; gap: 4px"
                )
            ):
                self.rec = _tid(ui.label(alerts.NOT_AVAILABLE), "strategy-rec").classes(
                    "pb-rec"
                )
                self.alerts = _tid(ui.html("", sanitize=True), "alerts").classes(
                    "pb-alerts"
                )
        # Over the numbers while the appliance is stalled: they would be frozen.
        with _tid(ui.element("div"), "stalled").classes("pb-stalled") as self.stalled:
            ui.label("APPLIANCE STALLED").classes("pb-stalled-title")
            self.stalled_why = _tid(ui.label(""), "stalled-why").classes(
                "pb-stalled-why"
            )
        self.stalled.set_visibility(False)
        self._stalled_shown: str | None = None
        self._show_empty()
        ctx.selection.on_change(self.refresh, self.root)

    def refresh(self) -> None:
        """Show the selected car's newest state; cheap when nothing changed."""
        car_id = self.ctx.selection.sync()
        if car_id != self.car:
            self.car = car_id
            self._shown_seq = -1
            self._shown_laps = None
            self._events_seen = -1
            self._stint = None
        car = self.state.car(car_id) if car_id is not None else None
        if car is None:
            return
        self._show_stalled(car)
        if self.state.events_seen != self._events_seen:
            self._events_seen = self.state.events_seen
            self.alerts.set_content(_alerts_html(self.state.events(car.car)))
        stale = car.age_s() > STALE_AFTER_S
        if car.seq == self._shown_seq and stale == self._stale:
            return
        self._shown_seq = car.seq
        self._stale = stale
        self._show(car)

    async def load_stint(self) -> None:
        """The open stint's start (for the stint clock), from the stored stints."""
        data = self.ctx.services.data
        car = self.ctx.car()
        if data is None or car is None or not car.session_key:
            return
        history = await data.history(car.session_key)
        if history is None or self.root.is_deleted:
            return
        open_stints = [s for s in history.stints if s.end_time is None]
        self._stint = open_stints[-1] if open_stints else None

    async def poll_health(self) -> None:
        """Ask the core whether ingest keeps up (shared by every tab of the process)."""
        api = self.ctx.services.api
        if api is not None:
            await api.poll_health()

    # ---- helpers ------------------------------------------------------------------------
    def _show_stalled(self, car: CarState) -> None:
        api = self.ctx.services.api
        health = api.last_health if api is not None else None
        reason = stalled_reason(car, health, asked=api is not None, now=time.time())
        if reason == self._stalled_shown:
            return
        self._stalled_shown = reason
        self.stalled.set_visibility(reason is not None)
        self.stalled_why.set_text(reason or "")

    def _show_empty(self) -> None:
        self.chart.options["dataset"]["source"] = ()
        self.laps.set_content(_laps_html((), None))
        self.alerts.set_content(_alerts_html(()))

    def _show(self, car: CarState) -> None:
        self.speed.set_text(fmt.speed(car.speed_kmh))
        self.gear.set_text(fmt.gear(car.gear))
        self.lap.set_text(str(car.lap))
        self.lap_sub.set_text(
            f"{fmt.running_time(car.lap_current_time)} · S{car.stint} "
            f"{stint_clock(self._stint, car)}"
        )
        self.fuel.set_text(fmt.litres(car.fuel_l))
        per_lap = fmt.litres(car.fuel_per_lap)
        self.fuel_laps.set_text(f"{fmt.laps(car.laps_of_fuel)} laps · {per_lap}/lap")
        add = car.strategy.fuel_to_add if car.strategy is not None else None
        self.fuel_add.set_text(f"to add {add:.1f} L" if add is not None else "to add —")
        newest = car.recent_laps[0] if car.recent_laps else None
        self.last.set_text(
            fmt.INVALID
            if newest is not None and newest.invalid
            else fmt.lap_time(car.last_lap_time)
        )
        self.best.set_text(fmt.lap_time(car.best_lap_time))
        self.delta.set_text(f"Δ {fmt.signed(last_minus_best(car))}")
        self._show_race(car)
        self.tyres.set_text(tyres_text(car))
        self.rec.set_text(alerts.car_recommendation(car))
        self._show_shim(car.shim, car.pcs)
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

    def _show_race(self, car: CarState) -> None:
        gaps = race.race_gaps(car)
        self.position.set_text(
            fmt.UNKNOWN if gaps.position is None else f"P{gaps.position}"
        )
        self.gap_ahead.set_text(_gap_line("▲", gaps.ahead, gaps.ahead_s, gaps))
        self.gap_behind.set_text(_gap_line("▼", gaps.behind, gaps.behind_s, gaps))

    def _show_shim(self, shim: ShimInfo | None, pcs: Mapping[str, str]) -> None:
        if shim is None:
            self.shim.set_text("NO STATUS")
            self.shim.classes(replace="pb-sub font-bold pb-muted")
            self.shim_sub.set_text("")
            return
        tone = _SHIM_TONES.get(shim.state, "pb-bad")
        self.shim.set_text(shim.state.replace("_", " ").upper())
        self.shim.classes(replace=f"pb-sub font-bold {tone}")
        self.shim_sub.set_text(
            f"{shim.adapter} · spool {shim.spool_depth}{team_pcs_text(pcs)}"
        )


def team_pcs_text(pcs: Mapping[str, str]) -> str:
    """Which of the car's PCs drives and how many stand by (nothing for one PC)."""
    if len(pcs) < 2:
        return ""
    driving = [src for src, role in pcs.items() if role == PcRole.DRIVING]
    standby = sum(role == PcRole.STANDBY for role in pcs.values())
    who = f"{driving[0].split('-', 1)[-1]} driving" if driving else "nobody in the car"
    return f" · {who}, {standby} standing by"


def stalled_reason(
    car: CarState, health: CoreHealth | None, *, asked: bool, now: float
) -> str | None:
    """Why the page must say the appliance stalled instead of showing ``car``; None if not.

    The core says so itself (``/api/v1/health`` 503), or its states stopped: the
    newest is older than STALLED_AFTER_S although the core tracks the car (it
    publishes each car it tracks every second) or does not answer. A car the core
    answers for but no longer tracks (it restarted, the car does not stream) is only
    stale. ``asked``: the page can ask the core (its API address is known); when it
    cannot, stopped states alone say stalled.
    """
    if health is not None and health.stalled:
        return health.stalled
    age = car.age_s(now)
    if age <= STALLED_AFTER_S:
        return None
    since = f"no live state for {fmt.age(age)}"
    if not asked:
        return since
    if health is None:
        return None  # not asked yet: the first answer decides
    if not health.reachable:
        return f"{since}; the core does not answer"
    if car.car in health.cars:
        return f"{since}; the core tracks {car.car} but does not publish it"
    return None


def _gap_line(arrow: str, other: Any, gap_s: float | None, gaps: race.RaceGaps) -> str:
    if gaps.position is None:
        return f"{arrow} no race data"
    if other is None:
        return f"{arrow} —"
    gap = fmt.UNKNOWN if gap_s is None else f"{gap_s:.1f} s"
    return f"{arrow} #{other.number} {gap}"


def last_minus_best(car: CarState) -> float | None:
    """The last lap against the best (0 when the last lap was the best)."""
    if car.last_lap_time is None or car.best_lap_time is None:
        return None
    return car.last_lap_time - car.best_lap_time


def stint_clock(stint: StintInfo | None, car: CarState) -> str:
    """Time in the car this stint (open stint's start to the live session time)."""
    if stint is None:
        return ""
    return fmt.duration(stint.drive_time(car.session_time))


def tyres_text(car: CarState) -> str:
    """The strategy engine's tyre advice, or that it is not there yet."""
    tyres = car.strategy.tyres if car.strategy is not None else None
    if tyres is None:
        return alerts.NOT_AVAILABLE
    parts = [tyres.advice.upper() if tyres.advice else "no advice yet"]
    parts.append(f"{tyres.tyre_age_laps:.0f} laps old")
    if tyres.loss_next_stint_s is not None:
        parts.append(f"+{tyres.loss_next_stint_s:.1f} s next stint")
    return " · ".join(parts)


def _alerts_html(events: tuple[LiveEvent, ...]) -> str:
    shown = [e for e in events if e.kind not in alerts.NOT_ALERTS][:ALERTS_SHOWN]
    if not shown:
        return '<div class="pb-note">No alerts yet.</div>'
    now = time.time()
    rows = []
    for event in shown:
        tone = ' class="pb-urgent"' if event.kind in alerts.URGENT else ""
        rows.append(
            f'<div{tone} data-testid="alert">'
            f"{html.escape(fmt.age(now - event.received_at))} "
            f"{html.escape(alerts.alert_text(event))}</div>"
        )
    return "".join(rows)


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
        if lap.invalid:
            kind = "pb-invalid"
        elif best is not None and lap.time == best:
            kind = "pb-best"
        fuel = "" if lap.fuel is None else f"{lap.fuel:.2f}"
        if lap.refuelled:
            fuel = "refuel"
        time = fmt.INVALID if lap.invalid else fmt.lap_time(lap.time)
        rows.append(
            f'<tr class="{kind}" title="{html.escape(lap.driver)}">'
            f"<td>{lap.lap}{' P' if lap.pit else ''}</td>"
            f"<td>{time}</td><td>{fuel}</td></tr>"
        )
    if not rows:
        rows.append('<tr><td colspan="3">no laps yet</td></tr>')
    return (
        '<table class="pb-laps" data-testid="laps"><tr><th>LAP</th><th>TIME</th>'
        f"<th>FUEL L</th></tr>{''.join(rows)}</table>"
    )
