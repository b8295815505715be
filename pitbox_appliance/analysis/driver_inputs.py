"""Driver-input metrics of one window (smoothness, aggression, precision, steering corrections) from Throttle, Brake and SteeringWheelAngle."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# Differences are taken over this time step (one tick of iRacing's 60 Hz telemetry),
# so a trace recorded at another rate scores the same as the same driving at 60 Hz.
REFERENCE_RATE_HZ = 60.0
# Shorter windows give None: too few movements to judge.
MIN_WINDOW_S = 2.0
# Precision's low-pass: a centred moving average this long. Input reversals that
# cancel out within it are corrections; movements that survive it are deliberate.
LOWPASS_S = 0.5
# Aggression's reference pedal speed (full travel per second): pedal travel applied at
# this rate scores 0.5 (full travel in 0.2 s); each further 5/s halves what is left.
APPLY_REFERENCE_RATE = 5.0
# A pedal rise smaller than this over one reference step (1/60 s) is sensor noise.
PEDAL_DEADBAND = 1e-3
# A channel moving less than this in total (sum of absolute changes) over the window
# is not judged: pedals in units of full travel, steering in radians.
MIN_PEDAL_TRAVEL = 0.05
MIN_STEERING_TRAVEL_RAD = 0.01
# Steering corrections: the steering's band between two centred moving averages, one
# short (drops tick-to-tick noise) and one long (drops the deliberate sweep through a
# corner); what is left are the short bumps a driver adds to hold the line.
CORRECTION_NOISE_S = 0.1
CORRECTION_SWEEP_S = 0.5
LN2 = math.log(2.0)


@dataclass(frozen=True, slots=True)
class InputMetrics:
    """The seed plan's ``driverInputs`` for one window, plus steering corrections.

    Smoothness, aggression and precision are in [0, 1].

    smoothness
        1 − mean over the moving channels of J = Σ|Δ²x| / (2·Σ|Δx|), differences taken
        over 1/60 s. J is 0 for inputs moved at constant rates (a ramp over N ticks
        gives 1/N), 1 for steps (an instant on/off), about 0.87 for white noise; the
        triangle inequality bounds it to [0, 1]. Higher is smoother.
    aggression
        Pedal application intensity: over every rise of Throttle and Brake, the
        travel-weighted mean of 1 − 2^(−r / 5/s), where r is the application rate in
        full travel per second (measured over 1/60 s). 0.5 means pedals are applied on
        average at full travel in 0.2 s; a 0.1 s application scores 0.75, a 1 s ramp
        0.13, a one-tick stab (60/s) 0.9998. Releases do not count; rises under 0.001
        per 1/60 s are noise. 0.0 when pedals travel less than 0.05 in total upwards.
    precision
        Share of input movement that is deliberate: mean over the moving channels of
        TV(low-pass(x)) / TV(x), where TV is total variation (Σ|Δx|) and the low-pass is
        a centred 0.5 s moving average (edges held). Back-and-forth corrections that
        cancel within 0.5 s (sawing at the wheel, pumping a pedal, noise) lower it; a
        sweep or a single on/off keeps it at 1. Averaging never adds variation, so it
        is bounded to [0, 1].
    steering_corrections
        Rate of small steering corrections, rad/s: total variation of the difference
        between a 0.1 s and a 0.5 s centred moving average of SteeringWheelAngle,
        divided by the window's duration. A steady sweep or a held angle gives about
        0; every bump of 0.1–0.5 s back and forth adds twice its size. It has a unit
        (it is compared with the same driver's own laps, not with a fixed scale);
        None when the steering moves less than 0.01 rad, or when the metrics were
        made without it.

    "Moving channels" are those of Throttle, Brake, SteeringWheelAngle that travel at
    least 0.05 (pedals) or 0.01 rad (steering) in total over the window.
    """

    smoothness: float
    aggression: float
    precision: float
    steering_corrections: float | None = None


def input_metrics(
    throttle: npt.ArrayLike | None,
    brake: npt.ArrayLike | None,
    steering: npt.ArrayLike | None,
    tick_rate: float = 60,
) -> InputMetrics | None:
    """Smoothness, aggression and precision of one lap or any window of ticks.

    ``throttle`` and ``brake`` are iRacing's ``Throttle`` and ``Brake`` (0..1; clipped
    to that range, since the sim writes values like -1e-8), ``steering`` is
    ``SteeringWheelAngle`` in radians, all sampled at ``tick_rate`` Hz. See
    ``InputMetrics`` for the definitions. Returns None when a channel is missing
    (None), holds a non-finite value, the window is shorter than 2 s, or no input
    moves at all. Raises ValueError for arrays of different lengths or shapes.
    """
    if not (math.isfinite(tick_rate) and tick_rate > 0):
        raise ValueError(f"tick_rate must be a positive number, got {tick_rate!r}")
    if throttle is None or brake is None or steering is None:
        return None
    thr, brk, steer = (
        np.asarray(a, dtype=np.float64) for a in (throttle, brake, steering)
    )
    if thr.ndim != 1 or thr.shape != brk.shape or thr.shape != steer.shape:
        raise ValueError(
            "throttle, brake and steering must be 1-D arrays of one length, got shapes "
            f"{thr.shape}, {brk.shape}, {steer.shape}"
        )
    if thr.size < math.ceil(MIN_WINDOW_S * tick_rate):
        return None
    if not (
        np.isfinite(thr).all() and np.isfinite(brk).all() and np.isfinite(steer).all()
    ):
        return None
    thr = np.clip(thr, 0.0, 1.0)
    brk = np.clip(brk, 0.0, 1.0)
    lag = max(1, round(tick_rate / REFERENCE_RATE_HZ))
    moving = [
        x
        for x, floor in (
            (thr, MIN_PEDAL_TRAVEL),
            (brk, MIN_PEDAL_TRAVEL),
            (steer, MIN_STEERING_TRAVEL_RAD),
        )
        if _total_variation(x) >= floor
    ]
    if not moving:
        return None
    window = max(3, 2 * round(LOWPASS_S * tick_rate / 2) + 1)
    smoothness = 1.0 - float(np.mean([_jerk_ratio(x, lag) for x in moving]))
    precision = float(np.mean([_deliberate_share(x, window) for x in moving]))
    aggression = _application_intensity((thr, brk), lag, tick_rate / lag)
    corrections = (
        _correction_rate(steer, tick_rate)
        if _total_variation(steer) >= MIN_STEERING_TRAVEL_RAD
        else None
    )
    return InputMetrics(
        smoothness=_unit(smoothness),
        aggression=_unit(aggression),
        precision=_unit(precision),
        steering_corrections=corrections,
    )


def _total_variation(x: FloatArray) -> float:
    return float(np.abs(np.diff(x)).sum())


def _jerk_ratio(x: FloatArray, lag: int) -> float:
    """Σ|Δ²x| / (2·Σ|Δx|) with differences over ``lag`` ticks; in [0, 1]."""
    d1 = x[lag:] - x[:-lag]
    d2 = d1[lag:] - d1[:-lag]
    total = 2.0 * float(np.abs(d1).sum())
    return float(np.abs(d2).sum()) / total if total > 0 else 0.0


def _deliberate_share(x: FloatArray, window: int) -> float:
    """TV of the centred moving average (edges held) over TV of ``x``; in [0, 1]."""
    total = _total_variation(x)
    if total <= 0:
        return 1.0
    half = window // 2
    padded = np.pad(x, half, mode="edge")
    sums = np.cumsum(np.concatenate(([0.0], padded)))
    smooth = (sums[window:] - sums[:-window]) / window
    return min(1.0, _total_variation(smooth) / total)


def _correction_rate(steering: FloatArray, tick_rate: float) -> float:
    """Total variation of the 0.1–0.5 s band of ``steering`` per second (rad/s)."""
    short = _moving_average(steering, max(1, round(CORRECTION_NOISE_S * tick_rate)))
    long = _moving_average(steering, max(2, round(CORRECTION_SWEEP_S * tick_rate)))
    return _total_variation(short - long) * tick_rate / len(steering)


def _moving_average(x: FloatArray, window: int) -> FloatArray:
    """Centred moving average of ``window`` samples, edges held; same length as x."""
    half = window // 2
    padded = np.pad(x, (half, window - 1 - half), mode="edge")
    sums: FloatArray = np.cumsum(np.concatenate(([0.0], padded)))
    averaged: FloatArray = (sums[window:] - sums[:-window]) / window
    return averaged


def _application_intensity(
    pedals: tuple[FloatArray, ...], lag: int, steps_per_second: float
) -> float:
    """Travel-weighted mean of 1 − 2^(−r / APPLY_REFERENCE_RATE) over pedal rises."""
    weighted = 0.0
    travel = 0.0
    for p in pedals:
        rise = p[lag:] - p[:-lag]
        rise = rise[rise > PEDAL_DEADBAND]
        rate = rise * steps_per_second
        weighted += float((rise * -np.expm1(-LN2 * rate / APPLY_REFERENCE_RATE)).sum())
        travel += float(rise.sum())
    # Overlapping differences count each unit of travel ``lag`` times.
    if travel / lag < MIN_PEDAL_TRAVEL:
        return 0.0
    return weighted / travel


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value))
