"""The event contract: every kind has a schema, and a payload that breaks it is refused by name."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from driver_pc.protocol.events import (
    PAYLOADS,
    Event,
    EventError,
    EventKind,
    LapCompleted,
    encode_event,
)


def test_every_kind_has_a_schema() -> None:
    assert set(PAYLOADS) == set(EventKind)


def test_encode_keeps_payload_and_names_car() -> None:
    message = encode_event(
        "car42",
        "lap_completed",
        {"lap": 3, "time": 92.5, "fuel": 2.1, "pit": False, "driver": "A"},
    )
    assert message == {
        "kind": "lap_completed",
        "car": "car42",
        "lap": 3,
        "time": 92.5,
        "fuel": 2.1,
        "pit": False,
        "driver": "A",
        "invalid": False,
        "refuelled": False,
    }


@pytest.mark.parametrize(
    ("kind", "payload", "needle"),
    [
        ("no_such_event", {}, "unknown event kind"),
        ("lap_completed", {"lap": "x"}, "lap_completed"),
        (
            "driver_fatigue_update",
            {"driver": "A", "lap": 1, "fatigue": 1.5, "stint_minutes": 3},
            "fatigue",
        ),
        (
            "badge_earned",
            {"driver": "A", "badge_id": "b", "badge": "B", "reason": "r", "extra": 1},
            "extra",
        ),
    ],
)
def test_bad_payload_is_refused_by_name(
    kind: str, payload: dict[str, object], needle: str
) -> None:
    with pytest.raises(EventError, match=needle):
        encode_event("car1", kind, payload)


def test_kinds_are_snake_case_with_stable_member_names() -> None:
    # The seed spec's names are the public API (docs/decisions.md).
    assert all(kind.value == kind.name.lower() for kind in EventKind)
    assert EventKind.LAP_COMPLETED == "lap_completed"


def test_event_holds_its_kinds_typed_payload() -> None:
    payload = LapCompleted(lap=3, time=92.5, fuel=None, pit=False, driver="A")
    event = Event("car42", EventKind.LAP_COMPLETED, payload)
    assert event.message() == encode_event(
        "car42", "lap_completed", payload.model_dump()
    )
    with pytest.raises(EventError, match="not a DriverChanged"):
        Event("car42", EventKind.DRIVER_CHANGE, payload)
    parsed = Event.of("car42", "lap_completed", payload.model_dump())
    assert parsed.payload == payload


def test_stored_dotted_kinds_are_renamed_by_the_migration(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    from pitbox_appliance.storage.database import MIGRATIONS

    db = tmp_path / "old.db"
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", f"sqlite:///{db}")
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "0003")
    old = ("lap.completed", "driver.change", "command.result", "incident_detected")
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO events (session_id, kind, session_time, payload)"
            " VALUES (1, ?, 0.0, '{}')",
            [(kind,) for kind in old],
        )
    command.upgrade(cfg, "head")
    with sqlite3.connect(db) as conn:
        kinds = [k for (k,) in conn.execute("SELECT kind FROM events ORDER BY id")]
    assert kinds == [
        "lap_completed",
        "driver_change",
        "command_result",
        "incident_detected",
    ]
    assert set(kinds) <= {kind.value for kind in EventKind}
    command.downgrade(cfg, "0003")
    with sqlite3.connect(db) as conn:
        kinds = [k for (k,) in conn.execute("SELECT kind FROM events ORDER BY id")]
    assert tuple(kinds) == old
