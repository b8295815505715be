"""DraftingDetector and pass prediction: gap and closing rate to the cars just ahead and behind on track."""

from __future__ import annotations

from collections import deque
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

SAMPLE_S = 0.1  # gaps are sampled at 10 Hz ...
WINDOW_S = 2.0  # ... and the closing rate is measured over this window (≥ 0.5 s)
HISTORY_S = WINDOW_S + 1.0
OPPORTUNITY_GAP_S = 1.0  # a car within this gap is a drafting/passing chance
IN_DRAFT_GAP_S = 0.6  # within this the tow is strong (the sim: strength 1 − gap/1 s)
MIN_CLOSING_S_PER_LAP = 0.3  # slower closing is noise at these gaps
ALONGSIDE_S = 0.1  # closer than this the cars are side by side: no approach to call
PASS_GAP_S = 0.05  # "passing chance" = the gap closes to this
REPEAT_S = 60.0  # the same car and direction is announced at most this often
GLOBAL_REPEAT_S = 5.0  # and no two announcements come closer than this
YELLOW_FLAGS = 0x8 | 0x4000 | 0x8000  # yellow, caution, caution waving: no racing


@register_detector(
    "drafting",
    channels=(
        *("SessionTime", "SessionFlags", "OnPitRoad", "PlayerCarIdx"),
        *("CarIdxLapDistPct", "CarIdxEstTime", "CarIdxOnPitRoad"),
    ),
    emits=(EventKind.DRAFTING_OPPORTUNITY,),
)
class DraftingDetector:
    """Gaps in seconds to the nearest car ahead and behind on track, from ``CarIdxLapDistPct``.

    Gap = distance fraction × our reference lap time (median of the last laps).
    Closing rate = the change of that gap to the same car over ``WINDOW_S``, in
    seconds per lap. A ``drafting_opportunity`` goes out when a car ahead is within
    ``OPPORTUNITY_GAP_S`` and we are closing (or are in its tow), or a car behind is
    within it and closing on us; ``laps_to_pass`` is the gap over the closing rate.
    Cars on pit road, absent slots, our own pit road and yellows are skipped.
    """

    name = "drafting"

    def __init__(self) -> None:
        # (time, idx ahead, gap ahead s, idx behind, gap behind s)
        self._samples: deque[tuple[float, int, float, int, float]] = deque()
        self._last_sample = float("-inf")
        self._announced: dict[tuple[int, str], float] = {}
        self._last_announced = float("-inf")

    def on_frames(
        self, frames: Frames, ctx: BatchContext, shared: SharedState
    ) -> list[Emission]:
        pct_all = channel(frames, "CarIdxLapDistPct")
        if pct_all is None or len(ctx.lap_times) < 1:
            return []
        lap_ref = float(np.median(ctx.lap_times[-5:]))
        if not lap_ref > 0:
            return []
        t = frames["SessionTime"].astype(np.float64)
        # Rows at ≥ SAMPLE_S spacing, continuing the spacing of earlier batches.
        picks = _sample_rows(t, self._last_sample, SAMPLE_S)
        if len(picks) == 0:
            return []
        self._last_sample = float(t[picks[-1]])
        rows = frames[picks]
        ok = self._racing(rows)
        if not ok.any():
            self._samples.clear()
            return []
        rows, times = rows[ok], t[picks][ok]
        pct = np.asarray(rows["CarIdxLapDistPct"], dtype=np.float64)
        player = _player_index(rows)
        present = pct >= 0
        pit = channel(rows, "CarIdxOnPitRoad")
        if pit is not None:
            present &= ~np.asarray(pit, dtype=bool)
        slots = np.arange(pct.shape[1])
        present &= slots[None, :] != player[:, None]
        own = pct[np.arange(len(pct)), player][:, None]
        ahead = np.where(present, np.mod(pct - own, 1.0), np.inf)
        behind = np.where(present, np.mod(own - pct, 1.0), np.inf)
        ahead[ahead == 0] = np.inf
        behind[behind == 0] = np.inf
        ia, ib = ahead.argmin(axis=1), behind.argmin(axis=1)
        r = np.arange(len(ia))
        ga = ahead[r, ia] * lap_ref
        gb = behind[r, ib] * lap_ref
        est = channel(rows, "CarIdxEstTime")
        if est is not None:
            # Time gaps at the reference pace: unlike distance, they do not shrink
            # in the turns, where everyone is slower.
            est = np.asarray(est, dtype=np.float64)
            own_est = est[r, player]
            crossed_a = pct[r, ia] < own[:, 0]  # the car ahead is on the next lap
            crossed_b = pct[r, ib] > own[:, 0]
            ga = np.maximum(0.0, est[r, ia] - own_est + crossed_a * lap_ref)
            gb = np.maximum(0.0, own_est - est[r, ib] + crossed_b * lap_ref)
        out: list[Emission] = []
        for k in range(len(times)):
            self._samples.append(
                (float(times[k]), int(ia[k]), float(ga[k]), int(ib[k]), float(gb[k]))
            )
            now = float(times[k])
            while self._samples[0][0] < now - HISTORY_S:
                self._samples.popleft()
            if not out:
                out = self._announce(now, lap_ref, ctx)
        return out

    def on_lap(self, lap: LapContext, shared: SharedState) -> list[Emission]:
        return []

    def gaps(self) -> dict[str, Any] | None:
        """The latest sample: cars and gaps ahead and behind."""
        if not self._samples:
            return None
        t, ia, ga, ib, gb = self._samples[-1]
        return {"time": t, "ahead": (ia, ga), "behind": (ib, gb)}

    def _racing(self, rows: Frames) -> np.ndarray[Any, np.dtype[np.bool_]]:
        ok = np.ones(len(rows), dtype=bool)
        on_pit = channel(rows, "OnPitRoad")
        if on_pit is not None:
            ok &= ~np.asarray(on_pit, dtype=bool)
        flags = channel(rows, "SessionFlags")
        if flags is not None:
            ok &= (np.asarray(flags, dtype=np.int64) & YELLOW_FLAGS) == 0
        return ok

    def _announce(
        self, now: float, lap_ref: float, ctx: BatchContext
    ) -> list[Emission]:
        if now - self._last_announced < GLOBAL_REPEAT_S:
            return []
        latest = self._samples[-1]
        then = next(
            (s for s in reversed(self._samples) if s[0] <= now - WINDOW_S), None
        )
        if then is None:
            return []
        out: list[Emission] = []
        for direction, idx, gap, idx_then, gap_then in (
            ("ahead", latest[1], latest[2], then[1], then[2]),
            ("behind", latest[3], latest[4], then[3], then[4]),
        ):
            if idx != idx_then or not gap <= OPPORTUNITY_GAP_S:
                continue
            closing = (gap_then - gap) / (now - then[0]) * lap_ref
            in_draft = direction == "ahead" and gap <= IN_DRAFT_GAP_S
            # An approach (a pass coming) needs a real gap that is closing; a car
            # already alongside is only a tow.
            approach = closing >= MIN_CLOSING_S_PER_LAP and gap >= ALONGSIDE_S
            if not approach and not in_draft:
                continue
            key = (idx, direction if approach else "draft")
            if now - self._announced.get(key, float("-inf")) < REPEAT_S:
                continue
            self._announced[key] = now
            self._last_announced = now
            laps_to_pass = (
                round(max(0.0, gap - PASS_GAP_S) / closing, 2) if approach else None
            )
            payload = {
                "other_car": ctx.car_numbers.get(idx, str(idx)),
                "other_idx": idx,
                "gap_s": round(gap, 3),
                "closing_rate_s_per_lap": round(closing, 3),
                "laps_to_pass": laps_to_pass,
                "in_draft": in_draft,
                "direction": direction,
            }
            out.append(Emission(EventKind.DRAFTING_OPPORTUNITY, now, payload))
            break  # one announcement per batch at most
        return out


def _sample_rows(
    t: np.ndarray[Any, np.dtype[np.float64]], last: float, step: float
) -> np.ndarray[Any, np.dtype[np.intp]]:
    """Indices of rows at least ``step`` apart, the first ``step`` after ``last``."""
    slot = np.floor((t - t[0]) / step)
    first = np.flatnonzero(np.diff(slot, prepend=-1) > 0)
    return first[t[first] >= last + step * 0.999]


def _player_index(rows: Frames) -> np.ndarray[Any, np.dtype[np.intp]]:
    player = channel(rows, "PlayerCarIdx")
    if player is None:
        return np.zeros(len(rows), dtype=np.intp)
    return np.clip(
        np.asarray(player, dtype=np.intp), 0, rows["CarIdxLapDistPct"].shape[1] - 1
    )
