"""Typed wire messages: what the shim sends and the appliance receives, decoded once at the edge."""

from __future__ import annotations

import dataclasses
import json
import zlib
from dataclasses import asdict, dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

import numpy as np

from driver_pc.protocol.channels import ChannelKind, ChannelSpec, frame_dtype

SCHEMA_VERSION = 1


class MessageType(IntEnum):
    """Kind of message inside an envelope; the numbering is part of the wire format."""

    CHANNELS = 1
    TELEMETRY = 2
    SESSION_INFO = 3
    STATUS = 4
    DRIVER_CHANGE = 5
    COMMAND = 6
    COMMAND_RESULT = 7


@dataclass(frozen=True, slots=True)
class ChannelDictionary:
    """Announces, once per source session, the channels its telemetry batches carry."""

    session_key: str
    tick_rate: int
    channels: tuple[ChannelSpec, ...]

    @property
    def dict_id(self) -> int:
        """Stable identifier of the channel list, carried by every batch."""
        text = json.dumps(
            [[c.name, int(c.kind), c.count, c.unit] for c in self.channels]
        )
        return zlib.crc32(text.encode())

    @property
    def dtype(self) -> np.dtype[np.void]:
        return frame_dtype(list(self.channels))

    def to_json(self) -> dict[str, Any]:
        return {
            "session_key": self.session_key,
            "tick_rate": self.tick_rate,
            "channels": [
                [c.name, int(c.kind), c.count, c.unit, c.description]
                for c in self.channels
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChannelDictionary:
        channels = []
        for item in _field(data, "channels", list):
            if not (isinstance(item, list) and len(item) == 5):
                raise ValueError(
                    "channel entry must be [name, kind, count, unit, desc]"
                )
            name, kind, count, unit, desc = item
            if not isinstance(name, str) or not name or len(name) > 64:
                raise ValueError(f"bad channel name {name!r}")
            if not isinstance(count, int) or not 1 <= count <= 1024:
                raise ValueError(f"channel {name}: bad count {count!r}")
            channels.append(
                ChannelSpec(name, ChannelKind(kind), count, str(unit), str(desc))
            )
        if len({c.name for c in channels}) != len(channels):
            raise ValueError("duplicate channel names")
        if not channels or len(channels) > 4096:
            raise ValueError(f"channel count {len(channels)} out of range")
        return cls(
            _field(data, "session_key", str),
            _field(data, "tick_rate", int),
            tuple(channels),
        )


@dataclass(frozen=True, slots=True)
class TelemetryBatch:
    """A run of consecutive ticks of one source session, as a numpy record array."""

    session_key: str
    dict_id: int
    channels: tuple[ChannelSpec, ...]
    frames: np.ndarray[Any, np.dtype[np.void]]


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """The sim's session-info YAML (decoded text) at one update counter."""

    session_key: str
    update: int
    yaml_text: str


@dataclass(frozen=True, slots=True)
class DriverChange:
    """The team car's driver changed (or became known) at this session time."""

    session_key: str
    session_time: float
    car_idx: int
    user_id: int
    user_name: str
    team_name: str = ""
    car_number: str = ""


class ShimState(StrEnum):
    """What the shim is doing right now, as shown on the pit wall."""

    WAITING_FOR_SIM = "waiting_for_sim"
    STREAMING = "streaming"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class ShimStatus:
    """Health report a shim sends every few seconds."""

    state: ShimState
    adapter: str
    ticks: int
    spool_depth: int
    session_key: str = ""
    version: str = "0.1.0"


@dataclass(frozen=True, slots=True)
class Command:
    """A command from the pit wall to a shim (camera switch, team message...)."""

    command_id: str
    kind: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The shim's answer to a command."""

    command_id: str
    ok: bool
    detail: str = ""


JsonMessage = SessionInfo | DriverChange | ShimStatus | Command | CommandResult
Message = ChannelDictionary | TelemetryBatch | JsonMessage

JSON_TYPES: dict[MessageType, type[Any]] = {
    MessageType.SESSION_INFO: SessionInfo,
    MessageType.STATUS: ShimStatus,
    MessageType.DRIVER_CHANGE: DriverChange,
    MessageType.COMMAND: Command,
    MessageType.COMMAND_RESULT: CommandResult,
}
TYPE_OF: dict[type[Any], MessageType] = {v: k for k, v in JSON_TYPES.items()}
TYPE_OF[ChannelDictionary] = MessageType.CHANNELS
TYPE_OF[TelemetryBatch] = MessageType.TELEMETRY


def message_to_json(msg: JsonMessage) -> dict[str, Any]:
    """The JSON body of a non-telemetry message."""
    return asdict(msg)


def message_from_json(kind: MessageType, data: dict[str, Any]) -> JsonMessage:
    """Build a typed message from its JSON body, naming the field that is wrong."""
    cls = JSON_TYPES[kind]

    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = data[f.name]
    unknown = set(data) - set(kwargs)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
    for f in dataclasses.fields(cls):
        if f.name not in kwargs:
            if (
                f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING
            ):
                raise ValueError(f"{cls.__name__}: missing field {f.name!r}")
            continue
        want = _ANNOTATION_TYPES.get(str(f.type))
        value = kwargs[f.name]
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
            kwargs[f.name] = value
        if want is not None and (
            not isinstance(value, want) or (isinstance(value, bool) and want is int)
        ):
            raise ValueError(
                f"{cls.__name__}.{f.name}: expected {want.__name__}, "
                f"got {type(value).__name__}"
            )
    if cls is ShimStatus:
        kwargs["state"] = ShimState(kwargs["state"])
    result: JsonMessage = cls(**kwargs)
    return result


_ANNOTATION_TYPES: dict[str, type[Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "dict[str, Any]": dict,
    "ShimState": str,
}


def _field(data: dict[str, Any], name: str, kind: type[Any]) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"field {name!r} must be {kind.__name__}")
    return value
