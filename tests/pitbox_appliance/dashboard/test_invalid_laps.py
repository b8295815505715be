"""Invalid laps (reset, tow, no time from iRacing) on the pit wall, ``/laps`` and ``/stints``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from pitbox_appliance.dashboard.layout import Branding
from pitbox_appliance.dashboard.live_state import LiveState
from pitbox_appliance.dashboard.session_data import SessionData
from pitbox_appliance.storage.database import make_engine
from pitbox_appliance.storage.models import Lap
from pitbox_appliance.storage.reader import SessionReader
from pitbox_appliance.storage.writer import SessionWriter
from tests.pitbox_appliance.dashboard.conftest import (
    ImportedDb,
    import_sim_session,
    live_payload,
    topic,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> ImportedDb:
    """The simulated session plus a lap after its last one: reset to the pits."""
    db = import_sim_session(tmp_path_factory.mktemp("invaliddb"))
    engine = make_engine(db.url)
    last = SessionReader(engine).laps()[-1]
    writer = SessionWriter(engine)
    writer.add_lap(
        Lap(
            session_id=last.session_id,
            stint_id=last.stint_id,
            driver_id=last.driver_id,
            lap_number=last.lap_number + 1,
            start_time=last.end_time,
            end_time=last.end_time + 40.0,
            lap_time=None,
            fuel_used=None,
            pit_lap=True,
            invalid=True,
            refuelled=True,
        )
    )
    writer.commit()
    writer.close()
    engine.dispose()
    return db


@asynccontextmanager
async def pages(db: ImportedDb | None) -> AsyncIterator[tuple[Any, LiveState]]:
    from nicegui.testing.user_simulation import user_simulation

    from pitbox_appliance.dashboard.app import build_root

    state = LiveState()
    state.set_connected(True)
    data = SessionData(db.url) if db is not None else None
    try:
        root = build_root(state, Branding("Team Apex", "#00a3e0"), data=data)
        async with user_simulation(root=root) as user:
            yield user, state
    finally:
        if data is not None:
            data.close()


def publish(state: LiveState, **extra: Any) -> None:
    payload = json.loads(live_payload())
    payload.update(extra)
    state.handle(topic("car1"), json.dumps(payload).encode())


async def eventually(check: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while asyncio.get_running_loop().time() < deadline:
        try:
            if check():
                return
        except (AssertionError, StopIteration):
            pass  # the element is not there yet
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met in {within_s} s")


def one(user: Any, marker: str) -> Any:
    return next(iter(user.find(marker=marker).elements))


def laps_html(user: Any) -> str:
    """The pit wall's lap table (an HTML element without a marker of its own)."""
    from nicegui import ui

    return next(
        str(element.content)
        for element in user.find(kind=ui.html).elements
        if 'data-testid="laps"' in str(element.content)
    )


async def test_pit_wall_shows_an_invalid_lap_as_invalid() -> None:
    recent = [
        {"lap": 5, "time": None, "fuel": None, "pit": True, "driver": "Jane Doe",
         "invalid": True, "refuelled": True},
        {"lap": 4, "time": 20.5, "fuel": 2.5, "pit": False, "driver": "Jane Doe"},
    ]  # fmt: skip
    async with pages(None) as (user, state):
        publish(state, recent_laps=recent, last_lap_time=None)
        await user.open("/")
        await eventually(lambda: one(user, "last").text == "INVALID")
        table = laps_html(user)
        invalid_row, valid_row = table.split("<tr")[2:4]
        assert 'class="pb-invalid"' in invalid_row
        assert "<td>INVALID</td>" in invalid_row
        assert "refuel" in invalid_row
        assert "20.500" in valid_row
        assert "pb-invalid" not in valid_row


async def test_laps_and_stints_pages_show_invalid_laps(imported: ImportedDb) -> None:
    data = SessionData(imported.url)
    try:
        history = await data.history(imported.session_key)
    finally:
        data.close()
    assert history is not None
    invalid = [lap for lap in history.laps if lap.invalid]
    assert invalid
    assert history.best is not None
    assert not history.best.invalid
    assert history.last is not None
    assert not history.last.invalid
    async with pages(imported) as (user, state):
        publish(state, session_key=imported.session_key)
        await user.open("/laps")
        table = one(user, "lap-table")
        await eventually(lambda: len(table.rows) == len(history.laps))
        rows = {row["id"]: row for row in table.rows}
        for lap in invalid:
            assert rows[lap.id]["time"] == "INVALID"
            assert "pb-invalid" in rows[lap.id]["kind"]
            assert rows[lap.id]["gap"] == ""
        reset = rows[invalid[-1].id]
        assert reset["fuel"] == "refuel"
        valid = [row for row in table.rows if "pb-invalid" not in row["kind"]]
        assert all(row["time"] != "INVALID" for row in valid)

        await user.open("/stints")
        stints = one(user, "stint-table")
        await eventually(lambda: len(stints.rows) == len(history.stints))
        shown = {row["n"]: str(row["laps"]) for row in stints.rows}
        for stint in history.stints:
            if stint.invalid_laps:
                assert shown[stint.number] == (
                    f"{stint.laps} ({stint.invalid_laps} invalid)"
                )
            else:
                assert shown[stint.number] == str(stint.laps)
        assert any(stint.invalid_laps for stint in history.stints)
