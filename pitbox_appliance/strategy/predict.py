"""Online next-pit-lap and next-lap-time predictions from lap timing, with naive baselines."""

from __future__ import annotations

import bisect
import heapq
import math
import statistics
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pitbox_appliance.models.features import lap_time_features
from pitbox_appliance.strategy.timing import TimingLap, laps_by_car

if TYPE_CHECKING:
    from pitbox_appliance.models.predictors import Predictor

# ``lap_time_model`` default: the registry's choice (the model only where it won).
DEFAULT_MODEL = "default"

RECENT_RACING_LAPS = 10  # racing laps remembered across stints, for a stint's start
BASELINE_GREEN_LAPS = 5  # the lap-time baseline: median of the last five green laps
BASELINE_STINT_LAPS = 30  # the pit-lap baseline's stint before any stint has ended


@dataclass(frozen=True, slots=True)
class PredictionConfig:
    """Tuning of the predictors; the defaults were chosen on the 2021-2022 IMSA races.

    (The 2023-2024 races are held out: bench/accuracy.py judges the goals on them.)
    """

    # Next pit lap.
    default_stint_laps: int = 25  # before any car of the class has completed a stint
    min_own_stints: int = 2  # own stints longer than the current one, to trust own
    conditional: bool = True  # median of the stints that outlasted the current one
    # Class stints: count the other cars' stints still running as lower bounds
    # (Kaplan-Meier), so early in a race the few short stints that have ended
    # already do not stand for all of them.
    censored: bool = True
    yellow_fuel_factor: float = 1.0  # fuel of a neutralised lap / a green lap
    yellow_window_fraction: float | None = 0.3  # pit now under yellow past this
    # Next lap time.
    pace_window_laps: int = 8
    min_pace_laps: int = 2
    last_lap_weight: float = 0.5
    trend_min_laps: int | None = None  # None: no trend term (it did not help)
    max_trend_s_per_lap: float = 0.3
    # Under yellow: the median of every car's neutralised laps that ended within
    # this many seconds (all cars follow the same pace car); None: own last lap.
    yellow_field_window_s: float | None = 40.0


@dataclass(frozen=True, slots=True)
class LapPrediction:
    """What the engine and the baselines predicted at the end of ``lap`` of ``car``."""

    car: str
    lap: int
    next_pit_lap: int | None
    next_lap_time_s: float | None
    baseline_next_pit_lap: int | None
    baseline_next_lap_time_s: float | None


def predict_race(
    laps: Iterable[TimingLap],
    config: PredictionConfig | None = None,
    lap_time_model: Predictor | str | None = DEFAULT_MODEL,
) -> list[LapPrediction]:
    """Predictions at the end of every lap, in race-clock order.

    ``lap_time_model``: "default" uses the next-lap-time model where the model
    registry says it beat the engine's pace rule on held-out races; None never.
    """
    race = RacePredictor(config or PredictionConfig(), lap_time_model)
    return [race.observe(lap) for lap in race_order(laps)]


def race_order(laps: Iterable[TimingLap]) -> Iterator[TimingLap]:
    """Laps in the order they ended on the race clock, each car's in lap order."""
    cars = laps_by_car(laps)
    return heapq.merge(
        *cars.values(), key=lambda lap: (lap.elapsed_s, lap.car, lap.lap)
    )


@dataclass(frozen=True, slots=True)
class _CompletedStint:
    laps: int
    green_laps: int
    neutralised_laps: int


@dataclass(slots=True)
class _CarState:
    car_class: str
    stint_start: int
    last_lap: TimingLap | None = None
    last_pit_lap: int | None = None
    stint_green: int = 0
    stint_neutralised: int = 0
    completed: list[_CompletedStint] = field(default_factory=list)
    # (lap index within the stint, lap time) of the current stint's racing laps.
    stint_racing: list[tuple[int, float]] = field(default_factory=list)
    recent_racing: deque[float] = field(
        default_factory=lambda: deque(maxlen=RECENT_RACING_LAPS)
    )


class RacePredictor:
    """Consumes laps in race-clock order and predicts after each one.

    A prediction made at the end of a lap uses only the laps that had ended by then,
    so replaying a race lap by lap gives what a live feed would have given. Keeps,
    per car, the current stint and the stints it has completed, and per class the
    completed stints and out-lap losses of every car so far. docs/strategy.md has
    the rules; bench/accuracy.py measures them against the baselines.
    """

    def __init__(
        self,
        config: PredictionConfig,
        lap_time_model: Predictor | str | None = None,
    ) -> None:
        self.config = config
        if lap_time_model == DEFAULT_MODEL:
            from pitbox_appliance.models.predictors import default_predictor

            lap_time_model = default_predictor("lap_time")
        if isinstance(lap_time_model, str):
            raise ValueError(
                f"lap_time_model: {lap_time_model!r} is neither a predictor,"
                f" None nor {DEFAULT_MODEL!r}"
            )
        self.lap_time_model = lap_time_model
        # When a list: (car, lap, features, reference, engine pace) of every racing
        # lap the model could predict from (models/datasets.py trains on it).
        self.feature_log: list[tuple[str, int, Any, float, float]] | None = None
        self._cars: dict[str, _CarState] = {}
        self._class_stints: defaultdict[str, list[float]] = defaultdict(list)
        self._class_out_lap_loss: defaultdict[str, list[float]] = defaultdict(list)
        self._all_stint_laps: list[int] = []
        # (race clock, lap time) of the field's neutralised laps off pit road.
        self._yellow_laps: deque[tuple[float, float]] = deque()

    def observe(self, lap: TimingLap) -> LapPrediction:
        """Take the lap that just ended; predict the car's next pit lap and lap time."""
        state = self._cars.get(lap.car)
        if state is None:
            state = self._cars[lap.car] = _CarState(lap.car_class, stint_start=lap.lap)
        previous = state.last_lap
        if previous is not None:
            if previous.in_pit:
                self._learn_out_lap(state, lap, previous)
            if lap.pit_time_s is not None and state.stint_start < lap.lap:
                # The pit time says the previous lap ended in the pit lane even
                # though the timing did not flag it (seen around red flags).
                self._close_stint(state, previous)
        if lap.is_green:
            state.stint_green += 1
        elif lap.is_neutralised:
            state.stint_neutralised += 1
        if is_racing_lap(lap, previous) and lap.lap_time_s is not None:
            state.stint_racing.append((lap.lap - state.stint_start, lap.lap_time_s))
            state.recent_racing.append(lap.lap_time_s)
        if lap.in_pit:
            self._close_stint(state, lap)
        if (
            lap.is_neutralised
            and lap.lap_time_s is not None
            and not lap.in_pit
            and lap.pit_time_s is None
        ):
            self._yellow_laps.append((lap.elapsed_s, lap.lap_time_s))
        state.last_lap = lap
        return LapPrediction(
            car=lap.car,
            lap=lap.lap,
            next_pit_lap=self._next_pit_lap(state, lap),
            next_lap_time_s=self._next_lap_time(state, lap),
            baseline_next_pit_lap=self._baseline_next_pit_lap(state, lap),
            baseline_next_lap_time_s=self._baseline_next_lap_time(state, lap),
        )

    # -- next pit lap ---------------------------------------------------------

    def _next_pit_lap(self, state: _CarState, lap: TimingLap) -> int:
        """In-lap of the car's next stop.

        Stint lengths are counted in fuel-equivalent laps: a neutralised lap counts
        ``yellow_fuel_factor`` of a green one. The expected length of the current
        stint is the median of the completed stints that lasted longer than it
        has so far (the car's own when it has ``min_own_stints`` of them, else its
        class's), so a stint that has outlived the short yellow-flag stints is
        expected to run to a full tank. Under yellow, once the stint is past
        ``yellow_window_fraction`` of the class's median stint, the car is
        expected in on the next lap: teams take the cheap stop.
        """
        config = self.config
        used = state.stint_green + config.yellow_fuel_factor * state.stint_neutralised
        class_stints = self._class_stints.get(state.car_class, [])
        if (
            config.yellow_window_fraction is not None
            and lap.is_neutralised
            and not lap.in_pit
            and class_stints
            and used >= config.yellow_window_fraction * statistics.median(class_stints)
        ):
            return lap.lap + 1
        own = [_equivalent_laps(stint, config) for stint in state.completed]
        if config.conditional:
            own = [length for length in own if length > used]
            class_stints = [length for length in class_stints if length > used]
        expected: float | None = None
        if len(own) >= config.min_own_stints:
            expected = statistics.median(own)
        elif class_stints and config.censored and config.conditional:
            running = [
                other.stint_green + config.yellow_fuel_factor * other.stint_neutralised
                for other in self._cars.values()
                if other.car_class == state.car_class and other is not state
            ]
            expected = _censored_median(class_stints, running, used)
        elif class_stints:
            expected = statistics.median(class_stints)
        if expected is None:
            expected = max(float(config.default_stint_laps), used + 1)
        return lap.lap + max(1, _round_half_up(expected - used))

    def _baseline_next_pit_lap(self, state: _CarState, lap: TimingLap) -> int:
        """Naive: the last pit lap plus the car's last stint length, at least next lap.

        Before the car's first stop: the mean of every car's completed stints so
        far (``BASELINE_STINT_LAPS`` before any; not tuned).
        """
        if state.completed and state.last_pit_lap is not None:
            return max(lap.lap + 1, state.last_pit_lap + state.completed[-1].laps)
        stint_laps = (
            statistics.fmean(self._all_stint_laps)
            if self._all_stint_laps
            else BASELINE_STINT_LAPS
        )
        return max(lap.lap + 1, _round_half_up(stint_laps) + state.stint_start - 1)

    @staticmethod
    def _baseline_next_lap_time(state: _CarState, lap: TimingLap) -> float | None:
        """Naive: the median of the car's last five green (racing) laps.

        Before the car has one, the last lap's time.
        """
        if state.recent_racing:
            return statistics.median(list(state.recent_racing)[-BASELINE_GREEN_LAPS:])
        return lap.lap_time_s

    def _close_stint(self, state: _CarState, in_lap: TimingLap) -> None:
        stint = _CompletedStint(
            laps=in_lap.lap - state.stint_start + 1,
            green_laps=state.stint_green,
            neutralised_laps=state.stint_neutralised,
        )
        state.completed.append(stint)
        self._all_stint_laps.append(stint.laps)
        self._class_stints[state.car_class].append(_equivalent_laps(stint, self.config))
        state.last_pit_lap = in_lap.lap
        state.stint_start = in_lap.lap + 1
        state.stint_green = state.stint_neutralised = 0
        state.stint_racing = []

    # -- next lap time --------------------------------------------------------

    def _next_lap_time(self, state: _CarState, lap: TimingLap) -> float | None:
        """The car's racing pace; the last lap's time while neutralised.

        After an in-lap the next lap is the out-lap: pace plus the class's median
        out-lap loss so far. With no racing lap yet, the last lap time.
        """
        if lap.lap_time_s is None:
            return None
        if not lap.is_green and not lap.in_pit:
            return self._yellow_lap_time(lap)
        pace = self._pace(state)
        if pace is None:
            return lap.lap_time_s
        if lap.in_pit:
            losses = self._class_out_lap_loss.get(state.car_class)
            return pace + statistics.median(losses) if losses else lap.lap_time_s
        return self._model_pace(state, lap, pace)

    def _yellow_lap_time(self, lap: TimingLap) -> float | None:
        """Next lap under yellow: the field's recent neutralised laps, else the last."""
        window = self.config.yellow_field_window_s
        if window is None or not lap.is_neutralised:
            return lap.lap_time_s
        recent = self._yellow_laps
        while recent and recent[0][0] < lap.elapsed_s - window:
            recent.popleft()
        times = [t for _, t in recent]
        return statistics.median(times) if times else lap.lap_time_s

    def _model_pace(self, state: _CarState, lap: TimingLap, pace: float) -> float:
        """The next-lap-time model's prediction where it applies, else ``pace``.

        It applies once the current stint has ``min_pace_laps`` racing laps.
        """
        if len(state.stint_racing) < self.config.min_pace_laps:
            return pace
        found = lap_time_features(
            [t for _, t in state.stint_racing], [n for n, _ in state.stint_racing]
        )
        if found is None:
            return pace
        features, reference = found
        if self.feature_log is not None:
            self.feature_log.append((lap.car, lap.lap, features, reference, pace))
        if self.lap_time_model is None:
            return pace
        return self.lap_time_model.predict(features, reference, pace).value

    def _pace(self, state: _CarState) -> float | None:
        """Blend of the last racing lap and the median of the recent ones.

        Uses the current stint once it has ``min_pace_laps`` racing laps, else the
        car's last racing laps before it. Adds the stint's trend when enabled.
        """
        config = self.config
        window = [t for _, t in state.stint_racing[-config.pace_window_laps :]]
        if len(window) < config.min_pace_laps:
            window = list(state.recent_racing)[-config.pace_window_laps :]
        if not window:
            return None
        weight = config.last_lap_weight
        pace = weight * window[-1] + (1 - weight) * statistics.median(window)
        if (
            config.trend_min_laps is not None
            and len(state.stint_racing) >= config.trend_min_laps
        ):
            pace += self._trend_step(state)
        return pace

    def _trend_step(self, state: _CarState) -> float:
        """Trend of the stint's racing laps, from the window's centre to the next lap."""
        config = self.config
        x = np.array([n for n, _ in state.stint_racing], dtype=np.float64)
        y = np.array([t for _, t in state.stint_racing], dtype=np.float64)
        limit = config.max_trend_s_per_lap
        slope = min(limit, max(-limit, _theil_sen_slope(x, y)))
        window_centre = float(np.median(x[-config.pace_window_laps :]))
        return slope * (float(x[-1]) + 1 - window_centre)

    def _learn_out_lap(
        self, state: _CarState, lap: TimingLap, in_lap: TimingLap
    ) -> None:
        """Out-lap time against the car's pace before the stop (green out-laps only)."""
        if lap.lap_time_s is None or not lap.is_green or not in_lap.is_green:
            return
        if state.recent_racing:
            pace = statistics.median(state.recent_racing)
            self._class_out_lap_loss[state.car_class].append(lap.lap_time_s - pace)


def is_racing_lap(lap: TimingLap, previous: TimingLap | None) -> bool:
    """A full lap at race pace: green at both lines, the pit lane at neither."""
    return (
        previous is not None
        and lap.is_green
        and previous.is_green
        and not lap.in_pit
        and not previous.in_pit
        and lap.pit_time_s is None
    )


def _round_half_up(value: float) -> int:
    """Nearest whole lap; halves up (``round`` would alternate between neighbours)."""
    return math.floor(value + 0.5)


def _equivalent_laps(stint: _CompletedStint, config: PredictionConfig) -> float:
    return stint.green_laps + config.yellow_fuel_factor * stint.neutralised_laps


def _censored_median(ended: list[float], running: list[float], after: float) -> float:
    """Median stint length beyond ``after``, Kaplan-Meier with running stints censored.

    ``ended``: lengths of completed stints; ``running``: lengths so far of stints
    still running (each at least that long). Only lengths over ``after`` count.
    When more than half outlast every ended stint, the longest length seen.
    """
    events = sorted(x for x in ended if x > after)
    censored = sorted(x for x in running if x > after)
    survival = 1.0
    index = 0
    for time in sorted(set(events)):
        at_risk = (
            len(events) - index + len(censored) - bisect.bisect_left(censored, time)
        )
        died = 0
        while index < len(events) and events[index] == time:
            died += 1
            index += 1
        survival *= 1 - died / at_risk
        if survival <= 0.5:
            return time
    return max(events[-1], censored[-1] if censored else events[-1])


def _theil_sen_slope(
    x: np.ndarray[tuple[int], np.dtype[np.float64]],
    y: np.ndarray[tuple[int], np.dtype[np.float64]],
) -> float:
    """Median of the slopes between every pair of points (robust to traffic laps)."""
    dx = x[None, :] - x[:, None]
    dy = y[None, :] - y[:, None]
    pairs = np.triu(np.ones(dx.shape, dtype=bool), k=1) & (dx != 0)
    if not pairs.any():
        return 0.0
    slope = float(np.median(dy[pairs] / dx[pairs]))
    return slope if math.isfinite(slope) else 0.0
