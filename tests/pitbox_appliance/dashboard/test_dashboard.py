"""Dashboard: LiveState decoding and history, formatting, and the page in NiceGUI's User simulation."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pitbox_appliance.dashboard import formatting as fmt
from pitbox_appliance.dashboard.live_state import (
    MAX_PAYLOAD_BYTES,
    CarState,
    LiveState,
)
from tests.pitbox_appliance.dashboard.conftest import live_payload, topic

pytestmark = pytest.mark.timeout(30)


# ---- LiveState -------------------------------------------------------------------------
def test_decodes_the_core_payload() -> None:
    state = LiveState()
    state.handle(topic("car1"), live_payload(speed=50.0, fuel=40.0))
    car = state.car("car1")
    assert car is not None
    assert car.driver == "Jane Doe"
    assert car.speed_kmh == pytest.approx(180.0)
    assert car.laps_of_fuel == pytest.approx(16.0)
    assert car.recent_laps[0].lap == 4
    assert car.shim is not None
    assert car.shim.state == "streaming"
    assert car.seq == 1
    assert state.updates == 1
    assert state.car_ids() == ("car1",)


def test_missing_values_are_unknown_not_errors() -> None:
    state = LiveState()
    payload = {"car": "car9", "session_key": "k", "values": {}, "shim": None}
    state.handle(topic("car9"), json.dumps(payload).encode())
    car = state.car("car9")
    assert car is not None
    assert car.fuel_l is None
    assert car.laps_of_fuel is None
    assert car.last_lap_time is None
    assert car.shim is None
    assert not state.rejected


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not_json"),
        (b"\xff\xfe", "not_json"),
        (b"[1, 2]", "not_object"),
        (b'{"values": {}}', "bad_field"),
        (b'{"car": "car1", "values": {"Speed": "fast"}}', None),
        (b'{"car": "car1", "values": {"Speed": [1]}}', "bad_field"),
        (b'{"car": "car1", "values": [], "recent_laps": [1]}', "bad_field"),
        (b'{"car": "car2", "values": {}}', "car_mismatch"),
        (b"{" + b" " * MAX_PAYLOAD_BYTES + b"}", "too_big"),
    ],
)
def test_bad_payloads_are_counted_not_raised(
    payload: bytes, reason: str | None
) -> None:
    state = LiveState()
    state.handle(topic("car1"), payload)
    assert state.updates == 1
    if reason is None:  # a non-numeric string is read as "unknown"
        assert not state.rejected
        car = state.car("car1")
        assert car is not None
        assert car.speed_ms == 0.0
    else:
        assert state.rejected == {reason: 1}
        assert state.car_ids() == ()


def test_non_finite_and_out_of_range_values_are_clamped() -> None:
    state = LiveState()
    payload = json.loads(live_payload())
    payload["values"].update(Throttle=1.7, Brake=-0.2, LapDistPct=1.5, Speed=-3.0)
    payload["fuel_per_lap"] = 0.0
    raw = json.dumps(payload).replace('"FuelLevel": 40.0', '"FuelLevel": NaN')
    state.handle(topic("car1"), raw.encode())
    car = state.car("car1")
    assert car is not None
    assert (car.throttle, car.brake, car.lap_dist_pct, car.speed_ms) == (1, 0, 1, 0)
    assert car.fuel_l is None
    assert car.laps_of_fuel is None


def test_trace_keeps_the_last_window_and_skips_repeats() -> None:
    state = LiveState(trace_window_s=10.0)
    for i in range(300):  # 15 s at 20 Hz
        state.handle(topic("car1"), live_payload(t=100 + i * 0.05, throttle=i / 300))
    rows = state.trace("car1").rows
    assert rows[-1][0] == 0.0
    assert rows[0][0] >= -10.0
    assert 199 <= len(rows) <= 201
    assert rows[-1][1] == round(299 / 300 * 100)
    # The retained message delivered again on reconnect adds no point.
    state.handle(topic("car1"), live_payload(t=100 + 299 * 0.05))
    assert len(state.trace("car1").rows) == len(rows)
    assert state.car("car1").seq == 301  # type: ignore[union-attr]


def test_trace_is_cached_per_update() -> None:
    state = LiveState()
    state.handle(topic("car1"), live_payload(t=1.0))
    first = state.trace("car1")
    assert state.trace("car1") is first
    state.handle(topic("car1"), live_payload(t=1.05))
    assert state.trace("car1") is not first
    assert state.trace("nope").rows == ()


def test_new_session_or_replay_restart_clears_the_trace() -> None:
    state = LiveState()
    for i in range(10):
        state.handle(topic("car1"), live_payload(t=50 + i * 0.05))
    state.handle(topic("car1"), live_payload(t=1.0))  # time went back
    assert len(state.trace("car1").rows) == 1
    state.handle(topic("car1"), live_payload(t=2.0, session_key="s2"))
    assert len(state.trace("car1").rows) == 1


def test_several_cars_and_the_freshest() -> None:
    state = LiveState()
    state.handle(topic("car2"), live_payload("car2", published_at=time.time() - 60))
    state.handle(topic("car1"), live_payload("car1"))
    assert state.car_ids() == ("car1", "car2")
    assert state.freshest_car() == "car1"
    assert state.default_car() == "car1"
    state.handle(topic("car0"), live_payload("car0", published_at=time.time() - 30))
    assert state.freshest_car() == "car1"
    assert state.default_car() == "car1"  # car0 is first by name but stale
    state.handle(topic("car0"), live_payload("car0"))
    assert state.default_car() == "car0"
    stale = state.car("car2")
    assert stale is not None
    assert stale.age_s() == pytest.approx(60, abs=2)


def test_handle_is_safe_from_another_thread() -> None:
    state = LiveState()
    stop = threading.Event()

    def feed(car: str) -> None:
        i = 0
        while not stop.is_set() and i < 2000:
            state.handle(topic(car), live_payload(car, t=i * 0.05, speed=i % 90))
            i += 1

    threads = [threading.Thread(target=feed, args=(c,)) for c in ("car1", "car2")]
    for thread in threads:
        thread.start()
    reads = 0
    while any(t.is_alive() for t in threads):
        for car in state.car_ids():
            snapshot = state.car(car)
            assert snapshot is not None
            state.trace(car)
            reads += 1
    stop.set()
    for thread in threads:
        thread.join()
    assert state.updates == 4000
    assert state.car("car1").seq == 2000  # type: ignore[union-attr]
    assert reads > 0


def test_attach_subscribes_once_and_follows_the_link() -> None:
    class FakeConnection:
        def __init__(self) -> None:
            self.subscriptions: list[tuple[str, int]] = []
            self.on_connection_change: Any = None

        def subscribe(self, pattern: str, qos: int, handler: Any) -> None:
            self.subscriptions.append((pattern, qos))

    connection = FakeConnection()
    state = LiveState()
    state.attach(connection)  # type: ignore[arg-type]
    assert connection.subscriptions == [
        ("pitbox/v1/live/+/state", 0),
        ("pitbox/v1/live/+/field", 0),
        ("pitbox/v1/live/+/events", 1),
    ]
    connection.on_connection_change(True)
    assert state.connected


def _field(car: str = "car1", session_key: str = "s1", n: int = 3) -> bytes:
    others = [
        {"idx": i, "number": str(10 + i), "pct": 0.1 * i, "pos": i}
        for i in range(1, n + 1)
    ]
    return json.dumps(
        {"car": car, "session_key": session_key, "others": others}
    ).encode()


def test_the_field_is_laid_over_the_state_of_its_session_in_either_order() -> None:
    """The core sends the others apart (``LiveField``); pages read them on the car."""
    state = LiveState()
    state.handle(topic("car1"), live_payload())  # no field yet: no others
    car = state.car("car1")
    assert car is not None
    assert car.others == ()
    state.handle_field("pitbox/v1/live/car1/field", _field(n=3))
    car = state.car("car1")
    assert car is not None
    assert [o.number for o in car.others] == ["11", "12", "13"]
    assert car.seq == 1  # the same state, its others replaced
    state.handle(topic("car1"), live_payload(t=101.0))  # the next state keeps them
    car = state.car("car1")
    assert car is not None
    assert len(car.others) == 3
    assert car.seq == 2
    # A field of another session (an old retained one) is not laid over this one.
    state.handle_field("pitbox/v1/live/car1/field", _field(session_key="old", n=5))
    state.handle(topic("car1"), live_payload(t=102.0))
    car = state.car("car1")
    assert car is not None
    assert car.others == ()
    # A state carrying its own others (an older core) keeps them.
    own = [{"idx": 9, "number": "99", "pct": 0.5}]
    state.handle(topic("car1"), live_payload(t=103.0, others=own, session_key="old"))
    car = state.car("car1")
    assert car is not None
    assert [o.number for o in car.others] == ["99"]


def test_a_bad_field_is_counted_not_raised() -> None:
    state = LiveState()
    state.handle_field("pitbox/v1/live/car1/field", b"{not json")
    state.handle_field("pitbox/v1/live/car2/field", _field(car="car1"))
    assert state.rejected == {"field_not_json": 1, "field_car_mismatch": 1}


def test_from_json_round_trip_of_lap_rows() -> None:
    car = CarState.from_json(live_payload())
    assert [row.time for row in car.recent_laps] == [20.5, 20.1]


# ---- formatting ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "—"),
        (0.0, "—"),
        (58.1234, "58.123"),
        (62.345, "1:02.345"),
        (59.9996, "1:00.000"),
        (3725.5, "62:05.500"),
    ],
)
def test_lap_time(seconds: float | None, text: str) -> None:
    assert fmt.lap_time(seconds) == text


def test_other_formats() -> None:
    assert fmt.running_time(42.17) == "0:42.1"
    assert fmt.running_time(None) == "—"
    assert [fmt.gear(g) for g in (-1, 0, 4)] == ["R", "N", "4"]
    assert fmt.speed(183.4) == "183"
    assert fmt.litres(None) == "—"
    assert fmt.laps(12.345) == "12.3"
    assert [fmt.age(s) for s in (4, 180, 7300)] == ["4 s", "3 min", "2 h"]
    assert [fmt.duration(s) for s in (None, 65.9, 3725.0)] == ["—", "1:05", "1:02:05"]
    assert [fmt.signed(s) for s in (None, 0.1234, -2.0)] == ["—", "+0.123", "-2.000"]


# ---- the page in NiceGUI's simulated browser ----------------------------------------------
@pytest.fixture
async def page_user() -> AsyncIterator[tuple[Any, LiveState]]:
    """A User of the dashboard root, with the LiveState it reads."""
    from nicegui.testing.user_simulation import user_simulation

    from pitbox_appliance.dashboard.app import build_root
    from pitbox_appliance.dashboard.layout import Branding

    state = LiveState()
    state.set_connected(True)
    root = build_root(state, Branding("Team Apex", "#00a3e0"))
    async with user_simulation(root=root) as user:
        yield user, state


def _text(user: Any, marker: str) -> str:
    return str(user.find(marker=marker).elements.pop().text)


async def test_page_shows_the_live_car(page_user: tuple[Any, LiveState]) -> None:
    user, state = page_user
    await user.open("/")
    await user.should_see("Team Apex")
    await user.should_see("NO DATA")
    state.handle(topic("car1"), live_payload(speed=50.0, lap=7, fuel=40.0))
    await user.should_see("Jane Doe", retries=10)
    assert _text(user, "speed") == "180"
    assert _text(user, "lap") == "7"
    assert _text(user, "gear") == "3"
    assert _text(user, "fuel") == "40.0"
    assert _text(user, "fuel-laps").startswith("16.0 laps")
    assert _text(user, "last") == "20.500"
    assert _text(user, "best") == "20.100"
    assert _text(user, "shim") == "STREAMING"
    await user.should_see("LIVE")

    state.handle(topic("car1"), live_payload(t=100.05, speed=10.0, lap=8))
    for _ in range(20):
        if _text(user, "lap") == "8":
            break
        await asyncio.sleep(0.05)
    assert _text(user, "speed") == "36"
    assert _text(user, "lap") == "8"


async def test_car_selector_appears_with_a_second_car(
    page_user: tuple[Any, LiveState],
) -> None:
    user, state = page_user
    state.handle(topic("car1"), live_payload("car1", driver="Jane Doe"))
    await user.open("/")
    await user.should_see("Jane Doe", retries=10)
    await user.should_not_see(marker="cars")
    state.handle(topic("car2"), live_payload("car2", driver="Max Speed", lap=3))
    await user.should_see(marker="cars", retries=20)
    toggle = user.find(marker="cars").elements.pop()
    assert list(toggle.options) == ["car1", "car2"]
    assert toggle.value == "car1"
    toggle.value = "car2"
    await user.should_see("Max Speed", retries=10)
    assert _text(user, "lap") == "3"


async def test_stale_and_offline_states_are_visible(
    page_user: tuple[Any, LiveState],
) -> None:
    user, state = page_user
    state.handle(topic("car1"), live_payload(published_at=time.time() - 30))
    await user.open("/")
    await user.should_see("STALE", retries=10)
    # States that arrive but cannot be shown say why (here: far too big).
    state.handle(topic("car1"), b"{" + b" " * (300 * 1024) + b"}")
    await user.should_see("REJECTED: too big", retries=10)
    state.set_connected(False)
    await user.should_see("BROKER OFFLINE", retries=10)
