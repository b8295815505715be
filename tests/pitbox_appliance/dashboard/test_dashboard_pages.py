"""Every dashboard page in NiceGUI's simulated browser, on an imported session and a live state."""

from __future__ import annotations

import asyncio
import json
import math
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from driver_pc.adapters.simulator import ORIGIN_LAT, ORIGIN_LON, TRACK_M, track_point
from pitbox_appliance.broker import free_port
from pitbox_appliance.dashboard.core_api import CoreApi
from pitbox_appliance.dashboard.crew_store import CrewStore, handoff_key
from pitbox_appliance.dashboard.layout import Branding
from pitbox_appliance.dashboard.live_state import LiveState
from pitbox_appliance.dashboard.session_data import SessionData
from tests.pitbox_appliance.dashboard.conftest import (
    ImportedDb,
    import_sim_session,
    live_payload,
    topic,
)

pytestmark = pytest.mark.timeout(60)
TOKEN = "pitwall-token-0123456789"


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> ImportedDb:
    return import_sim_session(tmp_path_factory.mktemp("pagesdb"))


# ---- a stand-in for the core's command API (the real one: test_dashboard_commands.py) ----
@dataclass(repr=False)
class StubCore:
    """Answers like the core's API: 202 + poll; ``mode`` decides the shim's answer."""

    cars: set[str] = field(default_factory=lambda: {"car1"})
    mode: str = "ok"
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    polls: dict[str, int] = field(default_factory=dict)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v1/cars/{car}/commands", self._send)
        app.router.add_get("/api/v1/commands/{cid}", self._status)
        app.router.add_get("/api/v1/health", self._health)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _send(self, request: web.Request) -> web.Response:
        car = request.match_info["car"]
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": "Authorization: ..."}, status=401)
        body = await request.json()
        if car not in self.cars:
            return web.json_response(
                {"error": f"car: no PC of car {car!r} is driving right now"}, status=404
            )
        self.received.append((car, body))
        cid = uuid.uuid4().hex
        self.polls[cid] = 0
        return web.json_response(
            {"command_id": cid, "source": f"{car}-pc1", "result": None}, status=202
        )

    async def _status(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        self.polls[cid] += 1
        result = None
        if self.mode != "silent" and self.polls[cid] >= 2:
            result = {"ok": self.mode == "ok", "detail": "shown on the driver PC"}
        return web.json_response({"command_id": cid, "result": result})

    async def _health(self, _request: web.Request) -> web.Response:
        shims = {
            "car1-pc1": {
                "state": "streaming",
                "adapter": "simulator",
                "spool_depth": 0,
            },
            "car1-pc2": {"state": "waiting_for_sim", "adapter": "iracing"},
            "car9-pc1": {"state": "stopped"},
        }
        return web.json_response({"shims": shims})


@dataclass(repr=False)
class Harness:
    """The simulated browser, what feeds it, and what it writes."""

    user: Any
    state: LiveState
    crew: CrewStore
    core: StubCore
    data: SessionData | None

    def publish(self, car: str = "car1", **kwargs: Any) -> None:
        self.state.handle(topic(car), car_state(car, **kwargs))


def car_state(
    car: str,
    *,
    session_key: str = "",
    pct: float = 0.25,
    pit: bool = False,
    t: float = 100.0,
    stint: int = 2,
    driver: str = "Alex Sim",
    gps: bool = True,
    others: list[dict[str, Any]] | None = None,
) -> bytes:
    """A live state as the core publishes it, with GPS on the simulator's track."""
    payload = json.loads(live_payload(car, t=t, driver=driver, session_key=session_key))
    point = track_point(pct * TRACK_M)
    values = payload["values"]
    values.update(LapDistPct=pct, OnPitRoad=1.0 if pit else 0.0)
    if gps:
        values["Lat"] = ORIGIN_LAT + point.y / 111_320.0
        values["Lon"] = ORIGIN_LON + point.x / (
            111_320.0 * math.cos(math.radians(ORIGIN_LAT))
        )
    payload.update(stint=stint, source=f"{car}-pc1", others=others or [])
    return json.dumps(payload).encode()


@asynccontextmanager
async def dashboard(
    imported: ImportedDb, tmp_path: Path, *, services: bool = True
) -> AsyncIterator[Harness]:
    """The dashboard root in ``user_simulation`` with real data, crew file and a stub API."""
    from nicegui.testing.user_simulation import user_simulation

    from pitbox_appliance.dashboard.app import build_root

    state = LiveState()
    state.set_connected(True)
    core = StubCore()
    await core.start()
    data = SessionData(imported.url) if services else None
    api = CoreApi(core.url, token=TOKEN, confirm_timeout_s=1.0, poll_interval_s=0.05)
    crew = CrewStore(tmp_path / "dashboard-crew.json")
    branding = Branding("Team Apex", "#00a3e0")
    root = (
        build_root(state, branding, data=data, api=api, crew=crew)
        if services
        else build_root(state, branding)
    )
    try:
        async with user_simulation(root=root) as user:
            yield Harness(user, state, crew, core, data)
    finally:
        await api.close()
        if data is not None:
            data.close()
        await core.stop()


async def eventually(check: Callable[[], bool], within_s: float = 5.0) -> None:
    """Wait until ``check()`` holds (pages refresh from timers; elements come and go)."""
    deadline = asyncio.get_running_loop().time() + within_s
    problem = ""
    while asyncio.get_running_loop().time() < deadline:
        try:
            if check():
                return
        except AssertionError as exc:  # user.find found nothing (yet)
            problem = str(exc).splitlines()[0][:200]
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met in {within_s} s {problem}")


def one(user: Any, marker: str) -> Any:
    return next(iter(user.find(marker=marker).elements))


def text_of(user: Any, marker: str) -> str:
    element = one(user, marker)
    content = element.props.get("innerHTML")
    return str(content if content is not None else element.text)


# ---- navigation -----------------------------------------------------------------------
async def test_navigation_keeps_the_header(
    imported: ImportedDb, tmp_path: Path
) -> None:
    async with dashboard(imported, tmp_path) as h:
        h.publish(session_key=imported.session_key)
        await h.user.open("/")
        await h.user.should_see(marker="page-live")
        await h.user.should_see("Team Apex")
        await h.user.should_see("Alex Sim", retries=10)
        header_driver = one(h.user, "driver")
        for name in ("map", "laps", "stints", "camera", "live"):
            h.user.find(marker=f"nav-{name}").click()
            await h.user.should_see(marker=f"page-{name}", retries=20)
            assert "pb-active" in one(h.user, f"nav-{name}").classes
            others = [n for n in ("map", "laps", "live") if n != name]
            assert all(
                "pb-active" not in one(h.user, f"nav-{n}").classes for n in others
            )
            # The header (and its timers) survive navigation: same element.
            assert one(h.user, "driver") is header_driver


def test_every_module_of_the_pages_package_is_a_page() -> None:
    import pkgutil

    from pitbox_appliance.dashboard import pages as package
    from pitbox_appliance.dashboard.pages import pages

    modules = {m.name for m in pkgutil.iter_modules(package.__path__)}
    found = {p.create.__module__.rsplit(".", 1)[1] for p in pages()}
    assert found == modules
    labels = "Live Map Laps Line Stints Strategy Heatmap Split Camera Drivers Devices".split()
    assert [p.label for p in pages()] == labels


async def test_a_page_is_found_from_its_declaration_alone(
    imported: ImportedDb, tmp_path: Path
) -> None:
    from nicegui import ui

    from pitbox_appliance.dashboard.context import PageContext
    from pitbox_appliance.dashboard.pages import PAGES, page

    with PAGES.scoped():

        @page("/pits", icon="build", label="Pits", order=35, css=".pb-pits{}")
        def create(ctx: PageContext) -> None:
            ui.label(f"pit crew of {ctx.services.branding.team_name}").mark("page-pits")

        async with dashboard(imported, tmp_path, services=False) as h:
            await h.user.open("/")
            await h.user.should_see(marker="page-live")
            h.user.find(marker="nav-pits").click()
            await h.user.should_see("pit crew of Team Apex", retries=20)
            assert "pb-active" in one(h.user, "nav-pits").classes


async def test_car_selection_is_shared_by_the_pages_of_a_tab(
    imported: ImportedDb, tmp_path: Path
) -> None:
    async with dashboard(imported, tmp_path) as h:
        h.publish("car1", session_key=imported.session_key)
        h.publish("car2", session_key="just-begun", driver="Bea Sim")
        await h.user.open("/map")
        await h.user.should_see(marker="cars", retries=20)
        toggle = one(h.user, "cars")
        assert list(toggle.options) == ["car1", "car2"]
        toggle.value = "car2"
        await h.user.should_see("Bea Sim", retries=10)
        h.user.find(marker="nav-laps").click()
        await h.user.should_see(marker="page-laps", retries=20)
        assert one(h.user, "cars").value == "car2"
        # car2's session has no laps yet.
        await eventually(lambda: "Martinsville" in text_of(h.user, "laps-note"))
        assert one(h.user, "lap-table").rows == []


# ---- /map --------------------------------------------------------------------------------
async def test_map_draws_the_outline_and_moves_the_cars(
    imported: ImportedDb, tmp_path: Path
) -> None:
    async with dashboard(imported, tmp_path) as h:
        h.publish(session_key=imported.session_key, pct=0.25)
        await h.user.open("/map")
        await h.user.should_see(marker="page-map")
        await eventually(lambda: "GPS of lap" in text_of(h.user, "map-outline"))
        await h.user.should_see("Other cars (in their class colour")
        h.publish(
            session_key=imported.session_key,
            pct=0.25,
            others=[
                {"idx": 3, "number": "7", "pct": 0.5, "pos": 2, "pit": False},
                {"idx": 5, "number": "9", "pct": 0.75, "pos": 1, "pit": True},
            ],
        )
        await eventually(
            lambda: len(one(h.user, "map-others").default_slot.children) == 2
        )
        svg = one(h.user, "map-svg")
        assert svg.props["viewBox"].count(" ") == 3

        def dot(car: str) -> tuple[float, float]:
            transform = str(one(h.user, f"dot-{car}").props.get("transform", ""))
            match = re.fullmatch(r"translate\((\S+),(\S+)\)", transform)
            assert match, transform
            return float(match.group(1)), -float(match.group(2))

        await eventually(lambda: bool(h.user.find(marker="dot-car1").elements))
        assert data_outline_point(h, imported, 0.25, dot("car1"))
        h.publish(session_key=imported.session_key, pct=0.6, t=101.0)
        await eventually(lambda: data_outline_point(h, imported, 0.6, dot("car1")))
        assert "PIT" not in text_of(h.user, "map-cars")
        h.publish(session_key=imported.session_key, pct=0.95, t=102.0, pit=True)
        await eventually(lambda: "PIT" in text_of(h.user, "map-cars"))
        # A car without GPS is placed on the outline by its lap distance.
        h.publish("car2", session_key="just-begun", pct=0.5, gps=False)
        await eventually(lambda: bool(h.user.find(marker="dot-car2").elements))
        await eventually(lambda: data_outline_point(h, imported, 0.5, dot("car2")))
        assert "car2" in text_of(h.user, "map-cars")


def data_outline_point(
    h: Harness, imported: ImportedDb, pct: float, shown: tuple[float, float]
) -> bool:
    """Is ``shown`` within 4 m of the simulator's track at ``pct``, in map metres?"""
    point = track_point(pct * TRACK_M)
    lat = ORIGIN_LAT + point.y / 111_320.0
    lon = ORIGIN_LON + point.x / (111_320.0 * math.cos(math.radians(ORIGIN_LAT)))
    assert h.data is not None
    cached = [
        v
        for k, (_t, v) in h.data._cache.items()
        if k == ("outline", imported.session_key)
    ]
    if not cached:
        return False
    expected = cached[0].project(lat, lon)
    return bool(expected is not None and math.dist(expected, shown) < 4.0)


# ---- /laps -------------------------------------------------------------------------------
async def test_laps_compares_best_and_last_then_any_two(
    imported: ImportedDb, tmp_path: Path
) -> None:
    async with dashboard(imported, tmp_path) as h:
        assert h.data is not None
        history = await h.data.history(imported.session_key)
        assert history is not None
        best, last = history.best, history.last
        assert best is not None
        assert last is not None
        h.publish(session_key=imported.session_key)
        await h.user.open("/laps")
        table = one(h.user, "lap-table")
        await eventually(lambda: len(table.rows) == len(history.laps))
        marks = {row["id"]: row["mark"] for row in table.rows}
        assert marks[best.id] == "A"
        assert marks[last.id] == "B"
        assert table.rows[0]["id"] == last.id  # newest first
        delta = last.lap_time - best.lap_time  # type: ignore[operator]
        await eventually(lambda: f"Δ {delta:+.3f}" in text_of(h.user, "compare-head"))
        chart = one(h.user, "compare-chart")
        assert len(chart.options["dataset"]["source"]) == 400
        assert "S1" in text_of(h.user, "compare-head")

        # Tap sets A: lap 2 becomes the reference.
        one(h.user, "pick-slot").value = "A"
        lap2 = next(lap for lap in history.laps if lap.number == 2)
        h.user.find(marker="lap-table").trigger("pick", lap2.id)
        await eventually(
            lambda: {r["id"]: r["mark"] for r in table.rows}.get(lap2.id) == "A"
        )
        await eventually(
            lambda: f"A</b> L{lap2.number} " in text_of(h.user, "compare-head")
        )
        h.user.find(marker="best-vs-last").click()
        await eventually(
            lambda: {r["id"]: r["mark"] for r in table.rows}.get(best.id) == "A"
        )
        # The out lap has no start time: as B it cannot be compared.
        one(h.user, "pick-slot").value = "B"
        h.user.find(marker="lap-table").trigger("pick", history.laps[0].id)
        await eventually(
            lambda: "cannot be compared" in text_of(h.user, "compare-head")
        )


async def test_laps_without_a_live_car_show_the_newest_session(
    imported: ImportedDb, tmp_path: Path
) -> None:
    async with dashboard(imported, tmp_path) as h:
        await h.user.open("/laps")
        await eventually(
            lambda: (
                "Newest stored session (no live car)" in text_of(h.user, "laps-note")
            )
        )


# ---- /stints -------------------------------------------------------------------------
async def test_stints_history_and_the_handoff_checklist(
    imported: ImportedDb, tmp_path: Path
) -> None:
    async with dashboard(imported, tmp_path) as h:
        h.publish(session_key=imported.session_key, stint=2)
        await h.user.open("/stints")
        table = one(h.user, "stint-table")
        await eventually(lambda: len(table.rows) == 2)
        assert [row["n"] for row in table.rows] == [2, 1]
        assert table.rows[0]["kind"] == "pb-open"
        assert "100 %" in text_of(h.user, "drivers") or "%" in text_of(
            h.user, "drivers"
        )
        await eventually(lambda: "car1-pc2" in text_of(h.user, "shims"))
        assert "(driving)" in text_of(h.user, "shims")
        assert "car9" not in text_of(h.user, "shims")
        assert text_of(h.user, "handoff-title") == "Handoff after stint 2"
        assert text_of(h.user, "handoff-state") == "0/4 checked"

        key = handoff_key("car1", imported.session_key, 2)
        h.user.find(marker="check-fuel").click()
        await eventually(lambda: "fuel" in h.crew.checklist(key).ticked)
        await eventually(lambda: text_of(h.user, "handoff-state") == "1/4 checked")
        assert one(h.user, "check-fuel").props["icon"] == "check_box"
        for item in ("tyres", "brake_bias", "shim"):
            h.user.find(marker=f"check-{item}").click()
        await eventually(
            lambda: text_of(h.user, "handoff-state") == "READY FOR HANDOFF"
        )
        one(h.user, "next-driver").value = "Alex Sim"
        await eventually(lambda: h.crew.checklist(key).next_driver == "Alex Sim")
        h.user.find(marker="check-fuel").click()  # untick
        await eventually(lambda: "fuel" not in h.crew.checklist(key).ticked)

        # The ticks are in the dashboard's own file, not the core's database.
        reread = CrewStore(tmp_path / "dashboard-crew.json")
        assert set(reread.checklist(key).ticked) == {"tyres", "brake_bias", "shim"}
        assert reread.checklist(key).next_driver == "Alex Sim"

        # The next stint starts a fresh checklist.
        h.publish(session_key=imported.session_key, stint=3, t=200.0)
        await eventually(lambda: text_of(h.user, "handoff-state") == "0/4 checked")


# ---- /camera ------------------------------------------------------------------------------
async def test_camera_and_message_commands_are_confirmed(
    imported: ImportedDb, tmp_path: Path
) -> None:
    async with dashboard(imported, tmp_path) as h:
        h.publish(session_key=imported.session_key)
        await h.user.open("/camera")
        await h.user.should_see(marker="page-camera")
        # The car number defaults to our own, from the stored session info.
        await eventually(lambda: one(h.user, "cam-car").value == "42")
        await h.user.should_see(marker="car-42")
        one(h.user, "cam-group").value = 3
        h.user.find(marker="send-camera").click()
        await eventually(lambda: text_of(h.user, "camera-status").startswith("✓"))
        assert "car1-pc1 confirmed" in text_of(h.user, "camera-status")
        assert h.core.received == [
            ("car1", {"kind": "camera", "args": {"car": "42", "group": 3, "camera": 1}})
        ]

        h.user.find(marker="quick-0").click()
        assert one(h.user, "message-text").value == "Box this lap"
        h.user.find(marker="send-message").click()
        await eventually(lambda: text_of(h.user, "message-status").startswith("✓"))
        assert h.core.received[-1] == (
            "car1",
            {"kind": "message", "args": {"text": "Box this lap"}},
        )
        assert one(h.user, "message-text").value == ""
        log = h.crew.log()
        assert [e.kind for e in log] == ["message", "camera"]
        assert log[0].session_key == imported.session_key
        await eventually(lambda: "Box this lap" in text_of(h.user, "command-log"))

        # The shim refuses, never answers, or the car has no shim.
        h.core.mode = "fail"
        one(h.user, "message-text").value = "Push"
        h.user.find(marker="send-message").click()
        await eventually(
            lambda: text_of(h.user, "message-status").startswith("✗ failed")
        )
        h.core.mode = "silent"
        one(h.user, "message-text").value = "Push"
        h.user.find(marker="send-message").click()
        await eventually(
            lambda: text_of(h.user, "message-status").startswith("✗ timeout")
        )
        h.core.cars.clear()
        h.user.find(marker="send-camera").click()
        await eventually(
            lambda: text_of(h.user, "camera-status").startswith("✗ refused")
        )
        assert "no PC" in text_of(h.user, "camera-status")
        one(h.user, "message-text").value = ""
        h.user.find(marker="send-message").click()
        await eventually(lambda: "Type a message" in text_of(h.user, "message-status"))


async def test_core_api_unreachable_is_said_plainly() -> None:
    api = CoreApi(f"http://127.0.0.1:{free_port()}", confirm_timeout_s=0.5)
    try:
        outcome = await api.send("car1", "message", {"text": "x"})
        assert outcome.outcome.value == "unreachable"
        assert await api.shims() is None
    finally:
        await api.close()
    nowhere = CoreApi(None)
    assert (await nowhere.send("car1", "message", {"text": "x"})).outcome.value == (
        "unreachable"
    )


# ---- without database, API or crew file -------------------------------------------------
async def test_pages_say_what_is_missing(imported: ImportedDb, tmp_path: Path) -> None:
    async with dashboard(imported, tmp_path, services=False) as h:
        h.publish(session_key=imported.session_key)
        await h.user.open("/laps")
        await eventually(
            lambda: "No database configured" in text_of(h.user, "laps-note")
        )
        h.user.find(marker="nav-stints").click()
        await h.user.should_see(marker="page-stints", retries=20)
        await eventually(
            lambda: "No database configured" in text_of(h.user, "stints-note")
        )
        assert text_of(h.user, "handoff-state") == "No crew file configured"
        h.user.find(marker="nav-map").click()
        await h.user.should_see(marker="page-map", retries=20)
        await eventually(
            lambda: "no database configured" in text_of(h.user, "map-outline")
        )
        h.user.find(marker="nav-camera").click()
        await h.user.should_see(marker="page-camera", retries=20)
        one(h.user, "cam-car").value = "7"
        h.user.find(marker="send-camera").click()
        await eventually(
            lambda: text_of(h.user, "camera-status") == "No core API configured."
        )
