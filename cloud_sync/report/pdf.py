"""The report as PDF: Debian chromium prints the HTML headless (the same engine the team views it with)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


class PdfError(RuntimeError):
    """The PDF could not be printed; the message says why."""


def find_chromium() -> str:
    """The browser to print with: ``$PITBOX_CHROMIUM`` or the first one on PATH."""
    configured = os.environ.get("PITBOX_CHROMIUM")
    if configured:
        return configured
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise PdfError(
        "no chromium found for the PDF (apt-get install chromium, or set $PITBOX_CHROMIUM)"
    )


def html_to_pdf(html_path: Path, pdf_path: Path, *, timeout: float = 90.0) -> Path:
    """Print ``html_path`` to ``pdf_path`` with headless chromium; PdfError on failure."""
    browser = find_chromium()
    with tempfile.TemporaryDirectory(prefix="pitbox-pdf-") as profile:
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-pdf-header-footer",
            f"--user-data-dir={profile}",
            f"--print-to-pdf={pdf_path}",
            html_path.resolve().as_uri(),
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise PdfError(
                f"chromium did not print {html_path} within {timeout:.0f} s"
            ) from None
        except OSError as exc:
            raise PdfError(f"cannot run {browser}: {exc}") from None
    if done.returncode != 0 or not pdf_path.is_file() or pdf_path.stat().st_size == 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise PdfError(f"chromium failed to print {html_path}: {' | '.join(tail)}")
    return pdf_path
