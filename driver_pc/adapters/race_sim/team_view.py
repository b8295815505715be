"""What each teammate's PC sees of the team car: the driving PC the car, the others a spectator's view.

In an iRacing team race every connected team member runs the sim for the same car, and
may run a shim. Only the one in the car sees its player channels (speed, pedals, fuel,
lap); the others are spectating: their player channels do not describe the team car
(anti-cheat hides fuel and inputs), ``IsOnTrack``/``IsOnTrackCar`` are 0, while the
session channels and every ``CarIdx*`` array stay valid. Driver ``i`` of the team sits
at PC ``i % pcs`` (0-based), so a driver change hands the car to the next PC.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from driver_pc.protocol.channels import ChannelKind, ChannelSpec

TEAM_CHANNELS: tuple[ChannelSpec, ...] = (
    ChannelSpec(
        "IsOnTrack",
        ChannelKind.BOOL,
        1,
        "",
        "1=Car on track physics running with player in car",
    ),
    ChannelSpec(
        "IsOnTrackCar", ChannelKind.BOOL, 1, "", "1=Car on track physics running"
    ),
)

# Valid on every PC of the team: the session, the team car's index and standing.
SHARED_CHANNELS = frozenset(
    {
        "SessionTime",
        "SessionTick",
        "SessionNum",
        "SessionState",
        "SessionFlags",
        "SessionLapsRemainEx",
        "PlayerCarIdx",
        "PlayerCarPosition",
        "PlayerCarClassPosition",
        "PlayerCarTeamIncidentCount",
    }
)
# What iRacing shows for a car the viewer is not in (anything else reads 0).
SPECTATOR_VALUES: dict[str, float] = {"LapDistPct": -1.0, "LapDist": -1.0}


def pc_of_driver(driver_idx: int, pcs: int) -> int:
    """The 0-based PC at which the team's driver ``driver_idx`` sits."""
    return driver_idx % pcs


def spectate(
    rows: np.ndarray[Any, np.dtype[np.void]], driving: np.ndarray[Any, Any]
) -> None:
    """Turn the rows where ``driving`` is False into a spectating PC's view, in place."""
    names = rows.dtype.names or ()
    if "IsOnTrack" in names:
        rows["IsOnTrack"] = driving
        rows["IsOnTrackCar"] = driving
    away = ~driving
    if not away.any():
        return
    for name in names:
        if (
            name in SHARED_CHANNELS
            or name.startswith("CarIdx")
            or name.startswith("IsOnTrack")
            or name.startswith("Cam")  # a spectator's camera: the broadcast's
        ):
            continue
        rows[name][away] = SPECTATOR_VALUES.get(name, 0)
