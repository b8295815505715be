"""The report's figures (matplotlib, no pyplot): each function returns inline SVG text."""

from __future__ import annotations

import io
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axis import Axis, XAxis
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, MultipleLocator

from cloud_sync.analytics.performance import OptimalLap
from cloud_sync.compacted import CompactedSession, Lap, SessionEvent

matplotlib.rcParams["svg.hashsalt"] = (
    "pitbox"  # stable ids: the same data, the same SVG
)
matplotlib.rcParams["svg.fonttype"] = "none"
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
TREND_MIN_LAPS = 5  # fewer clean laps draw no trend line: two points make no trend
# Lap-time tick steps (s): one is picked so that an axis carries 4-8 ticks.
TIME_STEPS = (0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0)


def format_lap_time(seconds: float | None, digits: int = 3) -> str:
    """``m:ss.sss`` (``ss.sss`` under a minute); ``—`` for no time."""
    if seconds is None or not np.isfinite(seconds):
        return "—"
    value = round(float(seconds), digits)
    sign = "-" if value < 0 else ""
    minutes, rest = divmod(abs(value), 60.0)
    if minutes == 0:
        return f"{sign}{rest:.{digits}f}"
    width = digits + 3 if digits else 2
    return f"{sign}{int(minutes)}:{rest:0{width}.{digits}f}"


def lap_axis(axis: Axis, numbers: list[int]) -> None:
    """An axis of lap numbers: integer ticks only, half a lap of margin."""
    axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if numbers:
        lo, hi = min(numbers), max(numbers)
        if isinstance(axis, XAxis):
            axis.axes.set_xlim(lo - 0.5, hi + 0.5)
        else:
            axis.axes.set_ylim(lo - 0.5, hi + 0.5)


def lap_time_axis(axis: Axis, times: list[float]) -> float:
    """A lap-time axis in m:ss.s over the spread of ``times``, not from zero.

    The range runs from the fastest lap to the slowest lap that is not an outlier
    (above median + max(4 robust spreads, 2 %)); the cut is returned so callers
    draw slower laps on the edge. Ticks fall on 0.1 s multiples at the least.
    """
    if not times:
        axis.set_major_formatter(FuncFormatter(lambda v, _: format_lap_time(v, 1)))
        return float("inf")
    arr = np.asarray(times, dtype=np.float64)
    median = float(np.median(arr))
    spread = 1.4826 * float(np.median(np.abs(arr - median)))
    cut = median + max(4 * spread, 0.02 * median)
    lo, hi = float(arr.min()), float(min(arr.max(), cut))
    width = max(hi - lo, 0.4)
    pad = 0.08 * width
    mid = (lo + hi) / 2 if hi - lo < 0.4 else None
    low = (mid - width / 2 if mid is not None else lo) - pad
    high = (mid + width / 2 if mid is not None else hi) + pad
    step = next((s for s in TIME_STEPS if (high - low) / s <= 8), TIME_STEPS[-1])
    axis.set_major_locator(MultipleLocator(step))
    axis.set_major_formatter(FuncFormatter(lambda v, _: format_lap_time(v, 1)))
    if isinstance(axis, XAxis):
        axis.axes.set_xlim(low, high)
    else:
        axis.axes.set_ylim(low, high)
    return hi if arr.max() > cut else float("inf")


def trend(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> tuple[float, float]:
    """Least-squares slope and intercept; only asked for with ``TREND_MIN_LAPS`` laps."""
    if len(x) < TREND_MIN_LAPS:
        raise ValueError(f"a trend needs {TREND_MIN_LAPS} laps, got {len(x)}")
    slope, icpt = np.polyfit(x, y, 1)
    return float(slope), float(icpt)


def svg_text(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _fig(width: float = 7.5, height: float = 3.2) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def _color(drivers: list[str], driver: str) -> str:
    return COLORS[drivers.index(driver) % len(COLORS)]


def lap_times(session: CompactedSession) -> str:
    """SVG of :func:`lap_times_figure`."""
    return svg_text(lap_times_figure(session))


def lap_times_figure(session: CompactedSession) -> Figure:
    """Clean lap times over the session by driver; stints shaded, pit laps dotted.

    A stint with at least ``TREND_MIN_LAPS`` clean laps gets its running median
    (5 laps); fewer points make no trend. Laps slower than the axis shows (a spin,
    a yellow) sit on the top edge as a triangle with their time.
    """
    fig, ax = _fig()
    drivers = session.drivers()
    clean = [lap for lap in session.laps if lap.clean and lap.lap_time]
    top = lap_time_axis(ax.yaxis, [float(lap.lap_time or 0) for lap in clean])
    for driver in drivers:
        mine = [lap for lap in clean if lap.driver == driver]
        _lap_points(ax, mine, top, _color(drivers, driver), driver)
    for i, stint in enumerate(session.stints):
        numbers = [
            lap.lap_number for lap in session.laps if lap.stint == stint["stint"]
        ]
        if not numbers:
            continue
        if i % 2:
            ax.axvspan(min(numbers) - 0.5, max(numbers) + 0.5, color="#eee", zorder=0)
        laps = [lap for lap in clean if lap.stint == stint["stint"]]
        if len(laps) >= TREND_MIN_LAPS:
            y = np.asarray([lap.lap_time for lap in laps], dtype=np.float64)
            ax.plot(
                [lap.lap_number for lap in laps],
                np.minimum(_running_median(y, 5), top),
                "-",
                color=_color(drivers, laps[0].driver),
                linewidth=1.2,
                alpha=0.8,
                gid=f"lap-trend-stint-{stint['stint']}",
            )
    for lap in session.laps:
        if lap.pit_lap:
            ax.axvline(lap.lap_number, color="#999", linestyle=":", linewidth=1)
    lap_axis(ax.xaxis, [lap.lap_number for lap in session.laps])
    ax.set_xlabel("lap")
    ax.set_ylabel("lap time (m:ss.s)")
    ax.set_title(
        "Lap times (clean laps; line: 5-lap running median per stint; "
        "dotted: pit laps)",
        fontsize=9,
    )
    if clean:
        ax.legend(fontsize=8)
    return fig


def consistency(session: CompactedSession) -> str:
    """SVG of :func:`consistency_figure`."""
    return svg_text(consistency_figure(session))


def consistency_figure(session: CompactedSession) -> Figure:
    """Every clean lap time per driver; a box (quartiles) over them from 5 laps on."""
    drivers = session.drivers()
    data = [
        [
            float(lap.lap_time)
            for lap in session.laps
            if lap.driver == d and lap.clean and lap.lap_time
        ]
        for d in drivers
    ]
    shown = [(d, x) for d, x in zip(drivers, data, strict=True) if x]
    fig, ax = _fig(7.5, 1.0 + 0.55 * max(1, len(shown)))
    top = lap_time_axis(ax.xaxis, [t for _, x in shown for t in x])
    for row, (driver, times) in enumerate(shown):
        values = np.minimum(np.asarray(times), top)
        # Spread the dots over the row so equal times stay visible (deterministic).
        jitter = (np.arange(len(values)) % 7 - 3) * 0.04
        ax.scatter(
            values,
            row + jitter,
            s=12,
            color=_color(drivers, driver),
            alpha=0.7,
            zorder=3,
        )
        if len(times) >= TREND_MIN_LAPS:
            ax.boxplot(
                [values],
                positions=[row],
                vert=False,
                widths=0.5,
                showfliers=False,
                manage_ticks=False,
            )
    ax.set_yticks(range(len(shown)), [d for d, _ in shown])
    ax.set_ylim(len(shown) - 0.4, -0.6)  # the first driver on top
    ax.set_xlabel("clean lap time (m:ss.s)")
    ax.set_title(
        "Consistency: every clean lap per driver (box: quartiles, from 5 laps)",
        fontsize=9,
    )
    return fig


def fuel(session: CompactedSession, plan: list[SessionEvent]) -> str:
    """SVG of :func:`fuel_figure`."""
    return svg_text(fuel_figure(session, plan))


def fuel_figure(session: CompactedSession, plan: list[SessionEvent]) -> Figure:
    """Fuel used per lap (litres) against the strategy's planned fuel per lap."""
    fig, ax = _fig()
    laps = [
        lap for lap in session.laps if lap.fuel_used is not None and lap.fuel_used > 0
    ]
    ax.bar(
        [lap.lap_number for lap in laps],
        [lap.fuel_used for lap in laps],
        color=["#bbb" if (lap.pit_lap or not lap.clean) else COLORS[0] for lap in laps],
        label="used (grey: pit or invalid lap)",
        width=0.8,
    )
    last = max((lap.lap_number for lap in session.laps), default=0)
    points = [
        (lap_at(session.laps, e.session_time), float(e.payload["fuel_per_lap"]))
        for e in plan
        if isinstance(e.payload.get("fuel_per_lap"), (int, float))
    ]
    for i, (lap, value) in enumerate(points):
        end = points[i + 1][0] if i + 1 < len(points) else last
        ax.hlines(
            value,
            lap - 0.5,
            end + 0.5,
            color=COLORS[1],
            linewidth=1.5,
            label="plan (fuel per lap)" if i == 0 else None,
        )
    lap_axis(ax.xaxis, [lap.lap_number for lap in session.laps])
    ax.set_xlabel("lap")
    ax.set_ylabel("fuel used (L)")
    ax.set_title("Fuel used per lap against plan", fontsize=9)
    if laps or points:
        ax.legend(fontsize=8, loc="lower right")
    return fig


def tyres(session: CompactedSession) -> str:
    """SVG of :func:`tyres_figure`."""
    return svg_text(tyres_figure(session))


def tyres_figure(session: CompactedSession) -> Figure:
    """Lap time against clean lap in stint; a linear trend (s/lap) from 5 laps on."""
    fig, ax = _fig()
    clean = [lap for lap in session.laps if lap.clean and lap.lap_time]
    top = lap_time_axis(ax.yaxis, [float(lap.lap_time or 0) for lap in clean])
    longest = 1
    for i, stint in enumerate(session.stints):
        laps = [lap for lap in clean if lap.stint == stint["stint"]]
        if not laps:
            continue
        longest = max(longest, len(laps))
        x = np.arange(1, len(laps) + 1, dtype=np.float64)
        y = np.asarray([lap.lap_time for lap in laps], dtype=np.float64)
        color = COLORS[i % len(COLORS)]
        label = f"stint {stint['stint']} ({stint['driver_name']})"
        if len(laps) >= TREND_MIN_LAPS:
            slope, icpt = trend(x, y)
            ax.plot(
                x,
                np.minimum(slope * x + icpt, top),
                "--",
                color=color,
                lw=1,
                gid=f"tyre-trend-stint-{stint['stint']}",
            )
            label += f": {slope:+.3f} s/lap"
        else:
            label += f": {len(laps)} laps, too few for a trend"
        ax.plot(x, np.minimum(y, top), "o", color=color, label=label, markersize=4)
    lap_axis(ax.xaxis, [1, longest])
    ax.set_xlabel("clean lap in stint")
    ax.set_ylabel("lap time (m:ss.s)")
    ax.set_title(
        f"Tyre management: lap-time trend over each stint (from {TREND_MIN_LAPS} "
        "clean laps)",
        fontsize=9,
    )
    if clean:
        ax.legend(fontsize=8)
    return fig


def track_map(session: CompactedSession, marks: list[dict[str, Any]]) -> str:
    """The track (GPS of the fastest lap, else a circle by lap distance) with marks on it.

    ``marks``: ``{"lap_dist_pct", "severity" (0..1), "label", "kind"}``.
    """
    fig, ax = _fig(5.0, 5.0)
    pct, x, y = _outline(session)
    ax.plot(x, y, color="#555", linewidth=2)
    ax.annotate("start/finish", (x[0], y[0]), fontsize=7)
    styles = {"mistake": ("X", COLORS[1]), "incident": ("o", COLORS[4])}
    for kind, (marker, color) in styles.items():
        chosen = [m for m in marks if m["kind"] == kind]
        if not chosen:
            continue
        at = np.asarray([float(m["lap_dist_pct"]) % 1.0 for m in chosen])
        sizes = [40 + 160 * float(m.get("severity") or 0.5) for m in chosen]
        ax.scatter(
            np.interp(at, pct, x),
            np.interp(at, pct, y),
            s=sizes,
            marker=marker,
            color=color,
            alpha=0.7,
            label=f"{kind}s ({len(chosen)})",
        )
    if marks:
        ax.legend(fontsize=8)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title("Mistake hotspots on the track map")
    return svg_text(fig)


def _lap_points(ax: Any, laps: list[Lap], top: float, color: str, label: str) -> None:
    """Lap times as dots; those above ``top`` as a triangle on the edge, time written."""
    inside = [lap for lap in laps if (lap.lap_time or 0) <= top]
    above = [lap for lap in laps if (lap.lap_time or 0) > top]
    ax.plot(
        [lap.lap_number for lap in inside],
        [lap.lap_time for lap in inside],
        "o",
        color=color,
        label=label,
        markersize=4,
    )
    for lap in above:
        ax.plot(lap.lap_number, top, "^", color=color, markersize=6, clip_on=False)
        ax.annotate(
            format_lap_time(lap.lap_time, 1),
            (lap.lap_number, top),
            xytext=(3, -10),
            textcoords="offset points",
            fontsize=6,
            color=color,
        )


def _running_median(y: np.ndarray[Any, Any], window: int) -> np.ndarray[Any, Any]:
    half = window // 2
    return np.asarray(
        [np.median(y[max(0, i - half) : i + half + 1]) for i in range(len(y))]
    )


def _outline(
    session: CompactedSession,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    tel = session.telemetry
    best = min(
        (lap for lap in session.laps if lap.clean),
        key=lambda lap: lap.lap_time or 1e9,
        default=None,
    )
    if (
        best is not None
        and best.start_time is not None
        and "Lat" in tel
        and "Lon" in tel
    ):
        time = tel["SessionTime"]
        sel = (time >= best.start_time) & (time < best.end_time)
        lat, lon, pct = tel["Lat"][sel], tel["Lon"][sel], tel["LapDistPct"][sel]
        good = np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) + np.abs(lon) > 0)
        if good.sum() > 20:
            order = np.argsort(pct[good])
            x = lon[good][order] * np.cos(np.radians(np.nanmean(lat[good])))
            return pct[good][order], x, lat[good][order]
    pct = np.linspace(0, 1, 200)
    return pct, np.sin(2 * np.pi * pct), np.cos(2 * np.pi * pct)


def section_losses(optimal: OptimalLap) -> str:
    """Time lost per section against the optimal lap, every clean lap (a heat map)."""
    fig, ax = _fig(7.5, 0.6 + 0.22 * max(3, len(optimal.laps)))
    loss = np.asarray([lap["loss"] for lap in optimal.laps])
    image = ax.imshow(loss, aspect="auto", cmap="Reds", vmin=0)
    ax.set_xticks(range(len(optimal.sections)), optimal.sections, fontsize=7)
    ax.set_yticks(
        range(len(optimal.laps)),
        [f"{lap['driver']} L{lap['lap']}" for lap in optimal.laps],
        fontsize=6,
    )
    fig.colorbar(image, ax=ax, label="time lost (s)")
    ax.set_xlabel("lap-distance segment (equal shares of the lap)")
    ax.set_title(
        "Lap comparison: time lost per segment against the optimal lap", fontsize=9
    )
    return svg_text(fig)


def lap_at(laps: list[Lap], session_time: float) -> int:
    """The number of the lap running at ``session_time`` (the last lap after the end)."""
    for lap in laps:
        if lap.end_time >= session_time:
            return lap.lap_number
    return laps[-1].lap_number if laps else 0
