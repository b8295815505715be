"""StatboardBuilder: per driver and per car pace, consistency, clean-lap share, stints and best laps; one page per team."""

from __future__ import annotations

import html
import statistics
from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cloud_sync.analytics.sections import robust_spread
from cloud_sync.analytics.training import SkillProgressionTracker
from cloud_sync.branding import Branding, brand_css, brand_header
from cloud_sync.compacted import CompactedSession
from cloud_sync.report.plots import COLORS, svg_text

STYLE = """
body{font-family:DejaVu Sans,Arial,sans-serif;margin:24px;color:#222;max-width:1000px}
h1{font-size:22px}h2{font-size:17px;border-bottom:1px solid #ccc;margin-top:26px}
table{border-collapse:collapse;font-size:12px;margin:6px 0}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}th{background:#f3f3f3}
.muted{color:#777}svg{max-width:100%;height:auto}
"""


@dataclass
class Stats:
    """Figures of one driver or one car over the sessions it appears in."""

    name: str
    sessions: set[str] = field(default_factory=set)
    laps: int = 0
    clean: list[float] = field(default_factory=list)
    stints: int = 0
    stint_laps: list[int] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=dict)  # track -> best lap
    mean: dict[str, list[float]] = field(default_factory=dict)  # track -> clean laps

    @property
    def clean_share(self) -> float | None:
        return len(self.clean) / self.laps if self.laps else None

    def row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sessions": len(self.sessions),
            "laps": self.laps,
            "clean_laps": len(self.clean),
            "clean_share": self.clean_share,
            "consistency_s": robust_spread(self.clean),
            "stints": self.stints,
            "mean_stint_laps": statistics.fmean(self.stint_laps)
            if self.stint_laps
            else None,
            "best": dict(sorted(self.best.items())),
            "pace": {t: statistics.fmean(v) for t, v in sorted(self.mean.items()) if v},
        }


class StatboardBuilder:
    """The statboard of one team from its compacted sessions (oldest first)."""

    def __init__(
        self,
        team: str,
        sessions: list[CompactedSession],
        brand: Branding | None = None,
        sections: list[str] | None = None,
    ) -> None:
        self.team = team
        self.sessions = sessions
        # White-label (when the team's plan includes it) and extra sections (HTML),
        # e.g. the sponsor exposure of cloud_sync.sponsor.
        self.brand = brand or Branding()
        self.sections = sections or []

    def stats(self) -> tuple[dict[str, Stats], dict[str, Stats]]:
        drivers: dict[str, Stats] = {}
        cars: dict[str, Stats] = {}
        for s in self.sessions:
            for lap in s.laps:
                for table, name in ((drivers, lap.driver), (cars, s.car)):
                    st = table.setdefault(name, Stats(name))
                    st.sessions.add(s.path)
                    st.laps += 1
                    if lap.clean and lap.lap_time is not None:
                        st.clean.append(lap.lap_time)
                        st.mean.setdefault(s.track, []).append(lap.lap_time)
                        st.best[s.track] = min(st.best.get(s.track, 1e9), lap.lap_time)
            for stint in s.stints:
                for table, name in (
                    (drivers, stint["driver_name"] or "unknown driver"),
                    (cars, s.car),
                ):
                    st = table.setdefault(name, Stats(name))
                    st.stints += 1
                    st.stint_laps.append(int(stint["laps"] or 0))
        return drivers, cars

    def data(self) -> dict[str, Any]:
        drivers, cars = self.stats()
        return {
            "team": self.team,
            "sessions": [s.path for s in self.sessions],
            "drivers": [d.row() for d in drivers.values()],
            "cars": [c.row() for c in cars.values()],
            "progression": self.progression(),
        }

    def progression(self) -> dict[str, list[dict[str, Any]]]:
        """Per driver, each metric's trend over the sessions (SkillProgressionTracker)."""
        tracker = SkillProgressionTracker(self.sessions)
        return {
            driver: [
                {
                    "metric": t.metric,
                    "sessions": len(t.points),
                    "first": t.points[0][2],
                    "last": t.points[-1][2],
                    "improving": t.improving,
                    "seasons": {str(k): v for k, v in t.seasons.items()},
                }
                for t in tracker.trends(driver)
            ]
            for driver in tracker.drivers()
        }

    def html(self, reports: dict[str, str] | None = None) -> str:
        """The board as one self-contained page (so a single presigned link opens all of it)."""
        data = self.data()
        parts = [
            f"<h1>Team statboard: {html.escape(self._title())}</h1>",
            f'<p class="muted">{len(self.sessions)} sessions. Pace: mean clean lap; '
            "consistency: robust spread (1.4826 × MAD) of clean laps; clean lap: timed, "
            "not a pit lap.</p>",
            "<h2>Drivers</h2>",
            _table(data["drivers"], "driver"),
            self._trend_svg(),
            "<h2>Skill progression</h2>",
            _progression_table(data["progression"]),
            "<h2>Cars</h2>",
            _table(data["cars"], "car"),
            "<h2>Sessions</h2>",
            self._sessions(reports or {}),
            *self.sections,
        ]
        return (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.brand.team_name)} statboard: "
            f"{html.escape(self._title())}</title>"
            f"<style>{STYLE}{brand_css(self.brand)}</style></head><body>"
            f"{brand_header(self.brand)}{''.join(parts)}</body></html>\n"
        )

    def _title(self) -> str:
        return self.brand.team_name if self.brand.white_label else self.team

    def _trend_svg(self) -> str:
        fig = Figure(figsize=(7.5, 3.0))
        ax = fig.subplots()
        names = sorted({lap.driver for s in self.sessions for lap in s.laps})
        for i, name in enumerate(names):
            xs, ys = [], []
            for n, s in enumerate(self.sessions):
                clean = [
                    lap.lap_time
                    for lap in s.laps
                    if lap.driver == name and lap.clean and lap.lap_time
                ]
                if clean:
                    xs.append(n + 1)
                    ys.append(min(clean))
            ax.plot(xs, ys, "o-", color=COLORS[i % len(COLORS)], label=name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("session (oldest first)")
        ax.set_ylabel("best lap (s)")
        ax.set_title("Best lap per session and driver")
        if names:
            ax.legend(fontsize=8)
        return f"<div>{svg_text(fig)}</div>"

    def _sessions(self, reports: dict[str, str]) -> str:
        rows = []
        for s in reversed(self.sessions):
            clean = [lap.lap_time for lap in s.laps if lap.clean and lap.lap_time]
            link = reports.get(s.path)
            cell = f'<a href="{html.escape(link)}">report</a>' if link else "—"
            rows.append(
                "<tr>"
                + "".join(
                    f"<td>{html.escape(str(v))}</td>"
                    for v in (
                        s.track,
                        s.car,
                        s.session_key,
                        ", ".join(s.drivers()),
                        len(s.laps),
                        f"{min(clean):.3f}" if clean else "—",
                    )
                )
                + f"<td>{cell}</td></tr>"
            )
        head = "".join(
            f"<th>{h}</th>"
            for h in ("track", "car", "session", "drivers", "laps", "best", "")
        )
        return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _table(rows: list[dict[str, Any]], what: str) -> str:
    head = (
        what,
        "sessions",
        "laps",
        "clean share",
        "consistency (s)",
        "stints",
        "mean stint (laps)",
        "best lap by track",
        "pace by track",
    )
    out = ["<table><tr>", *(f"<th>{h}</th>" for h in head), "</tr>"]
    for r in rows:
        cells = (
            r["name"],
            r["sessions"],
            r["laps"],
            f"{r['clean_share']:.0%}" if r["clean_share"] is not None else "—",
            f"{r['consistency_s']:.3f}" if r["consistency_s"] is not None else "—",
            r["stints"],
            f"{r['mean_stint_laps']:.1f}" if r["mean_stint_laps"] is not None else "—",
            "; ".join(f"{t}: {v:.3f}" for t, v in r["best"].items()) or "—",
            "; ".join(f"{t}: {v:.3f}" for t, v in r["pace"].items()) or "—",
        )
        out.append(
            "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"
        )
    out.append("</table>")
    return "".join(out)


def _progression_table(progression: dict[str, list[dict[str, Any]]]) -> str:
    """Each driver's metrics measured in two sessions or more: first, last, trend."""
    words = {None: "same", True: "better", False: "worse"}
    rows = [
        (
            driver,
            t["metric"],
            t["sessions"],
            f"{t['first']:.3f}",
            f"{t['last']:.3f}",
            words[t["improving"]],
            "; ".join(f"{k}: {v:.3f}" for k, v in t["seasons"].items()),
        )
        for driver, trends in progression.items()
        for t in trends
        if t["sessions"] >= 2
    ]
    if not rows:
        return '<p class="muted">Trends need two sessions of a driver.</p>'
    head = ("driver", "metric", "sessions", "first", "last", "trend", "by season")
    out = ["<table><tr>", *(f"<th>{h}</th>" for h in head), "</tr>"]
    for row in rows:
        out.append(
            "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
        )
    out.append("</table>")
    return "".join(out)
