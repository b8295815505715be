"""preferredSetups (seed §3.2): per track, the setup a driver drove their fastest clean lap on, learned from stored ``car_setup`` events."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from driver_pc.protocol.events import StoredKind
from pitbox_appliance.storage.reader import SessionReader


def setup_id(setup: dict[str, Any]) -> str:
    """A stable id of a setup's content (the same setup in two sessions: one id)."""
    text = json.dumps(setup, sort_keys=True, separators=(",", ":"), default=str)
    return "setup-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def learn_preferred_setups(reader: SessionReader, driver: str) -> dict[str, str]:
    """Track id → the id of the setup of ``driver``'s fastest clean lap there."""
    best: dict[str, tuple[float, str]] = {}
    for session in reader.sessions():
        changes = sorted(
            (
                (e.session_time, e.payload.get("setup"))
                for e in reader.events(session.id, StoredKind.CAR_SETUP.value)
                if isinstance(e.payload.get("setup"), dict)
            ),
            key=lambda c: c[0],
        )
        if not changes:
            continue
        track = re.sub(r"[^a-z0-9]+", "-", session.track.lower()).strip("-")
        for lap in reader.laps(session.id, pit=False):
            if lap.driver_name != driver or lap.lap_time is None or lap.invalid:
                continue
            active = [s for t, s in changes if t <= lap.end_time] or [changes[0][1]]
            setup = active[-1]
            assert isinstance(setup, dict)
            if track not in best or lap.lap_time < best[track][0]:
                best[track] = (lap.lap_time, setup_id(setup))
    return {track: sid for track, (_t, sid) in sorted(best.items())}
