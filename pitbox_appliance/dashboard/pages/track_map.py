"""The track map ``/map``: the outline from recorded GPS and the team cars live on it."""

from __future__ import annotations

import html
import math

from nicegui import ui

from pitbox_appliance.dashboard.context import PageContext
from pitbox_appliance.dashboard.lap_analysis import TrackOutline, oval_outline
from pitbox_appliance.dashboard.live_state import STALE_AFTER_S, CarState
from pitbox_appliance.dashboard.widgets import SvgText, note, tid

#: Dots move at the core's publish rate, like the pit wall's numbers.
REFRESH_S = 0.05
#: How often the page asks the data layer whether a better outline exists.
OUTLINE_CHECK_S = 5.0
CAR_COLORS = ("#38bdf8", "#a3e635", "#f472b6", "#facc15", "#c084fc", "#fb923c")
OPPONENTS_NOTE = (
    "Other cars (grey, with their race position) come from iRacing's live CarIdx* "
    "arrays, placed by lap distance; a replayed .ibt file has none. Class colours, "
    "lapped cars and a rejoin projection are not drawn yet."
)

PAGE_CSS = """
.pb-map-page { display: grid; width: 100%; height: 100%; gap: 8px;
               grid-template-columns: minmax(0, 1fr) 250px; }
.pb-map { background: var(--pb-tile); border-radius: 8px; min-width: 0; min-height: 0;
          display: flex; flex-direction: column; padding: 6px; }
.pb-map svg { flex: 1 1 auto; width: 100%; height: 100%; min-height: 0; overflow: visible; }
.pb-map-side { background: var(--pb-tile); border-radius: 8px; padding: 6px 10px;
               overflow-y: auto; min-height: 0; display: flex; flex-direction: column;
               gap: 6px; }
.pb-carrow { display: flex; align-items: center; gap: 8px; font-size: 17px;
             font-variant-numeric: tabular-nums; min-height: 30px; }
.pb-swatch { width: 14px; height: 14px; border-radius: 7px; flex: none; }
.pb-carrow .pb-what { flex: 1 1 auto; min-width: 0; overflow: hidden;
                      text-overflow: ellipsis; white-space: nowrap; }
.pb-carrow .pb-where { white-space: nowrap; }
.pb-pitbadge { font-size: 13px; font-weight: 800; padding: 0 6px; border-radius: 4px;
               background: var(--pb-warn); color: #000; }
@media (max-width: 640px) {
  .pb-map-page { grid-template-columns: minmax(0, 1fr); height: auto; }
  .pb-map { height: 56vh; }
}
"""


def create(ctx: PageContext) -> None:
    """Build the map for one tab: outline once, car dots refreshed by a timer."""
    view = MapView(ctx)
    ui.timer(REFRESH_S, view.refresh)
    ui.timer(0, view.load_outline, once=True)
    ui.timer(OUTLINE_CHECK_S, view.load_outline)


class MapView:
    """One tab's map: the SVG, one dot per team car, and the side list."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx
        self.outline: TrackOutline = oval_outline("waiting for the session's data")
        self._session_key: str | None = None
        self._dots: dict[str, tuple[ui.element, ui.element]] = {}
        self._other_dots: dict[int, ui.element] = {}
        self._other_shown: dict[int, str] = {}
        self._shown: dict[str, str] = {}
        self._list_html = ""
        self._unit = 400.0
        with tid(ui.element("div"), "page-map").classes("pb-map-page"):
            with ui.element("div").classes("pb-map"):
                self.svg = tid(ui.element("svg"), "map-svg").props(
                    'preserveAspectRatio="xMidYMid meet" role="img" '
                    'aria-label="track map"'
                )
                with self.svg:
                    self.track = ui.element("path").props(
                        'fill="none" stroke="#3a4350" stroke-width="9" '
                        'stroke-linejoin="round" vector-effect="non-scaling-stroke"'
                    )
                    self.centre = ui.element("path").props(
                        'fill="none" stroke="#8b949e" stroke-width="1.5" '
                        'vector-effect="non-scaling-stroke"'
                    )
                    self.pit = ui.element("path").props(
                        'fill="none" stroke="#f59e0b" stroke-width="3" '
                        'stroke-dasharray="6 4" vector-effect="non-scaling-stroke"'
                    )
                    self.start = ui.element("circle").props('fill="#f0f3f6"')
                    self.others_layer = tid(ui.element("g"), "map-others")
                    self.cars_layer = ui.element("g")
            with ui.element("div").classes("pb-map-side"):
                ui.label("Cars").classes("pb-cap")
                self.car_list = tid(ui.html("", sanitize=True), "map-cars")
                self.outline_note = note("", "map-outline")
                note(OPPONENTS_NOTE, "map-opponents")
        self._draw_outline()

    # ---- timers --------------------------------------------------------------------
    def refresh(self) -> None:
        """Move the dots; rebuild them when the set of cars changes."""
        selected = self.ctx.car()
        cars = self._cars_on_map(selected)
        if tuple(self._dots) != tuple(c.car for c in cars):
            self._rebuild_dots(cars, selected)
        for car in cars:
            dot = self._dots.get(car.car)
            if dot is None:
                continue
            x, y = self._position(car)
            transform = f"translate({x:.1f},{-y:.1f})"
            if self._shown.get(car.car) != transform:
                self._shown[car.car] = transform
                dot[0].props(f'transform="{transform}"')
        self._show_list(cars, selected)
        self._show_others(selected)

    def _show_others(self, selected: CarState | None) -> None:
        """The other cars on track, small and grey, by their lap distance."""
        others = selected.others if selected is not None else ()
        if tuple(self._other_dots) != tuple(o.idx for o in others):
            self.others_layer.clear()
            self._other_dots.clear()
            self._other_shown.clear()
            radius = self._unit * 0.016
            with self.others_layer:
                for other in others:
                    with ui.element("g") as group:
                        ui.element("circle").props(
                            f'r="{radius:.1f}" fill="#9aa4ae" stroke="#06080a" '
                            'stroke-width="1" vector-effect="non-scaling-stroke"'
                        )
                        SvgText(str(other.position or other.number)).props(
                            f'x="{radius * 1.2:.1f}" y="{-radius:.1f}" '
                            f'font-size="{self._unit * 0.025:.1f}" fill="#c9d1d9"'
                        )
                    self._other_dots[other.idx] = group
        for other in others:
            x, y = self.outline.at_pct(other.lap_dist_pct)
            transform = f"translate({x:.1f},{-y:.1f})"
            if self._other_shown.get(other.idx) != transform:
                self._other_shown[other.idx] = transform
                self._other_dots[other.idx].props(f'transform="{transform}"')

    async def load_outline(self) -> None:
        """Ask for the outline of the shown session (cached by the data layer)."""
        data = self.ctx.services.data
        if data is None:
            self._set_outline(oval_outline("no database configured"))
            return
        car = self.ctx.car()
        key = car.session_key if car is not None else await data.latest_session_key()
        if not key:
            return
        outline = await data.outline(key)
        if self.svg.is_deleted:
            return
        self._session_key = key
        self._set_outline(outline)

    # ---- helpers --------------------------------------------------------------------
    def _set_outline(self, outline: TrackOutline) -> None:
        if outline is self.outline:
            return
        self.outline = outline
        self._draw_outline()
        self._shown.clear()
        self._dots.clear()  # sizes depend on the outline's scale: rebuild
        self.cars_layer.clear()
        self._other_dots.clear()
        self._other_shown.clear()
        self.others_layer.clear()

    def _draw_outline(self) -> None:
        outline = self.outline
        x0, y0, width, height = outline.bounds(margin=0.1)
        # SVG's y grows downwards: north up means y → −y.
        self.svg.props(
            f'viewBox="{x0:.1f} {-(y0 + height):.1f} {width:.1f} {height:.1f}"'
        )
        points = list(zip(outline.x, outline.y, strict=True))
        path = _path(points, closed=True)
        self.track.props(f'd="{path}"')
        self.centre.props(f'd="{path}"')
        self.pit.props(f'd="{_path(list(outline.pit_lane), closed=False)}"')
        sx, sy = outline.at_pct(0.0)
        self._unit = max(width, height)
        self.start.props(f'cx="{sx:.1f}" cy="{-sy:.1f}" r="{self._unit * 0.012:.1f}"')
        self.outline_note.set_text(f"Outline: {outline.note}.")

    def _cars_on_map(self, selected: CarState | None) -> list[CarState]:
        state = self.ctx.state
        cars = [c for c in (state.car(i) for i in state.car_ids()) if c is not None]
        if selected is not None and selected.track:
            cars = [c for c in cars if c.track == selected.track or not c.track]
        # The selected car is drawn last, on top of the others.
        cars.sort(key=lambda c: (selected is not None and c.car == selected.car, c.car))
        return cars

    def _rebuild_dots(self, cars: list[CarState], selected: CarState | None) -> None:
        self.cars_layer.clear()
        self._dots.clear()
        self._shown.clear()
        unit = self._unit
        with self.cars_layer:
            for index, car in enumerate(cars):
                mine = selected is not None and car.car == selected.car
                color = "var(--pb-accent)" if mine else _color(index)
                radius = unit * (0.03 if mine else 0.022)
                with tid(ui.element("g"), f"dot-{html.escape(car.car)}") as group:
                    ui.element("circle").props(
                        f'r="{radius:.1f}" stroke="#06080a" stroke-width="2" '
                        'vector-effect="non-scaling-stroke"'
                    ).style(f"fill: {color}")
                    label = SvgText(car.car).props(
                        f'x="{radius * 1.3:.1f}" y="{-radius * 1.1:.1f}" '
                        f'font-size="{unit * 0.035:.1f}" fill="#f0f3f6" '
                        'font-weight="700"'
                    )
                self._dots[car.car] = (group, label)

    def _position(self, car: CarState) -> tuple[float, float]:
        """GPS where the outline is GPS and the car has a fix, else by lap distance."""
        if car.lat is not None and car.lon is not None:
            projected = self.outline.project(car.lat, car.lon)
            if projected is not None and math.isfinite(projected[0]):
                return projected
        return self.outline.at_pct(car.lap_dist_pct)

    def _show_list(self, cars: list[CarState], selected: CarState | None) -> None:
        rows = []
        for index, car in enumerate(sorted(cars, key=lambda c: c.car)):
            mine = selected is not None and car.car == selected.car
            color = "var(--pb-accent)" if mine else _color(cars.index(car))
            stale = car.age_s() > STALE_AFTER_S
            where = f"L{car.lap} · {car.lap_dist_pct * 100:3.0f} %"
            badge = '<span class="pb-pitbadge">PIT</span>' if car.on_pit_road else ""
            tone = " pb-muted" if stale else ""
            rows.append(
                f'<div class="pb-carrow{tone}" data-testid="map-car-{index}">'
                f'<span class="pb-swatch" style="background:{color}"></span>'
                f"<b>{html.escape(car.car)}</b>"
                f'<span class="pb-what">{html.escape(car.driver)}</span>'
                f'<span class="pb-where">{where}</span>{badge}</div>'
            )
        if not rows:
            rows.append('<div class="pb-note">No team car is live.</div>')
        content = "".join(rows)
        if content != self._list_html:
            self._list_html = content
            self.car_list.set_content(content)


def _color(index: int) -> str:
    return CAR_COLORS[index % len(CAR_COLORS)]


def _path(points: list[tuple[float, float]], *, closed: bool) -> str:
    if not points:
        return ""
    head, *rest = points
    parts = [f"M{head[0]:.1f} {-head[1]:.1f}"]
    parts.extend(f"L{x:.1f} {-y:.1f}" for x, y in rest)
    if closed:
        parts.append("Z")
    return " ".join(parts)
