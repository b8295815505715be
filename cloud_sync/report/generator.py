"""SessionReportGenerator: one compacted session (plus earlier ones for trends) → HTML report, PDF, events."""

from __future__ import annotations

import datetime as dt
import html
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cloud_sync.analytics.performance import DriverPerformanceAnalyzer
from cloud_sync.analytics.sections import (
    SECTIONS,
    corner_pieces,
    lap_sections,
    section_names,
)
from cloud_sync.analytics.setup_impact import SetupImpactAnalyzer
from cloud_sync.analytics.training import SkillProgressionTracker, TrainingTracker
from cloud_sync.branding import Branding, brand_css, brand_header
from cloud_sync.compacted import CompactedSession
from cloud_sync.report import plots
from cloud_sync.report.plots import format_lap_time

MISTAKE = "mistake"
INCIDENT = "incident_detected"
STRATEGY = "strategy_recommendation"
STYLE = """
body{font-family:DejaVu Sans,Arial,sans-serif;margin:24px;color:#222;max-width:980px}
h1{font-size:22px;margin-bottom:2px}h2{font-size:17px;border-bottom:1px solid #ccc;
margin-top:28px;page-break-after:avoid}table{border-collapse:collapse;font-size:12px;
margin:6px 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}
th{background:#f3f3f3}.muted{color:#777}.figure{page-break-inside:avoid}
.figure svg{max-width:100%;height:auto}.good{color:#186a1e}.bad{color:#a11}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.summary{page-break-after:always}.summary h1{margin-top:0}
.facts{font-size:13px;margin:4px 0 8px}.facts b{font-variant-numeric:tabular-nums}
.kpis{display:flex;flex-wrap:wrap;gap:6px 10px;margin:8px 0}
.kpi{border:1px solid #ccc;border-radius:4px;padding:5px 10px;font-size:12px;
min-width:150px}.kpi b{display:block;font-size:17px;font-variant-numeric:tabular-nums}
"""
# Losses against the session's best lap by corner (the set's corner map, as the pit
# wall numbered them); sets without one: by segment (the report's S1…S10).
LOSS_SEGMENTS = SECTIONS
TOP_LOSSES = 3


TREND_WORDS = {None: "same", True: "better", False: "worse"}


@dataclass
class Report:
    """A built report: its HTML, the figures' names, and the events it announces."""

    session: CompactedSession
    html: str
    figures: list[str]
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


class SessionReportGenerator:
    """Build the post-session report of ``session``; ``history`` are earlier sessions.

    Reads only compacted sets (``cloud_sync.compacted``), never the appliance's
    database. ``history`` (earlier sessions of the team, oldest first) feeds the
    trends, training goals and badges; without it they cover this session alone.
    """

    def __init__(
        self,
        session: CompactedSession,
        history: list[CompactedSession] | None = None,
        brand: Branding | None = None,
    ) -> None:
        self.session = session
        self.history = [h for h in (history or []) if h.path != session.path]
        # White-label (the team config's, when its plan includes it): header and colours.
        self.brand = brand or Branding()

    def build(self) -> Report:
        s = self.session
        perf = DriverPerformanceAnalyzer([s])
        optimal = perf.comparison.optimal()
        profiles = perf.profiles()
        training = TrainingTracker([*self.history, s])
        same_car = [h for h in self.history if h.car == s.car and h.track == s.track]
        impacts = SetupImpactAnalyzer([*same_car, s]).impacts()
        impacts = [i for i in impacts if i.where == s.path]
        badges = training.badges_new(s.path)
        goals = [g for d in s.drivers() for g in training.goals(d, upto=s.path)]
        mistakes = s.events_of(MISTAKE)
        incidents = self._incidents()
        plan = s.events_of(STRATEGY)
        figures: list[tuple[str, str]] = [
            ("Lap times by stint and driver", plots.lap_times(s)),
            ("Consistency", plots.consistency(s)),
            ("Fuel use against plan", plots.fuel(s, plan)),
            ("Tyre management", plots.tyres(s)),
            (
                "Mistake hotspots",
                plots.track_map(
                    s,
                    [
                        {
                            "kind": "mistake",
                            "lap_dist_pct": e.payload.get("lap_dist_pct", 0.0),
                            "severity": e.payload.get("severity"),
                        }
                        for e in mistakes
                    ]
                    + [{"kind": "incident", **i} for i in incidents],
                ),
            ),
        ]
        if optimal is not None:
            figures.append(("Lap comparison", plots.section_losses(optimal)))
        debrief = self._debrief(plan, incidents)
        body = [
            self._summary(debrief),
            _h2("Lap times by stint and driver"),
            _figure(figures[0][1]),
            self._stints_table(),
            _h2("Consistency"),
            _figure(figures[1][1]),
            self._consistency_table(),
            _h2("Fuel use against plan"),
            _figure(figures[2][1]),
            self._fuel_text(plan),
            _h2("Tyre management"),
            _figure(figures[3][1]),
            _h2("Incidents"),
            self._incidents_table(incidents),
            _h2("Mistake hotspots"),
            _figure(figures[4][1]),
            self._mistakes_table(mistakes),
            _h2("Strategy decisions against what happened"),
            self._strategy_table(plan),
            _h2("Lap comparison: optimal lap against actual laps"),
            self._optimal_text(optimal, figures),
            _h2("Driver performance"),
            self._profiles_table(profiles),
            _h2("Setup changes and their impact"),
            self._setup_table(impacts),
            _h2("Training goals and badges"),
            self._training(goals, badges),
            _h2("Skill progression and next practice"),
            self._progression(training),
            '<p class="muted">Methods and what is not built: docs/cloud.md. '
            f"Generated from the compacted set {html.escape(s.path)} "
            f"(manifest created {html.escape(s.manifest.created_at)}).</p>",
        ]
        title = f"{self.brand.team_name} session report: {s.track}, {s.car_name}"
        page = (
            f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{STYLE}"
            f"{brand_css(self.brand)}</style></head>"
            f"<body>{brand_header(self.brand)}{''.join(body)}</body></html>\n"
        )
        events: list[tuple[str, dict[str, Any]]] = []
        events += [("setup_impact_analysis", i.payload()) for i in impacts]
        events += [("badge_earned", b.payload()) for b in badges]
        events += [("training_goal_progress", g.payload()) for g in goals]
        summary = {
            "session": s.path,
            "optimal_lap": optimal.optimal if optimal else None,
            "best_lap": min(
                (lap.lap_time for lap in s.laps if lap.clean and lap.lap_time),
                default=None,
            ),
            "car_name": s.car_name,
            "mistakes": len(mistakes),
            "incidents": len(incidents),
            "stops": self._stops(),
            **debrief,
            "profiles": {d: p.as_dict() for d, p in profiles.items()},
        }
        return Report(s, page, [name for name, _ in figures], events, summary)

    # ---- data ----------------------------------------------------------------------
    def _incidents(self) -> list[dict[str, Any]]:
        """incident_detected events, else increments of PlayerCarMyIncidentCount."""
        s = self.session
        out = [
            {
                "session_time": e.session_time,
                "lap": e.payload.get("lap"),
                "lap_dist_pct": e.payload.get("lap_dist_pct", 0.0),
                "what": e.payload.get("incident", "incident"),
                "points": e.payload.get("points"),
                "severity": 0.5,
            }
            for e in s.events_of(INCIDENT)
        ]
        count = s.telemetry.get("PlayerCarMyIncidentCount")
        if out or count is None or len(count) < 2:
            return out
        steps = np.flatnonzero(np.diff(np.nan_to_num(count)) > 0) + 1
        for i in steps:
            t = float(s.telemetry["SessionTime"][i])
            points = int(count[i] - count[i - 1])
            out.append(
                {
                    "session_time": t,
                    "lap": plots.lap_at(s.laps, t),
                    "lap_dist_pct": float(s.telemetry["LapDistPct"][i]),
                    "what": f"{points}x (incident counter)",
                    "points": points,
                    "severity": min(1.0, points / 4),
                }
            )
        return out

    def _debrief(
        self, plan: list[Any], incidents: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """The figures of the one-screen summary, as plain values (also in report.json)."""
        s = self.session
        by_lap = {lap.lap_number: lap for lap in s.laps}
        drivers: dict[str, dict[str, Any]] = {}
        for driver in s.drivers():
            mine = [lap for lap in s.laps if lap.driver == driver]
            clean = [float(lap.lap_time) for lap in mine if lap.clean and lap.lap_time]
            fuel = _clean_fuel([lap for lap in mine])
            hits = [
                i
                for i in incidents
                if i["lap"] in by_lap and by_lap[i["lap"]].driver == driver
            ]
            drivers[driver] = {
                "laps": len(mine),
                "clean_laps": len(clean),
                "best_lap": min(clean, default=None),
                "mean_lap": statistics.fmean(clean) if clean else None,
                "fuel_per_lap": statistics.fmean(fuel) if fuel else None,
                "incidents": len(hits),
                "incident_points": sum(int(i.get("points") or 0) for i in hits),
            }
        fuel = _clean_fuel(s.laps)
        planned = [
            float(e.payload["fuel_per_lap"])
            for e in plan
            if isinstance(e.payload.get("fuel_per_lap"), (int, float))
        ]
        return {
            "drivers": drivers,
            "fuel_per_lap": statistics.fmean(fuel) if fuel else None,
            "fuel_plan_per_lap": planned[-1] if planned else None,
            "incident_points": sum(int(i.get("points") or 0) for i in incidents),
            # Zero means zero only when something counted: detector events or the
            # sim's incident counter (2015 .ibt files have neither).
            "incidents_counted": bool(incidents)
            or "PlayerCarMyIncidentCount" in s.telemetry,
            "loss_basis": "corner" if s.corners else "segment",
            "time_losses": self._time_losses(),
        }

    def _time_losses(self) -> list[dict[str, Any]]:
        """The ``TOP_LOSSES`` corners (or segments) where clean laps lost most to the best.

        With the set's corner map each clean lap with telemetry is cut at the corner
        zones (a zone takes in the braking before its corner; one that crosses the
        line is summed from its two pieces); without one, into ``LOSS_SEGMENTS``
        equal shares of lap distance. A place's loss on a lap is its time there minus
        the best lap's. Ranked by the loss summed over the session's clean laps (time
        given away in the race); the mean per lap and the driver who lost most.
        """
        s = self.session
        edges, labels = corner_pieces(s)
        if not edges:
            edges = list(np.linspace(0.0, 1.0, LOSS_SEGMENTS + 1))
            labels = section_names(LOSS_SEGMENTS)
        cut = lap_sections(s, edges=edges)
        if len(cut) < 2:
            return []
        best = min(cut, key=lambda c: float(c.times.sum()))
        others = [c for c in cut if c is not best]
        pieces = np.vstack([c.times - best.times for c in others])
        names = list(dict.fromkeys(labels))  # in lap order, each place once
        loss = np.column_stack(
            [
                pieces[:, [i for i, label in enumerate(labels) if label == name]].sum(
                    axis=1
                )
                for name in names
            ]
        )
        spans = {name: _span(edges, labels, name) for name in names}
        length_m = float(s.manifest.session.get("track_length_km") or 0) * 1e3
        out = []
        for i in np.argsort(-loss.sum(axis=0), kind="stable")[:TOP_LOSSES]:
            per_driver: dict[str, float] = {}
            for c, value in zip(others, loss[:, i], strict=True):
                per_driver[c.lap.driver] = per_driver.get(c.lap.driver, 0.0) + value
            lo, hi = spans[names[i]]
            out.append(
                {
                    "segment": names[i],
                    "from_pct": lo,
                    "to_pct": hi,
                    "from_m": round(length_m * lo) if length_m else None,
                    "to_m": round(length_m * hi) if length_m else None,
                    "total_loss_s": float(loss[:, i].sum()),
                    "mean_loss_s": float(loss[:, i].mean()),
                    "laps": len(others),
                    "best_lap": best.lap.lap_number,
                    "most_lost_by": max(per_driver, key=lambda d: per_driver[d]),
                }
            )
        return out

    def _stops(self) -> list[int]:
        """Laps on which a pit stop began (the first pit lap of each run of pit laps).

        A run of pit laps on the first recorded lap is the car leaving the pits at
        the start of the recording, not a stop.
        """
        stops, previous = [], True
        for lap in self.session.laps:
            if lap.pit_lap and not previous:
                stops.append(lap.lap_number)
            previous = lap.pit_lap
        return stops

    # ---- sections ------------------------------------------------------------------
    def _summary(self, debrief: dict[str, Any]) -> str:
        """The one-screen debrief: what, who, how fast, stops, fuel, incidents, losses."""
        s = self.session
        m = s.manifest
        duration = m.analytics.get("duration")
        clean = sum(lap.clean for lap in s.laps)
        kind = _session_type(s.session_info)
        date = _session_date(s.session_info)
        facts = " · ".join(
            html.escape(str(x))
            for x in (
                s.car_name,
                " ".join(x for x in (kind, date) if x) or None,
                f"team {m.session.get('team')}" if m.session.get("team") else None,
                f"{_clock(duration)} recorded" if duration else None,
                f"{len(s.laps)} laps ({clean} clean)",
            )
            if x
        )
        rows = [
            (
                d,
                f"{v['clean_laps']} / {v['laps']}",
                format_lap_time(v["best_lap"]),
                format_lap_time(v["mean_lap"]),
                _fmt(v["fuel_per_lap"], 3),
                f"{v['incidents']} ({v['incident_points']}x)"
                if v["incidents"]
                else ("0" if debrief["incidents_counted"] else "—"),
            )
            for d, v in debrief["drivers"].items()
        ]
        drivers = _table(
            [
                "driver",
                "clean / laps",
                "best lap",
                "mean clean lap",
                "fuel per clean lap (L)",
                "incidents",
            ],
            rows,
            numeric={1, 2, 3, 4, 5},
        )
        stops = self._stops()
        used, planned = debrief["fuel_per_lap"], debrief["fuel_plan_per_lap"]
        if used is None:
            fuel_kpi = ("Fuel per lap", "—", "no fuel use recorded")
        elif planned is None:
            fuel_kpi = ("Fuel per lap", f"{used:.3f} L", "no plan recorded")
        else:
            fuel_kpi = (
                "Fuel per lap vs plan",
                f"{used:.3f} / {planned:.3f} L",
                f"{used - planned:+.3f} L per lap ({(used / planned - 1):+.1%})",
            )
        kpis = [
            (
                "Stops",
                str(len(stops)),
                ("on lap " + ", ".join(map(str, stops))) if stops else "none made",
            ),
            fuel_kpi,
            (
                "Incidents",
                str(sum(v["incidents"] for v in debrief["drivers"].values()))
                if debrief["incidents_counted"]
                else "—",
                f"{debrief['incident_points']} point"
                + ("" if debrief["incident_points"] == 1 else "s")
                if debrief["incidents_counted"]
                else "no incident counter or events in this recording",
            ),
        ]
        kpi_html = (
            '<div class="kpis">'
            + "".join(
                f'<div class="kpi">{html.escape(a)}<b>{html.escape(b)}</b>'
                f'<span class="muted">{html.escape(c)}</span></div>'
                for a, b, c in kpis
            )
            + "</div>"
        )
        return (
            '<section class="summary">'
            f"<h1>Session report: {html.escape(s.track)}</h1>"
            f'<p class="facts">{facts}</p>'
            + kpi_html
            + drivers
            + self._losses_html(debrief["time_losses"])
            + "</section>"
        )

    def _losses_html(self, losses: list[dict[str, Any]]) -> str:
        by_corner = bool(self.session.corners)
        place = "corner" if by_corner else "segment"
        head = f"<p><b>Biggest time losses by {place}</b> (against the best lap"
        if not losses:
            return (
                head
                + "): not available — fewer than two clean laps with telemetry.</p>"
            )
        rows = [
            (
                x["segment"],
                f"{x['from_m']}–{x['to_m']} m"
                if x["from_m"] is not None
                else f"{x['from_pct']:.0%}–{x['to_pct']:.0%}",
                f"{x['total_loss_s']:+.3f}",
                f"{x['mean_loss_s']:+.3f}",
                x["most_lost_by"],
            )
            for x in losses
        ]
        basis = (
            "a corner's zone takes in the braking before it; corners as numbered on "
            "the pit wall's track map"
            if by_corner
            else "segments are equal shares of lap distance, the set carries no "
            "corner map"
        )
        return (
            head
            + f", lap {losses[0]['best_lap']}, over {losses[0]['laps']} other clean "
            + ("lap" if losses[0]["laps"] == 1 else "laps")
            + f"; {basis}):</p>"
            + _table(
                [
                    place,
                    "lap distance",
                    "lost in total (s)",
                    "mean per lap (s)",
                    "lost most",
                ],
                rows,
                numeric={2, 3},
            )
        )

    def _stints_table(self) -> str:
        rows = [
            (
                st["stint"],
                st["driver_name"],
                st["laps"],
                format_lap_time(st["best_lap_time"]),
                format_lap_time(st["avg_lap_time"]),
                _fmt(st["fuel_used"], 2),
            )
            for st in self.session.stints
        ]
        return _table(
            ["stint", "driver", "laps", "best", "mean", "fuel used (L)"],
            rows,
            numeric={2, 3, 4, 5},
        )

    def _consistency_table(self) -> str:
        rows = []
        for driver in self.session.drivers():
            clean = [
                lap.lap_time
                for lap in self.session.laps
                if lap.driver == driver and lap.clean and lap.lap_time
            ]
            if len(clean) < 2:
                rows.append((driver, len(clean), "—", "—"))
                continue
            rows.append(
                (
                    driver,
                    len(clean),
                    _fmt(statistics.stdev(clean)),
                    _fmt(
                        1.4826
                        * float(np.median(np.abs(np.subtract(clean, np.median(clean)))))
                    ),
                )
            )
        return _table(["driver", "clean laps", "std (s)", "robust spread (s)"], rows)

    def _fuel_text(self, plan: list[Any]) -> str:
        laps = [
            lap.fuel_used
            for lap in self.session.laps
            if lap.clean and lap.fuel_used is not None and lap.fuel_used > 0
        ]
        planned = [
            float(e.payload["fuel_per_lap"])
            for e in plan
            if isinstance(e.payload.get("fuel_per_lap"), (int, float))
        ]
        if not laps:
            return "<p>No fuel use recorded.</p>"
        text = f"Mean fuel per clean lap: <b>{statistics.fmean(laps):.3f} L</b>"
        if planned:
            text += (
                f"; the plan's last figure: <b>{planned[-1]:.3f} L</b> "
                f"({statistics.fmean(laps) - planned[-1]:+.3f} L per lap)"
            )
        else:
            text += "; no strategy plan was recorded"
        return f"<p>{text}.</p>"

    def _incidents_table(self, incidents: list[dict[str, Any]]) -> str:
        if not incidents:
            return "<p>None recorded.</p>"
        rows = [
            (_clock(i["session_time"]), i["lap"], _fmt(i["lap_dist_pct"], 3), i["what"])
            for i in incidents
        ]
        return _table(["time", "lap", "lap distance", "what"], rows)

    def _mistakes_table(self, mistakes: list[Any]) -> str:
        if not mistakes:
            return "<p>None recorded (no mistake events in this session).</p>"
        by: dict[tuple[str, str], list[float]] = {}
        for e in mistakes:
            corner, section = e.payload.get("corner"), e.payload.get("section")
            place = (
                f"T{corner}"
                if isinstance(corner, int)
                else f"S{section + 1}"
                if isinstance(section, int)
                else "?"
            )
            key = (place, str(e.payload.get("mistake", "?")))
            by.setdefault(key, []).append(float(e.payload.get("severity") or 0.0))
        rows = [
            (section, kind, len(sev), _fmt(statistics.fmean(sev), 2))
            for (section, kind), sev in sorted(by.items(), key=lambda kv: -len(kv[1]))
        ]
        return _table(["where", "mistake", "count", "mean severity"], rows)

    def _strategy_table(self, plan: list[Any]) -> str:
        stops = self._stops()
        if not plan:
            return f"<p>No strategy recommendations recorded; stops on laps {stops or 'none'}.</p>"
        rows, last = [], None
        for e in plan:
            p = e.payload
            key = (
                p.get("stops_needed"),
                p.get("pit_window_open_lap"),
                p.get("pit_window_close_lap"),
            )
            if key == last:
                continue
            last = key
            lap = plots.lap_at(self.session.laps, e.session_time)
            lo, hi = key[1], key[2]
            later = [x for x in stops if x >= lap]
            if key[0] == 0:
                verdict = "no stop advised; " + (
                    f"stopped on lap {later[0]}" if later else "none made"
                )
            elif lo is None or hi is None:
                verdict = f"stops advised: {key[0]}"
            elif later:
                inside = lo <= later[0] <= hi
                verdict = (
                    f'<span class="{"good" if inside else "bad"}">stopped on lap '
                    f"{later[0]} ({'inside' if inside else 'outside'} the window)</span>"
                )
            else:
                verdict = '<span class="bad">no stop made</span>'
            window = f"{lo}–{hi}" if lo is not None else "—"
            rows.append(
                (
                    _clock(e.session_time),
                    lap,
                    key[0],
                    window,
                    _fmt(p.get("fuel_to_add"), 2),
                    verdict,
                )
            )
        return (
            _table(
                [
                    "time",
                    "lap",
                    "stops needed",
                    "pit window",
                    "fuel to add",
                    "what happened",
                ],
                rows,
                raw_last=True,
            )
            + f"<p>Actual stops began on laps: {stops or 'none'}.</p>"
        )

    def _optimal_text(self, optimal: Any, figures: list[tuple[str, str]]) -> str:
        if optimal is None:
            return (
                "<p>Not available: no telemetry with lap distance for clean laps.</p>"
            )
        rows = [
            (name, kind, _fmt(best), by)
            for name, kind, best, by in zip(
                optimal.sections,
                optimal.kinds,
                optimal.best,
                optimal.best_by,
                strict=True,
            )
        ]
        return (
            "<p>Optimal lap (best of each section): "
            f"<b>{format_lap_time(optimal.optimal)}</b>; "
            f"best actual lap: <b>{format_lap_time(optimal.best_lap)}</b> "
            f"(gap {optimal.best_lap - optimal.optimal:.3f} s).</p>"
            + _figure(figures[-1][1])
            + _table(["section", "kind", "best (s)", "set by"], rows)
        )

    def _profiles_table(self, profiles: dict[str, Any]) -> str:
        rows = [
            (
                d,
                ", ".join(p.strengths) or "—",
                ", ".join(p.weaknesses) or "—",
                _fmt(p.skills.get("braking")),
                _fmt(p.skills.get("throttle")),
                _fmt(p.skills.get("consistency")),
                _fmt(p.skills.get("smoothness"), 2),
            )
            for d, p in profiles.items()
        ]
        return _table(
            [
                "driver",
                "strengths",
                "weaknesses",
                "braking loss (s/section)",
                "throttle loss (s/section)",
                "consistency (s)",
                "smoothness",
            ],
            rows,
        )

    def _setup_table(self, impacts: list[Any]) -> str:
        if not impacts:
            return (
                "<p>No setup change recorded against an earlier setup of this car.</p>"
            )
        rows = []
        for i in impacts:
            changes = "; ".join(
                f"{c['path']}: {c['before']} → {c['after']}" for c in i.changes[:8]
            )
            delta = (
                "too few laps"
                if i.lap_time_delta_s is None
                else f"{i.lap_time_delta_s:+.3f} s (95% CI {i.ci_low_s:+.3f} … {i.ci_high_s:+.3f})"
            )
            rows.append((i.driver, changes, i.laps_before, i.laps_after, delta))
        return _table(
            ["driver", "changes", "laps before", "laps after", "lap-time delta"], rows
        )

    def _progression(self, training: TrainingTracker) -> str:
        """Trends per driver and metric over the sessions given, and the next practice.

        SkillProgressionTracker and the appliance's plan, both from the compacted
        sets (docs/training.md).
        """
        s = self.session
        tracker = SkillProgressionTracker([*self.history, s])
        rows = []
        plans = []
        for driver in s.drivers():
            for t in tracker.trends(driver):
                if len(t.points) < 2:
                    continue
                trend = TREND_WORDS[t.improving]
                first, last = t.points[0][2], t.points[-1][2]
                rows.append(
                    (
                        driver,
                        t.metric,
                        len(t.points),
                        f"{first:.3f}",
                        f"{last:.3f}",
                        trend,
                    )
                )
            plan = training.plan(driver, upto=s.path) or {}
            for e in plan.get("exercises", []):
                corners = ", ".join(e.get("corners", []))
                plans.append(
                    (
                        driver,
                        corners,
                        e.get("metricType"),
                        e.get("laps"),
                        e.get("focus"),
                    )
                )
        out = (
            _table(["driver", "metric", "sessions", "first", "last", "trend"], rows)
            if rows
            else "<p>Trends need two sessions of a driver.</p>"
        )
        if plans:
            out += "<p>Next practice (planned on the appliance):</p>" + _table(
                ["driver", "corners", "metric", "laps", "focus"], plans
            )
        return out

    def _training(self, goals: list[Any], badges: list[Any]) -> str:
        goal_rows = [
            (g.driver, g.payload()["goal"], f"{g.progress:.0%}", f"{g.current:.3f}")
            for g in goals
        ]
        badge_rows = [
            (b.driver, b.payload()["badge"], b.payload()["reason"]) for b in badges
        ]
        return _table(["driver", "goal", "progress", "now"], goal_rows) + (
            "<p>New badges:</p>" + _table(["driver", "badge", "why"], badge_rows)
            if badge_rows
            else "<p>No new badges.</p>"
        )


def write_report(report: Report, out_dir: Path) -> Path:
    """Write ``report.html`` and ``report.json`` (summary and events) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.html"
    path.write_text(report.html, encoding="utf-8")
    (out_dir / "report.json").write_text(
        json.dumps(
            {
                "summary": report.summary,
                "events": [{"kind": k, **p} for k, p in report.events],
            },
            indent=1,
            sort_keys=True,
            default=str,
        )
        + "\n"
    )
    return path


# ---- html helpers ------------------------------------------------------------------
def _h2(text: str) -> str:
    return f"<h2>{html.escape(text)}</h2>"


def _figure(svg: str) -> str:
    return f'<div class="figure">{svg}</div>'


def _table(
    head: list[str],
    rows: list[tuple[Any, ...]],
    raw_last: bool = False,
    numeric: set[int] | None = None,
) -> str:
    if not rows:
        return "<p>None.</p>"
    out = ["<table><tr>", *(f"<th>{html.escape(h)}</th>" for h in head), "</tr>"]
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            text = "—" if value is None else str(value)
            text = text if raw_last and i == len(row) - 1 else html.escape(text)
            cls = ' class="n"' if numeric and i in numeric else ""
            cells.append(f"<td{cls}>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _clean_fuel(laps: list[Any]) -> list[float]:
    """Fuel used (L) of the clean laps that have a figure (refuelled laps have none)."""
    return [
        float(lap.fuel_used)
        for lap in laps
        if lap.clean and lap.fuel_used is not None and lap.fuel_used > 0
    ]


def _session_type(info: dict[str, Any]) -> str | None:
    """The last session's type (``Race``, ``Practice``…) from the session info."""
    sessions = (info.get("SessionInfo") or {}).get("Sessions") or []
    if sessions and isinstance(sessions[-1], dict) and sessions[-1].get("SessionType"):
        return str(sessions[-1]["SessionType"])
    event = (info.get("WeekendInfo") or {}).get("EventType")
    return str(event) if event else None


def _session_date(info: dict[str, Any]) -> str | None:
    date = ((info.get("WeekendInfo") or {}).get("WeekendOptions") or {}).get("Date")
    return str(date) if date else None


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    return f"{float(value):.{digits}f}"


def _clock(seconds: float) -> str:
    return str(dt.timedelta(seconds=round(float(seconds))))


def _span(edges: list[float], labels: list[str], name: str) -> tuple[float, float]:
    """Where a place starts and ends along the lap (a zone across the line: end < start)."""
    pieces = [i for i, label in enumerate(labels) if label == name]
    if len(pieces) > 1 and pieces[0] == 0 and pieces[-1] == len(labels) - 1:
        return edges[pieces[-1]], edges[1]  # across the line: starts in the last piece
    return edges[pieces[0]], edges[pieces[-1] + 1]
