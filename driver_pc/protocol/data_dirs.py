"""Where PitBox keeps its files: every path under the user's data and config directories.

The appliance (``pitbox``: database, outbox, reports, video, PKI and device registry,
broker run files) and the shim (``pitbox-shim``: credentials, spool) each have one
platformdirs root. Every function asks platformdirs when called, so ``XDG_DATA_HOME``,
``XDG_CONFIG_HOME`` and ``HOME`` set after import still count. Nothing here creates a
directory; callers that write do that. A path a config file or option sets wins over
these defaults; that choice stays with the caller.
"""

from __future__ import annotations

from pathlib import Path

import platformdirs

#: platformdirs application name of the appliance (and its commands).
APPLIANCE_APP = "pitbox"
#: platformdirs application name of the driver-PC shim.
SHIM_APP = "pitbox-shim"


# ---- the appliance ------------------------------------------------------------------
def appliance_data_dir() -> Path:
    """The appliance's data directory (``~/.local/share/pitbox`` on Linux)."""
    return Path(platformdirs.user_data_dir(APPLIANCE_APP, appauthor=False))


def database_file() -> Path:
    """The appliance's SQLite database."""
    return appliance_data_dir() / "pitbox.sqlite3"


def track_outlines_dir(database: Path) -> Path:
    """The per-track outline cache, beside the database it was built from."""
    return database.parent / "track_outlines"


def outbox_dir() -> Path:
    """Compacted sessions waiting for upload (``pitbox compact`` writes, ``sync`` reads)."""
    return appliance_data_dir() / "outbox"


def reports_dir() -> Path:
    """Post-session reports built by ``pitbox report``."""
    return appliance_data_dir() / "reports"


def video_dir() -> Path:
    """Driver POV video segments uploaded to the API."""
    return appliance_data_dir() / "video"


def security_dir() -> Path:
    """The appliance CA, broker certificate and device registry."""
    return appliance_data_dir() / "security"


def broker_run_dir() -> Path:
    """The broker's password file and pid file."""
    return appliance_data_dir() / "broker"


# ---- the shim -------------------------------------------------------------------------
def shim_data_dir() -> Path:
    """The shim's data directory (``~/.local/share/pitbox-shim`` on Linux)."""
    return Path(platformdirs.user_data_dir(SHIM_APP, appauthor=False))


def shim_spool_file(source: str) -> Path:
    """The disk spool of one shim source (e.g. ``car42-pc1``)."""
    return shim_data_dir() / f"{source}.spool"


def shim_config_dir() -> Path:
    """The shim's config directory (``~/.config/pitbox-shim`` on Linux)."""
    return Path(platformdirs.user_config_dir(SHIM_APP, appauthor=False))


def shim_credentials_file() -> Path:
    """The shim's pairing credentials (the CA certificate goes beside them)."""
    return shim_config_dir() / "credentials.json"
