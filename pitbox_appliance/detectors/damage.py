"""DamageModeling: repair time left and lap-time loss after a contact or spin, against pre-incident pace."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driver_pc.protocol.events import EventKind
from pitbox_appliance.detectors.base import (
    BatchContext,
    Emission,
    Frames,
    LapContext,
    SharedState,
    channel,
    register_detector,
)

NEW_DAMAGE_S = 0.5  # repair time rising by more than this is new damage
PACE_LAPS = 5  # clean laps before the damage set the reference pace
AFTER_LAPS = 2  # clean laps after it measure the loss
SLOW_LAP_FACTOR = 1.07  # slower laps (yellows, traffic, incidents) are not pace laps
MIN_LOSS_S = 0.1  # a measured loss below this is reported as no loss
SEVERE_MANDATORY_S = 20.0
SEVERE_TOTAL_S = 45.0
MODERATE_TOTAL_S = 15.0
DAMAGING = ("contact", "spin")


@dataclass(slots=True)
class _Episode:
    """One damage case, from the alert until its loss was measured or it was repaired."""

    time: float
    lap: int
    cause: str
    mandatory_s: float | None
    optional_s: float | None
    reference_pace: float | None
    after: list[float] = field(default_factory=list)


@register_detector(
    "damage",
    channels=("SessionTime", "Lap", "PitRepairLeft", "PitOptRepairLeft"),
    emits=(EventKind.DAMAGE_ALERT,),
)
class DamageModelingDetector:
    """Damage alerts: at once when repair time appears, again when the lap-time loss is known.

    Where the car publishes ``PitRepairLeft``/``PitOptRepairLeft`` (iRacing and the
    simulator do) a rise of either is new damage: the alert names the repair time
    left, severity from it. Without those channels, a contact or spin found by the
    incident detector opens the case instead. Either way, after ``AFTER_LAPS`` clean
    laps the loss = their median − the median of the ``PACE_LAPS`` clean laps before,
    and a second alert gives it (with the repair time still left).
    """

    name = "damage"

    def __init__(self) -> None:
        self._repair: tuple[float, float] | None = None  # last (mandatory, optional)
        self._has_repair_channels = False
        self._clean: list[float] = []  # recent clean lap times before any open case
        self._open: _Episode | None = None
        self._seen_incidents = 0
        self._lap = 0

    def on_frames(
        self, frames: Frames, ctx: BatchContext, shared: SharedState
    ) -> list[Emission]:
        lap = channel(frames, "Lap")
        if lap is not None:
            self._lap = int(lap[-1])
        mandatory = channel(frames, "PitRepairLeft")
        optional = channel(frames, "PitOptRepairLeft")
        out: list[Emission] = []
        if mandatory is not None and optional is not None:
            self._has_repair_channels = True
            out += self._repair_changes(frames, mandatory, optional, shared)
        else:
            out += self._from_incidents(shared)
        return out

    def on_lap(self, lap: LapContext, shared: SharedState) -> list[Emission]:
        if lap.lap_time is None or lap.pit_lap:
            return []
        incident = lap.start_time is not None and shared.incident_between(
            lap.start_time, lap.end_time
        )
        pool = self._open.after if self._open is not None else self._clean
        typical = float(np.median(pool[-PACE_LAPS:])) if pool else None
        if self._open is not None and self._open.reference_pace is not None:
            typical = self._open.reference_pace * (
                1 + 0.1
            )  # damage may cost up to ~10 %
        if incident or (
            typical is not None and lap.lap_time > typical * SLOW_LAP_FACTOR
        ):
            return []
        if self._open is None:
            self._clean = [*self._clean[-(PACE_LAPS * 2) :], lap.lap_time]
            return []
        episode = self._open
        episode.after.append(lap.lap_time)
        if len(episode.after) < AFTER_LAPS or episode.reference_pace is None:
            if episode.reference_pace is None:
                self._open = None  # no pace before it: nothing to compare with
            return []
        loss = float(np.median(episode.after)) - episode.reference_pace
        self._open = None
        self._clean = list(episode.after)
        return [self._alert(episode, lap.end_time, round(max(loss, 0.0), 3))]

    def _repair_changes(
        self,
        frames: Frames,
        mandatory: np.ndarray[Any, Any],
        optional: np.ndarray[Any, Any],
        shared: SharedState,
    ) -> list[Emission]:
        total = np.asarray(mandatory, dtype=np.float64) + np.asarray(
            optional, dtype=np.float64
        )
        head = sum(self._repair) if self._repair is not None else float(total[0])
        self._repair = (float(mandatory[-1]), float(optional[-1]))
        rises = np.flatnonzero(np.diff(total, prepend=head) > NEW_DAMAGE_S)
        # A rise spread over consecutive ticks is one hit.
        rises = rises[np.diff(rises, prepend=-2) > 1]
        if total[-1] <= 0 and self._open is not None and not self._open.after:
            self._open = None  # repaired before any lap could show a loss
        out: list[Emission] = []
        lap = channel(frames, "Lap")
        for i in (int(r) for r in rises):
            when = float(frames["SessionTime"][i])
            episode = _Episode(
                time=when,
                lap=int(lap[i]) if lap is not None else self._lap,
                cause=_cause(shared, when),
                mandatory_s=float(mandatory[i]),
                optional_s=float(optional[i]),
                # A second hit before the loss was measured keeps the first's pace.
                reference_pace=self._open.reference_pace
                if self._open is not None
                else self._pace(),
            )
            self._open = episode
            out.append(self._alert(episode, when, None, (mandatory[i], optional[i])))
        return out

    def _from_incidents(self, shared: SharedState) -> list[Emission]:
        new = shared.incidents[self._seen_incidents :]
        self._seen_incidents = len(shared.incidents)
        hits = [i for i in new if i["incident"] in DAMAGING]
        if not hits or self._has_repair_channels:
            return []
        incident = hits[-1]
        episode = _Episode(
            time=incident["session_time"],
            lap=incident["lap"],
            cause=incident["incident"],
            mandatory_s=None,
            optional_s=None,
            reference_pace=self._pace(),
        )
        self._open = episode
        return [self._alert(episode, episode.time, None)]

    def _pace(self) -> float | None:
        if len(self._clean) < 2:
            return None
        return float(np.median(self._clean[-PACE_LAPS:]))

    def _alert(
        self,
        episode: _Episode,
        when: float,
        loss: float | None,
        repair: tuple[float, float] | None = None,
    ) -> Emission:
        left = None
        repair = repair if repair is not None else self._repair
        if repair is not None:
            left = round(float(repair[0]) + float(repair[1]), 2)
        elif episode.mandatory_s is not None:
            left = round((episode.mandatory_s or 0) + (episode.optional_s or 0), 2)
        severity = _severity(episode, loss)
        parts = [f"{episode.cause} on lap {episode.lap}"]
        if episode.mandatory_s is not None:
            parts.append(
                f"repairs {episode.mandatory_s:.0f} s mandatory + "
                f"{episode.optional_s or 0:.0f} s optional"
            )
        if loss is not None:
            parts.append(f"pace {loss:+.2f} s/lap against before")
        payload = {
            "session_time": round(when, 3),
            "lap": episode.lap,
            "severity": severity,
            "lap_time_loss_s": loss,
            "repair_time_left_s": left,
            "detail": "; ".join(parts),
        }
        return Emission(EventKind.DAMAGE_ALERT, when, payload)


def _severity(episode: _Episode, loss: float | None) -> str:
    mandatory = episode.mandatory_s or 0.0
    total = mandatory + (episode.optional_s or 0.0)
    if mandatory >= SEVERE_MANDATORY_S or total >= SEVERE_TOTAL_S or (loss or 0) > 1.0:
        return "severe"
    if mandatory > 0 or total >= MODERATE_TOTAL_S or (loss or 0) > 0.3:
        return "moderate"
    return "minor"


def _cause(shared: SharedState, when: float) -> str:
    """The incident the damage came from: the latest one, open or closed, near ``when``."""
    if shared.incident_open is not None and shared.incident_open <= when + 0.5:
        return shared.incident_open_kind or "incident"
    recent = [i for i in shared.incidents[-5:] if i["session_time"] <= when + 0.5]
    if recent and when - recent[-1]["end_time"] < 5.0:
        return str(recent[-1]["incident"])
    return "damage"
