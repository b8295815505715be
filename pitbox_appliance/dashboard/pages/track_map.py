"""The track map ``/map``: the outline (recorded GPS, else live channels, else an oval), its corners, and the team cars live on it."""

from __future__ import annotations

import html
import math
from collections.abc import Collection, Mapping, Sequence

from nicegui import ui

from pitbox_appliance.dashboard import race
from pitbox_appliance.dashboard.context import PageContext
from pitbox_appliance.dashboard.lap_analysis import (
    TrackOutline,
    corner_labels,
    oval_outline,
)
from pitbox_appliance.dashboard.live_state import STALE_AFTER_S, CarState, OtherCar
from pitbox_appliance.dashboard.pages import page
from pitbox_appliance.dashboard.widgets import SvgText, note, tid

#: Dots move at the core's publish rate, like the pit wall's numbers.
REFRESH_S = 0.025
#: How often the page asks the data layer whether a better outline exists.
OUTLINE_CHECK_S = 5.0
CAR_COLORS = ("#38bdf8", "#a3e635", "#f472b6", "#facc15", "#c084fc", "#fb923c")
OPPONENTS_NOTE = (
    "Other cars (in their class colour, grey without one, labelled with their race "
    "position) come from iRacing's live CarIdx* arrays, placed by lap distance; a "
    "replayed .ibt file has none. Amber ring: on pit road. Faded: lapped. Red ring: "
    "closing on us from behind. Dashed ring: where we would rejoin if we pitted now."
)
OTHER_GREY = "#9aa4ae"
CLOSING_RED = "#ef4444"

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


@page("/map", icon="map", label="Map", order=20, css=PAGE_CSS)
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
        self._other_dots: dict[int, tuple[ui.element, ui.element, SvgText]] = {}
        self._other_shown: dict[int, str] = {}
        self._other_style: dict[int, str] = {}
        self._closing_watch = race.ClosingWatch()
        self._closing: tuple[int, ...] = ()
        self._faster: tuple[int, ...] = ()
        self._watched_seq = -1
        self._rejoin_shown = ""
        self._signature: tuple[object, ...] | None = None
        self._own_class: int | None = None
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
                    self.corner_layer = tid(ui.element("g"), "map-corners")
                    self.others_layer = tid(ui.element("g"), "map-others")
                    self.rejoin = tid(ui.element("g"), "map-rejoin")
                    self.cars_layer = ui.element("g")
            with ui.element("div").classes("pb-map-side"):
                ui.label("Cars").classes("pb-cap")
                self.car_list = tid(ui.html("", sanitize=True), "map-cars")
                self.rejoin_note = tid(ui.label(""), "map-rejoin-text").classes(
                    "pb-note"
                )
                self.closing_note = tid(ui.label(""), "map-closing").classes(
                    "pb-note pb-bad"
                )
                self.outline_note = note("", "map-outline")
                note(OPPONENTS_NOTE, "map-opponents")
        self._draw_outline()

    # ---- timers --------------------------------------------------------------------
    def refresh(self) -> None:
        """Move the dots; rebuild them when the set of cars changes."""
        selected = self.ctx.car()
        cars = self._cars_on_map(selected)
        # Twice the publish rate so that no state waits or is skipped: a tick without
        # a new state costs this comparison.
        signature = (
            selected.car if selected is not None else None,
            tuple((c.car, c.seq, c.age_s() > STALE_AFTER_S) for c in cars),
        )
        if signature == self._signature:
            return
        self._signature = signature
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
        self._show_rejoin(selected)

    def _show_others(self, selected: CarState | None) -> None:
        """The other cars on track by lap distance, in class colour, with their state."""
        others = selected.others if selected is not None else ()
        if selected is not None and selected.seq != self._watched_seq:
            self._watched_seq = selected.seq
            self._closing = self._closing_watch.closing(selected)
            self._faster = race.faster_class(selected, self._closing, self._own_class)
            self.closing_note.set_text(closing_text(selected, self._faster))
        if tuple(self._other_dots) != tuple(o.idx for o in others):
            self.others_layer.clear()
            self._other_dots.clear()
            self._other_shown.clear()
            self._other_style.clear()
            radius = self._unit * 0.016
            with self.others_layer:
                for other in others:
                    with tid(ui.element("g"), f"other-{other.idx}") as group:
                        circle = ui.element("circle").props(
                            f'r="{radius:.1f}" vector-effect="non-scaling-stroke"'
                        )
                        label = SvgText("").props(
                            f'x="{radius * 1.2:.1f}" y="{-radius:.1f}" '
                            f'font-size="{self._unit * 0.025:.1f}" fill="#c9d1d9"'
                        )
                    self._other_dots[other.idx] = (group, circle, label)
        spots = {o.idx: self.outline.at_pct(o.lap_dist_pct) for o in others}
        ours = [self._position(c) for c in self._cars_on_map(selected)]
        labelled = labels_that_fit(
            spots,
            label_priority(others, self._faster, selected),
            ours,
            self._unit * 0.07,
        )
        for other in others:
            group, circle, label = self._other_dots[other.idx]
            x, y = spots[other.idx]
            transform = f"translate({x:.1f},{-y:.1f})"
            if self._other_shown.get(other.idx) != transform:
                self._other_shown[other.idx] = transform
                group.props(f'transform="{transform}"')
            style, text = other_look(other, other.idx in self._faster)
            text = text if other.idx in labelled else ""
            if self._other_style.get(other.idx) != style + text:
                self._other_style[other.idx] = style + text
                circle.props(style)
                label.set_text(text)

    def _show_rejoin(self, selected: CarState | None) -> None:
        """A dashed ring where we would come out of the pits if we pitted now."""
        spot = rejoin_spot(selected) if selected is not None else None
        key = "" if spot is None else f"{spot[0]:.3f}|{spot[1]}"
        if key == self._rejoin_shown:
            return
        self._rejoin_shown = key
        self.rejoin.clear()
        if spot is None:
            self.rejoin_note.set_text(
                "Rejoin if we pit now: not available yet (needs the pit loss and a "
                "timed lap)."
            )
            return
        pct, text = spot
        x, y = self.outline.at_pct(pct)
        radius = self._unit * 0.03
        with self.rejoin:
            ui.element("circle").props(
                f'cx="{x:.1f}" cy="{-y:.1f}" r="{radius:.1f}" fill="none" '
                'stroke="var(--pb-accent)" stroke-width="3" stroke-dasharray="4 3" '
                'vector-effect="non-scaling-stroke"'
            )
        self.rejoin_note.set_text(f"Rejoin if we pit now: {text}")

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
        extras = await data.extras(key)
        if self.svg.is_deleted:
            return
        self._own_class = extras.own_class_id
        self._session_key = key
        self._set_outline(outline)

    # ---- helpers --------------------------------------------------------------------
    def _set_outline(self, outline: TrackOutline) -> None:
        if outline is self.outline:
            return
        self.outline = outline
        self._signature = None
        self._rejoin_shown = ""
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
        self.corner_layer.clear()
        with self.corner_layer:
            for number, x, y in corner_labels(outline, self._unit * 0.06):
                tid(SvgText(f"T{number}"), f"map-corner-{number}").props(
                    f'x="{x:.1f}" y="{-y:.1f}" font-size="{self._unit * 0.035:.1f}" '
                    'fill="#6b7b8c" font-weight="800" text-anchor="middle" '
                    'dominant-baseline="middle"'
                )

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


def label_priority(
    others: Sequence[OtherCar], faster: Collection[int], selected: CarState | None
) -> list[int]:
    """Which other cars most deserve a label: closing faster cars, then the nearest."""
    here = selected.lap_dist_pct if selected is not None else 0.0

    def rank(other: OtherCar) -> tuple[bool, float, int]:
        apart = abs(other.lap_dist_pct - here) % 1.0
        return (other.idx not in faster, min(apart, 1.0 - apart), other.position or 999)

    return [o.idx for o in sorted(others, key=rank)]


def labels_that_fit(
    spots: Mapping[int, tuple[float, float]],
    priority: Sequence[int],
    taken: Sequence[tuple[float, float]],
    min_apart: float,
) -> set[int]:
    """Cars whose label does not overlap a team car's or a better-ranked car's label.

    A pack of a 63-car field would print its numbers on top of each other; every dot
    stays, and a closing faster car keeps its label first.
    """
    placed = list(taken)
    chosen: set[int] = set()
    for idx in priority:
        x, y = spots[idx]
        if all(math.hypot(x - px, y - py) >= min_apart for px, py in placed):
            placed.append((x, y))
            chosen.add(idx)
    return chosen


def other_look(other: OtherCar, closing: bool) -> tuple[str, str]:
    """The dot's SVG attributes and label: class colour, pit ring, lapped, closing."""
    fill = other.class_color or OTHER_GREY
    stroke, width = "#06080a", 1
    if other.on_pit_road:
        stroke, width = "#f59e0b", 3
    if closing:
        stroke, width = CLOSING_RED, 4
    opacity = 0.45 if other.laps_down and other.laps_down > 0 else 1.0
    label = str(other.position or other.number)
    if other.laps_down:  # > 0: we lapped them; < 0: they are laps ahead of us
        label += f" {-other.laps_down:+d}L"
    if other.on_pit_road:
        label += " PIT"
    return (
        f'fill="{fill}" stroke="{stroke}" stroke-width="{width}" '
        f'fill-opacity="{opacity}"',
        label,
    )


def rejoin_spot(car: CarState) -> tuple[float, str] | None:
    """Where we would rejoin (lap distance) and a line saying so.

    The core's ``strategy.rejoin`` wins when it gives a lap distance; otherwise the
    pit loss is taken off our place on track at our reference lap time.
    """
    strategy = car.strategy
    rejoin = strategy.rejoin if strategy is not None else None
    where = f"P{rejoin.position}" if rejoin is not None else ""
    lap_s = race.reference_lap_s(car)
    numbers = {o.number: o for o in car.others}
    if lap_s is not None and rejoin is not None:
        # Just in front of the car we would come out ahead of (or behind the one ahead).
        for number, gap, sign in (
            (rejoin.car_behind, rejoin.gap_behind_s, 1.0),
            (rejoin.car_ahead, rejoin.gap_ahead_s, -1.0),
        ):
            other = numbers.get(str(number))
            if other is not None and gap is not None:
                pct = (other.lap_dist_pct + sign * gap / lap_s) % 1.0
                return pct, f"{where}, {gap:.1f} s from #{other.number}".strip(", ")
    loss = strategy.pit_loss_s if strategy is not None else None
    if loss is None or lap_s is None or loss <= 0:
        return None
    pct = (car.lap_dist_pct - loss / lap_s) % 1.0
    return pct, f"{where} {loss:.0f} s behind our place now".strip()


def closing_text(car: CarState, faster: tuple[int, ...]) -> str:
    names = [f"#{o.number}" for o in car.others if o.idx in faster]
    if not names:
        return ""
    return "Closing from behind: " + ", ".join(names)


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
