"""Stints and handoff ``/stints``: stint history, drive time per driver, the handoff checklist."""

from __future__ import annotations

import html
from typing import Any

from nicegui import ui

from driver_pc.protocol.live import PcRole
from pitbox_appliance.dashboard import formatting as fmt
from pitbox_appliance.dashboard.context import PageContext
from pitbox_appliance.dashboard.core_api import ShimHealth
from pitbox_appliance.dashboard.crew_store import HANDOFF_ITEMS, Checklist, handoff_key
from pitbox_appliance.dashboard.live_state import CarState
from pitbox_appliance.dashboard.pages import page
from pitbox_appliance.dashboard.postrace_status import PostRaceStatus
from pitbox_appliance.dashboard.session_data import SessionHistory, StintInfo
from pitbox_appliance.dashboard.widgets import note, tid
from pitbox_appliance.security.users import Role

#: The open stint's clock and other tablets' ticks show within a second.
REFRESH_S = 1.0
#: Shim health comes from the core's API; every few seconds is plenty.
SHIMS_REFRESH_S = 3.0
_SHIM_TONES = {"streaming": "pb-ok", "waiting_for_sim": "pb-warn"}

PAGE_CSS = """
.pb-stints-page { display: grid; width: 100%; height: 100%; gap: 8px;
                  grid-template-columns: minmax(0, 1fr) 270px;
                  grid-template-rows: minmax(0, 1fr); }
.pb-stints-page .pb-tile { justify-content: flex-start; gap: 6px; }
.pb-stint-table { width: 100%; flex: 1 1 auto; min-height: 0; background: transparent; }
.pb-stint-table thead tr th { position: sticky; top: 0; z-index: 1; font-size: 12px;
                              color: var(--pb-muted); background: var(--pb-tile);
                              padding: 2px 6px; height: 28px; }
.pb-stint-table tbody td { font-size: 15px; height: 36px; padding: 0 4px;
                           font-variant-numeric: tabular-nums; }
.pb-stint-table thead tr th { padding: 2px 4px; }
.pb-stint-table td.pb-col-driver { max-width: 110px; overflow: hidden;
                                   text-overflow: ellipsis; white-space: nowrap; }
.pb-stint-table tbody tr.pb-open td { color: var(--pb-ok); font-weight: 700; }
.pb-drivers { display: flex; flex-direction: column; gap: 4px; font-size: 15px;
              font-variant-numeric: tabular-nums; }
.pb-share { display: grid; grid-template-columns: minmax(0, 1fr) auto; gap: 2px 8px;
            align-items: center; }
.pb-share .pb-name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.pb-bar { grid-column: 1 / 3; position: relative; height: 8px; border-radius: 4px;
          background: #2a3038; }
.pb-bar > i { position: absolute; left: 0; top: 0; bottom: 0; border-radius: 4px;
              background: var(--pb-accent); }
.pb-bar > b { position: absolute; top: -3px; bottom: -3px; width: 2px; background: #f0f3f6; }
.pb-check { width: 100%; justify-content: flex-start; text-align: left; }
.pb-check .q-btn__content { justify-content: flex-start; flex-wrap: nowrap; gap: 8px; }
.pb-check.pb-done { color: var(--pb-ok) !important; }
.pb-check .q-btn__content { font-size: 16px; line-height: 1.2; }
.pb-handoff-state { font-size: 18px; font-weight: 800; }
.pb-nextdrv .q-btn { min-height: 44px; font-weight: 700; }
.pb-nextdrv { flex-wrap: wrap; }
.pb-shims { font-size: 14px; display: flex; flex-direction: column; gap: 2px; }
@media (max-width: 640px) {
  .pb-stints-page { grid-template-columns: minmax(0, 1fr); grid-template-rows: auto auto;
                    height: auto; }
  .pb-stint-table { max-height: 45vh; }
}
"""

_COLUMNS = [
    {"name": "n", "label": "#", "field": "n", "align": "left"},
    {
        "name": "driver",
        "label": "DRIVER",
        "field": "driver",
        "align": "left",
        "classes": "pb-col-driver",
    },
    {"name": "time", "label": "DRIVE", "field": "time", "align": "right"},
    {"name": "laps", "label": "LAPS", "field": "laps", "align": "right"},
    {"name": "avg", "label": "AVG", "field": "avg", "align": "right"},
    {"name": "best", "label": "BEST", "field": "best", "align": "right"},
    {"name": "fuel", "label": "FUEL L", "field": "fuel", "align": "right"},
]
_ROW_SLOT = r"""
<q-tr :props="props" class="pb-stintrow" :class="props.row.kind">
  <q-td v-for="col in props.cols" :key="col.name" :props="props">{{ col.value }}</q-td>
</q-tr>
"""


@page("/stints", icon="groups", label="Stints", order=40, css=PAGE_CSS)
def create(ctx: PageContext) -> None:
    """Build the stints page for one tab."""
    view = StintsView(ctx)
    ui.timer(0, view.reload, once=True)
    ui.timer(REFRESH_S, view.reload)
    ui.timer(0, view.load_shims, once=True)
    ui.timer(SHIMS_REFRESH_S, view.load_shims)


class StintsView:
    """Stint table, driver shares and the handoff checklist of one tab."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx
        self.history: SessionHistory | None = None
        self.key: str | None = None
        self.shims: tuple[ShimHealth, ...] | None = None
        self._shown: tuple[Any, ...] | None = None
        self._drivers_html = ""
        with tid(ui.element("div"), "page-stints").classes("pb-stints-page"):
            with ui.element("div").classes("pb-tile"):
                ui.label("Stints").classes("pb-cap")
                self.table = tid(
                    ui.table(rows=[], columns=_COLUMNS, row_key="n", pagination=0),
                    "stint-table",
                )
                self.table.classes("pb-stint-table").props(
                    'dense flat hide-bottom dark no-data-label="No stints stored yet"'
                )
                self.table.add_slot("body", _ROW_SLOT)
                ui.label("Drive time per driver").classes("pb-cap")
                self.drivers = tid(ui.html("", sanitize=True), "drivers").classes(
                    "pb-drivers"
                )
                self.note = note("Loading stints…", "stints-note")
            with tid(ui.element("div"), "handoff").classes("pb-tile"):
                self.title = tid(ui.label("Handoff"), "handoff-title").classes("pb-cap")
                self.next_caption = ui.label("Next driver").classes("pb-cap")
                self.next_driver = tid(
                    ui.toggle([], on_change=self._choose_driver), "next-driver"
                )
                self.next_driver.classes("pb-nextdrv").props(
                    "no-caps toggle-color=primary text-color=white"
                )
                self.checks: dict[str, ui.button] = {}
                # A viewer sees how far the handoff is, not the controls.
                self.editable = ctx.may(Role.CREW)
                if not self.editable:
                    note("Read-only: the crew ticks the checklist.", "handoff-readonly")
                for item, label in HANDOFF_ITEMS if self.editable else ():
                    button = tid(
                        ui.button(
                            label,
                            icon="check_box_outline_blank",
                            on_click=self._toggler(item),
                        ),
                        f"check-{item}",
                    )
                    button.props("no-caps outline align=left color=white").classes(
                        "pb-btn pb-check"
                    )
                    self.checks[item] = button
                self.shim_list = tid(ui.html("", sanitize=True), "shims").classes(
                    "pb-shims"
                )
                self.state_label = tid(ui.label(""), "handoff-state").classes(
                    "pb-handoff-state"
                )
                PostRaceStatus.of(ctx)  # after the race: compacting … report ready
        self._checklist: Checklist | None = None

    # ---- timers ----------------------------------------------------------------------
    async def reload(self) -> None:
        """Stints from the database (cached), live drive time, the crew's ticks."""
        data = self.ctx.services.data
        car = self.ctx.car()
        history: SessionHistory | None = None
        if data is not None:
            key = (
                car.session_key if car is not None else await data.latest_session_key()
            )
            history = await data.history(key) if key else None
        if self.table.is_deleted:
            return
        self.history = history
        self._show_stints(car, history)
        self._show_checklist(car, history)
        if data is None:
            self.note.set_text(
                "No database configured: stint history is not available."
            )
        elif history is None:
            self.note.set_text(data.problem or "No stored stints for this session yet.")
        else:
            self.note.set_text(
                "Fair share: drive time split evenly among the drivers so far "
                "(white mark). Stints end at a pit visit or a driver change."
            )

    async def load_shims(self) -> None:
        api = self.ctx.services.api
        self.shims = await api.shims() if api is not None else None
        if not self.table.is_deleted:
            self._show_checklist(self.ctx.car(), self.history)

    async def tick(self, item: str) -> None:
        """Tick or untick one item of the current handoff."""
        crew = self.ctx.services.crew
        if crew is None or self.key is None:
            return
        if not self.ctx.allow(Role.CREW, "the handoff checklist"):
            return
        done = item not in crew.checklist(self.key).ticked
        await crew.tick(self.key, item, done)
        self._show_checklist(self.ctx.car(), self.history)

    # ---- helpers -----------------------------------------------------------------------
    def _toggler(self, item: str) -> Any:
        async def toggle() -> None:
            await self.tick(item)

        return toggle

    async def _choose_driver(self, event: Any) -> None:
        crew = self.ctx.services.crew
        value = getattr(event, "value", None)
        if crew is None or self.key is None or value is None:
            return
        if not self.ctx.allow(Role.CREW, "choosing the next driver"):
            return
        if value != crew.checklist(self.key).next_driver:
            await crew.set_next_driver(self.key, str(value))

    def _show_stints(
        self, car: CarState | None, history: SessionHistory | None
    ) -> None:
        now = car.session_time if car is not None else None
        stints = history.stints if history is not None else ()
        rows = [_stint_row(s, now) for s in reversed(stints)]
        totals = history.driver_totals(now) if history is not None else ()
        shown = (tuple(tuple(r.values()) for r in rows), totals)
        if shown == self._shown:
            return
        self._shown = shown
        self.table.rows = rows
        self.table.update()
        fair = 1 / len(totals) if totals else 0.0
        parts = []
        for total in totals:
            parts.append(
                '<div class="pb-share">'
                f'<span class="pb-name">{html.escape(total.driver)}</span>'
                f"<span>{fmt.duration(total.drive_time_s)} · {total.share * 100:.0f} % · "
                f"{total.laps} laps</span>"
                f'<span class="pb-bar"><i style="width:{total.share * 100:.1f}%"></i>'
                f'<b style="left:{fair * 100:.1f}%"></b></span></div>'
            )
        content = "".join(parts) or '<span class="pb-note">—</span>'
        if content != self._drivers_html:
            self._drivers_html = content
            self.drivers.set_content(content)

    def _show_checklist(
        self, car: CarState | None, history: SessionHistory | None
    ) -> None:
        crew = self.ctx.services.crew
        stint = car.stint if car is not None and car.stint else None
        if stint is None and history is not None and history.stints:
            stint = history.stints[-1].number
        if car is None or stint is None or crew is None:
            self.key = None
            self.title.set_text("Handoff")
            self.state_label.set_text(
                "No live car" if crew is not None else "No crew file configured"
            )
            for button in self.checks.values():
                button.disable()
            self.next_driver.set_visibility(False)
            self.next_caption.set_visibility(False)
            return
        self.key = handoff_key(car.car, car.session_key, stint)
        checklist = crew.checklist(self.key)
        self.title.set_text(f"Handoff after stint {stint}")
        for item, button in self.checks.items():
            button.enable()
            done = item in checklist.ticked
            button.props(f"icon={'check_box' if done else 'check_box_outline_blank'}")
            if done:
                button.classes(add="pb-done")
            else:
                button.classes(remove="pb-done")
        drivers = list(history.drivers()) if history is not None else []
        if car.driver and car.driver not in drivers:
            drivers.append(car.driver)
        if list(self.next_driver.options) != drivers:
            self.next_driver.set_options(drivers)
        if self.next_driver.value != (checklist.next_driver or None):
            self.next_driver.set_value(checklist.next_driver or None)
        self.next_driver.set_visibility(bool(drivers) and self.editable)
        self.next_caption.set_visibility(bool(drivers) and self.editable)
        self.shim_list.set_content(_shims_html(car, self.shims))
        ticked = len(checklist.ticked)
        self.state_label.set_text(
            "READY FOR HANDOFF"
            if checklist.complete
            else f"{ticked}/{len(HANDOFF_ITEMS)} checked"
        )
        self.state_label.classes(
            replace="pb-handoff-state " + ("pb-ok" if checklist.complete else "pb-warn")
        )


def _stint_row(stint: StintInfo, now: float | None) -> dict[str, Any]:
    return {
        "n": stint.number,
        "driver": stint.driver or "—",
        "time": fmt.duration(stint.drive_time(now)),
        # Invalid laps (resets, tows) count as driven but never in AVG or BEST.
        "laps": (
            f"{stint.laps} ({stint.invalid_laps} invalid)"
            if stint.invalid_laps
            else stint.laps
        ),
        "avg": fmt.lap_time(stint.avg_lap),
        "best": fmt.lap_time(stint.best_lap),
        "fuel": fmt.litres(stint.fuel_used),
        "kind": "pb-open" if stint.end_time is None else "",
    }


def _shims_html(car: CarState, shims: tuple[ShimHealth, ...] | None) -> str:
    if shims is None:
        return '<span class="pb-note">Shim list: core API not reachable.</span>'
    mine = [s for s in shims if s.source.split("-", 1)[0] == car.car]
    if not mine:
        return '<span class="pb-note">No shim of this car has reported.</span>'
    rows = []
    for shim in mine:
        tone = _SHIM_TONES.get(shim.state, "pb-bad")
        # The core's view of each PC's role; a state without it names the driving one.
        known = car.pcs.get(shim.source)
        if known is None and shim.source == car.source:
            known = PcRole.DRIVING
        role = f" ({known})" if known is not None else ""
        rows.append(
            f"<span><b>{html.escape(shim.source)}</b>{role}: "
            f'<span class="{tone}">{html.escape(shim.state.replace("_", " "))}</span></span>'
        )
    return "".join(rows)
