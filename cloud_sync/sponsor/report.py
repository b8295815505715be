"""The per-race sponsor report (HTML + PDF through chromium), its publishing next to the session, and the statboard section."""

from __future__ import annotations

import hashlib
import html
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from cloud_sync.branding import Branding, brand_css, brand_header
from cloud_sync.report.pdf import PdfError, html_to_pdf
from cloud_sync.report.plots import svg_text
from cloud_sync.sponsor.exposure import ExposureReport
from cloud_sync.targets import ConflictError, Target

logger = logging.getLogger(__name__)
SPONSOR_DIR = "sponsor"
STYLE = """
body{font-family:DejaVu Sans,Arial,sans-serif;margin:24px;color:#222;max-width:980px}
h1{font-size:22px}h2{font-size:17px;border-bottom:1px solid #ccc;margin-top:24px}
table{border-collapse:collapse;font-size:12px;margin:6px 0}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}th{background:#f3f3f3}
td.n{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#777}
.kpis{display:flex;flex-wrap:wrap;gap:6px 10px;margin:8px 0}
.kpi{border:1px solid #ccc;border-radius:4px;padding:5px 10px;font-size:12px;
min-width:150px}.kpi b{display:block;font-size:17px;font-variant-numeric:tabular-nums}
svg{max-width:100%;height:auto}
"""


def _s(value: float | None) -> str:
    if value is None:
        return "—"
    minutes, seconds = divmod(value, 60.0)
    return f"{int(minutes)}:{seconds:04.1f}" if minutes else f"{seconds:.1f} s"


def _n(value: int | None) -> str:
    return "—" if value is None else str(value)


def sponsor_html(report: ExposureReport, brand: Branding | None = None) -> str:
    """The sponsor report of one race as one self-contained page."""
    brand = brand or Branding()
    share = report.on_camera_share
    kpis = [
        (
            "On the broadcast camera",
            _s(report.on_camera_s),
            f"{share:.1%} of {_s(report.broadcast_s)} broadcast"
            if share is not None
            else "no camera data",
        ),
        ("Cuts to our car", str(report.shots), ""),
        ("Laps led (overall)", _n(report.laps_led), f"of {report.laps} laps"),
        ("Laps led (class)", _n(report.class_laps_led), ""),
        ("Top 3 of class", _s(report.class_top3_s), f"of {_s(report.race_s)}"),
        ("Top 10 of class", _s(report.class_top10_s), ""),
    ]
    parts = [
        f"<h1>Sponsor report: {html.escape(report.track)}</h1>",
        f'<p class="muted">{html.escape(brand.team_name)} · session '
        f"{html.escape(report.session_key)}"
        + (
            f" · camera from {html.escape(report.camera_source)}"
            if report.camera_source
            else ""
        )
        + "</p>",
        '<div class="kpis">'
        + "".join(
            f'<div class="kpi">{html.escape(a)}<b>{html.escape(b)}</b>'
            f'<span class="muted">{html.escape(c)}</span></div>'
            for a, b, c in kpis
        )
        + "</div>",
        "<h2>Sponsors</h2>",
        _sponsor_table(report),
        "<h2>Camera groups showing our car</h2>",
        _table(
            ("camera group", "seconds"),
            [(g, f"{v:.1f}") for g, v in report.by_group.items()],
        ),
        "<h2>On camera over the race</h2>",
        _timeline(report),
        *(f'<p class="muted">{html.escape(n)}</p>' for n in report.notes),
        '<p class="muted">Weighted exposure = seconds our car was on the broadcast camera × '
        "the visibility (0–1) of each sponsor's part of the car in that camera group "
        "(livery config); methods: docs/business.md.</p>",
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(brand.team_name)} sponsor report: "
        f"{html.escape(report.track)}</title>"
        f"<style>{STYLE}{brand_css(brand)}</style></head><body>"
        f"{brand_header(brand)}{''.join(parts)}</body></html>\n"
    )


def _sponsor_table(report: ExposureReport) -> str:
    if not report.sponsors:
        return '<p class="muted">No livery config: no per-sponsor figures.</p>'
    rows = [
        (
            r.sponsor,
            ", ".join(r.placements),
            f"{r.weighted_s:.1f}",
            "; ".join(f"{p}: {v:.1f}" for p, v in r.by_placement.items()),
        )
        for r in report.sponsors
    ]
    return _table(
        ("sponsor", "placements", "weighted exposure (s)", "by placement (s)"), rows
    )


def _table(head: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    if not rows:
        return '<p class="muted">None recorded.</p>'
    out = ["<table><tr>", *(f"<th>{html.escape(h)}</th>" for h in head), "</tr>"]
    for row in rows:
        out.append(
            "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
        )
    out.append("</table>")
    return "".join(out)


def _timeline(report: ExposureReport) -> str:
    times = report.timeline.get("t") or []
    if not times:
        return '<p class="muted">Our car was not on camera.</p>'
    fig = Figure(figsize=(7.5, 1.6))
    ax = fig.subplots()
    ax.eventplot([times], lineoffsets=0.5, linelengths=0.8, linewidths=0.3)
    ax.set_yticks([])
    span = report.timeline.get("span") or []
    if len(span) == 2 and span[1] > span[0]:
        ax.set_xlim(span[0], span[1])  # the whole broadcast, not just our shots
    ax.set_xlabel("session time (s)")
    ax.set_title("Our car on the broadcast camera")
    return f'<div class="figure">{svg_text(fig)}</div>'


def board_section(reports: list[ExposureReport]) -> str:
    """The statboard's sponsor-exposure section: one row per race, newest first."""
    rows = [
        (
            r.track,
            r.session_key,
            _s(r.on_camera_s),
            f"{r.on_camera_share:.1%}" if r.on_camera_share is not None else "—",
            _n(r.laps_led),
            _n(r.class_laps_led),
            _s(r.class_top3_s),
            _s(r.class_top10_s),
            "; ".join(f"{x.sponsor}: {x.weighted_s:.0f} s" for x in r.sponsors) or "—",
        )
        for r in reversed(reports)
    ]
    head = (
        "track",
        "session",
        "on camera",
        "share",
        "laps led",
        "class laps led",
        "class top 3",
        "class top 10",
        "weighted sponsor exposure",
    )
    return '<h2 id="sponsor-exposure">Sponsor exposure</h2>' + _table(head, rows)


@dataclass
class SponsorReportFiles:
    """A built sponsor report: local files and, once published, its keys."""

    report: ExposureReport
    html_path: Path
    pdf_path: Path | None
    pdf_error: str | None = None
    key: str | None = None
    pdf_key: str | None = None


def build_sponsor_report(
    report: ExposureReport,
    out_dir: Path,
    brand: Branding | None = None,
    *,
    pdf: bool = True,
) -> SponsorReportFiles:
    """Write ``sponsor.html``, ``sponsor.json`` and (unless ``pdf`` is False) ``sponsor.pdf``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path = out_dir / "sponsor.html"
    html_path.write_text(sponsor_html(report, brand), encoding="utf-8")
    (out_dir / "sponsor.json").write_text(
        json.dumps(report.as_dict(), indent=1, sort_keys=True) + "\n"
    )
    files = SponsorReportFiles(report, html_path, None)
    if pdf:
        try:
            files.pdf_path = html_to_pdf(html_path, out_dir / "sponsor.pdf")
        except PdfError as exc:
            files.pdf_error = str(exc)
            logger.warning("%s", exc)
    return files


def publish_sponsor_report(
    files: SponsorReportFiles, target: Target
) -> SponsorReportFiles:
    """Put it next to the session (``<session>/sponsor/<build>/``), create-only like reports."""
    page = files.html_path.read_bytes()
    base = (
        f"{files.report.session}/{SPONSOR_DIR}/{hashlib.sha256(page).hexdigest()[:12]}"
    )
    files.key = target.key(f"{base}/sponsor.html")
    target.put_bytes(files.key, page, "text/html; charset=utf-8")
    target.put_bytes(
        target.key(f"{base}/sponsor.json"),
        files.html_path.with_name("sponsor.json").read_bytes(),
        "application/json",
    )
    if files.pdf_path is not None:
        files.pdf_key = target.key(f"{base}/sponsor.pdf")
        try:
            target.put_bytes(
                files.pdf_key, files.pdf_path.read_bytes(), "application/pdf"
            )
        except ConflictError:
            logger.info("%s already has a PDF of this sponsor report; kept", base)
    return files


def summary(reports: list[ExposureReport]) -> list[dict[str, Any]]:
    """The board's JSON for the section."""
    return [r.as_dict() for r in reports]
