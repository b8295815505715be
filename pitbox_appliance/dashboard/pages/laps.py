"""Laps and lap comparison ``/laps``: the session's laps, two of them overlaid along the lap."""

from __future__ import annotations

from typing import Any

from nicegui import ui
from nicegui.events import GenericEventArguments, ValueChangeEventArguments

from pitbox_appliance.dashboard import formatting as fmt
from pitbox_appliance.dashboard.context import PageContext
from pitbox_appliance.dashboard.lap_analysis import LapComparison, compare_laps
from pitbox_appliance.dashboard.pages import page
from pitbox_appliance.dashboard.session_data import (
    LapInfo,
    SessionExtras,
    SessionHistory,
)
from pitbox_appliance.dashboard.widgets import note, tid, value_axis

#: How often the page looks for newly completed laps (the query is cached for 2 s).
RELOAD_S = 2.0
COLOR_A = "#e5e7eb"
COLOR_B = "var(--pb-accent)"
DELTA_COLOR = "#f59e0b"

PAGE_CSS = """
.pb-laps-page { display: grid; width: 100%; height: 100%; gap: 8px;
                grid-template-columns: 300px minmax(0, 1fr);
                grid-template-rows: minmax(0, 1fr); }
.pb-laps-page .pb-tile { justify-content: flex-start; gap: 4px; }
.pb-pick { display: flex; gap: 8px; align-items: center; flex-wrap: nowrap;
           justify-content: space-between; }
.pb-nowrap { white-space: nowrap; }
.pb-pick .pb-cap { flex: 1 1 auto; min-width: 0; }
.pb-pick .q-btn-group .q-btn { min-height: 44px; min-width: 52px; font-size: 16px;
                                font-weight: 800; }
.pb-lap-table { flex: 1 1 auto; min-height: 0; width: 100%; background: transparent; }
.pb-lap-table thead tr th { position: sticky; top: 0; z-index: 1; background: var(--pb-tile);
                            font-size: 12px; color: var(--pb-muted); padding: 2px 6px;
                            height: 28px; }
.pb-lap-table tbody td { height: 44px; font-size: 17px; padding: 0 6px;
                         font-variant-numeric: tabular-nums; cursor: pointer; }
.pb-lap-table tbody tr.pb-best td:nth-child(3) { color: #c084fc; font-weight: 700; }
.pb-lap-table tbody tr.pb-pitlap td { color: var(--pb-warn); }
.pb-lap-table tbody tr.pb-invalid td { color: var(--pb-muted); }
.pb-lap-table tbody tr.pb-invalid td:nth-child(3) { text-decoration: line-through; }
.pb-lap-table tbody tr.pb-a td:first-child { box-shadow: inset 4px 0 0 #e5e7eb; }
.pb-lap-table tbody tr.pb-b td:first-child { box-shadow: inset 4px 0 0 var(--pb-accent); }
.pb-mark { font-weight: 800; }
.pb-compare-head { display: flex; flex-wrap: wrap; gap: 4px 14px; align-items: baseline;
                   font-size: 17px; font-variant-numeric: tabular-nums; }
.pb-sector { font-size: 15px; font-weight: 700; padding: 0 6px; border-radius: 4px;
             background: #222831; }
.pb-gain { color: var(--pb-ok); } .pb-loss { color: var(--pb-bad); }
.pb-compare-chart { flex: 1 1 auto; min-height: 0; width: 100%; height: auto; }
@media (max-width: 640px) {
  .pb-laps-page { grid-template-columns: minmax(0, 1fr); grid-template-rows: auto auto;
                  height: auto; }
  .pb-lap-table { height: 40vh; flex: none; }
  .pb-compare-chart { height: 52vh; flex: none; }
}
"""

_COLUMNS = [
    {"name": "mark", "label": "", "field": "mark", "align": "left"},
    {"name": "lap", "label": "LAP", "field": "lap", "align": "left"},
    {"name": "time", "label": "TIME", "field": "time", "align": "right"},
    {"name": "gap", "label": "Δ BEST", "field": "gap", "align": "right"},
    {"name": "fuel", "label": "FUEL", "field": "fuel", "align": "right"},
]
# A row is a button: tapping it puts that lap into the A or B slot.
_ROW_SLOT = r"""
<q-tr :props="props" class="pb-laprow" :class="props.row.kind" @click="$parent.$emit('pick', props.row.id)">
  <q-td v-for="col in props.cols" :key="col.name" :props="props"
        :class="col.name === 'mark' ? 'pb-mark' : ''">{{ col.value }}</q-td>
</q-tr>
"""


@page("/laps", icon="timeline", label="Laps", order=30, css=PAGE_CSS)
def create(ctx: PageContext) -> None:
    """Build the laps page for one tab; timers reload the lap list as laps complete."""
    view = LapsView(ctx)
    ui.timer(0, view.reload, once=True)
    ui.timer(RELOAD_S, view.reload)


class LapsView:
    """The lap list, the A/B choice and the comparison chart of one tab."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx
        self.history: SessionHistory | None = None
        self.extras = SessionExtras()
        #: The laps compared: A (reference) and B; None until the list is loaded.
        self.a: int | None = None
        self.b: int | None = None
        #: While True, A follows the best lap and B the last one as laps complete.
        self.follow = True
        self.slot = "B"
        self.comparison: LapComparison | None = None
        self._rows_key: tuple[Any, ...] | None = None
        self._compared: tuple[int | None, int | None] | None = None
        with tid(ui.element("div"), "page-laps").classes("pb-laps-page"):
            with ui.element("div").classes("pb-tile"):
                with ui.element("div").classes("pb-pick"):
                    self.slot_toggle = tid(
                        ui.toggle(["A", "B"], value="B", on_change=self._set_slot),
                        "pick-slot",
                    ).props("toggle-color=primary text-color=white")
                    tid(
                        ui.button("Best v last", on_click=self.best_vs_last),
                        "best-vs-last",
                    ).props("no-caps outline color=white").classes("pb-btn pb-nowrap")
                self.table = tid(
                    ui.table(rows=[], columns=_COLUMNS, row_key="id", pagination=0),
                    "lap-table",
                )
                self.table.classes("pb-lap-table").props(
                    "dense flat hide-bottom virtual-scroll dark "
                    'no-data-label="No stored laps yet"'
                )
                self.table.add_slot("body", _ROW_SLOT)
                self.table.on("pick", self._pick)
            with ui.element("div").classes("pb-tile"):
                self.head = tid(ui.html("", sanitize=True), "compare-head").classes(
                    "pb-compare-head"
                )
                accent = ctx.services.branding.accent_color
                self.chart = tid(
                    ui.echart(_chart_options(accent)), "compare-chart"
                ).classes("pb-compare-chart")
                self.note = note("Loading the session's laps…", "laps-note")

    # ---- actions -------------------------------------------------------------------
    async def reload(self) -> None:
        """Fetch the lap list (cached) and redraw what changed."""
        data = self.ctx.services.data
        if data is None:
            self.note.set_text("No database configured: lap history is not available.")
            return
        car = self.ctx.car()
        key = car.session_key if car is not None else await data.latest_session_key()
        history = await data.history(key) if key else None
        if self.table.is_deleted:
            return
        if history is None:
            self.history = None
            self._set_rows(())
            self.note.set_text(
                data.problem
                or "No stored laps for this session yet: the core stores each lap "
                "when it completes."
            )
            return
        if self.history is None or history.session.id != self.history.session.id:
            self.extras = await data.extras(history.session.session_key)
            self.follow = True
        self.history = history
        if self.follow or history.lap(self.a) is None or history.lap(self.b) is None:
            best, last = history.best, history.last
            self.a = best.id if best else None
            self.b = last.id if last else None
        self._set_rows(history.laps)
        source = "" if car is not None else "Newest stored session (no live car). "
        self.note.set_text(
            f"{source}{history.session.track or 'Track unknown'} · "
            f"{len(history.laps)} laps. Tap a lap to make it A or B (toggle)."
        )
        await self._compare()

    async def best_vs_last(self) -> None:
        """Go back to comparing the best lap (A) with the last one (B)."""
        self.follow = True
        if self.history is not None:
            best, last = self.history.best, self.history.last
            self.a = best.id if best else None
            self.b = last.id if last else None
            self._set_rows(self.history.laps)
        await self._compare()

    async def pick(self, lap_id: int) -> None:
        """Put a lap into the slot chosen with the A/B toggle."""
        if self.history is None or self.history.lap(lap_id) is None:
            return
        self.follow = False
        if self.slot == "A":
            self.a = lap_id
        else:
            self.b = lap_id
        self._set_rows(self.history.laps)
        await self._compare()

    # ---- helpers -------------------------------------------------------------------
    async def _pick(self, event: GenericEventArguments) -> None:
        try:
            lap_id = int(event.args)
        except (TypeError, ValueError):
            return
        await self.pick(lap_id)

    def _set_slot(self, event: ValueChangeEventArguments[Any]) -> None:
        self.slot = "A" if event.value == "A" else "B"

    def _set_rows(self, laps: tuple[LapInfo, ...]) -> None:
        best = self.history.best if self.history is not None else None
        key = (laps, self.a, self.b)
        if key == self._rows_key:
            return
        self._rows_key = key
        rows = [_row(lap, best, self.a, self.b) for lap in reversed(laps)]
        self.table.rows = rows
        self.table.update()

    async def _compare(self) -> None:
        history, data = self.history, self.ctx.services.data
        if history is None or data is None:
            return
        lap_a, lap_b = history.lap(self.a), history.lap(self.b)
        if (self.a, self.b) == self._compared:
            return
        if lap_a is None or lap_b is None:
            self._show(None, "Pick two laps to compare.")
            return
        untimed = [lap.number for lap in (lap_a, lap_b) if lap.start_time is None]
        if untimed:
            self._show(
                None,
                f"Lap {untimed[0]} has no timed start (an out lap): it cannot be "
                "compared. Tap another lap.",
            )
            return
        trace_a = await data.lap_trace(history.session.id, lap_a)
        trace_b = await data.lap_trace(history.session.id, lap_b)
        if self.chart.is_deleted:
            return
        missing = [
            lap.number for lap, t in ((lap_a, trace_a), (lap_b, trace_b)) if not t
        ]
        if trace_a is None or trace_b is None:
            laps = " and ".join(f"lap {n}" for n in missing)
            self._show(None, f"No stored telemetry for {laps}.")
            return
        self._compared = (self.a, self.b)
        comparison = compare_laps(
            trace_a,
            trace_b,
            history.session.track_length_m,
            self.extras.sector_starts,
        )
        self._show(comparison, "", lap_a, lap_b)

    def _show(
        self,
        comparison: LapComparison | None,
        problem: str,
        lap_a: LapInfo | None = None,
        lap_b: LapInfo | None = None,
    ) -> None:
        self.comparison = comparison
        if comparison is None or lap_a is None or lap_b is None:
            self._compared = None
            self.head.set_content(f'<span class="pb-note">{problem}</span>')
            self.chart.options["dataset"]["source"] = ()
            self.chart.update()
            return
        sectors = "".join(
            f'<span class="pb-sector {_tone(d)}">S{i} {fmt.signed(d)}</span>'
            for i, d in enumerate(comparison.sectors, 1)
        )
        self.head.set_content(
            f'<span style="color:{COLOR_A}"><b>A</b> L{lap_a.number} '
            f"{fmt.lap_time(lap_a.lap_time)}</span>"
            f'<span style="color:{COLOR_B}"><b>B</b> L{lap_b.number} '
            f"{fmt.lap_time(lap_b.lap_time)}</span>"
            f'<span class="{_tone(comparison.total_delta)}" data-testid="delta">'
            f"Δ {fmt.signed(comparison.total_delta)}</span>{sectors}"
            '<span class="pb-cap">speed km/h · Δ s (B − A) along the lap</span>'
        )
        unit = comparison.unit
        self.chart.options["xAxis"][1]["name"] = unit
        self.chart.options["xAxis"][0]["max"] = comparison.rows[-1][0]
        self.chart.options["xAxis"][1]["max"] = comparison.rows[-1][0]
        # A tuple of tuples is sent as is (a list would be wrapped and walked).
        self.chart.options["dataset"]["source"] = comparison.rows
        self.chart.update()


def _row(
    lap: LapInfo, best: LapInfo | None, a: int | None, b: int | None
) -> dict[str, Any]:
    kinds = []
    if lap.pit_lap:
        kinds.append("pb-pitlap")
    if lap.invalid:
        kinds.append("pb-invalid")
    if best is not None and lap.id == best.id:
        kinds.append("pb-best")
    mark = ("A" if lap.id == a else "") + ("B" if lap.id == b else "")
    if lap.id == a:
        kinds.append("pb-a")
    if lap.id == b:
        kinds.append("pb-b")
    gap = (
        fmt.signed(lap.lap_time - best.lap_time)
        if best is not None and best.lap_time is not None and lap.lap_time is not None
        else ""
    )
    return {
        "id": lap.id,
        "mark": mark,
        "lap": f"{lap.number}{' P' if lap.pit_lap else ''}",
        "time": fmt.INVALID if lap.invalid else fmt.lap_time(lap.lap_time),
        "gap": gap,
        "fuel": _fuel(lap),
        "kind": " ".join(kinds),
    }


def _fuel(lap: LapInfo) -> str:
    if lap.refuelled:
        return "refuel"  # fuel rose during the lap: what it burned is not known
    if lap.fuel_used is None or lap.fuel_used < 0:
        return ""
    return f"{lap.fuel_used:.2f}"


def _tone(delta: float) -> str:
    """B slower than A is a loss (red), faster a gain (green)."""
    if delta > 0.0005:
        return "pb-loss"
    if delta < -0.0005:
        return "pb-gain"
    return ""


def _chart_options(accent: str) -> dict[str, Any]:
    def line(y: int, color: str, name: str, axis: int = 0) -> dict[str, Any]:
        return {
            "type": "line",
            "name": name,
            "encode": {"x": 0, "y": y},
            "xAxisIndex": axis,
            "yAxisIndex": axis,
            "showSymbol": False,
            "lineStyle": {"width": 2, "color": color},
            "itemStyle": {"color": color},
        }

    return {
        "animation": False,
        "tooltip": {"trigger": "axis", "confine": True},
        "axisPointer": {"link": [{"xAxisIndex": "all"}]},
        "grid": [
            {"left": 44, "right": 10, "top": 8, "bottom": "42%"},
            {"left": 44, "right": 10, "top": "64%", "bottom": 24},
        ],
        "dataset": {"source": ()},
        "xAxis": [
            value_axis(gridIndex=0, min=0, axisLabel={"show": False}),
            value_axis(
                gridIndex=1,
                min=0,
                name="m",
                nameLocation="end",
                nameGap=4,
                nameTextStyle={"color": "#8b949e"},
            ),
        ],
        "yAxis": [
            value_axis(gridIndex=0, scale=True),
            value_axis(gridIndex=1, scale=True),
        ],
        "series": [
            line(1, COLOR_A, "A km/h"),
            line(2, accent, "B km/h"),
            line(3, DELTA_COLOR, "Δ s (B − A)", axis=1),
        ],
    }
