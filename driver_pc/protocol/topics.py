"""Every MQTT topic PitBox uses, built by functions, with its QoS and retain flag beside it."""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "pitbox/v1"


@dataclass(frozen=True, slots=True)
class Topic:
    """A concrete topic string with how it must be published."""

    name: str
    qos: int
    retain: bool


def _check(part: str) -> str:
    if not part or any(c in part for c in "/+#\0") or len(part) > 64:
        raise ValueError(f"invalid topic segment {part!r}")
    return part


def shim_data(source: str) -> Topic:
    """Everything a shim sends (telemetry, dictionaries, session info, status)."""
    return Topic(f"{ROOT}/shim/{_check(source)}/data", qos=1, retain=False)


def shim_commands(source: str) -> Topic:
    """Commands for one shim (camera switch, team messages)."""
    return Topic(f"{ROOT}/shim/{_check(source)}/cmd", qos=1, retain=False)


def shim_ack(source: str) -> Topic:
    """The core's end-to-end acknowledgements to one shim (``Ack``), after each commit.

    Not retained: every commit with messages of the source sends a new, cumulative
    one, so a lost ack is replaced by the next (docs/durability.md).
    """
    return Topic(f"{ROOT}/shim/{_check(source)}/ack", qos=1, retain=False)


def live_state(car: str) -> Topic:
    """The appliance's live state of one car, republished at the dashboard rate."""
    return Topic(f"{ROOT}/live/{_check(car)}/state", qos=0, retain=True)


def live_field(car: str) -> Topic:
    """The other cars around one car (``LiveField``), sent when the field refreshes.

    Apart from the live state because it is most of its bytes (63 cars: ~14 KB of
    ~16) and changes at most 4 times a second, while the state goes out 20 times.
    """
    return Topic(f"{ROOT}/live/{_check(car)}/field", qos=0, retain=True)


def events(car: str) -> Topic:
    """Typed events about one car (lap completed, driver change, ...)."""
    return Topic(f"{ROOT}/live/{_check(car)}/events", qos=1, retain=False)


ALL_SHIM_DATA = f"{ROOT}/shim/+/data"
ALL_LIVE_STATE = f"{ROOT}/live/+/state"
ALL_LIVE_FIELD = f"{ROOT}/live/+/field"
ALL_EVENTS = f"{ROOT}/live/+/events"


def source_of(topic: str) -> str | None:
    """The source id in a shim topic, or None if the topic is not one."""
    parts = topic.split("/")
    if len(parts) == 5 and parts[:3] == ["pitbox", "v1", "shim"]:
        return parts[3]
    return None
