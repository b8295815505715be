"""Typed wire messages: what the shim sends and the appliance receives, decoded once at the edge."""

from __future__ import annotations

import dataclasses
import json
import math
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
    ACK = 8


@dataclass(frozen=True, slots=True)
class ChannelDictionary:
    """Announces, once per source session, the channels its telemetry batches carry.

    It states each channel's quantum (a sixth element of each channel entry: a
    number for floats, null for lossless channels). A dictionary without them (all
    sent or stored before they were stated) means the version-1 table, so its bodies
    decode exactly as they always did; one whose quanta are all that table's is sent
    without them too, as before. Built here, a channel that states no quantum gets the
    one new dictionaries use (``ChannelSpec.quantum``).
    """

    session_key: str
    tick_rate: int
    channels: tuple[ChannelSpec, ...]
    _dict_id: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        if any(c.precision is None and c.quantum is not None for c in self.channels):
            stated = tuple(
                dataclasses.replace(c, precision=c.quantum)
                if c.precision is None
                else c
                for c in self.channels
            )
            object.__setattr__(self, "channels", stated)
        object.__setattr__(self, "_dict_id", self._identify())

    @property
    def dict_id(self) -> int:
        """Stable identifier of the channel list and its quanta, carried by every batch.

        A dictionary whose quanta are all the version-1 table's keeps the identifier
        it had before quanta were stated (its stored bodies name it); any other quanta
        are part of the identifier. Computed once (the shim reads it every batch).
        """
        return self._dict_id

    def _identify(self) -> int:
        entries: list[list[Any]] = [
            [c.name, int(c.kind), c.count, c.unit] for c in self.channels
        ]
        if self.states_quanta:
            for entry, c in zip(entries, self.channels, strict=True):
                entry.append(c.quantum)
        return zlib.crc32(json.dumps(entries).encode())

    @property
    def states_quanta(self) -> bool:
        """Whether any quantum differs from the version-1 table (then it is sent)."""
        return any(c.quantum != c.version1_quantum for c in self.channels)

    @property
    def dtype(self) -> np.dtype[np.void]:
        return frame_dtype(list(self.channels))

    def to_json(self) -> dict[str, Any]:
        stated = self.states_quanta
        return {
            "session_key": self.session_key,
            "tick_rate": self.tick_rate,
            "channels": [
                [c.name, int(c.kind), c.count, c.unit, c.description]
                + ([c.quantum] if stated else [])
                for c in self.channels
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChannelDictionary:
        channels = []
        for item in _field(data, "channels", list):
            if not (isinstance(item, list) and len(item) in (5, 6)):
                raise ValueError(
                    "channel entry must be [name, kind, count, unit, desc, quantum]"
                )
            name, kind, count, unit, desc = item[:5]
            if not isinstance(name, str) or not name or len(name) > 64:
                raise ValueError(f"bad channel name {name!r}")
            if not isinstance(count, int) or not 1 <= count <= 1024:
                raise ValueError(f"channel {name}: bad count {count!r}")
            spec = ChannelSpec(name, ChannelKind(kind), count, str(unit), str(desc))
            want = spec.version1_quantum if len(item) == 5 else item[5]
            channels.append(
                dataclasses.replace(spec, precision=_quantum(name, spec, want))
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


#: The quanta a dictionary may state for a float channel.
MIN_QUANTUM = 1e-12
MAX_QUANTUM = 1e6


def _quantum(name: str, spec: ChannelSpec, value: Any) -> float | None:
    """A stated quantum checked: null for lossless channels, else a sane step."""
    if spec.version1_quantum is None:
        if value is not None:
            raise ValueError(f"channel {name}: lossless, but states quantum {value!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"channel {name}: quantum must be a number, not {value!r}")
    q = float(value)
    if not (math.isfinite(q) and MIN_QUANTUM <= q <= MAX_QUANTUM):
        raise ValueError(
            f"channel {name}: quantum {q!r} outside [{MIN_QUANTUM:g}, {MAX_QUANTUM:g}]"
        )
    return q


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


@dataclass(frozen=True, slots=True)
class Ack:
    """The core's end-to-end acknowledgement to one shim, sent after each commit.

    Every message of ``source`` up to ``up_to_seq`` is handled: in the database, a
    duplicate of one that is, or refused for good. The shim then deletes it from its
    spool. Cumulative: a later Ack covers everything an earlier one did.
    """

    source: str
    up_to_seq: int


JsonMessage = SessionInfo | DriverChange | ShimStatus | Command | CommandResult | Ack
Message = ChannelDictionary | TelemetryBatch | JsonMessage

JSON_TYPES: dict[MessageType, type[Any]] = {
    MessageType.SESSION_INFO: SessionInfo,
    MessageType.STATUS: ShimStatus,
    MessageType.DRIVER_CHANGE: DriverChange,
    MessageType.COMMAND: Command,
    MessageType.COMMAND_RESULT: CommandResult,
    MessageType.ACK: Ack,
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


# ---- the contract's limits ------------------------------------------------------------
# What a receiver accepts of a decoded message's fields (``validate_message``). They keep
# what reaches storage and analysis storable and meaningful: SQLite's INTEGER is a signed
# 64-bit number (2**70 raised OverflowError deep in a commit), a NaN time is stored as
# NULL (a NOT NULL column then refused every commit), and text columns have a size
# (``sessions.session_key`` 128, ``drivers.user_name`` 128). docs/decisions.md lists them.
INT64_MAX = 2**63 - 1
MAX_KEY_CHARS = 128  # session keys (sessions.session_key)
MAX_NAME_CHARS = 128  # driver and team names (drivers.user_name, team_name)
MAX_LABEL_CHARS = 64  # adapter names, versions, car numbers, command ids, units
MAX_DETAIL_CHARS = 4096  # a command result's detail; a channel's description
MAX_SESSION_INFO_CHARS = 8 * 1024 * 1024  # session-info YAML (64 cars: ~0.2 MB)
MAX_SESSION_TIME_S = 1e7  # ~115 days: a session clock beyond that is not one
MAX_CAR_IDX = 1023  # iRacing has 64 slots; room for other sims
MAX_TICK_RATE = 3600  # what the .ibt reader accepts


class InvalidMessage(ValueError):
    """A decoded message with a field outside the contract's limits.

    ``field`` names it (``DriverChange.user_id``); the message says what is wrong.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def validate_message(message: Message) -> None:
    """Check a decoded message against the contract's limits.

    Raises InvalidMessage naming the first field out of bounds. Receivers call it
    once, where they decode (the appliance's ``WireDecoder``); the typed constructors
    do not, so a sender is never stopped by its own odd input.
    """
    name = type(message).__name__
    if isinstance(message, ChannelDictionary):
        _key(name, "session_key", message.session_key)
        _int(name, "tick_rate", message.tick_rate, 1, MAX_TICK_RATE)
        for spec in message.channels:
            _text(f"{name}.channels[{spec.name}]", "unit", spec.unit, MAX_LABEL_CHARS)
            _text(
                f"{name}.channels[{spec.name}]",
                "description",
                spec.description,
                MAX_DETAIL_CHARS,
            )
    elif isinstance(message, TelemetryBatch):
        _key(name, "session_key", message.session_key)
        if "SessionTime" in (message.frames.dtype.names or ()):
            times = message.frames["SessionTime"]
            bad = ~(np.isfinite(times) & (np.abs(times) <= MAX_SESSION_TIME_S))
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                raise InvalidMessage(
                    f"{name}.SessionTime",
                    f"frame {first}: {float(times[first])!r} is not a session time "
                    f"(finite, at most {MAX_SESSION_TIME_S:g} s)",
                )
    elif isinstance(message, SessionInfo):
        _key(name, "session_key", message.session_key)
        _int(name, "update", message.update, 0, INT64_MAX)
        _text(name, "yaml_text", message.yaml_text, MAX_SESSION_INFO_CHARS)
    elif isinstance(message, DriverChange):
        _key(name, "session_key", message.session_key)
        _time(name, "session_time", message.session_time)
        _int(name, "car_idx", message.car_idx, 0, MAX_CAR_IDX)
        _int(name, "user_id", message.user_id, -INT64_MAX - 1, INT64_MAX)
        _text(name, "user_name", message.user_name, MAX_NAME_CHARS)
        _text(name, "team_name", message.team_name, MAX_NAME_CHARS)
        _text(name, "car_number", message.car_number, MAX_LABEL_CHARS)
    elif isinstance(message, ShimStatus):
        _text(name, "adapter", message.adapter, MAX_LABEL_CHARS)
        _int(name, "ticks", message.ticks, 0, INT64_MAX)
        _int(name, "spool_depth", message.spool_depth, 0, INT64_MAX)
        _text(name, "session_key", message.session_key, MAX_KEY_CHARS)
        _text(name, "version", message.version, MAX_LABEL_CHARS)
    elif isinstance(message, CommandResult):
        _text(name, "command_id", message.command_id, MAX_LABEL_CHARS, empty=False)
        _text(name, "detail", message.detail, MAX_DETAIL_CHARS)
    elif isinstance(message, Command):
        _text(name, "command_id", message.command_id, MAX_LABEL_CHARS, empty=False)
        _text(name, "kind", message.kind, MAX_LABEL_CHARS, empty=False)


def _key(owner: str, name: str, value: str) -> None:
    _text(owner, name, value, MAX_KEY_CHARS, empty=False)


def _text(owner: str, name: str, value: str, limit: int, *, empty: bool = True) -> None:
    if not isinstance(value, str):
        raise InvalidMessage(f"{owner}.{name}", f"not text ({type(value).__name__})")
    if len(value) > limit:
        raise InvalidMessage(
            f"{owner}.{name}", f"{len(value)} characters, at most {limit}"
        )
    if not empty and not value:
        raise InvalidMessage(f"{owner}.{name}", "empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMessage(
            f"{owner}.{name}", "not valid Unicode (a lone surrogate)"
        ) from None


def _int(owner: str, name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidMessage(f"{owner}.{name}", f"not an integer ({value!r})")
    if not low <= value <= high:
        shown = f"{value:.4g}" if abs(value) > 10**15 else str(value)
        raise InvalidMessage(f"{owner}.{name}", f"{shown} out of range [{low}, {high}]")


def _time(owner: str, name: str, value: float) -> None:
    if not isinstance(value, float | int) or isinstance(value, bool):
        raise InvalidMessage(f"{owner}.{name}", f"not a number ({value!r})")
    if not math.isfinite(value) or abs(value) > MAX_SESSION_TIME_S:
        raise InvalidMessage(
            f"{owner}.{name}",
            f"{value!r} is not a session time "
            f"(finite, at most {MAX_SESSION_TIME_S:g} s)",
        )


def _field(data: dict[str, Any], name: str, kind: type[Any]) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"field {name!r} must be {kind.__name__}")
    return value
