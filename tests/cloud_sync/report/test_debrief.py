"""The report as a race engineer's debrief: summary figures against the parquet tables, axes, trends, car name."""

from __future__ import annotations

import itertools
import json
import os
import re
import statistics
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from matplotlib.figure import Figure

from cloud_sync.compacted import CompactedSession, load_session
from cloud_sync.report import plots
from cloud_sync.report.generator import Report, SessionReportGenerator, write_report
from tests.conftest import REPO_ROOT, import_into, readonly_engine

DATA = Path(os.environ.get("PITBOX_REAL_DATA", REPO_ROOT.parent / "shared" / "data"))
MARTINSVILLE = (
    DATA / "iracing" / "ibt" / "skmodified_martinsville_2015-05-30_20-32-44.ibt"
)
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts" / "reports"
SEGMENTS = 10
DRIVERS = ("Alex Sim", "Bea Sim")


# ---- sessions ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def endurance(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated two-driver race with a stop and a swap, through the real ingest."""
    from driver_pc.adapters.simulator import RaceSimulatorAdapter
    from driver_pc.pipeline import ShimPipeline
    from pitbox_appliance.cli.importer import local_codec
    from pitbox_appliance.compaction import compact_session
    from pitbox_appliance.core.ingest import Ingestor
    from pitbox_appliance.storage.database import open_database
    from pitbox_appliance.storage.writer import SessionWriter

    root = tmp_path_factory.mktemp("endurance")
    url = f"sqlite:///{root / 'db.sqlite3'}"
    codec = local_codec()
    engine = open_database(url)
    writer = SessionWriter(engine)
    ingestor = Ingestor(codec, writer)
    sim = RaceSimulatorAdapter(
        laps=16,
        speed=0,
        seed=4,
        drivers=DRIVERS,
        start_fuel=3.0,
        endurance=True,
        incidents=20.0,  # ~15 an hour: spins and offs to count and to clip
    )
    for seq, message in enumerate(ShimPipeline(sim).messages(), 1):
        ingestor.handle(codec.encode("car42-pc1", seq, message))
        if seq % 2000 == 0:
            ingestor.flush()
    ingestor.end_of_streams()
    ingestor.flush()
    writer.close()
    engine.dispose()
    reader = readonly_engine(url)
    try:
        return root / "outbox" / compact_session(reader, 1, root / "outbox").path
    finally:
        reader.dispose()


@pytest.fixture(scope="module")
def martinsville(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real 2015 Martinsville recording, imported and compacted."""
    if not MARTINSVILLE.is_file():
        pytest.skip(f"real recording not found: {MARTINSVILLE} (set PITBOX_REAL_DATA)")
    from pitbox_appliance.compaction import compact_session

    root = tmp_path_factory.mktemp("martinsville")
    url = f"sqlite:///{root / 'db.sqlite3'}"
    import_into(url, MARTINSVILLE)
    reader = readonly_engine(url)
    try:
        return root / "outbox" / compact_session(reader, 1, root / "outbox").path
    finally:
        reader.dispose()


def _report(root: Path) -> tuple[CompactedSession, Report]:
    session = load_session(root)
    return session, SessionReportGenerator(session).build()


# ---- what the tables say, computed here from the parquet files -----------------------
def _laps(root: Path) -> list[dict[str, Any]]:
    return pq.read_table(root / "laps" / "laps.parquet").to_pylist()


def _clean(row: dict[str, Any]) -> bool:
    return (
        row["lap_time"] is not None
        and not row["pit_lap"]
        and not row["invalid"]
        and row["start_time"] is not None
    )


def _events(root: Path, kind: str) -> list[tuple[float, dict[str, Any]]]:
    return [
        (r["session_time"], json.loads(r["payload"]))
        for r in pq.read_table(root / "events" / "events.parquet").to_pylist()
        if r["kind"] == kind
    ]


def _expected_stops(rows: list[dict[str, Any]]) -> list[int]:
    """Runs of pit laps, except one on the first recorded lap (leaving the pits)."""
    ordered = sorted(rows, key=lambda r: r["lap_number"])
    return [
        r["lap_number"]
        for prev, r in itertools.pairwise(ordered)
        if r["pit_lap"] and not prev["pit_lap"]
    ]


def _segment_times(
    root: Path, rows: list[dict[str, Any]], edges: list[float] | None = None
) -> dict[int, np.ndarray]:
    """Per clean lap: time between lap-distance ``edges`` (tenths), from telemetry.parquet."""
    edges = edges or [k / SEGMENTS for k in range(SEGMENTS + 1)]
    table = pq.read_table(
        root / "telemetry" / "telemetry.parquet",
        columns=["source", "SessionTime", "LapDistPct"],
    ).to_pydict()
    sources = table["source"]
    main = max(set(sources), key=sources.count)
    pairs = sorted(
        (t, p)
        for s, t, p in zip(
            sources, table["SessionTime"], table["LapDistPct"], strict=True
        )
        if s == main
    )
    time = np.array([t for t, _ in pairs], dtype=np.float64)
    pct = np.array([p for _, p in pairs], dtype=np.float64)  # None → NaN
    out = {}
    for r in rows:
        if not _clean(r):
            continue
        inside = (time >= r["start_time"]) & (time <= r["end_time"])
        t, p = time[inside], np.clip(pct[inside], 0, 1)
        # Drop the samples that still read the previous lap (close to 1.0).
        keep = np.arange(len(p)) >= np.argmax(p < 0.5)
        t, p = t[keep], np.maximum.accumulate(p[keep])
        marks = [
            r["start_time"],
            *(np.interp(e, p, t) for e in edges[1:-1]),
            r["end_time"],
        ]
        out[r["lap_number"]] = np.diff(marks)
    return out


# ---- the summary -----------------------------------------------------------------------
def test_summary_figures_equal_what_the_tables_say(endurance: Path) -> None:
    _, report = _report(endurance)
    rows = _laps(endurance)
    summary = report.summary
    assert set(summary["drivers"]) == set(DRIVERS)  # the swap happened
    for driver in DRIVERS:
        mine = [r for r in rows if r["driver_name"] == driver]
        clean = [r["lap_time"] for r in mine if _clean(r)]
        fuel = [r["fuel_used"] for r in mine if _clean(r) and r["fuel_used"]]
        got = summary["drivers"][driver]
        assert got["laps"] == len(mine)
        assert got["clean_laps"] == len(clean)
        assert got["best_lap"] == pytest.approx(min(clean), abs=1e-9)
        assert got["mean_lap"] == pytest.approx(statistics.fmean(clean), abs=1e-9)
        assert got["fuel_per_lap"] == pytest.approx(statistics.fmean(fuel), abs=1e-9)
    stops = _expected_stops(rows)
    assert stops  # the session has a stop to report
    assert summary["stops"] == stops
    fuel = [r["fuel_used"] for r in rows if _clean(r) and r["fuel_used"]]
    assert summary["fuel_per_lap"] == pytest.approx(statistics.fmean(fuel), abs=1e-9)
    plan = [p["fuel_per_lap"] for _, p in _events(endurance, "strategy_recommendation")]
    plan = [x for x in plan if isinstance(x, (int, float))]
    assert plan
    assert summary["fuel_plan_per_lap"] == pytest.approx(plan[-1], abs=1e-12)
    incidents = _events(endurance, "incident_detected")
    assert incidents  # the simulator's driver went off: there is something to count
    assert summary["incidents"] == len(incidents)
    assert sum(d["incidents"] for d in summary["drivers"].values()) == len(incidents)
    points = sum(int(p.get("points") or 0) for _, p in incidents)
    assert summary["incident_points"] == points
    # The three biggest losses against the best lap, by corner: each corner's zone
    # from corners.parquet (a zone across the line is two pieces, summed).
    corners = pq.read_table(endurance / "corners" / "corners.parquet").to_pylist()
    assert len(corners) >= 2  # the simulated track has its corners found
    edges = sorted({0.0, 1.0, *(c["zone_start_pct"] for c in corners)})

    def zone_of(pct: float) -> str:
        for c in corners:
            lo, hi = c["zone_start_pct"], c["zone_end_pct"]
            if (lo <= pct < hi) if lo < hi else (pct >= lo or pct < hi):
                return str(c["label"])
        raise AssertionError(pct)

    labels = [zone_of((a + b) / 2) for a, b in itertools.pairwise(edges)]
    names = list(dict.fromkeys(labels))
    pieces = _segment_times(endurance, rows, edges)
    times = {
        n: np.array([sum(v[i] for i, x in enumerate(labels) if x == m) for m in names])
        for n, v in pieces.items()
    }
    best = min(times, key=lambda n: times[n].sum())
    loss = np.vstack([times[n] - times[best] for n in sorted(times) if n != best])
    order = np.argsort(-loss.sum(axis=0), kind="stable")[:3]
    losses = summary["time_losses"]
    assert summary["loss_basis"] == "corner"
    assert [x["segment"] for x in losses] == [names[i] for i in order]
    for x, i in zip(losses, order, strict=True):
        assert x["best_lap"] == best
        assert x["laps"] == len(times) - 1
        assert x["total_loss_s"] == pytest.approx(loss[:, i].sum(), abs=1e-6)
        assert x["mean_loss_s"] == pytest.approx(loss[:, i].mean(), abs=1e-6)
    # The page opens with these figures, before any other section.
    first = report.html.split("<h2>", 1)[0]
    for driver in DRIVERS:
        got = summary["drivers"][driver]
        assert f"<td>{driver}</td>" in first
        assert f">{plots.format_lap_time(got['best_lap'])}<" in first
        assert f">{plots.format_lap_time(got['mean_lap'])}<" in first
    assert f"on lap {', '.join(map(str, stops))}" in first
    assert f"{summary['fuel_per_lap']:.3f} / {plan[-1]:.3f} L" in first
    assert f"{points} point{'' if points == 1 else 's'}" in first
    for x in losses:
        assert f"<td>{x['segment']}</td>" in first
        assert f">{x['total_loss_s']:+.3f}<" in first
    assert "Biggest time losses by corner" in first
    assert "as numbered on the pit wall" in first


def test_lap_time_format() -> None:
    assert plots.format_lap_time(19.30096) == "19.301"
    assert plots.format_lap_time(95.1234) == "1:35.123"
    assert plots.format_lap_time(119.9996) == "2:00.000"
    assert plots.format_lap_time(65.04, 1) == "1:05.0"
    assert plots.format_lap_time(None) == "—"


# ---- the plots -------------------------------------------------------------------------
def _visible_ticks(fig: Figure, axis: str) -> tuple[list[float], list[str]]:
    plots.svg_text(fig)  # lays the figure out, so the tick labels are set
    ax = fig.axes[0]
    lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    ticks = ax.get_xticks() if axis == "x" else ax.get_yticks()
    labels = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    shown = [(float(t), lab.get_text()) for t, lab in zip(ticks, labels, strict=True)]
    shown = [(t, s) for t, s in shown if lo <= t <= hi]
    return [t for t, _ in shown], [s for _, s in shown]


def _assert_lap_axis(fig: Figure) -> None:
    ticks, labels = _visible_ticks(fig, "x")
    assert ticks
    assert all(t == int(t) for t in ticks), ticks
    assert all(re.fullmatch(r"−?\d+", s) for s in labels), labels


def _assert_lap_time_axis(fig: Figure, axis: str, times: list[float]) -> None:
    ticks, labels = _visible_ticks(fig, axis)
    assert len(ticks) >= 3
    assert all(re.fullmatch(r"(\d+:\d\d|\d+)\.\d", s) for s in labels), labels
    for t, s in zip(ticks, labels, strict=True):
        assert s == plots.format_lap_time(t, 1)
    ax = fig.axes[0]
    lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    # The range shows the spread, not zero: from the fastest lap, over most laps;
    # slower ones (spins, yellows) go on the edge rather than squash the rest.
    assert lo <= min(times) <= lo + max(0.2 * (hi - lo), 0.3)  # 0.4 s at least
    assert hi >= float(np.percentile(times, 75))
    assert hi - lo <= max(1.0, 1.2 * (max(times) - min(times)))
    above = [t for t in times if t > hi]
    if axis == "y" and fig.axes[0].get_xlabel() == "lap":
        edge = [
            line
            for line in fig.axes[0].get_lines()
            if line.get_marker() == "^"
            and line.get_ydata()[0]
            == pytest.approx(fig.axes[0].get_ylim()[1], abs=0.5 * (hi - lo))
        ]
        assert len(edge) == len(above)


def test_axes_and_trends_follow_the_data(endurance: Path) -> None:
    session = load_session(endurance)
    rows = _laps(endurance)
    clean = [r["lap_time"] for r in rows if _clean(r)]
    for fig in (
        plots.lap_times_figure(session),
        plots.fuel_figure(session, session.events_of("strategy_recommendation")),
    ):
        _assert_lap_axis(fig)
    _assert_lap_axis(plots.tyres_figure(session))
    _assert_lap_time_axis(plots.lap_times_figure(session), "y", clean)
    _assert_lap_time_axis(plots.tyres_figure(session), "y", clean)
    _assert_lap_time_axis(plots.consistency_figure(session), "x", clean)
    fuel_axis = plots.fuel_figure(session, []).axes[0]
    assert fuel_axis.get_ylabel() == "fuel used (L)"
    # A trend only over stints with at least TREND_MIN_LAPS clean laps.
    per_stint: dict[int, int] = {}
    for r in rows:
        if _clean(r):
            per_stint[r["stint"]] = per_stint.get(r["stint"], 0) + 1
    long = {s for s, n in per_stint.items() if n >= plots.TREND_MIN_LAPS}
    short = set(per_stint) - long
    assert long
    assert short  # this session has both kinds
    tyres = plots.tyres(session)
    laps = plots.lap_times(session)
    for stint in long:
        assert f'id="tyre-trend-stint-{stint}"' in tyres
        assert f'id="lap-trend-stint-{stint}"' in laps
    for stint in short:
        assert f"tyre-trend-stint-{stint}" not in tyres
        assert f"lap-trend-stint-{stint}" not in laps
    with pytest.raises(ValueError, match="a trend needs"):
        plots.trend(np.arange(4.0), np.arange(4.0))


# ---- the real recording ----------------------------------------------------------------
def _car_screen_name(yaml_text: str) -> str:
    """The player's CarScreenName, read from the YAML text by hand (no YAML parser)."""
    idx = re.search(r"^ DriverCarIdx: (\d+)$", yaml_text, re.M)
    assert idx is not None
    block = re.split(rf"^ - CarIdx: {idx.group(1)}$", yaml_text, flags=re.M)[1]
    name = re.search(r"^   CarScreenName: (.+)$", block, re.M)
    assert name is not None
    return name.group(1).strip()


def test_martinsville_debrief(martinsville: Path, tmp_path: Path) -> None:
    session, report = _report(martinsville)
    rows = _laps(martinsville)
    # The car is named as the session info names it, not by the import's car id.
    expected = _car_screen_name(
        (martinsville / "session" / "session_info.yaml").read_text(encoding="utf-8")
    )
    assert expected == "Modified - Tour"
    assert session.car == "import"
    assert session.car_name == expected
    first = report.html.split("<h2>", 1)[0]
    assert expected in first
    assert "import" not in first
    assert f"<title>PitBox session report: Martinsville Speedway, {expected}" in (
        report.html
    )
    # iRacing's own LapLastLapTime: 19.301 and 19.546 s (data README).
    clean = [r for r in rows if _clean(r)]
    assert [round(r["lap_time"], 3) for r in clean] == [19.301, 19.546]
    assert ">19.301<" in first
    assert report.summary["stops"] == _expected_stops(rows) == []
    assert "none made" in first
    # Lap axes show whole laps (they showed 31.75, 32.00… on the fuel plot).
    _assert_lap_axis(plots.lap_times_figure(session))
    _assert_lap_axis(plots.fuel_figure(session, []))
    _assert_lap_time_axis(
        plots.lap_times_figure(session), "y", [r["lap_time"] for r in clean]
    )
    # Two clean laps: no line is drawn through them as a trend.
    assert len(clean) < plots.TREND_MIN_LAPS
    assert "trend-stint" not in report.html
    for fig in (plots.lap_times_figure(session), plots.tyres_figure(session)):
        # Dots only; a line joining laps would be a trend (":" are the pit-lap marks).
        joined = [
            line
            for line in fig.axes[0].get_lines()
            if len(line.get_xdata()) >= 2 and line.get_linestyle() not in ("None", ":")
        ]
        assert joined == []
    # 2015: no incident counter in the file and no incident events: not "0 points".
    assert "no incident counter" in first
    write_report(report, tmp_path)
    HtmlCheck.check((tmp_path / "report.html").read_text())


# ---- the page without a browser, then in one ---------------------------------------------
class HtmlCheck(HTMLParser):
    """Well-formed enough: every opened section/table/div closed, the summary first."""

    VOID = frozenset({"meta", "br", "img", "hr", "input", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.order: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        self.stack.append(tag)
        classes = dict(attrs).get("class") or ""
        if tag in ("h1", "h2", "svg") or "summary" in classes.split():
            self.order.append(tag if "summary" not in classes else "summary")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.stack, f"</{tag}> closes nothing"
        if tag in ("path", "g", "text", "use", "defs", "clippath", "style"):
            # SVG elements may self-close; pop to the matching tag.
            while self.stack and self.stack[-1] != tag:
                self.stack.pop()
        assert self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1]}>"
        self.stack.pop()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass

    @classmethod
    def check(cls, page: str) -> list[str]:
        parser = cls()
        parser.feed(page)
        parser.close()
        assert parser.stack == [], parser.stack
        # The summary (with the page's h1) comes before every section and figure.
        assert parser.order[:2] == ["summary", "h1"], parser.order[:5]
        assert parser.order.count("summary") == 1
        return parser.order


def test_html_without_a_browser(endurance: Path, tmp_path: Path) -> None:
    _, report = _report(endurance)
    path = write_report(report, tmp_path)
    order = HtmlCheck.check(path.read_text())
    assert order.count("svg") == 6
    # Units on every quantity column of the summary.
    first = report.html.split("<h2>", 1)[0]
    assert "fuel per clean lap (L)" in first
    assert "lost in total (s)" in first


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium not installed at /usr/bin/chromium"
)
def test_summary_fits_one_screen_in_chromium(endurance: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    _, report = _report(endurance)
    path = write_report(report, tmp_path)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(path.as_uri())
            box = page.locator("section.summary").bounding_box()
            assert box is not None
            assert box["y"] + box["height"] <= 800, box  # one screen at 1280×800
            text = page.locator("section.summary").inner_text()
            for driver in DRIVERS:
                assert driver in text
            assert "Stops" in text
            assert "Fuel per lap vs plan" in text
            assert "Biggest time losses by corner" in text
            page.screenshot(path=str(ARTIFACTS / "debrief-summary.png"))
            assert errors == []
        finally:
            browser.close()
