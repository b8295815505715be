"""White-label on the cloud's pages: a team's Branding as a CSS block and a header for reports, boards and the sponsor report."""

from __future__ import annotations

import html
import logging

from driver_pc.protocol.team_config import Branding, ConfigFileError

logger = logging.getLogger(__name__)

__all__ = ["Branding", "brand_css", "brand_header"]


def brand_css(brand: Branding) -> str:
    """CSS giving headings the team colour and the header bar its background."""
    return (
        f".brand{{display:flex;align-items:center;gap:12px;background:{brand.header_color};"
        "color:#fff;padding:8px 14px;margin:-24px -24px 16px;"
        "-webkit-print-color-adjust:exact;print-color-adjust:exact}"
        ".brand img{max-height:40px;max-width:160px}"
        f".brand .team{{font-weight:bold;font-size:16px;border-left:4px solid "
        f"{brand.accent_color};padding-left:8px}}"
        f"h1,h2{{color:{brand.accent_color}}}"
    )


def brand_header(brand: Branding) -> str:
    """The header bar: logo (inline, so HTML and PDF stay self-contained) and team name."""
    logo = ""
    try:
        uri = brand.logo_data_uri()
    except ConfigFileError as exc:  # the file went away since the config was read
        logger.warning("%s; the page shows no logo", exc)
        uri = None
    if uri:
        logo = (
            f'<img class="logo" alt="{html.escape(brand.team_name)} logo" src="{uri}">'
        )
    return (
        f'<header class="brand" data-white-label="{str(brand.white_label).lower()}">'
        f'{logo}<span class="team">{html.escape(brand.team_name)}</span></header>'
    )
