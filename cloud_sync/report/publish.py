"""Build, print and publish a session's report next to the session on the target; the events it announces."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud_sync.branding import Branding
from cloud_sync.compacted import CompactedSession
from cloud_sync.report.generator import Report, SessionReportGenerator, write_report
from cloud_sync.report.pdf import PdfError, html_to_pdf
from cloud_sync.targets import ConflictError, Target

logger = logging.getLogger(__name__)
REPORT_DIR = "report"


@dataclass
class PublishedReport:
    """A report built for a session, where it was written and published, and its events."""

    report: Report
    local_html: Path
    local_pdf: Path | None
    url: str | None = None
    key: str | None = None  # the HTML's key on the target
    pdf_url: str | None = None
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    pdf_error: str | None = None


def build_report(
    session: CompactedSession,
    out_dir: Path,
    *,
    history: list[CompactedSession] | None = None,
    pdf: bool = True,
    brand: Branding | None = None,
) -> PublishedReport:
    """Write ``report.html`` (+ ``report.pdf`` unless ``pdf`` is False) into ``out_dir``."""
    started = time.monotonic()
    report = SessionReportGenerator(session, history, brand).build()
    html_path = write_report(report, out_dir)
    pdf_path: Path | None = None
    error = None
    if pdf:
        try:
            pdf_path = html_to_pdf(html_path, out_dir / "report.pdf")
        except PdfError as exc:
            error = str(exc)
            logger.warning("%s", exc)
    logger.info(
        "report of %s built in %.1f s", session.path, time.monotonic() - started
    )
    return PublishedReport(
        report, html_path, pdf_path, events=list(report.events), pdf_error=error
    )


def publish_report(built: PublishedReport, target: Target) -> PublishedReport:
    """Put the report next to its session (``<session>/report/<build>/``); never overwrites.

    ``<build>`` is the first 12 hex digits of the HTML's SHA-256 (the HTML is
    deterministic for the same data), so publishing the same report again finds it
    there, and a report built from other data gets its own folder. Adds the
    ``session_report_ready`` event.
    """
    session = built.report.session
    html = built.local_html.read_bytes()
    build = hashlib.sha256(html).hexdigest()[:12]
    base = f"{session.path}/{REPORT_DIR}/{build}"
    key = target.key(f"{base}/report.html")
    target.put_bytes(key, html, "text/html; charset=utf-8")
    json_path = built.local_html.with_name("report.json")
    target.put_bytes(
        target.key(f"{base}/report.json"), json_path.read_bytes(), "application/json"
    )
    built.url = _address(target, key)
    built.key = key
    if built.local_pdf is not None:
        pdf_key = target.key(f"{base}/report.pdf")
        try:
            target.put_bytes(pdf_key, built.local_pdf.read_bytes(), "application/pdf")
        except ConflictError:
            # PDFs carry their print time: the one from the first print of this HTML stays.
            logger.info("%s already has a PDF of this report; kept", base)
        built.pdf_url = _address(target, pdf_key)
    payload = {
        "session_key": session.session_key,
        "url": built.url,
        "pdf_url": built.pdf_url,
    }
    built.events = [("session_report_ready", payload), *built.report.events]
    return built


def local_ready(built: PublishedReport) -> PublishedReport:
    """No target: ``session_report_ready`` names the local report (``file://``)."""
    session = built.report.session
    payload = {
        "session_key": session.session_key,
        "url": built.local_html.resolve().as_uri(),
        "pdf_url": built.local_pdf.resolve().as_uri() if built.local_pdf else None,
    }
    built.events = [("session_report_ready", payload), *built.report.events]
    return built


def _address(target: Target, key: str) -> str:
    bucket = getattr(target, "bucket", None)
    return f"s3://{bucket}/{key}" if bucket else target.object_url(key)
