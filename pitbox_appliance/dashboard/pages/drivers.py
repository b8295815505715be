"""Drivers ``/drivers``: profiles (goals with progress, badges, fatigue model, settings), the next practice's plan, and training mode."""

from __future__ import annotations

import html
import time
from typing import Any

from nicegui import ui

from pitbox_appliance.dashboard.context import PageContext
from pitbox_appliance.dashboard.pages import page
from pitbox_appliance.dashboard.widgets import note, tid
from pitbox_appliance.security.users import Role

RELOAD_S = 2.0

PAGE_CSS = """
.pb-drivers-page { display: grid; width: 100%; height: 100%; gap: 8px;
                   grid-template-columns: minmax(0, 2fr) minmax(0, 3fr);
                   grid-template-rows: minmax(0, 1fr); }
.pb-drivers-page .pb-tile { justify-content: flex-start; gap: 6px; overflow-y: auto; }
.pb-drvtable { width: 100%; border-collapse: collapse; font-size: 15px; }
.pb-drvtable td, .pb-drvtable th { padding: 4px 6px; text-align: left;
                                   border-bottom: 1px solid var(--pb-line, #333); }
.pb-bar { height: 10px; background: #333; border-radius: 5px; min-width: 80px; }
.pb-bar > div { height: 10px; background: #3ddc84; border-radius: 5px; }
.pb-badge { display: inline-block; padding: 2px 8px; margin: 2px; border-radius: 10px;
            font-size: 13px; font-weight: 700; color: #111; }
.pb-badge.bronze { background: #cd7f32; } .pb-badge.silver { background: #c0c0c0; }
.pb-badge.gold { background: #ffd700; } .pb-badge.platinum { background: #e5e4e2; }
.pb-train-form { display: flex; gap: 8px; flex-wrap: wrap; align-items: center; }
.pb-train-form .q-btn { min-height: 44px; min-width: 44px; }
.pb-train-form .q-field { min-width: 180px; }
@media (max-width: 640px) {
  .pb-drivers-page { grid-template-columns: minmax(0, 1fr); grid-template-rows: auto auto;
                     height: auto; }
}
"""


@page("/drivers", icon="school", label="Drivers", order=85, css=PAGE_CSS)
def create(ctx: PageContext) -> None:
    """Build the drivers page for one tab."""
    view = DriversView(ctx)
    ui.timer(0, view.reload, once=True)
    ui.timer(RELOAD_S, view.reload)


class DriversView:
    """The drivers table, the chosen driver's profile and plan, the training control."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx
        self.chosen: str | None = None
        with tid(ui.element("div"), "page-drivers").classes("pb-drivers-page"):
            with ui.element("div").classes("pb-tile"):
                ui.label("Drivers").classes("pb-cap")
                self.table = tid(ui.html(""), "drv-table")
                self.pick = tid(
                    ui.select([], label="Driver", on_change=self._picked), "drv-pick"
                ).props("outlined dark")
                ui.label("Training mode").classes("pb-cap")
                with ui.element("div").classes("pb-train-form"):
                    self.session = tid(
                        ui.select({}, label="Practice session"), "drv-session"
                    ).props("outlined dark")
                    tid(ui.button("Start training", on_click=self.start), "drv-start")
                    tid(
                        ui.button("End", on_click=self.end).props("outline"),
                        "drv-end",
                    )
                self.status = tid(ui.label(""), "drv-status").classes("pb-note")
                note(
                    "Goals come from the driver's weakest corners against the team's "
                    "best driver in the same car and track; progress is measured live "
                    "on every lap (docs/training.md)."
                )
            with ui.element("div").classes("pb-tile"):
                ui.label("Profile").classes("pb-cap")
                self.profile = tid(ui.html(""), "drv-profile")
                ui.label("Next practice").classes("pb-cap")
                self.plan = tid(ui.html(""), "drv-plan")

    async def reload(self) -> None:
        api = self.ctx.services.api
        listed = await api.drivers() if api is not None else None
        if listed is None:
            self.table.set_content(
                '<div class="pb-note">The core\'s API does not answer.</div>'
            )
            return
        drivers = [d for d in listed.get("drivers", []) if isinstance(d, dict)]
        self.table.set_content(drivers_html(drivers))
        names = [str(d["driver"]) for d in drivers]
        if list(self.pick.options) != names:
            self.pick.set_options(
                names, value=self.chosen if self.chosen in names else None
            )
        if self.chosen is None and names:
            self.chosen = names[0]
            self.pick.set_value(self.chosen)
        sessions = await api.sessions() if api is not None else None
        options = {
            int(s["id"]): f"{s['id']}: {s['track']} ({s['car']})"
            for s in (sessions or {}).get("sessions", [])[:20]
            if isinstance(s, dict)
        }
        if dict(self.session.options) != options:
            self.session.set_options(options, value=next(iter(options), None))
        await self._show()

    async def _picked(self, _event: Any) -> None:
        self.chosen = self.pick.value
        await self._show()

    async def _show(self) -> None:
        api = self.ctx.services.api
        if api is None or not self.chosen:
            self.profile.set_content('<div class="pb-note">No driver yet.</div>')
            self.plan.set_content("")
            return
        detail = await api.driver(self.chosen)
        if detail is None:
            return
        self.profile.set_content(profile_html(detail.get("profile") or {}))
        self.plan.set_content(plan_html(detail.get("plan")))

    async def start(self) -> None:
        await self._mark(active=True)

    async def end(self) -> None:
        await self._mark(active=False)

    async def _mark(self, *, active: bool) -> None:
        if not self.ctx.allow(Role.ENGINEER, "training mode"):
            return
        api = self.ctx.services.api
        session, driver = self.session.value, self.chosen
        if api is None or session is None or not driver:
            self.status.set_text("Pick a driver and a practice session.")
            return
        ok, answer = await api.mark_training(int(session), driver, active=active)
        if not ok:
            self.status.set_text(f"Not changed: {answer['error']}")
        elif active:
            goals = answer.get("goals") or []
            ref = answer.get("reference") or {}
            self.status.set_text(
                f"Session {session} is training for {driver}: {len(goals)} goals "
                f"against {ref.get('driver', 'no reference')}"
            )
        else:
            self.status.set_text(f"Training ended for session {session}")
        await self._show()


def drivers_html(drivers: list[dict[str, Any]]) -> str:
    """One row per driver: goals done of all, badges."""
    rows = []
    for d in drivers:
        name = html.escape(str(d["driver"]))
        badges = ", ".join(html.escape(str(b)) for b in d.get("badges", [])) or "—"
        rows.append(
            f'<tr data-testid="drv-row-{name}"><td>{name}</td>'
            f"<td>{int(d.get('goals_completed', 0))}/{int(d.get('goals', 0))}</td>"
            f"<td>{badges}</td></tr>"
        )
    if not rows:
        rows.append('<tr><td colspan="3">no driver has driven yet</td></tr>')
    return (
        '<table class="pb-drvtable"><tr><th>driver</th><th>goals done</th>'
        f"<th>badges</th></tr>{''.join(rows)}</table>"
    )


def profile_html(profile: dict[str, Any]) -> str:
    """Goals with progress bars, badges, the fatigue model and settings."""
    goals = [g for g in profile.get("trainingGoals", []) if isinstance(g, dict)]
    rows = []
    for g in goals:
        pct = round(100 * float(g.get("progress") or 0.0))
        done = " ✓" if g.get("completedAt") else ""
        rows.append(
            f'<tr data-testid="drv-goal"><td>{html.escape(str(g.get("description")))}'
            f'</td><td><div class="pb-bar"><div style="width:{pct}%"></div></div>'
            f"</td><td>{pct}%{done}</td><td>{float(g.get('currentValue', 0)):.3g}"
            f" / {float(g.get('targetValue', 0)):.3g}</td>"
            f"<td>{int(g.get('lapsMeasured') or 0)}</td></tr>"
        )
    goals_html = (
        '<table class="pb-drvtable"><tr><th>goal</th><th></th><th>progress</th>'
        f"<th>now / target</th><th>laps</th></tr>{''.join(rows)}</table>"
        if rows
        else '<div class="pb-note">No training goals yet: mark a practice as '
        "training.</div>"
    )
    badges = "".join(
        f'<span class="pb-badge {html.escape(str(b.get("level")))}" '
        f'data-testid="drv-badge" title="{html.escape(_evidence(b))}">'
        f"{html.escape(str(b.get('name')))}</span>"
        for b in profile.get("badges", [])
        if isinstance(b, dict)
    )
    fm = profile.get("fatigueModel") or {}
    settings = profile.get("settings") or {}
    baseline = fm.get("baseline")
    return (
        f"{goals_html}<div>{badges or '<span class=pb-note>no badges yet</span>'}</div>"
        f'<div class="pb-note" data-testid="drv-fatigue">fatigue model: baseline '
        f"{'—' if baseline is None else f'{float(baseline):.3f}'}, now "
        f"{float(fm.get('currentLevel', 0)):.2f}, risk at "
        f"{float(fm.get('riskThreshold', 0)):.2f}, recovers "
        f"{float(fm.get('recoveryRate', 0)):.2f}/h ({html.escape(str(fm.get('basis')))})"
        f'</div><div class="pb-note">settings: {html.escape(str(settings.get("units")))}'
        f" units; to the shim: "
        f"{html.escape(', '.join(settings.get('shimAlerts', [])) or 'nothing')}</div>"
    )


def plan_html(plan: dict[str, Any] | None) -> str:
    """The next practice: exercises with laps, reference lap, when to stop."""
    if not plan:
        return '<div class="pb-note">No plan yet.</div>'
    ref = plan.get("referenceLap") or {}
    items = "".join(
        f'<li data-testid="drv-exercise">{html.escape(", ".join(e.get("corners", [])))}'
        f" {html.escape(str(e.get('metricType')))}: {int(e.get('laps', 0))} laps — "
        f"{html.escape(str(e.get('focus')))}</li>"
        for e in plan.get("exercises", [])
        if isinstance(e, dict)
    )
    stop = plan.get("stopWhen") or {}
    reference = (
        f"{html.escape(str(ref.get('driver')))} lap {ref.get('lapNumber')} "
        f"of session {ref.get('sessionId')}"
        if ref
        else "none"
    )
    return (
        f"<div>{int(plan.get('warmupLaps', 0))} warm-up laps, then:</div><ol>{items}</ol>"
        f"<div>reference lap: {reference}</div>"
        f'<div data-testid="drv-stop">stop when fatigue passes '
        f"{float(stop.get('fatigueAbove', 1)):.2f} ({html.escape(str(stop.get('why')))})"
        "</div>"
    )


def _evidence(badge: dict[str, Any]) -> str:
    ev = badge.get("evidence") or {}
    laps = ev.get("laps") or []
    when = time.strftime("%d %b", time.localtime(float(badge.get("earnedAt") or 0)))
    span = f"laps {laps[0]}-{laps[-1]}" if laps else "no laps"
    return f"{ev.get('metric')} {ev.get('value')} (≤ {ev.get('threshold')}), {span}, {when}"
