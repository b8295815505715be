"""The event contract: every kind has a schema, and a payload that breaks it is refused by name."""

from __future__ import annotations

import pytest

from driver_pc.protocol.events import PAYLOADS, EventError, EventKind, encode_event


def test_every_kind_has_a_schema() -> None:
    assert set(PAYLOADS) == set(EventKind)


def test_encode_keeps_payload_and_names_car() -> None:
    message = encode_event(
        "car42",
        "lap.completed",
        {"lap": 3, "time": 92.5, "fuel": 2.1, "pit": False, "driver": "A"},
    )
    assert message == {
        "kind": "lap.completed",
        "car": "car42",
        "lap": 3,
        "time": 92.5,
        "fuel": 2.1,
        "pit": False,
        "driver": "A",
    }


@pytest.mark.parametrize(
    ("kind", "payload", "needle"),
    [
        ("no_such_event", {}, "unknown event kind"),
        ("lap.completed", {"lap": "x"}, "lap.completed"),
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
