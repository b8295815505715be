"""White-label theme: the team's name, colours and logo from the appliance config."""

from __future__ import annotations

import logging
from pathlib import Path

from driver_pc.protocol.team_config import ConfigFileError, load_team_config
from driver_pc.protocol.team_config import check_logo as team_check_logo
from pitbox_appliance.config import DashboardConfig, ThemeConfig
from pitbox_appliance.dashboard.layout import Branding

logger = logging.getLogger(__name__)

LOGO_URL = "/theme/logo"


class ThemeError(ValueError):
    """The configured logo cannot be served; the message names the file and why."""


def check_logo(path: Path) -> Path:
    """The logo file if it can be served, else ThemeError saying what is wrong.

    The same rules as the team config's logo (types, size), under the key ``theme.logo``.
    """
    try:
        return team_check_logo(path, key="theme.logo")
    except ConfigFileError as exc:
        raise ThemeError(str(exc)) from None


def branding(
    dashboard: DashboardConfig, theme: ThemeConfig
) -> tuple[Branding, Path | None]:
    """The branding every page shows, and the logo file to serve (None: no logo).

    ``theme`` wins over the older ``dashboard.team_name``/``accent_color``; a
    ``theme.team_config`` (the one file the reports and boards use) wins over both,
    shown only when the team's plan includes white-label (else PitBox's look). A logo
    that cannot be served is logged and left out: the pit wall runs without it. A
    malformed team config is a ThemeError naming its key and line.
    """
    if theme.team_config is not None:
        return _from_team_config(theme.team_config)
    logo: Path | None = None
    if theme.logo is not None:
        try:
            logo = check_logo(theme.logo)
        except ThemeError as exc:
            logger.warning("%s; the header shows no logo", exc)
    result = Branding(
        team_name=theme.team_name or dashboard.team_name,
        accent_color=theme.accent_color or dashboard.accent_color,
        header_color=theme.header_color or "#06080a",
        logo_url=f"{LOGO_URL}{logo.suffix.lower()}" if logo is not None else None,
    )
    return result, logo


def _from_team_config(path: Path) -> tuple[Branding, Path | None]:
    try:
        config = load_team_config(path)
    except ConfigFileError as exc:
        raise ThemeError(f"theme.team_config: {exc}") from None
    brand = config.branding()
    if not brand.white_label:
        logger.warning(
            "theme.team_config %s: team %r is on the %s plan, which does not include "
            "white-label; the pit wall shows PitBox's look",
            path,
            config.team,
            config.plan.value,
        )
    logo = brand.logo
    return (
        Branding(
            team_name=brand.team_name,
            accent_color=brand.accent_color,
            header_color=brand.header_color,
            logo_url=f"{LOGO_URL}{logo.suffix.lower()}" if logo is not None else None,
        ),
        logo,
    )
