"""Sim adapters, session-info parsing and driver identification on real and simulated data."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import Field, ValidationError

from driver_pc.__main__ import adapter_options, build_parser, explain
from driver_pc.adapters.base import (
    ADAPTERS,
    AdapterOptions,
    AdapterUnavailableError,
    adapter_names,
    create_adapter,
    register_adapter,
)
from driver_pc.adapters.iracing_replay import LiveDumpAdapter
from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.messages import DriverChange, TelemetryBatch
from driver_pc.protocol.session_info import (
    current_driver,
    decode_session_bytes,
    parse_session_info,
    track_info,
)
from tests.conftest import real_file


def test_registry_names() -> None:
    assert {"iracing", "ibt", "dump", "simulator"} <= set(adapter_names())
    with pytest.raises(ValueError, match="unknown adapter"):
        create_adapter("nope")


def test_live_adapter_explains_itself_off_windows() -> None:
    with pytest.raises(AdapterUnavailableError, match="Windows"):
        create_adapter("iracing")


def test_team_race_yaml_that_breaks_plain_yaml() -> None:
    raw = real_file("iracing", "session_yaml", "spa24h_team_race.yaml").read_bytes()
    text = decode_session_bytes(raw)
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(text)
    info = parse_session_info(text)
    teams = {d["TeamName"] for d in info["DriverInfo"]["Drivers"]}
    assert "- TERCIO -7 -" in teams
    assert track_info(info)["team_racing"] is True
    driver = current_driver(info)
    assert driver is not None
    assert driver.user_name


def test_live_dump_has_opponent_arrays() -> None:
    path = real_file("iracing", "live", "irsdksharp_longbeach_session.bin")
    adapter = LiveDumpAdapter(str(path), speed=0)
    try:
        names = {c.name for c in adapter.channels}
        assert "CarIdxLapDistPct" in names
        rows = list(adapter.ticks())
        assert rows
        pct = rows[0]["CarIdxLapDistPct"][0]
        assert pct.shape == (64,)
        assert np.count_nonzero((pct >= 0) & (pct < 1)) >= 2
        assert len(rows) == 3  # the ring of three live buffers
        times = [float(r["SessionTime"][0]) for r in rows]
        assert times == sorted(times)
        assert "WeekendInfo" in parse_session_info(adapter.session_info_text())
    finally:
        adapter.close()


def test_simulator_swaps_drivers_at_pit_stops() -> None:
    sim = RaceSimulatorAdapter(laps=40, speed=0, seed=11, start_fuel=6.0)
    changes: list[DriverChange] = []
    pit_ticks = 0
    for message in ShimPipeline(sim).messages():
        if isinstance(message, DriverChange) and (
            not changes or changes[-1].user_name != message.user_name
        ):
            changes.append(message)
        elif isinstance(message, TelemetryBatch):
            pit_ticks += int(message.frames["OnPitRoad"].sum())
    assert pit_ticks > 0
    assert [c.user_name for c in changes][:2] == ["Alex Sim", "Bea Sim"]
    assert changes[1].session_time > changes[0].session_time


def test_simulated_ibt_readable_by_pyirsdk_session_info(sim_ibt: Path) -> None:
    import irsdk

    ir = irsdk.IRSDK()
    assert ir.startup(test_file=str(sim_ibt))
    try:
        assert ir["DriverInfo"]["Drivers"][0]["UserName"] == "Alex Sim"
    finally:
        ir.shutdown()


class _LevelOptions(AdapterOptions):
    level: int = Field(3, description="how hard the throwaway sim is")
    ghost: bool = Field(False, description="race a ghost car")


def test_an_adapter_is_found_from_its_declaration_alone() -> None:
    with ADAPTERS.scoped():

        @register_adapter("throwaway", options=_LevelOptions)
        class ThrowawayAdapter(RaceSimulatorAdapter):
            def __init__(self, level: int = 3, ghost: bool = False) -> None:
                super().__init__(laps=level)
                self.ghost = ghost

        parser = build_parser()
        assert "--level" in parser.format_help()
        args = parser.parse_args(["--adapter", "throwaway", "--level", "1", "--ghost"])
        options = adapter_options(args)
        assert options == {"level": 1, "ghost": True}
        adapter = create_adapter("throwaway", **options)
        assert isinstance(adapter, ThrowawayAdapter)
        assert (adapter.laps, adapter.ghost) == (1, True)
    assert "throwaway" not in adapter_names()


def test_adapter_flags_come_from_the_options_models() -> None:
    parser = build_parser()
    args = parser.parse_args(["--adapter", "ibt", "--file", "x.ibt", "--laps", "3"])
    # --laps is the simulator's: warned about and left out for ibt.
    assert adapter_options(args) == {"file": "x.ibt"}
    args = parser.parse_args(["--adapter", "simulator", "--laps", "3", "--speed", "0"])
    assert adapter_options(args) == {"laps": 3, "speed": 0.0}
    with pytest.raises(ValidationError) as missing:
        create_adapter("ibt")
    assert explain(missing.value, "ibt") == "--file is required for the ibt adapter"


@pytest.mark.parametrize("name", ["iracing", "ibt", "dump", "simulator"])
def test_options_defaults_are_the_adapters_own(name: str) -> None:
    cls = ADAPTERS[name]
    params = inspect.signature(cls.__init__).parameters
    for field_name, info in cls.options_model.model_fields.items():
        assert field_name in params, f"{name}: {field_name} is not a constructor arg"
        if not info.is_required():
            assert info.default == params[field_name].default, (name, field_name)
