"""Driver / spotter split ``/split``: the driver's inputs beside the cars around us on track."""

from __future__ import annotations

import html
from typing import Any

from nicegui import ui

from pitbox_appliance.dashboard import formatting as fmt
from pitbox_appliance.dashboard import race
from pitbox_appliance.dashboard.context import PageContext
from pitbox_appliance.dashboard.live_state import CarState
from pitbox_appliance.dashboard.pages import page
from pitbox_appliance.dashboard.widgets import note, tid, value_axis

#: Inputs move at the core's publish rate, like the pit wall.
REFRESH_S = 0.025
THROTTLE_COLOR = "#22c55e"
BRAKE_COLOR = "#ef4444"
STEER_COLOR = "#38bdf8"
SPEED_COLOR = "#f0f3f6"
#: The spotter strip shows ± this many seconds of track around us.
STRIP_S = race.AROUND_S

PAGE_CSS = """
.pb-split-page { display: grid; width: 100%; height: 100%; gap: 8px;
                 grid-template-columns: minmax(0, 1fr) minmax(0, 1fr);
                 grid-template-rows: minmax(0, 1fr); }
.pb-split-page > .pb-tile { justify-content: flex-start; gap: 4px; }
.pb-inputs-head { display: flex; align-items: baseline; gap: 12px; }
.pb-bars { display: grid; grid-template-columns: 56px minmax(0, 1fr) 48px; gap: 3px 6px;
           align-items: center; font-size: 13px; color: var(--pb-muted); }
.pb-hbar { position: relative; height: 14px; border-radius: 7px; background: #2a3038;
           overflow: hidden; }
.pb-hbar > i { position: absolute; top: 0; bottom: 0; left: 0; }
.pb-hbar.pb-steer > i { left: 50%; background: #38bdf8; }
.pb-spot { display: grid; grid-template-columns: 90px minmax(0, 1fr); gap: 8px;
           flex: 1 1 auto; min-height: 0; }
.pb-spot svg { width: 100%; height: 100%; min-height: 0; }
.pb-spot-list { overflow-y: auto; min-height: 0; font-size: 15px;
                font-variant-numeric: tabular-nums; }
.pb-spot-list .pb-along { color: var(--pb-bad); font-weight: 800; }
.pb-alongside { font-size: 18px; font-weight: 800; padding: 2px 8px; border-radius: 4px;
                background: var(--pb-bad); color: #fff; align-self: flex-start; }
@media (max-width: 640px) {
  .pb-split-page { grid-template-columns: minmax(0, 1fr); grid-template-rows: none;
                   height: auto; }
  .pb-split-page > .pb-tile { min-height: 360px; }
}
"""


@page("/split", icon="vertical_split", label="Split", order=70, css=PAGE_CSS)
def create(ctx: PageContext) -> None:
    """Build the split view for one tab; a timer refreshes both panes."""
    view = SplitView(ctx)
    ui.timer(REFRESH_S, view.refresh)


class SplitView:
    """Left: the driver's inputs. Right: the spotter's view of the cars around."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx
        self._shown_seq = -1
        self._car: str | None = None
        self._spot_html = ""
        with tid(ui.element("div"), "page-split").classes("pb-split-page"):
            with tid(ui.element("div"), "split-driver").classes("pb-tile"):
                ui.label("Driver inputs").classes("pb-cap")
                with ui.element("div").classes("pb-inputs-head"):
                    self.speed = tid(ui.label(fmt.UNKNOWN), "split-speed").classes(
                        "pb-num pb-mid"
                    )
                    ui.label("km/h").classes("pb-muted")
                    self.gear = (
                        tid(ui.label(fmt.UNKNOWN), "split-gear")
                        .classes("pb-num pb-mid")
                        .style("color: var(--pb-accent); margin-left: auto")
                    )
                with ui.element("div").classes("pb-bars"):
                    self.bars = {
                        name: self._bar(name, color)
                        for name, color in (
                            ("Throttle", THROTTLE_COLOR),
                            ("Brake", BRAKE_COLOR),
                            ("Steer", STEER_COLOR),
                        )
                    }
                self.chart = tid(ui.echart(_chart_options()), "split-chart").classes(
                    "pb-chart"
                )
            with tid(ui.element("div"), "split-spotter").classes("pb-tile"):
                ui.label("Spotter").classes("pb-cap")
                self.gaps = tid(ui.label(""), "split-gaps").classes("pb-sub pb-num")
                self.alongside = tid(ui.label("ALONGSIDE"), "split-alongside").classes(
                    "pb-alongside"
                )
                self.alongside.set_visibility(False)
                with ui.element("div").classes("pb-spot"):
                    self.strip = tid(ui.element("svg"), "split-strip").props(
                        f'viewBox="-50 {-STRIP_S * 100} 100 {STRIP_S * 200}" '
                        'preserveAspectRatio="none" role="img" '
                        'aria-label="cars around, ahead up"'
                    )
                    self.spot_list = tid(ui.html("", sanitize=True), "split-around")
                    self.spot_list.classes("pb-spot-list")
                self.source = note(
                    f"Cars within {STRIP_S:.0f} s on track (ahead up), from iRacing's "
                    "CarIdxLapDistPct and our reference lap; none from a replayed .ibt.",
                    "split-note",
                )

    def _bar(self, name: str, color: str) -> tuple[ui.element, ui.label]:
        ui.label(name)
        with ui.element("div").classes(
            "pb-hbar pb-steer" if name == "Steer" else "pb-hbar"
        ):
            fill = ui.element("i").style(f"background: {color}; width: 0%")
        value = tid(ui.label("0"), f"split-{name.lower()}").classes("pb-num")
        return fill, value

    def refresh(self) -> None:
        car = self.ctx.car()
        if car is None:
            return
        if car.car != self._car:
            self._car = car.car
            self._shown_seq = -1
        if car.seq == self._shown_seq:
            return
        self._shown_seq = car.seq
        self._show_inputs(car)
        self._show_spotter(car)

    def _show_inputs(self, car: CarState) -> None:
        self.speed.set_text(fmt.speed(car.speed_kmh))
        self.gear.set_text(fmt.gear(car.gear))
        throttle, brake = round(car.throttle * 100), round(car.brake * 100)
        self._set_bar("Throttle", f"width: {throttle}%", f"{throttle}")
        self._set_bar("Brake", f"width: {brake}%", f"{brake}")
        steer = steer_degrees(car)
        share = min(50.0, abs(steer) / 540 * 50)  # ±540° lock fills half the bar
        style = (
            f"width: {share:.1f}%; left: {50 - share:.1f}%"
            if steer > 0
            else f"width: {share:.1f}%; left: 50%"
        )
        self._set_bar(
            "Steer", style, f"{steer:+.0f}°" if car.steering is not None else "—"
        )
        self.chart.options["dataset"]["source"] = self.ctx.state.inputs(car.car).rows
        self.chart.update()

    def _set_bar(self, name: str, style: str, text: str) -> None:
        fill, value = self.bars[name]
        fill.style(replace=f"background: {_COLORS[name]}; {style}")
        value.set_text(text)

    def _show_spotter(self, car: CarState) -> None:
        gaps = race.race_gaps(car)
        self.gaps.set_text(gaps_text(gaps))
        near = race.around(car, STRIP_S)
        self.alongside.set_visibility(any(n.alongside for n in near))
        content = spotter_html(
            near, race.reference_lap_s(car) is not None, bool(car.others)
        )
        if content != self._spot_html:
            self._spot_html = content
            self.spot_list.set_content(content)
        self._draw_strip(near)

    def _draw_strip(self, near: tuple[race.Neighbour, ...]) -> None:
        self.strip.clear()
        with self.strip:
            ui.element("rect").props(
                f'x="-30" y="{-STRIP_S * 100}" width="60" height="{STRIP_S * 200}" '
                'fill="#2a3038"'
            )
            for n in near:
                color = n.car.class_color or ("#ef4444" if n.alongside else "#9aa4ae")
                ui.element("rect").props(
                    f'x="-18" y="{-n.gap_s * 100 - 12:.0f}" width="36" height="24" '
                    f'rx="4" fill="{color}"'
                )
            ui.element("rect").props(
                'x="-18" y="-12" width="36" height="24" rx="4" '
                'fill="var(--pb-accent)" stroke="#fff" stroke-width="2"'
            )


_COLORS = {"Throttle": THROTTLE_COLOR, "Brake": BRAKE_COLOR, "Steer": STEER_COLOR}


def steer_degrees(car: CarState) -> float:
    return 0.0 if car.steering is None else car.steering * 57.29577951308232


def gaps_text(gaps: race.RaceGaps) -> str:
    """``P5 · ahead #12 +1.4 s · behind #7 −0.8 s``; what is unknown is said so."""
    if gaps.position is None:
        return "Position not known (no live race data)"
    ahead = (
        f"ahead #{gaps.ahead.number} {_secs(gaps.ahead_s)}"
        if gaps.ahead is not None
        else "leading"
    )
    behind = (
        f"behind #{gaps.behind.number} {_secs(gaps.behind_s)}"
        if gaps.behind is not None
        else "nobody behind"
    )
    return f"P{gaps.position} · {ahead} · {behind}"


def _secs(value: float | None) -> str:
    return fmt.UNKNOWN if value is None else f"{value:.1f} s"


def spotter_html(near: tuple[race.Neighbour, ...], timed: bool, others: bool) -> str:
    """The list beside the strip: each car near us with its gap on track."""
    if not others:
        return '<div class="pb-note">No other cars in the live data.</div>'
    if not timed:
        return '<div class="pb-note">Gaps need a timed lap first.</div>'
    if not near:
        return '<div class="pb-note">Clear: nobody within 3 s.</div>'
    rows = []
    for n in near:
        where = "ALONGSIDE" if n.alongside else ("ahead" if n.gap_s > 0 else "behind")
        tone = ' class="pb-along"' if n.alongside else ""
        rows.append(
            f'<div{tone} data-testid="around-{n.car.idx}">'
            f"#{html.escape(n.car.number)} {where} {abs(n.gap_s):.1f} s"
            f"{' · ' + str(n.car.laps_down) + ' L down' if n.car.laps_down else ''}"
            "</div>"
        )
    return "".join(rows)


def _chart_options() -> dict[str, Any]:
    def series(column: int, color: str, name: str, axis: int = 0) -> dict[str, Any]:
        return {
            "type": "line",
            "name": name,
            "encode": {"x": 0, "y": column},
            "yAxisIndex": axis,
            "showSymbol": False,
            "lineStyle": {"width": 2, "color": color},
            "itemStyle": {"color": color},
        }

    return {
        "animation": False,
        "grid": {"left": 34, "right": 40, "top": 6, "bottom": 20},
        "dataset": {"source": []},
        "xAxis": value_axis(min=-10, max=0, interval=2),
        "yAxis": [
            value_axis(min=-100, max=100, interval=50),
            value_axis(min=0, max=350, interval=100, splitLine={"show": False}),
            {"type": "value", "min": -540, "max": 540, "show": False},
        ],
        "series": [
            series(1, THROTTLE_COLOR, "Throttle"),
            series(2, BRAKE_COLOR, "Brake"),
            series(3, STEER_COLOR, "Steer °", axis=2),
            series(4, SPEED_COLOR, "Speed", axis=1),
        ],
    }
