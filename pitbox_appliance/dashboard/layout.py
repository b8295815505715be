"""Shared chrome of every dashboard page: theme, team header, car selector, navigation, link status, who is logged in."""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from nicegui import ui
from nicegui.events import ValueChangeEventArguments

from pitbox_appliance.dashboard import formatting
from pitbox_appliance.dashboard.auth import Principal, login_url
from pitbox_appliance.dashboard.live_state import STALE_AFTER_S, LiveState
from pitbox_appliance.dashboard.pages import PageSpec, pages
from pitbox_appliance.dashboard.widgets import tid

logger = logging.getLogger(__name__)

#: How often the header re-checks the broker link, data age, cars and driver.
STATUS_REFRESH_S = 0.5
#: How often a tab checks that its login still holds (logout elsewhere, expiry, removal).
SESSION_CHECK_S = 2.0
_COLOR = re.compile(r"#[0-9a-fA-F]{3,8}")

# Sizes are for the 7" 800×480 touchscreen read at arm's length; tablets get the
# same layout wider, phones a single column (the media queries at the end).
CSS = """
:root { --pb-bg: #0b0d10; --pb-tile: #161a20; --pb-muted: #8b949e; --pb-ok: #22c55e;
        --pb-warn: #f59e0b; --pb-bad: #ef4444; --pb-nav: 64px; }
body, .q-page { background: var(--pb-bg); }
body { color: #f0f3f6; font-family: "Inter", "DejaVu Sans", system-ui, sans-serif; }
.nicegui-content { padding: 0 !important; gap: 0 !important; }
.pb-num { font-variant-numeric: tabular-nums; line-height: 1; font-weight: 700; }
.pb-header { height: 52px; padding: 0 8px; gap: 10px; background: var(--pb-head);
             border-bottom: 3px solid var(--pb-accent); flex-wrap: nowrap; }
.pb-logo { height: 40px; max-width: 120px; object-fit: contain; flex: none; }
.pb-team { font-size: 18px; font-weight: 800; letter-spacing: .04em; white-space: nowrap;
           color: var(--pb-accent); }
.pb-slot { flex: 1 1 auto; min-width: 0; gap: 10px; flex-wrap: nowrap; align-items: center; }
.pb-driver { font-size: 22px; font-weight: 700; min-width: 0; overflow: hidden;
             text-overflow: ellipsis; white-space: nowrap; flex: 1 1 auto; }
.pb-cars .q-btn { min-height: 44px; min-width: 64px; font-size: 18px; font-weight: 700; }
.pb-chip { font-size: 15px; font-weight: 700; padding: 4px 10px; border-radius: 6px;
           white-space: nowrap; border: 2px solid currentColor; }
.pb-ok { color: var(--pb-ok); } .pb-warn { color: var(--pb-warn); }
.pb-bad { color: var(--pb-bad); } .pb-muted { color: var(--pb-muted); }
.pb-touch { min-width: 44px !important; min-height: 44px !important; }
.pb-user { font-size: 13px; color: var(--pb-muted); white-space: nowrap; }
.pb-nav { position: fixed; z-index: 2000; left: 0; top: 55px; bottom: 0; width: var(--pb-nav);
          display: flex; flex-direction: column; gap: 4px; padding: 6px 4px;
          background: #06080a; border-right: 1px solid #1d232b; }
.pb-nav a { display: flex; flex-direction: column; align-items: center; justify-content: center;
            min-height: 46px; min-width: 54px; border-radius: 8px; color: var(--pb-muted);
            text-decoration: none; font-size: 10px; font-weight: 700; letter-spacing: 0;
            text-transform: uppercase; white-space: nowrap; overflow: hidden; }
.pb-nav a .q-icon { font-size: 22px; }
.pb-nav a.pb-active { color: #fff; background: #1d232b; box-shadow: inset 3px 0 0 var(--pb-accent); }
.pb-main { margin-left: var(--pb-nav); width: calc(100% - var(--pb-nav));
           height: calc(100vh - 55px); padding: 8px; overflow: hidden; }
.pb-main > .nicegui-sub-pages { width: 100%; height: 100%; gap: 0; align-items: stretch; }
.pb-grid { display: grid; width: 100%; height: 100%; gap: 8px;
           grid-template-columns: repeat(3, minmax(0, 1fr));
           grid-template-rows: 104px 84px 40px minmax(0, 1fr); }
.pb-tile { background: var(--pb-tile); border-radius: 8px; padding: 6px 10px;
           min-width: 0; min-height: 0; overflow: hidden; display: flex;
           flex-direction: column; justify-content: space-between; }
.pb-cap { font-size: 13px; font-weight: 700; letter-spacing: .08em; color: var(--pb-muted);
          text-transform: uppercase; white-space: nowrap; overflow: hidden;
          text-overflow: ellipsis; max-width: 100%; flex: none; }
.pb-note { font-size: 13px; color: var(--pb-muted); line-height: 1.3; }
.pb-big { font-size: 60px; } .pb-mid { font-size: 40px; } .pb-sub { font-size: 20px; }
.pb-btn { min-height: 48px !important; min-width: 48px !important; font-size: 16px;
          font-weight: 700; }
@media (min-width: 1000px) and (min-height: 700px) {
  .pb-grid { grid-template-rows: 150px 120px 48px minmax(0, 1fr); }
  .pb-big { font-size: 92px; } .pb-mid { font-size: 60px; } .pb-sub { font-size: 26px; }
  .pb-cap { font-size: 15px; } .pb-note { font-size: 15px; }
}
@media (max-width: 640px) {
  .pb-header { height: auto; flex-wrap: wrap; padding: 4px 8px; row-gap: 4px; }
  .pb-team { margin-right: auto; }
  .pb-slot { order: 3; flex-basis: 100%; }
  .pb-nav { top: auto; right: 0; width: auto; height: 62px; flex-direction: row;
            justify-content: space-around; border-right: 0; border-top: 1px solid #1d232b; }
  .pb-nav a { flex: 1 1 0; min-width: 44px; font-size: 0; }
  .pb-nav a .q-icon { font-size: 24px; }
  .pb-logo { height: 32px; }
  .pb-nav a.pb-active { box-shadow: inset 0 3px 0 var(--pb-accent); }
  .pb-main { margin-left: 0; width: 100%; height: auto; overflow: visible;
             padding-bottom: 74px; }
  .pb-main > .nicegui-sub-pages { height: auto; }
  .pb-grid { grid-template-columns: minmax(0, 1fr); grid-template-rows: none;
             grid-auto-rows: minmax(84px, auto); height: auto; }
  .pb-grid > * { grid-column: auto !important; grid-row: auto !important; }
  .pb-trace { min-height: 200px; }
}
"""


@dataclass(frozen=True, slots=True)
class Branding:
    """The team's name and colour from the dashboard config."""

    team_name: str = "PitBox"
    accent_color: str = "#e10600"
    header_color: str = "#06080a"
    #: Where the dashboard serves the team logo (None: no logo).
    logo_url: str | None = None

    def __post_init__(self) -> None:
        # The colours are written into CSS: accept only hex colours.
        if not _COLOR.fullmatch(self.accent_color):
            object.__setattr__(self, "accent_color", "#e10600")
        if not _COLOR.fullmatch(self.header_color):
            object.__setattr__(self, "header_color", "#06080a")


class CarSelection:
    """Which team car one browser tab shows; every page of the tab reads ``car``.

    A new tab starts on the first car (by name) whose state is fresh; the header's
    selector changes it for that tab only.
    """

    def __init__(self, state: LiveState) -> None:
        self.state = state
        self.car: str | None = None
        self.ids: tuple[str, ...] = ()
        self._listeners: list[tuple[Callable[[], None], ui.element | None]] = []

    def sync(self) -> str | None:
        """Pick up cars that appeared or went; returns the selected car."""
        ids = self.state.car_ids()
        if ids != self.ids:
            self.ids = ids
            if self.car not in ids:
                self.car = self.state.default_car()
            self._notify()
        return self.car

    def select(self, car: str) -> None:
        if car != self.car and car in self.ids:
            self.car = car
            self._notify()

    def on_change(
        self, listener: Callable[[], None], owner: ui.element | None = None
    ) -> None:
        """Call ``listener`` when the car list or the selected car changes.

        A page passes its root element as ``owner``: once the page is left (the
        element deleted) the listener is dropped.
        """
        self._listeners.append((listener, owner))

    def _notify(self) -> None:
        self._listeners = [
            (f, owner)
            for f, owner in self._listeners
            if owner is None or not owner.is_deleted
        ]
        for listener, _owner in list(self._listeners):
            listener()


@contextmanager
def frame(
    branding: Branding,
    state: LiveState,
    selection: CarSelection,
    css: str = "",
    *,
    shown: Sequence[PageSpec] | None = None,
    user: Principal | None = None,
    still_valid: Callable[[], bool] | None = None,
) -> Iterator[ui.element]:
    """Lay out header, navigation and body; yields the body for the page content.

    ``shown`` are the pages the navigation offers (default: all); with a ``user`` the
    header names them and offers a logout, and ``still_valid`` is asked every
    SESSION_CHECK_S: once it says no, the tab goes to the login page.
    """
    ui.dark_mode(True)
    ui.add_css(
        CSS
        + css
        + f":root {{ --pb-accent: {branding.accent_color};"
        + f" --pb-head: {branding.header_color}; }}"
    )
    ui.colors(primary=branding.accent_color)
    with ui.header(wrap=False).classes("pb-header items-center"):
        if branding.logo_url:
            tid(ui.element("img"), "logo").classes("pb-logo").props(
                f'src="{html.escape(branding.logo_url)}" '
                f'alt="{html.escape(branding.team_name)} logo"'
            )
        ui.label(branding.team_name).classes("pb-team").mark("team")
        header = _Header(state, selection)
        _account(user, still_valid)
    _navigation(tuple(shown) if shown is not None else pages())
    header.refresh()
    ui.timer(STATUS_REFRESH_S, header.refresh)
    with ui.element("div").classes("pb-main") as main:
        yield main


class _Header:
    """The header's live part: driver, car selector, link chip, fullscreen."""

    def __init__(self, state: LiveState, selection: CarSelection) -> None:
        self.state = state
        self.selection = selection
        with ui.row().classes("pb-slot"):
            self.driver = (
                ui.label("Waiting for live data…")
                .classes("pb-driver")
                .mark("driver")
                .props('data-testid="driver"')
            )
            self.cars = ui.toggle([], on_change=self._select).mark("cars")
            self.cars.classes("pb-cars").props(
                'no-caps toggle-color=primary text-color=white data-testid="cars"'
            )
            self.cars.set_visibility(False)
        self.link = ui.label().classes("pb-chip").props('data-testid="link"')
        self.link.mark("link")
        fullscreen = ui.fullscreen()
        ui.button(icon="fullscreen", on_click=fullscreen.toggle).props(
            'flat round color=white aria-label="fullscreen"'
        ).classes("pb-touch")
        self._ids: tuple[str, ...] = ()
        selection.on_change(self.refresh)

    def refresh(self) -> None:
        car_id = self.selection.sync()
        if self.selection.ids != self._ids or self.cars.value != car_id:
            self._ids = self.selection.ids
            self.cars.set_options(list(self._ids), value=car_id)
            self.cars.set_visibility(len(self._ids) > 1)
        car = self.state.car(car_id) if car_id is not None else None
        if car is not None:
            self.driver.set_text(car.driver or car.source or car.car)
            stale = car.age_s() > STALE_AFTER_S
            self.driver.classes(replace="pb-driver pb-muted" if stale else "pb-driver")
        text, tone = link_status(self.state)
        self.link.set_text(text)
        self.link.classes(replace=f"pb-chip {tone}")

    def _select(self, event: ValueChangeEventArguments[Any]) -> None:
        if event.value is not None:
            self.selection.select(str(event.value))


def _account(user: Principal | None, still_valid: Callable[[], bool] | None) -> None:
    """Who is logged in, the way out, and the watch on the session."""
    client = ui.context.client
    leaving = False

    def log_out() -> None:
        nonlocal leaving
        leaving = True  # the watch must not race the logout to the login page
        client.open("/logout")

    if user is not None:
        tid(ui.label(f"{user.name} · {user.role.label}"), "user").classes("pb-user")
        tid(ui.button(icon="logout", on_click=log_out), "logout").props(
            'flat round color=white aria-label="log out"'
        ).classes("pb-touch")
    if still_valid is None:
        return

    def check() -> None:
        nonlocal leaving
        if leaving or still_valid():
            return
        leaving = True
        path = client.sub_pages_router.current_path
        logger.info(
            "session of %s ended: tab sent to the login page",
            user.name if user is not None else "?",
        )
        client.open(login_url(path, "expired"))

    ui.timer(SESSION_CHECK_S, check)


def _navigation(shown: Sequence[PageSpec]) -> None:
    router = ui.context.client.sub_pages_router
    links: dict[str, ui.link] = {}
    with ui.element("nav").classes("pb-nav").props('aria-label="pages"'):
        for item in shown:
            name = item.path.strip("/") or "live"
            with (
                ui.link(target=item.path)
                .props(f'data-testid="nav-{name}" aria-label="{item.label}"')
                .mark(f"nav-{name}") as link
            ):
                ui.icon(item.icon)
                ui.label(item.label)
            links[item.path] = link

    def show_active(path: str) -> None:
        current = active_page(path)
        for target, link in links.items():
            if target == current:
                link.classes(add="pb-active")
            else:
                link.classes(remove="pb-active")

    show_active(router.current_path)
    router.on_path_changed(show_active)


def active_page(path: str) -> str:
    """The navigation entry a URL path belongs to (``/laps?x=1`` → ``/laps``)."""
    clean = "/" + path.split("?", 1)[0].split("#", 1)[0].strip("/")
    return next((p.path for p in pages() if p.path == clean), "/")


def link_status(state: LiveState) -> tuple[str, str]:
    """The header chip: broker link and how fresh the newest car state is."""
    if not state.connected:
        return "BROKER OFFLINE", "pb-bad"
    newest = state.freshest_car()
    car = state.car(newest) if newest is not None else None
    rejected = state.last_rejection
    if rejected is not None and time.time() - rejected[0] <= STALE_AFTER_S:
        # States arrive but cannot be shown: say why rather than just "stale".
        if car is None or car.age_s() > STALE_AFTER_S:
            return f"REJECTED: {rejected[1].replace('_', ' ')}", "pb-bad"
    if car is None:
        return "NO DATA", "pb-warn"
    age = car.age_s()
    if age > STALE_AFTER_S:
        return f"STALE {formatting.age(age)}", "pb-warn"
    return "LIVE", "pb-ok"
