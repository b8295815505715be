"""Racing line ``/line``: where a lap went on the map, coloured by speed or pedals; a second lap overlaid with the running delta by corner."""

from __future__ import annotations

import colorsys
import html
from typing import Any

import numpy as np
from nicegui import ui
from nicegui.events import ValueChangeEventArguments

from pitbox_appliance.dashboard import formatting as fmt
from pitbox_appliance.dashboard.context import PageContext
from pitbox_appliance.dashboard.lap_analysis import (
    DrivenLine,
    FloatArray,
    TrackOutline,
    compare_laps,
    corner_deltas,
    corner_labels,
    driven_line,
    oval_outline,
)
from pitbox_appliance.dashboard.pages import page
from pitbox_appliance.dashboard.session_data import LapInfo, SessionHistory
from pitbox_appliance.dashboard.widgets import note, tid, value_axis

#: How often the page looks for new laps and a better outline (cached by the data layer).
RELOAD_S = 3.0
MODES = ("Speed", "Pedals")
NO_LAP = 0  # the B select's "none"
LINE_B_COLOR = "#f0f3f6"
DELTA_COLOR = "#f59e0b"
#: Colour steps of a line: consecutive points in one step are drawn as one path.
COLOR_STEPS = 16

PAGE_CSS = """
.pb-line-page { display: grid; width: 100%; height: 100%; gap: 8px;
                grid-template-columns: minmax(0, 1fr) 300px; }
.pb-line-map { background: var(--pb-tile); border-radius: 8px; min-width: 0; min-height: 0;
               display: flex; flex-direction: column; padding: 6px; }
.pb-line-map > div { flex: 1 1 auto; min-height: 0; display: flex; }
.pb-line-map svg { flex: 1 1 auto; width: 100%; height: 100%; min-height: 0; }
.pb-line-side { background: var(--pb-tile); border-radius: 8px; padding: 6px 10px;
                overflow-y: auto; min-height: 0; display: flex; flex-direction: column;
                gap: 6px; }
.pb-line-side .q-field__native, .pb-line-side .q-field__control { min-height: 44px;
                font-size: 16px; }
.pb-line-mode .q-btn { min-height: 44px; min-width: 80px; font-weight: 700; }
.pb-line-delta { font-size: 20px; font-weight: 800; font-variant-numeric: tabular-nums; }
.pb-line-chart { height: 110px; width: 100%; flex: none; }
.pb-line-legend { display: flex; gap: 10px; font-size: 13px; color: var(--pb-muted);
                  flex-wrap: wrap; }
.pb-gain { color: var(--pb-ok); } .pb-loss { color: var(--pb-bad); }
@media (max-width: 640px) {
  .pb-line-page { grid-template-columns: minmax(0, 1fr); height: auto; }
  .pb-line-map { height: 56vh; }
}
"""


@page("/line", icon="route", label="Line", order=35, css=PAGE_CSS)
def create(ctx: PageContext) -> None:
    """Build the racing-line view for one tab; a timer follows new laps."""
    view = LineView(ctx)
    ui.timer(0, view.reload, once=True)
    ui.timer(RELOAD_S, view.reload)


class LineView:
    """One tab's racing line: the map with one or two laps, the controls, the delta."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx
        self.history: SessionHistory | None = None
        self.outline: TrackOutline = oval_outline("waiting for the session's data")
        self.a: int | None = None
        self.b: int = NO_LAP
        self.mode = MODES[0]
        self.follow = True
        self._drawn: tuple[Any, ...] | None = None
        with tid(ui.element("div"), "page-line").classes("pb-line-page"):
            with ui.element("div").classes("pb-line-map"):
                self.svg = tid(ui.html("", sanitize=False), "line-svg")
            with ui.element("div").classes("pb-line-side"):
                self.pick_a = tid(
                    ui.select({}, label="Lap A (coloured)", on_change=self._set_a),
                    "line-lap-a",
                ).props("dark outlined dense options-dense behavior=menu")
                self.pick_b = tid(
                    ui.select(
                        {NO_LAP: "none"},
                        value=NO_LAP,
                        label="Lap B (white, overlaid)",
                        on_change=self._set_b,
                    ),
                    "line-lap-b",
                ).props("dark outlined dense options-dense behavior=menu")
                self.mode_toggle = tid(
                    ui.toggle(list(MODES), value=self.mode, on_change=self._set_mode),
                    "line-mode",
                ).classes("pb-line-mode")
                self.mode_toggle.props("no-caps toggle-color=primary")
                self.legend = tid(ui.html("", sanitize=True), "line-legend").classes(
                    "pb-line-legend"
                )
                self.delta = tid(ui.label(""), "line-delta").classes("pb-line-delta")
                self.chart = tid(ui.echart(_delta_chart()), "line-chart").classes(
                    "pb-line-chart"
                )
                self.corners = tid(ui.html("", sanitize=True), "line-corners")
                self.source = note("Loading the session's laps…", "line-note")

    # ---- timers and controls ---------------------------------------------------------
    async def reload(self) -> None:
        """Fetch laps and outline (cached by the data layer); redraw what changed."""
        data = self.ctx.services.data
        if data is None:
            self.source.set_text("No database configured: no laps to draw.")
            return
        car = self.ctx.car()
        key = car.session_key if car is not None else await data.latest_session_key()
        history = await data.history(key) if key else None
        if history is None or key is None:
            self.source.set_text(data.problem or "No stored laps for this session yet.")
            return
        outline = await data.outline(key)
        if self.svg.is_deleted:
            return
        self.history, self.outline = history, outline
        timed = _timed(history)
        options = {lap.id: _lap_label(lap, history) for lap in timed}
        if self.follow or self.a not in options:
            best = history.best
            self.a = best.id if best is not None else (timed[-1].id if timed else None)
        if self.b != NO_LAP and self.b not in options:
            self.b = NO_LAP
        if dict(self.pick_a.options) != options:
            self.pick_a.set_options(options, value=self.a)
            self.pick_b.set_options({NO_LAP: "none", **options}, value=self.b)
        await self.render()

    async def _set_a(self, event: ValueChangeEventArguments[Any]) -> None:
        if event.value is None or event.value == self.a:
            return
        self.a, self.follow = int(event.value), False
        await self.render()

    async def _set_b(self, event: ValueChangeEventArguments[Any]) -> None:
        value = NO_LAP if event.value is None else int(event.value)
        if value == self.b:
            return
        self.b = value
        await self.render()

    async def _set_mode(self, event: ValueChangeEventArguments[Any]) -> None:
        self.mode = str(event.value or MODES[0])
        await self.render()

    # ---- drawing --------------------------------------------------------------------
    async def render(self) -> None:
        """Draw lap A's line (and B's) on the outline, and the delta of B to A."""
        data, history = self.ctx.services.data, self.history
        if data is None or history is None:
            return
        key = (self.a, self.b, self.mode, id(self.outline))
        if key == self._drawn:
            return
        lap_a, lap_b = history.lap(self.a), history.lap(self.b)
        trace_a = await data.lap_trace(history.session.id, lap_a) if lap_a else None
        trace_b = await data.lap_trace(history.session.id, lap_b) if lap_b else None
        if self.svg.is_deleted:
            return
        self._drawn = key
        line_a = driven_line(trace_a, self.outline) if trace_a else None
        line_b = driven_line(trace_b, self.outline) if trace_b else None
        self.svg.set_content(line_svg(self.outline, line_a, line_b, self.mode))
        self.legend.set_content(legend_html(self.mode, line_a))
        if trace_a is not None and trace_b is not None:
            comparison = compare_laps(trace_a, trace_b, history.session.track_length_m)
            total = comparison.total_delta
            self.delta.set_text(f"B − A {fmt.signed(total)}")
            self.delta.classes(
                replace="pb-line-delta " + ("pb-loss" if total > 0 else "pb-gain")
            )
            self.chart.options["xAxis"]["name"] = comparison.unit
            self.chart.options["dataset"]["source"] = tuple(
                (row[0], row[3]) for row in comparison.rows
            )
            self.corners.set_content(
                corners_html(corner_deltas(comparison, self.outline.corners))
            )
        else:
            self.delta.set_text("Pick lap B to compare" if lap_a else "")
            self.delta.classes(replace="pb-line-delta")
            self.chart.options["dataset"]["source"] = ()
            self.corners.set_content("")
        self.chart.update()
        self.source.set_text(
            source_note(self.outline, lap_a, line_a, trace_a is not None)
        )


# ---- pure helpers (tested without a browser) -------------------------------------------
def speed_colors(speed: FloatArray) -> list[str]:
    """Slow red through amber to fast green, scaled to the lap's own range."""
    lo, hi = float(np.min(speed)), float(np.max(speed))
    span = hi - lo if hi > lo else 1.0
    out = []
    for v in speed:
        step = round((float(v) - lo) / span * (COLOR_STEPS - 1)) / (COLOR_STEPS - 1)
        r, g, b = colorsys.hls_to_rgb(step * 0.36, 0.5, 0.85)
        out.append(f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}")
    return out


def pedal_colors(throttle: FloatArray | None, brake: FloatArray | None) -> list[str]:
    """Red on the brake, green on the throttle (brighter the harder), grey coasting."""
    n = (
        len(throttle)
        if throttle is not None
        else len(brake)
        if brake is not None
        else 0
    )
    out = []
    for i in range(n):
        b = float(brake[i]) if brake is not None else 0.0
        t = float(throttle[i]) if throttle is not None else 0.0
        if b > 0.05:
            level = round(min(1.0, b) * 3) / 3
            out.append(f"rgba(239,68,68,{0.4 + 0.6 * level:.2f})")
        elif t > 0.05:
            level = round(min(1.0, t) * 3) / 3
            out.append(f"rgba(34,197,94,{0.4 + 0.6 * level:.2f})")
        else:
            out.append("#8b949e")
    return out


def line_svg(
    outline: TrackOutline,
    line_a: DrivenLine | None,
    line_b: DrivenLine | None,
    mode: str,
) -> str:
    """The whole map as one SVG: track, corner numbers, line A coloured, line B white."""
    x0, y0, width, height = outline.bounds(margin=0.08)
    unit = max(width, height)
    track = " ".join(
        f"{'M' if i == 0 else 'L'}{x:.1f} {-y:.1f}"
        for i, (x, y) in enumerate(zip(outline.x, outline.y, strict=True))
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="{x0:.1f} {-(y0 + height):.1f} '
        f'{width:.1f} {height:.1f}" preserveAspectRatio="xMidYMid meet" role="img" '
        'aria-label="racing line">',
        f'<path d="{track} Z" fill="none" stroke="#2a313b" stroke-width="16" '
        'stroke-linejoin="round" vector-effect="non-scaling-stroke"/>',
    ]
    sx, sy = outline.at_pct(0.0)
    parts.append(
        f'<circle cx="{sx:.1f}" cy="{-sy:.1f}" r="{unit * 0.012:.1f}" fill="#f0f3f6"/>'
    )
    for number, x, y in corner_labels(outline, unit * 0.06):
        parts.append(
            f'<text data-testid="line-corner-{number}" x="{x:.1f}" y="{-y:.1f}" '
            f'font-size="{unit * 0.04:.1f}" fill="#9fb3c8" font-weight="800" '
            f'text-anchor="middle" dominant-baseline="middle">T{number}</text>'
        )
    if line_a is not None:
        colors = (
            pedal_colors(line_a.throttle, line_a.brake)
            if mode == "Pedals"
            and (line_a.throttle is not None or line_a.brake is not None)
            else speed_colors(line_a.speed)
        )
        parts.append('<g data-testid="line-a">')
        for color, d in _runs(line_a.x, line_a.y, colors):
            parts.append(
                f'<path d="{d}" fill="none" stroke="{color}" stroke-width="5" '
                'stroke-linecap="round" vector-effect="non-scaling-stroke"/>'
            )
        parts.append("</g>")
    if line_b is not None:
        d = " ".join(
            f"{'M' if i == 0 else 'L'}{x:.1f} {-y:.1f}"
            for i, (x, y) in enumerate(zip(line_b.x, line_b.y, strict=True))
        )
        parts.append(
            f'<path data-testid="line-b" d="{d}" fill="none" stroke="{LINE_B_COLOR}" '
            'stroke-width="1.6" stroke-dasharray="5 3" '
            'vector-effect="non-scaling-stroke"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def legend_html(mode: str, line: DrivenLine | None) -> str:
    if line is None:
        return ""
    if mode == "Pedals":
        return (
            '<span style="color:#22c55e">■ throttle</span>'
            '<span style="color:#ef4444">■ brake</span>'
            '<span style="color:#8b949e">■ coast</span>'
        )
    lo, hi = float(line.speed.min()) * 3.6, float(line.speed.max()) * 3.6
    return (
        f'<span style="color:#ef4444">■ {lo:.0f} km/h</span>'
        '<span style="color:#f59e0b">■</span>'
        f'<span style="color:#22c55e">■ {hi:.0f} km/h</span>'
    )


def corners_html(deltas: tuple[tuple[str, float], ...]) -> str:
    """B's time to A per corner (its zone: braking, corner, exit)."""
    if not deltas:
        return ""
    rows = "".join(
        f'<tr data-testid="line-corner-row"><td>{html.escape(name)}</td>'
        f'<td class="{"pb-loss" if d > 0.0005 else "pb-gain" if d < -0.0005 else ""}">'
        f"{fmt.signed(d)}</td></tr>"
        for name, d in deltas
    )
    return (
        '<table class="pb-figtable"><tr><th>CORNER</th><th>B − A</th></tr>'
        f"{rows}</table>"
    )


def source_note(
    outline: TrackOutline, lap: LapInfo | None, line: DrivenLine | None, traced: bool
) -> str:
    if lap is None:
        return "No timed lap stored yet."
    if not traced:
        return f"No stored telemetry for lap {lap.number}."
    if line is None:
        if outline.kind == "oval":
            return (
                f"No line for lap {lap.number}: the track outline is still the "
                f"schematic oval ({outline.note})."
            )
        return f"Lap {lap.number} has neither GPS nor velocity and yaw: no line."
    how = (
        "its GPS"
        if line.source == "gps"
        else "its speed and yaw (dead reckoning, fitted onto the outline)"
    )
    return f"Line of lap {lap.number} from {how}. Outline: {outline.note}."


def _timed(history: SessionHistory) -> list[LapInfo]:
    return [lap for lap in history.laps if lap.start_time is not None]


def _lap_label(lap: LapInfo, history: SessionHistory) -> str:
    time = fmt.INVALID if lap.invalid else fmt.lap_time(lap.lap_time)
    best = " ★" if history.best is not None and lap.id == history.best.id else ""
    pit = " pit" if lap.pit_lap else ""
    who = f" · {lap.driver}" if lap.driver else ""
    return f"L{lap.number} {time}{best}{pit}{who}"


def _runs(x: FloatArray, y: FloatArray, colors: list[str]) -> list[tuple[str, str]]:
    """Paths of consecutive points of one colour (each starts at the previous end)."""
    out: list[tuple[str, str]] = []
    start = 0
    for i in range(1, len(colors) + 1):
        if i == len(colors) or colors[i] != colors[start]:
            lo, hi = max(0, start - 1), min(len(x) - 1, i)
            d = " ".join(
                f"{'M' if k == lo else 'L'}{x[k]:.1f} {-y[k]:.1f}"
                for k in range(lo, hi + 1)
            )
            out.append((colors[start], d))
            start = i
    return out


def _delta_chart() -> dict[str, Any]:
    return {
        "animation": False,
        "grid": {"left": 40, "right": 8, "top": 6, "bottom": 20},
        "tooltip": {"trigger": "axis", "confine": True},
        "dataset": {"source": ()},
        "xAxis": value_axis(min=0, name="m", nameGap=2),
        "yAxis": value_axis(scale=True),
        "series": [
            {
                "type": "line",
                "name": "Δ s (B − A)",
                "encode": {"x": 0, "y": 1},
                "showSymbol": False,
                "lineStyle": {"width": 2, "color": DELTA_COLOR},
                "itemStyle": {"color": DELTA_COLOR},
            }
        ],
    }
