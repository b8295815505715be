"""Shared chrome of every dashboard page: dark theme, team header, link status, fullscreen."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from nicegui import ui

from pitbox_appliance.dashboard import formatting
from pitbox_appliance.dashboard.live_state import STALE_AFTER_S, LiveState

#: How often the header re-checks the broker link and data age.
STATUS_REFRESH_S = 0.5
_COLOR = re.compile(r"#[0-9a-fA-F]{3,8}")

# Sizes are for the 7" 800×480 touchscreen read at arm's length; tablets get the
# same layout wider, phones a single column (the media query at the end).
CSS = """
:root { --pb-bg: #0b0d10; --pb-tile: #161a20; --pb-muted: #8b949e; --pb-ok: #22c55e;
        --pb-warn: #f59e0b; --pb-bad: #ef4444; }
body, .q-page { background: var(--pb-bg); }
body { color: #f0f3f6; font-family: "Inter", "DejaVu Sans", system-ui, sans-serif; }
.nicegui-content { padding: 0 !important; gap: 0 !important; }
.pb-num { font-variant-numeric: tabular-nums; line-height: 1; font-weight: 700; }
.pb-header { height: 52px; padding: 0 8px; gap: 10px; background: #06080a;
             border-bottom: 3px solid var(--pb-accent); flex-wrap: nowrap; }
.pb-team { font-size: 18px; font-weight: 800; letter-spacing: .04em; white-space: nowrap;
           color: var(--pb-accent); margin-right: auto; }
.pb-slot { flex: 1 1 auto; min-width: 0; gap: 10px; flex-wrap: nowrap; align-items: center; }
.pb-chip { font-size: 15px; font-weight: 700; padding: 4px 10px; border-radius: 6px;
           white-space: nowrap; border: 2px solid currentColor; }
.pb-ok { color: var(--pb-ok); } .pb-warn { color: var(--pb-warn); }
.pb-bad { color: var(--pb-bad); } .pb-muted { color: var(--pb-muted); }
.pb-touch { min-width: 44px !important; min-height: 44px !important; }
.pb-main { width: 100%; height: calc(100vh - 55px); padding: 8px; overflow: hidden; }
.pb-grid { display: grid; width: 100%; height: 100%; gap: 8px;
           grid-template-columns: repeat(3, minmax(0, 1fr));
           grid-template-rows: 104px 84px 40px minmax(0, 1fr); }
.pb-tile { background: var(--pb-tile); border-radius: 8px; padding: 6px 10px;
           min-width: 0; min-height: 0; overflow: hidden; display: flex;
           flex-direction: column; justify-content: space-between; }
.pb-cap { font-size: 13px; font-weight: 700; letter-spacing: .08em; color: var(--pb-muted);
          text-transform: uppercase; white-space: nowrap; }
.pb-big { font-size: 60px; } .pb-mid { font-size: 40px; } .pb-sub { font-size: 20px; }
@media (min-width: 1000px) and (min-height: 700px) {
  .pb-grid { grid-template-rows: 150px 120px 48px minmax(0, 1fr); }
  .pb-big { font-size: 92px; } .pb-mid { font-size: 60px; } .pb-sub { font-size: 26px; }
  .pb-cap { font-size: 15px; }
}
@media (max-width: 640px) {
  .pb-header { height: auto; flex-wrap: wrap; padding: 4px 8px; row-gap: 4px; }
  .pb-slot { order: 3; flex-basis: 100%; }
  .pb-main { height: auto; overflow: visible; }
  .pb-grid { grid-template-columns: minmax(0, 1fr); grid-template-rows: none;
             grid-auto-rows: minmax(84px, auto); }
  .pb-grid > * { grid-column: auto !important; grid-row: auto !important; }
  .pb-trace { min-height: 200px; }
}
"""


@dataclass(frozen=True, slots=True)
class Branding:
    """The team's name and colour from the dashboard config."""

    team_name: str = "PitBox"
    accent_color: str = "#e10600"

    def __post_init__(self) -> None:
        # The colour is written into CSS: accept only a hex colour.
        if not _COLOR.fullmatch(self.accent_color):
            object.__setattr__(self, "accent_color", "#e10600")


@contextmanager
def frame(branding: Branding, state: LiveState) -> Iterator[ui.row]:
    """Lay out the header and page body; yields the header slot for page controls.

    Whatever the page creates inside the ``with`` block goes into the body.
    """
    ui.dark_mode(True)
    ui.add_css(CSS + f":root {{ --pb-accent: {branding.accent_color}; }}")
    ui.colors(primary=branding.accent_color)
    with ui.header(wrap=False).classes("pb-header items-center"):
        ui.label(branding.team_name).classes("pb-team")
        slot = ui.row().classes("pb-slot")
        link = ui.label().classes("pb-chip").props('data-testid="link"')
        fullscreen = ui.fullscreen()
        ui.button(icon="fullscreen", on_click=fullscreen.toggle).props(
            'flat round color=white aria-label="fullscreen"'
        ).classes("pb-touch")

    def show_link() -> None:
        text, tone = link_status(state)
        link.set_text(text)
        link.classes(replace=f"pb-chip {tone}")

    show_link()
    ui.timer(STATUS_REFRESH_S, show_link)
    with ui.element("div").classes("pb-main"):
        yield slot


def link_status(state: LiveState) -> tuple[str, str]:
    """The header chip: broker link and how fresh the newest car state is."""
    if not state.connected:
        return "BROKER OFFLINE", "pb-bad"
    newest = state.freshest_car()
    car = state.car(newest) if newest is not None else None
    if car is None:
        return "NO DATA", "pb-warn"
    age = car.age_s()
    if age > STALE_AFTER_S:
        return f"STALE {formatting.age(age)}", "pb-warn"
    return "LIVE", "pb-ok"
