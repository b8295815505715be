"""Issue 4's new views: strategy, heatmap, split, the fuller pit wall, map markers, theme."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from driver_pc.protocol.events import LapCompleted, encode_event
from driver_pc.protocol.live import StrategySnapshot
from pitbox_appliance.config import (
    ConfigError,
    DashboardConfig,
    ThemeConfig,
    load_config,
)
from pitbox_appliance.dashboard import alerts, figures, race
from pitbox_appliance.dashboard import mistakes as mk
from pitbox_appliance.dashboard.layout import Branding
from pitbox_appliance.dashboard.live_state import (
    CarState,
    LiveEvent,
    LiveState,
    LiveStateError,
)
from pitbox_appliance.dashboard.pages import split, strategy, track_map
from pitbox_appliance.dashboard.session_data import SessionData, session_extras
from pitbox_appliance.dashboard.theme import ThemeError, branding, check_logo
from pitbox_appliance.storage.database import make_engine
from pitbox_appliance.storage.writer import SessionWriter
from tests.pitbox_appliance.dashboard.conftest import (
    OTHERS,
    STRATEGY,
    ImportedDb,
    import_sim_session,
    live_payload,
    mistake,
    topic,
)

pytestmark = pytest.mark.timeout(60)

#: A strategy exactly as docs/strategy.md documents it (fuel plan + the engine's parts).


def state_with(**extra: Any) -> CarState:
    """Our car at 25 % of lap 5, P5, best lap 20.1 s, with the given extras."""
    payload = json.loads(live_payload(**extra.pop("payload", {})))
    payload["values"]["PlayerCarPosition"] = 5
    payload.update(extra)
    return CarState.from_json(json.dumps(payload).encode())


# ---- live state: new fields and events ---------------------------------------------------
def test_others_strategy_and_position_are_decoded() -> None:
    car = state_with(others=OTHERS, strategy=STRATEGY)
    assert car.position == 5
    first, second, third = car.others
    assert (first.class_color, first.class_id, first.laps_since_stop) == (
        "#ffda59",
        4001,
        14,
    )
    assert second.class_color == "#33ceff"  # iRacing's 0x form
    assert third.class_color is None
    assert third.on_pit_road
    assert first.last_stop is not None
    assert first.last_stop.kind == "fuel"
    assert car.strategy is not None
    assert car.strategy.pit_loss_s == 31.2
    assert state_with(strategy={}).strategy is None  # what an older core sent
    with pytest.raises(LiveStateError, match=r"(?s)bad_field: .*strategy"):
        state_with(strategy=[1, 2])


def test_events_are_kept_newest_first_and_bad_ones_counted() -> None:
    state = LiveState()
    for lap in range(40):
        message = encode_event(
            "car1",
            "lap_completed",
            {"lap": lap, "time": 20.0, "fuel": None, "pit": False, "driver": "A"},
        )
        state.handle_event("pitbox/v1/live/car1/events", json.dumps(message).encode())
    events = state.events("car1")
    assert len(events) == 30
    assert isinstance(events[0].payload, LapCompleted)
    assert events[0].payload.lap == 39
    bad = {"kind": "lap_completed", "car": "car1", "lap": "x"}
    state.handle_event("pitbox/v1/live/car1/events", json.dumps(bad).encode())
    assert state.rejected["event_bad_payload"] == 1
    state.handle_event("pitbox/v1/live/car1/events", b"not json")
    state.handle_event(
        "pitbox/v1/live/car2/events", json.dumps({"kind": "x", "car": "car1"}).encode()
    )
    state.handle_event("pitbox/v1/live/car1/events", json.dumps({"car": "c"}).encode())
    assert state.rejected["event_not_json"] == 1
    assert state.rejected["event_car_mismatch"] == 1
    assert state.rejected["event_bad_event"] == 1
    assert state.events_seen == 40


def test_input_trace_has_steering_speed_and_gear() -> None:
    state = LiveState()
    for i in range(5):
        payload = json.loads(live_payload(t=10 + i * 0.05, speed=50.0))
        payload["values"]["SteeringWheelAngle"] = -1.0
        state.handle(topic("car1"), json.dumps(payload).encode())
    rows = state.inputs("car1").rows
    assert len(rows) == 5
    assert rows[-1] == (0.0, 80, 0, -57, 180, 3)
    assert state.inputs("car1") is state.inputs("car1")  # cached per update
    assert len(state.trace("car1").rows[0]) == 3


# ---- race: gaps, cars around, closing -------------------------------------------------
def test_race_gaps_and_cars_around() -> None:
    car = state_with(others=OTHERS)
    gaps = race.race_gaps(car)
    assert gaps.position == 5
    assert gaps.ahead is not None
    assert gaps.ahead.number == "17"
    # #17 is a lap and 5 % ahead: 1.05 laps at the 20.1 s best lap.
    assert gaps.ahead_s == pytest.approx(1.05 * 20.1)
    assert gaps.behind is not None
    assert gaps.behind.number == "5"
    assert gaps.behind_s == pytest.approx(0.01 * 20.1)
    near = race.around(car)
    assert [n.car.number for n in near] == ["17", "5"]  # the pit-lane car is left out
    assert near[0].gap_s == pytest.approx(0.05 * 20.1)
    # #5 is 0.2 s behind: 10 m at 50 m/s is more than a car length, 4 m at 20 m/s not.
    assert [n.alongside for n in near] == [False, False]
    slow = state_with(others=OTHERS, payload={"speed": 20.0})
    assert [n.alongside for n in race.around(slow)] == [False, True]
    unknown = state_with(values={"SessionTime": 1.0})
    assert race.race_gaps(unknown).position is None


def test_closing_watch_finds_the_car_gaining_from_behind() -> None:
    watch = race.ClosingWatch()
    seen: tuple[int, ...] = ()
    for step in range(20):
        t = 100.0 + step * 0.1
        other = {"idx": 5, "number": "5", "pct": 0.20 + step * 0.002, "pos": 6}
        steady = {"idx": 7, "number": "7", "pct": 0.22 + step * 0.0, "pos": 7}
        payload = json.loads(live_payload(t=t))
        payload["others"] = [other, steady]
        seen = watch.closing(CarState.from_json(json.dumps(payload).encode()))
    assert seen == (5,)
    car = state_with(others=[{"idx": 5, "number": "5", "pct": 0.2, "class_id": 1}])
    assert race.faster_class(car, (5,)) == (5,)  # our class unknown: every closer
    assert race.faster_class(car, (5,), own=1) == ()  # same class: not "faster class"
    assert race.faster_class(car, (5,), own=2) == (5,)
    info = {
        "DriverInfo": {
            "DriverCarIdx": 0,
            "Drivers": [
                {"CarIdx": 0, "CarNumber": "42", "CarClassID": 2},
                {"CarIdx": 5, "CarNumber": "5", "CarClassID": 1},
            ],
        }
    }
    assert session_extras(info).own_class_id == 2


# ---- mistakes ------------------------------------------------------------------------------


def test_mistakes_are_parsed_strictly_and_binned() -> None:
    good = mk.parse_mistake(mistake("braking", 0.5, 4, 0.8, "A"), 10.0)
    assert good is not None
    assert good.section == 4
    for bad in (
        mistake("sneeze", 0.5, 4, 0.8, "A"),
        mistake("braking", 1.5, 4, 0.8, "A"),
        mistake("braking", 0.5, 4, -1.0, "A"),
        {**mistake("braking", 0.5, 4, 0.8, "A"), "lap": "3"},
        "not a dict",
    ):
        assert mk.parse_mistake(bad, 1.0) is None, bad
    rows = [
        mk.parse_mistake(mistake("braking", 0.51, 4, 1.0, "A"), 1.0),
        mk.parse_mistake(mistake("line", 0.52, 4, 0.5, "B"), 2.0),
        mk.parse_mistake(mistake("spin", 0.99, 9, 0.2, "A"), 3.0),
        mk.parse_mistake(mistake("spin", 0.01, 9, 0.2, "A"), 4.0),
    ]
    found = tuple(m for m in rows if m is not None)
    levels = mk.heat(found, bins=10)
    assert levels[5] == 1.0
    assert levels[9] == pytest.approx(0.2 / 1.5)
    worst = mk.sections(found)
    assert [s.section for s in worst] == [4, 9]
    assert worst[0].kinds == (("braking", 1), ("line", 1))
    assert worst[1].pct == pytest.approx(0.0, abs=1e-9) or worst[1].pct > 0.99
    assert len(mk.by_driver(found, "A")) == 3
    assert len(mk.in_window(found, 1.5, 3.0)) == 2
    assert mk.heat_color(1.0) == "#ff0000"


# ---- pure page helpers ---------------------------------------------------------------------
def test_strategy_tiles_show_present_parts_and_say_what_is_missing() -> None:
    full = StrategySnapshot.model_validate(STRATEGY)
    html = strategy.window_html(full)
    assert "WINDOW OPEN" in html
    assert "Save 0.35 L/lap" in html
    assert "pit window open lap" in html
    assert "66.5 L" in html
    assert "31.2 s" in strategy.rejoin_html(full)
    assert "class position" in strategy.rejoin_html(full)
    assert "Tyres: CHANGE" in strategy.tyres_html(full)
    assert "Driver swap: SWAP" in strategy.tyres_html(full)
    table = strategy.plan_html(full.stint_plan)
    assert table.count("<tr") == 3
    assert "start lap" in table
    fuel_only = StrategySnapshot.model_validate(
        {k: STRATEGY[k] for k in strategy.FUEL_KEYS}
    )
    assert "Pit loss: not available yet" in strategy.rejoin_html(fuel_only)
    assert "Rejoin projection: not available yet" in strategy.rejoin_html(fuel_only)
    assert "Tyres: not available yet" in strategy.tyres_html(fuel_only)
    assert "Stint plan: not available yet" in strategy.plan_html(())
    assert "Fuel plan" in strategy.window_html(None)
    car = state_with(others=OTHERS)
    opponents = strategy.opponents_html(car.others)
    assert opponents.count("<tr") == 4
    assert "fuel 27.4 s (lap 44)" in opponents
    assert "#ffda59" in opponents
    assert "not available yet" in strategy.opponents_html(())
    assert figures.value("x_s", 1.234) == "1.2 s"
    assert figures.value("x", float("nan")) == "—"


def test_alert_lines_and_the_recommendation() -> None:
    def event(kind: str, **payload: Any) -> LiveEvent:
        message = json.dumps({"kind": kind, "car": "car1", **payload}).encode()
        return LiveEvent.from_json(message, time.time())

    incident = event(
        "incident_detected",
        incident="off_track",
        session_time=100.0,
        lap_dist_pct=0.42,
        lap=7,
    )
    assert alerts.alert_text(incident) == "Incident: off track at 42 % of lap 7"
    assert "mistake" not in alerts.URGENT  # stored for /heatmap, never an alert
    damage = event(
        "damage_alert",
        session_time=1.0,
        lap=2,
        severity="minor",
        lap_time_loss_s=None,
        repair_time_left_s=None,
    )
    assert alerts.alert_text(damage) == "Damage minor"
    assert alerts.alert_text(event("weird.kind", a=1)) == "weird kind: a 1"
    line = alerts.recommendation(StrategySnapshot.model_validate(STRATEGY))
    assert line.startswith("WINDOW OPEN · window open · 1 stop(s) · window L31–35")
    assert "change tyres" in line
    assert "swap to Bea Sim" in line
    assert alerts.recommendation(None) == "not available yet"
    assert alerts.recommendation(StrategySnapshot()) == "not available yet"


def test_split_and_map_helpers() -> None:
    car = state_with(others=OTHERS, strategy=STRATEGY)
    assert (
        split.gaps_text(race.race_gaps(car))
        == "P5 · ahead #17 21.1 s · behind #5 0.2 s"
    )
    assert "No other cars" in split.spotter_html((), True, False)
    assert "#5 behind 0.2 s" in split.spotter_html(race.around(car), True, True)
    style, label = track_map.other_look(car.others[0], closing=False)
    assert 'fill="#ffda59"' in style
    assert label == "4 +1L"
    style, label = track_map.other_look(car.others[2], closing=True)
    assert "#ef4444" in style
    assert label == "9 -1L PIT"
    assert 'fill-opacity="0.45"' in style
    # The core's rejoin: 2.3 s in front of #5 (at 24 %), at the 20.1 s best lap.
    spot = track_map.rejoin_spot(car)
    assert spot is not None
    assert spot[0] == pytest.approx(0.24 + 2.3 / 20.1)
    assert spot[1].startswith("P7")
    # Without it: the pit loss behind our place now.
    fallback = state_with(strategy={"pit_loss_s": 10.05})
    spot = track_map.rejoin_spot(fallback)
    assert spot is not None
    assert spot[0] == pytest.approx(0.75)
    assert track_map.rejoin_spot(state_with()) is None


def test_map_labels_of_a_pack_do_not_overlap() -> None:
    # A pack of five cars within a label's width, one car alone down the road, and a
    # team car on top of the pack's tail.
    spots = {i: (float(i), 0.0) for i in range(5)} | {9: (100.0, 0.0)}
    shown = track_map.labels_that_fit(spots, [3, 0, 1, 2, 4, 9], [(4.5, 0.0)], 2.5)
    assert shown == {0, 9}  # 3 overlaps our car; 1, 2 overlap 0; 4 overlaps our car
    everyone = track_map.labels_that_fit(spots, list(spots), [], 0.5)
    assert everyone == set(spots)
    car = state_with(others=OTHERS)
    order = track_map.label_priority(car.others, (car.others[2].idx,), car)
    assert order[0] == car.others[2].idx  # the closing faster car is labelled first


def test_advice_that_asks_nothing_is_calm() -> None:
    calm = StrategySnapshot.model_validate(
        STRATEGY | {"recommendation": {"action": "stay_out", "reason": "no stop due"}}
    )
    assert 'class="pb-advice pb-calm" data-testid="strat-advice"' in (
        strategy.window_html(calm)
    )
    urgent = StrategySnapshot.model_validate(STRATEGY)
    assert 'class="pb-advice" data-testid="strat-advice"' in strategy.window_html(
        urgent
    )


# ---- theme ---------------------------------------------------------------------------------
def test_theme_from_config_and_bad_logos(tmp_path: Path) -> None:
    logo = tmp_path / "apex.svg"
    logo.write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    config = tmp_path / "appliance.yaml"
    config.write_text(
        f"theme:\n  team_name: Apex\n  accent_color: '#112233'\n  logo: {logo}\n"
    )
    loaded = load_config(config)
    brand, path = branding(loaded.dashboard, loaded.theme)
    assert brand == Branding("Apex", "#112233", "#06080a", "/theme/logo.svg")
    assert path == logo
    config.write_text("theme:\n  accent_color: red\n")
    with pytest.raises(ConfigError, match=r"theme\.accent_color"):
        load_config(config)
    with pytest.raises(ThemeError, match="not an image file"):
        check_logo(tmp_path / "logo.exe")
    with pytest.raises(ThemeError, match="No such file"):
        check_logo(tmp_path / "missing.png")
    brand, path = branding(
        DashboardConfig(team_name="Old"), ThemeConfig(logo=tmp_path / "missing.png")
    )
    assert brand.team_name == "Old"
    assert brand.logo_url is None
    assert path is None


# ---- the pages in NiceGUI's simulated browser ---------------------------------------------
@pytest.fixture(scope="module")
def with_mistakes(tmp_path_factory: pytest.TempPathFactory) -> ImportedDb:
    """The imported session plus mistake rows written through the storage writer."""
    imported = import_sim_session(tmp_path_factory.mktemp("heatdb"))
    engine = make_engine(imported.url)
    writer = SessionWriter(engine)
    sid = writer.session_id(imported.session_key)
    rows = [
        (5.0, mistake("braking", 0.50, 4, 0.9, "Alex Sim")),
        (6.0, mistake("braking", 0.51, 4, 0.7, "Alex Sim")),
        (7.0, mistake("line", 0.20, 2, 0.3, "Bea Sim")),
        (8.0, {"mistake": "braking"}),  # unreadable: counted, left out
    ]
    for t, payload in rows:
        writer.add_event(sid, "mistake", t, payload)
    writer.commit()
    writer.close()
    engine.dispose()
    return imported


@asynccontextmanager
async def pages(
    db: ImportedDb | None, logo_url: str | None = None
) -> AsyncIterator[tuple[Any, LiveState]]:
    from nicegui.testing.user_simulation import user_simulation

    from pitbox_appliance.dashboard.app import build_root

    state = LiveState()
    state.set_connected(True)
    data = SessionData(db.url) if db is not None else None
    brand = Branding("Team Apex", "#00a3e0", logo_url=logo_url)
    try:
        async with user_simulation(root=build_root(state, brand, data=data)) as user:
            yield user, state
    finally:
        if data is not None:
            data.close()


def publish(state: LiveState, **extra: Any) -> None:
    payload = json.loads(live_payload(t=extra.pop("t", 100.0)))
    payload["values"].update(PlayerCarPosition=5, SteeringWheelAngle=0.5)
    payload.update(extra)
    state.handle(topic("car1"), json.dumps(payload).encode())


def html_of(user: Any, marker: str) -> str:
    element = next(iter(user.find(marker=marker).elements))
    return str(element.props.get("innerHTML") or element.text)


async def test_strategy_page_fills_as_the_engine_lands() -> None:
    async with pages(None) as (user, state):
        publish(state, strategy={k: STRATEGY[k] for k in strategy.FUEL_KEYS})
        await user.open("/strategy")
        await user.should_see(marker="page-strategy")
        await user.should_see("Rejoin projection: not available yet", retries=20)
        await user.should_see("Opponents (live iRacing data only")
        publish(state, t=101.0, strategy=STRATEGY, others=OTHERS)
        await user.should_see("WINDOW OPEN", retries=20)
        assert "start lap" in html_of(user, "strat-plan-body")
        assert 'data-testid="opp-3"' in html_of(user, "strat-opp-body")
        await user.should_not_see("Rejoin projection: not available yet")


async def test_pit_wall_shows_position_gaps_alerts_and_strategy() -> None:
    async with pages(None, logo_url="/theme/logo.svg") as (user, state):
        publish(state, strategy=STRATEGY, others=OTHERS)
        await user.open("/")
        await user.should_see(marker="logo")
        await user.should_see("P5", retries=20)
        assert html_of(user, "gap-ahead") == "▲ #17 21.1 s"
        assert html_of(user, "gap-behind") == "▼ #5 0.2 s"
        assert html_of(user, "delta") == "Δ +0.400"
        assert html_of(user, "tyres") == "CHANGE · 34 laps old · +27.0 s next stint"
        assert html_of(user, "strategy-rec").startswith("WINDOW OPEN")
        assert html_of(user, "fuel-add") == "to add 66.5 L"
        await user.should_see("No alerts yet.")
        message = {"kind": "damage_alert", "car": "car1", "session_time": 1.0,
                   "lap": 5, "severity": "moderate", "lap_time_loss_s": 0.8,
                   "repair_time_left_s": None}  # fmt: skip
        state.handle_event("pitbox/v1/live/car1/events", json.dumps(message).encode())
        await user.should_see("Damage moderate, +0.8 s/lap", retries=20)


async def test_split_view_shows_inputs_and_the_cars_around() -> None:
    async with pages(None) as (user, state):
        await user.open("/split")
        await user.should_see(marker="page-split")
        publish(state, others=OTHERS)
        await user.should_see("P5 · ahead #17", retries=20)
        assert html_of(user, "split-speed") == "180"
        assert html_of(user, "split-steer") == "+29°"
        assert html_of(user, "split-throttle") == "80"
        assert "#17 ahead 1.0 s" in html_of(user, "split-around")
        chart = next(iter(user.find(marker="split-chart").elements))
        assert len(chart.options["dataset"]["source"]) == 1
        publish(state, t=100.05, others=[])
        await user.should_see("No other cars in the live data.", retries=20)


async def test_heatmap_filters_by_team_driver_and_stint(
    with_mistakes: ImportedDb,
) -> None:
    async with pages(with_mistakes) as (user, state):
        publish(state, session_key=with_mistakes.session_key)
        await user.open("/heatmap")
        await user.should_see(marker="page-heatmap")
        await user.should_see("3 mistakes · Team", retries=40)
        assert "1 stored mistake rows were unreadable" in html_of(user, "heat-note")
        table = html_of(user, "heat-table")
        # Counted by corner of the simulator's paperclip (T1 at 25 %, T2 at 73 %; the
        # mistakes at 50-51 % are in T2's braking zone), worst first.
        assert "CORNER" in table
        assert table.index("heat-row-2") < table.index("heat-row-1")
        layer = next(iter(user.find(marker="heat-layer").elements))
        assert len(layer.default_slot.children) == 2  # two hot bins of 60
        assert user.find(marker="sector-1").elements
        scope = next(iter(user.find(marker="heat-scope").elements))
        scope.value = "Driver"
        await user.should_see(marker="heat-choice", retries=20)
        choice = next(iter(user.find(marker="heat-choice").elements))
        assert "Bea Sim" in list(choice.options)
        choice.value = "Bea Sim"
        await user.should_see("1 mistakes · Driver Bea Sim", retries=20)
        scope.value = "Stint"
        await user.should_see(marker="heat-choice", retries=20)
        choice = next(iter(user.find(marker="heat-choice").elements))
        choice.value = next(iter(choice.options))
        await user.should_see("mistakes · Stint 1", retries=20)
