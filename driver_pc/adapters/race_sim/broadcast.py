"""A simulated broadcast director: the camera a spectating/broadcast PC shows, cutting between cars (CamCarIdx, CamGroupNumber)."""

from __future__ import annotations

from typing import Any

import numpy as np

from driver_pc.protocol.channels import ChannelKind, ChannelSpec

# iRacing's camera channels, as pyirsdk names and types them.
BROADCAST_CHANNELS: tuple[ChannelSpec, ...] = (
    ChannelSpec("CamCarIdx", ChannelKind.INT, 1, "", "Active camera's focus car index"),
    ChannelSpec("CamCameraNumber", ChannelKind.INT, 1, "", "Active camera number"),
    ChannelSpec("CamGroupNumber", ChannelKind.INT, 1, "", "Active camera group number"),
)
# iRacing's usual camera groups (CameraInfo.Groups in the session info).
CAMERA_GROUPS: tuple[tuple[int, str], ...] = (
    (1, "Nose"),
    (2, "Gearbox"),
    (3, "Roll Bar"),
    (9, "Cockpit"),
    (10, "Scenic"),
    (11, "TV1"),
    (12, "TV2"),
    (13, "TV3"),
    (16, "Chopper"),
    (17, "Blimp"),
    (18, "Chase"),
    (19, "Far Chase"),
)
# How often a broadcast director picks each group (TV cameras most of the time).
_GROUP_WEIGHTS = {
    1: 0.04,
    2: 0.03,
    3: 0.04,
    9: 0.07,
    10: 0.03,
    11: 0.22,
    12: 0.18,
    13: 0.14,
    16: 0.05,
    17: 0.05,
    18: 0.1,
    19: 0.05,
}
COCKPIT_GROUP = 9  # what a driving PC's camera shows: its own car
SHOT_S = (4.0, 14.0)  # shortest and longest shot
BATTLE_GAP_S = 1.0  # cars this close on race time are "a battle"


def camera_info_yaml() -> str:
    """The session info's ``CameraInfo`` section listing the groups."""
    lines = ["CameraInfo:", " Groups:"]
    for number, name in CAMERA_GROUPS:
        lines += [
            f" - GroupNum: {number}",
            f"   GroupName: {name}",
            "   Cameras:",
            "   - CameraNum: 1",
            f"     CameraName: CamView{number}",
        ]
    return "\n".join(lines) + "\n"


class BroadcastDirector:
    """Cuts between cars like a race broadcast: the leader, battles, anyone; 4–14 s shots.

    Deterministic for a seed. ``shots`` records every cut as ``(t, car_idx, group)``
    (the ground truth the sponsor-exposure tests compare against).
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.car = 0
        self.group = 11
        self.until = -1.0
        self.shots: list[tuple[float, int, int]] = []
        self._groups = np.array(list(_GROUP_WEIGHTS))
        weights = np.array(list(_GROUP_WEIGHTS.values()))
        self._weights = weights / weights.sum()

    def write(self, field: Any, rows: np.ndarray[Any, Any], k: int) -> None:
        """Write the camera of the field's current tick into row ``k``."""
        if field.t >= self.until:
            self._cut(field)
        rows["CamCarIdx"][k] = self.car
        rows["CamGroupNumber"][k] = self.group
        rows["CamCameraNumber"][k] = 1

    def _cut(self, field: Any) -> None:
        n = int(field.n)
        rng = self.rng
        pick = rng.random()
        position = np.asarray(field.position[:n])
        if pick < 0.3 and (position > 0).any():
            car = int(np.argmin(np.where(position > 0, position, 1 << 30)))
        elif pick < 0.75:
            car = self._battle(field, n)
        else:
            car = int(rng.integers(0, n))
        self.car = car
        self.group = int(rng.choice(self._groups, p=self._weights))
        self.until = float(field.t) + float(rng.uniform(*SHOT_S))
        self.shots.append((float(field.t), self.car, self.group))

    def _battle(self, field: Any, n: int) -> int:
        """The chasing car of a random close pair (by race time), else a random car."""
        f2 = np.asarray(field.f2_time[:n], dtype=np.float64)
        order = np.argsort(f2)
        gaps = np.diff(f2[order])
        close = np.flatnonzero((gaps > 0) & (gaps < BATTLE_GAP_S))
        if len(close) == 0:
            return int(self.rng.integers(0, n))
        j = int(self.rng.choice(close))
        return int(order[j + 1])
