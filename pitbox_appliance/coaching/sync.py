"""The driver profiles that travel with a compacted session (``driver_profiles.json``), for the cloud side."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from pitbox_appliance.coaching.store import ProfileStore

logger = logging.getLogger(__name__)

#: The file in the compacted set, and its version.
PROFILES_FILE = "driver_profiles.json"
PROFILES_TABLE = "driver_profiles"
PROFILES_VERSION = 1


def session_profiles(engine: Engine, session_id: int) -> dict[str, Any] | None:
    """Profiles of every driver with a lap in the session, and its training mark.

    None when nobody drove or the database predates the coaching tables (0007).
    """
    store = ProfileStore(engine)
    try:
        drivers = store.drivers_in_session(session_id)
        if not drivers:
            return None
        marked = store.training_session(session_id)
        return {
            "version": PROFILES_VERSION,
            "profiles": [store.profile(d).as_json() for d in drivers],
            "training": marked,
        }
    except OperationalError as exc:
        logger.warning("no driver profiles in the compacted set: %s", exc)
        return None
