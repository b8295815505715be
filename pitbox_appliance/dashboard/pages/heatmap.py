"""Mistake heatmap ``/heatmap``: mistakes as a heat layer on the map, counted by corner, with sectors."""

from __future__ import annotations

import html
from collections import Counter
from typing import Any

from nicegui import ui
from nicegui.events import ValueChangeEventArguments

from pitbox_appliance.analysis.corners import CornerMap
from pitbox_appliance.dashboard import mistakes as mk
from pitbox_appliance.dashboard.context import PageContext
from pitbox_appliance.dashboard.lap_analysis import (
    TrackOutline,
    corner_labels,
    oval_outline,
)
from pitbox_appliance.dashboard.pages import page
from pitbox_appliance.dashboard.pages.track_map import _path
from pitbox_appliance.dashboard.session_data import SessionHistory
from pitbox_appliance.dashboard.widgets import SvgText, note, tid

#: New mistakes arrive with the laps; the data layer caches for 2 s.
REFRESH_S = 2.0
SCOPES = ("Team", "Driver", "Stint")

PAGE_CSS = """
.pb-heat-page { display: grid; width: 100%; height: 100%; gap: 8px;
                grid-template-columns: minmax(0, 1fr) 270px; }
.pb-heat-side { background: var(--pb-tile); border-radius: 8px; padding: 6px 10px;
                overflow-y: auto; min-height: 0; display: flex; flex-direction: column;
                gap: 6px; }
.pb-scope { flex-wrap: wrap; }
.pb-scope .q-btn { min-height: 44px; min-width: 56px; font-weight: 700; }
.pb-heat-sum { font-size: 18px; font-weight: 800; }
.pb-heat-side .pb-figtable td { white-space: normal; }
@media (max-width: 640px) {
  .pb-heat-page { grid-template-columns: minmax(0, 1fr); height: auto; }
}
"""


@page("/heatmap", icon="local_fire_department", label="Heatmap", order=60, css=PAGE_CSS)
def create(ctx: PageContext) -> None:
    """Build the heatmap for one tab; a timer reloads the mistakes from the database."""
    view = HeatmapView(ctx)
    ui.timer(0, view.reload, once=True)
    ui.timer(REFRESH_S, view.reload)


class HeatmapView:
    """One tab's heatmap: the outline, the heat layer, sectors, the filter and the list."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx
        self.scope = "Team"
        self.choice: str | None = None
        self.outline: TrackOutline = oval_outline("waiting for the session's data")
        self.log: mk.MistakeLog | None = None
        self.history: SessionHistory | None = None
        self.sector_starts: tuple[float, ...] = ()
        self._drawn: tuple[Any, ...] | None = None
        with tid(ui.element("div"), "page-heatmap").classes("pb-heat-page"):
            with ui.element("div").classes("pb-map"):
                self.svg = tid(ui.element("svg"), "heat-svg").props(
                    'preserveAspectRatio="xMidYMid meet" role="img" '
                    'aria-label="mistake heatmap"'
                )
                with self.svg:
                    self.track = ui.element("path").props(
                        'fill="none" stroke="#3a4350" stroke-width="9" '
                        'stroke-linejoin="round" vector-effect="non-scaling-stroke"'
                    )
                    self.heat_layer = tid(ui.element("g"), "heat-layer")
                    self.sector_layer = tid(ui.element("g"), "heat-sectors")
                    self.corner_layer = tid(ui.element("g"), "heat-corners")
            with ui.element("div").classes("pb-heat-side"):
                ui.label("Mistakes of").classes("pb-cap")
                self.scope_toggle = tid(
                    ui.toggle(list(SCOPES), value="Team", on_change=self._scope),
                    "heat-scope",
                ).classes("pb-scope")
                self.scope_toggle.props("no-caps toggle-color=primary")
                self.choice_toggle = tid(
                    ui.toggle([], on_change=self._choose), "heat-choice"
                ).classes("pb-scope")
                self.choice_toggle.props("no-caps toggle-color=primary")
                self.choice_toggle.set_visibility(False)
                self.summary = tid(ui.label(""), "heat-summary").classes("pb-heat-sum")
                self.table = tid(ui.html("", sanitize=True), "heat-table")
                self.source = note("", "heat-note")
        self._draw_outline()

    # ---- timers and controls ---------------------------------------------------------
    async def reload(self) -> None:
        data = self.ctx.services.data
        if data is None:
            self.source.set_text("No database configured: mistakes cannot be shown.")
            return
        car = self.ctx.car()
        key = car.session_key if car is not None else await data.latest_session_key()
        if not key:
            self.source.set_text(data.problem or "No session stored yet.")
            return
        log = await data.mistakes(key)
        history = await data.history(key)
        outline = await data.outline(key)
        extras = await data.extras(key)
        if self.svg.is_deleted:
            return
        self.log, self.history = log, history
        self.sector_starts = extras.sector_starts
        if outline is not self.outline:
            self.outline = outline
            self._draw_outline()
            self._drawn = None
        self._update_choices()
        self.render()
        if data.problem:
            self.source.set_text(data.problem)

    def _scope(self, event: ValueChangeEventArguments[Any]) -> None:
        self.scope = str(event.value or "Team")
        self.choice = None
        self._update_choices()
        self.render()

    def _choose(self, event: ValueChangeEventArguments[Any]) -> None:
        self.choice = None if event.value is None else str(event.value)
        self.render()

    # ---- drawing --------------------------------------------------------------------
    def _update_choices(self) -> None:
        options = scope_options(self.scope, self.history, self.log)
        if self.choice not in options:
            self.choice = options[-1] if options else None
        if list(self.choice_toggle.options) != options:
            self.choice_toggle.set_options(options, value=self.choice)
        elif self.choice_toggle.value != self.choice:
            self.choice_toggle.set_value(self.choice)
        self.choice_toggle.set_visibility(self.scope != "Team" and bool(options))

    def render(self) -> None:
        chosen = select(self.log, self.history, self.scope, self.choice)
        levels = mk.heat(chosen)
        corners = self.outline.corners
        worst = corner_heat(chosen, corners) if corners.corners else mk.sections(chosen)
        key = (levels, worst, self.sector_starts, id(self.outline))
        if key == self._drawn:
            return
        self._drawn = key
        self._draw_heat(levels)
        self._draw_sectors()
        self._draw_corners()
        what = self.scope if self.choice is None else f"{self.scope} {self.choice}"
        self.summary.set_text(f"{len(chosen)} mistakes · {what}")
        labels = (
            {c.number: c.label for c in corners.corners} if corners.corners else None
        )
        self.table.set_content(sections_html(worst, labels=labels))
        skipped = self.log.skipped if self.log is not None else 0
        self.source.set_text(
            heat_note(self.log is not None, skipped, self.outline.note, self.scope)
        )

    def _draw_outline(self) -> None:
        x0, y0, width, height = self.outline.bounds(margin=0.1)
        self.svg.props(
            f'viewBox="{x0:.1f} {-(y0 + height):.1f} {width:.1f} {height:.1f}"'
        )
        points = list(zip(self.outline.x, self.outline.y, strict=True))
        self.track.props(f'd="{_path(points, closed=True)}"')
        self._unit = max(width, height)

    def _draw_heat(self, levels: tuple[float, ...]) -> None:
        self.heat_layer.clear()
        bins = len(levels)
        with self.heat_layer:
            for index, level in enumerate(levels):
                if level <= 0:
                    continue
                points = [
                    self.outline.at_pct((index + f) / bins) for f in (0, 0.5, 1.0)
                ]
                width = 6 + 16 * level
                tid(ui.element("path"), f"heat-{index}").props(
                    f'd="{_path(points, closed=False)}" fill="none" '
                    f'stroke="{mk.heat_color(level)}" stroke-width="{width:.0f}" '
                    f'stroke-opacity="{0.45 + 0.55 * level:.2f}" stroke-linecap="round" '
                    'vector-effect="non-scaling-stroke"'
                )

    def _draw_corners(self) -> None:
        self.corner_layer.clear()
        with self.corner_layer:
            for number, x, y in corner_labels(self.outline, self._unit * 0.06):
                tid(SvgText(f"T{number}"), f"corner-{number}").props(
                    f'x="{x:.1f}" y="{-y:.1f}" font-size="{self._unit * 0.04:.1f}" '
                    'fill="#9fb3c8" font-weight="800" text-anchor="middle" '
                    'dominant-baseline="middle"'
                )

    def _draw_sectors(self) -> None:
        self.sector_layer.clear()
        starts = self.sector_starts or (0.0, 1 / 3, 2 / 3)
        radius = self._unit * 0.012
        with self.sector_layer:
            for number, start in enumerate(starts, 1):
                x, y = self.outline.at_pct(start)
                with tid(ui.element("g"), f"sector-{number}"):
                    ui.element("circle").props(
                        f'cx="{x:.1f}" cy="{-y:.1f}" r="{radius:.1f}" fill="#f0f3f6"'
                    )
                    SvgText(f"S{number}").props(
                        f'x="{x + radius * 1.5:.1f}" y="{-y - radius:.1f}" '
                        f'font-size="{self._unit * 0.035:.1f}" fill="#f0f3f6" '
                        'font-weight="700"'
                    )


# ---- pure helpers (tested without a browser) -------------------------------------------
def scope_options(
    scope: str, history: SessionHistory | None, log: mk.MistakeLog | None
) -> list[str]:
    """What the second toggle offers: drivers, or stint numbers (newest last)."""
    if scope == "Driver":
        names: dict[str, None] = {}
        if history is not None:
            names.update((d, None) for d in history.drivers())
        if log is not None:
            names.update((m.driver, None) for m in log.mistakes if m.driver)
        return list(names)
    if scope == "Stint" and history is not None:
        return [str(s.number) for s in sorted(history.stints, key=lambda s: s.number)]
    return []


def select(
    log: mk.MistakeLog | None,
    history: SessionHistory | None,
    scope: str,
    choice: str | None,
) -> tuple[mk.Mistake, ...]:
    """The mistakes of the whole team, one driver, or one stint (by its time span)."""
    if log is None:
        return ()
    if scope == "Driver" and choice is not None:
        return mk.by_driver(log.mistakes, choice)
    if scope == "Stint" and choice is not None and history is not None:
        stint = next((s for s in history.stints if str(s.number) == choice), None)
        if stint is None:
            return ()
        return mk.in_window(log.mistakes, stint.start_time, stint.end_time)
    return log.mistakes


def corner_heat(
    mistakes: tuple[mk.Mistake, ...], corners: CornerMap
) -> tuple[mk.SectionHeat, ...]:
    """Mistakes counted by the corner whose zone they are in, worst first.

    ``section`` is then the corner's number; a mistake on the straight before a
    corner (braking) counts for that corner.
    """
    grouped: dict[int, list[mk.Mistake]] = {}
    for m in mistakes:
        number = corners.zone_id(m.lap_dist_pct)
        if number is not None:
            grouped.setdefault(number, []).append(m)
    apex = {c.number: c.apex for c in corners.corners}
    out = []
    for number, group in grouped.items():
        kinds = Counter(m.kind for m in group)
        out.append(
            mk.SectionHeat(
                section=number,
                count=len(group),
                severity=round(sum(m.severity for m in group), 3),
                kinds=tuple((k, kinds[k]) for k in mk.KINDS if kinds[k]),
                pct=apex[number],
            )
        )
    out.sort(key=lambda s: (-s.severity, -s.count, s.section))
    return tuple(out)


def sections_html(
    worst: tuple[mk.SectionHeat, ...],
    limit: int = 12,
    labels: dict[int, str] | None = None,
) -> str:
    """The worst sections (or corners, with ``labels``) as a table."""
    if not worst:
        return '<div class="pb-note">No mistakes recorded for this choice.</div>'
    head = "CORNER" if labels is not None else "SEC"
    rows = "".join(
        f'<tr data-testid="heat-row-{s.section}">'
        f"<td>{html.escape(labels.get(s.section, str(s.section)) if labels else str(s.section))}</td>"
        f"<td>{s.pct * 100:.0f} %</td><td>{s.count}</td>"
        f"<td>{html.escape(', '.join(f'{k} {n}' for k, n in s.kinds))}</td>"
        f"<td>{s.severity:.1f}</td></tr>"
        for s in worst[:limit]
    )
    return (
        f'<table class="pb-figtable"><tr><th>{head}</th><th>AT</th><th>N</th>'
        f"<th>KINDS</th><th>SEV</th></tr>{rows}</table>"
    )


def heat_note(stored: bool, skipped: int, outline: str, scope: str) -> str:
    parts = [
        "Heat: summed severity of the core's detected mistakes along the lap, "
        "counted by corner (T1…, found on the outline; a corner's zone takes in "
        "the braking before it) where the outline has corners; "
        "white dots mark the sector starts."
    ]
    if not stored:
        parts.append("This session is not stored yet.")
    if skipped:
        parts.append(f"{skipped} stored mistake rows were unreadable and left out.")
    if scope == "Stint":
        parts.append("A stint's mistakes are those made between its start and end.")
    parts.append(f"Outline: {outline}.")
    return " ".join(parts)
