"""The pit wall says "APPLIANCE STALLED" instead of showing frozen numbers (DESIGN §6)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from pitbox_appliance.broker import free_port
from pitbox_appliance.dashboard.core_api import CoreApi, CoreHealth
from pitbox_appliance.dashboard.layout import Branding
from pitbox_appliance.dashboard.live_state import CarState, LiveState
from pitbox_appliance.dashboard.pages.pitwall import STALLED_AFTER_S, stalled_reason
from tests.pitbox_appliance.dashboard.conftest import live_payload, topic

pytestmark = pytest.mark.timeout(60)
NOW = 1_000_000.0


def car(age_s: float, name: str = "car1") -> CarState:
    return CarState.from_json(live_payload(name, published_at=NOW - age_s))


def health(
    stalled: str | None = None, cars: frozenset[str] = frozenset({"car1"})
) -> CoreHealth:
    return CoreHealth(True, stalled, cars, NOW)


# ---- the rule -------------------------------------------------------------------------------
def test_fresh_states_and_a_healthy_core_are_not_stalled() -> None:
    assert stalled_reason(car(0.5), health(), asked=True, now=NOW) is None


def test_the_core_saying_so_is_stalled_even_with_fresh_states() -> None:
    reason = stalled_reason(
        car(0.2), health("storage failing for 3 s"), asked=True, now=NOW
    )
    assert reason == "storage failing for 3 s"


def test_states_stopping_for_a_car_the_core_tracks_is_stalled() -> None:
    reason = stalled_reason(car(STALLED_AFTER_S + 0.1), health(), asked=True, now=NOW)
    assert reason is not None
    assert "car1" in reason


def test_states_stopping_with_the_core_not_answering_is_stalled() -> None:
    gone = CoreHealth(False, None, frozenset(), NOW)
    reason = stalled_reason(car(3.0), gone, asked=True, now=NOW)
    assert reason is not None
    assert "does not answer" in reason


def test_a_car_the_core_no_longer_tracks_is_only_stale() -> None:
    """After a core restart, a car not streaming keeps its old (retained) state."""
    assert (
        stalled_reason(car(60.0), health(cars=frozenset()), asked=True, now=NOW) is None
    )


def test_without_the_api_stopped_states_alone_say_stalled() -> None:
    assert stalled_reason(car(1.0), None, asked=False, now=NOW) is None
    assert stalled_reason(car(2.5), None, asked=False, now=NOW) is not None
    # Not asked yet: the first answer decides (no flash of the banner on open).
    assert stalled_reason(car(2.5), None, asked=True, now=NOW) is None


# ---- on the page ------------------------------------------------------------------------
@dataclass(repr=False)
class HealthStub:
    """Answers ``/api/v1/health`` as the core does; the test sets what it says."""

    status: int = 200
    reason: str | None = None
    cars: list[str] = field(default_factory=lambda: ["car1"])
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v1/health", self._health)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _health(self, _request: web.Request) -> web.Response:
        body: dict[str, Any] = {
            "status": "stalled" if self.status == 503 else "ok",
            "reason": self.reason,
            "cars": {c: {"lag_s": 0.1} for c in self.cars},
            "shims": {},
        }
        return web.json_response(body, status=self.status)


async def eventually(check: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met in {within_s} s")


def shown(user: Any, marker: str) -> bool:
    """Whether an element with ``marker`` is on the page and visible."""
    try:
        return bool(user.find(marker=marker).elements)
    except AssertionError:  # find() sees only visible elements
        return False


def text_of(user: Any, marker: str) -> str:
    return str(next(iter(user.find(marker=marker).elements)).text)


async def test_the_pit_wall_shows_the_banner_while_stalled() -> None:
    from nicegui.testing.user_simulation import user_simulation

    from pitbox_appliance.dashboard.app import build_root

    stub = HealthStub()
    await stub.start()
    state = LiveState()
    state.set_connected(True)
    api = CoreApi(stub.url)
    root = build_root(state, Branding("Team Apex", "#00a3e0"), api=api)

    def publish(age_s: float = 0.0) -> None:
        payload = json.loads(live_payload("car1"))
        payload["published_at"] = time.time() - age_s
        state.handle(topic("car1"), json.dumps(payload).encode())

    try:
        async with user_simulation(root=root) as user:
            publish()
            await user.open("/")
            await user.should_see(marker="page-live")
            await asyncio.sleep(0.3)
            assert not shown(user, "stalled")
            # The core says ingest stalled: the banner within a poll (1 s).
            stub.status, stub.reason = 503, "storage failing for 3 s (disk full)"
            await eventually(lambda: shown(user, "stalled"), 3.0)
            assert text_of(user, "stalled-why") == "storage failing for 3 s (disk full)"
            stub.status, stub.reason = 200, None
            publish()
            await eventually(lambda: not shown(user, "stalled"), 3.0)
            # The core's states stop arriving (its loop hung): within 2 s of the last.
            publish(age_s=STALLED_AFTER_S + 0.2)
            await eventually(lambda: shown(user, "stalled"), 1.0)
            assert "no live state for" in text_of(user, "stalled-why")
            publish()  # they arrive again
            await eventually(lambda: not shown(user, "stalled"), 1.0)
    finally:
        await api.close()
        await stub.stop()
