"""The report's figures (matplotlib, no pyplot): each function returns inline SVG text."""

from __future__ import annotations

import io
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cloud_sync.analytics.performance import OptimalLap
from cloud_sync.compacted import CompactedSession, Lap, SessionEvent

matplotlib.rcParams["svg.hashsalt"] = (
    "pitbox"  # stable ids: the same data, the same SVG
)
matplotlib.rcParams["svg.fonttype"] = "none"
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


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
    """Clean lap times over the session, coloured by driver, stints shaded."""
    fig, ax = _fig()
    drivers = session.drivers()
    for driver in drivers:
        laps = [lap for lap in session.laps if lap.driver == driver and lap.clean]
        ax.plot(
            [lap.lap_number for lap in laps],
            [lap.lap_time for lap in laps],
            "o-",
            color=_color(drivers, driver),
            label=driver,
            markersize=4,
        )
    for lap in session.laps:
        if lap.pit_lap:
            ax.axvline(lap.lap_number, color="#999", linestyle=":", linewidth=1)
    for i, stint in enumerate(session.stints):
        numbers = [
            lap.lap_number for lap in session.laps if lap.stint == stint["stint"]
        ]
        if numbers and i % 2:
            ax.axvspan(min(numbers) - 0.5, max(numbers) + 0.5, color="#eee", zorder=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("lap")
    ax.set_ylabel("lap time (s)")
    ax.set_title("Lap times by stint and driver (dotted: pit laps)")
    ax.legend(fontsize=8)
    return svg_text(fig)


def consistency(session: CompactedSession) -> str:
    """Distribution of clean lap times per driver."""
    fig, ax = _fig(7.5, 2.8)
    drivers = session.drivers()
    data = [
        [lap.lap_time for lap in session.laps if lap.driver == d and lap.clean]
        for d in drivers
    ]
    shown = [(d, x) for d, x in zip(drivers, data, strict=True) if x]
    if shown:
        ax.boxplot([x for _, x in shown], vert=False, tick_labels=[d for d, _ in shown])
    ax.set_xlabel("clean lap time (s)")
    ax.set_title("Consistency: clean lap times per driver")
    return svg_text(fig)


def fuel(session: CompactedSession, plan: list[SessionEvent]) -> str:
    """Fuel used per lap against the strategy's planned fuel per lap."""
    fig, ax = _fig()
    laps = [
        lap for lap in session.laps if lap.fuel_used is not None and lap.fuel_used > 0
    ]
    ax.bar(
        [lap.lap_number for lap in laps],
        [lap.fuel_used for lap in laps],
        color=["#bbb" if lap.pit_lap else COLORS[0] for lap in laps],
        label="used (grey: pit lap)",
    )
    points = [
        (lap_at(session.laps, e.session_time), float(e.payload["fuel_per_lap"]))
        for e in plan
        if isinstance(e.payload.get("fuel_per_lap"), (int, float))
    ]
    if points:
        xs = [p[0] for p in points] + [max(lap.lap_number for lap in session.laps)]
        ys = [p[1] for p in points] + [points[-1][1]]
        ax.step(xs, ys, where="post", color=COLORS[1], label="plan (fuel per lap)")
    ax.set_xlabel("lap")
    ax.set_ylabel("fuel (L)")
    ax.set_title("Fuel use against plan")
    ax.legend(fontsize=8)
    return svg_text(fig)


def tyres(session: CompactedSession) -> str:
    """Lap time against lap in stint, one line and linear trend per stint."""
    fig, ax = _fig()
    for i, stint in enumerate(session.stints):
        laps = [
            lap for lap in session.laps if lap.stint == stint["stint"] and lap.clean
        ]
        if not laps:
            continue
        x = np.arange(1, len(laps) + 1, dtype=np.float64)
        y = np.asarray([lap.lap_time for lap in laps], dtype=np.float64)
        color = COLORS[i % len(COLORS)]
        label = f"stint {stint['stint']} ({stint['driver_name']})"
        if len(laps) >= 3:
            slope, icpt = np.polyfit(x, y, 1)
            ax.plot(x, slope * x + icpt, "--", color=color, linewidth=1)
            label += f": {slope:+.3f} s/lap"
        ax.plot(x, y, "o", color=color, label=label, markersize=4)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("clean lap in stint")
    ax.set_ylabel("lap time (s)")
    ax.set_title("Tyre management: lap-time trend over each stint")
    ax.legend(fontsize=8)
    return svg_text(fig)


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
    fig.colorbar(image, ax=ax, label="s lost")
    ax.set_title("Lap comparison: loss per section against the optimal lap")
    return svg_text(fig)


def lap_at(laps: list[Lap], session_time: float) -> int:
    for lap in laps:
        if lap.end_time >= session_time:
            return lap.lap_number
    return laps[-1].lap_number if laps else 0
