"""A driver's own fatigue model (seed §3.2 ``fatigueModel``) learned from their stored stints."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict

from pitbox_appliance.coaching.profile import FatigueModelState
from pitbox_appliance.storage.reader import LapRow, SessionReader

#: Fresh laps of a stint that set its precision baseline and its fresh pace.
FRESH_LAPS = 3
#: Laps this much slower than the stint's fresh pace are "fallen away".
SLOW_RATIO = 1.01
#: Defaults when a driver's stints say nothing yet (the analyzer's own thresholds).
DEFAULT_RISK = 0.7
DEFAULT_RECOVERY_PER_H = 0.5


def learn_fatigue_model(reader: SessionReader, driver: str) -> FatigueModelState:
    """Baseline, risk threshold and recovery rate from every stored stint of ``driver``."""
    stints: dict[tuple[int, int | None], list[LapRow]] = defaultdict(list)
    levels: dict[tuple[int, int], float] = {}
    for session in reader.sessions():
        laps = [lap for lap in reader.laps(session.id) if lap.driver_name == driver]
        for lap in laps:
            stints[(session.id, lap.stint_id)].append(lap)
        for event in reader.events(session.id, "driver_fatigue_update"):
            if event.payload.get("driver") == driver:
                levels[(session.id, int(event.payload.get("lap", -1)))] = float(
                    event.payload.get("fatigue", 0.0)
                )
    baselines, risky, recoveries = [], [], []
    last_level, last_update = 0.0, 0.0
    ordered = sorted(stints.items(), key=lambda kv: kv[1][0].end_time)
    previous_end: tuple[int, float, float | None] | None = None
    for (session_id, _stint), laps in ordered:
        clean = [
            lap
            for lap in laps
            if not lap.pit_lap and lap.lap_time is not None and not lap.invalid
        ]
        fresh = clean[:FRESH_LAPS]
        precision = [lap.input_precision for lap in fresh if lap.input_precision]
        if len(precision) == FRESH_LAPS:
            baselines.append(statistics.median(precision))
        stint_levels = [
            (lap, levels[(session_id, lap.lap_number)])
            for lap in clean
            if (session_id, lap.lap_number) in levels
        ]
        if len(fresh) == FRESH_LAPS:
            pace = statistics.median(lap.lap_time or 0.0 for lap in fresh)
            slow = sorted(
                level
                for lap, level in stint_levels
                if (lap.lap_time or 0.0) > pace * SLOW_RATIO
            )
            if len(slow) >= 2:
                risky.append(slow[1])
        if stint_levels:
            first_level = stint_levels[0][1]
            if previous_end is not None and previous_end[0] == session_id:
                rest_h = (laps[0].end_time - previous_end[1]) / 3600.0
                if rest_h > 0 and previous_end[2] is not None:
                    recoveries.append(max(0.0, previous_end[2] - first_level) / rest_h)
            last_level = stint_levels[-1][1]
            last_update = time.time()
        previous_end = (
            session_id,
            laps[-1].end_time,
            stint_levels[-1][1] if stint_levels else None,
        )
    basis = []
    if baselines:
        basis.append(f"baseline from {len(baselines)} stints")
    if risky:
        basis.append(f"risk from {len(risky)} stints")
    if recoveries:
        basis.append(f"recovery from {len(recoveries)} rests")
    return FatigueModelState(
        baseline=float(statistics.median(baselines)) if baselines else None,
        current_level=round(last_level, 3),
        risk_threshold=round(float(statistics.median(risky)), 3)
        if risky
        else DEFAULT_RISK,
        recovery_rate=round(float(statistics.median(recoveries)), 3)
        if recoveries
        else DEFAULT_RECOVERY_PER_H,
        last_update=last_update,
        stints=len(stints),
        basis=", ".join(basis) or "default",
    )
