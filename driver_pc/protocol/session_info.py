"""Session-info YAML decoding (pyirsdk's tolerant loader) and identification of the team driver."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml
from irsdk import YAML_TRANSLATER, CustomYamlSafeLoader, YamlReader

_NAME_KEYS = re.compile(
    r"(?P<key>(?:DriverSetupName|UserName|TeamName|AbbrevName|Initials): )(?P<value>.+)"
)
_COMMA_VALUE = re.compile(r"(?P<key>\w+: )(?P<value>,.*)")


#: Deeper YAML is refused (see ``_check_depth``); iRacing's nests at most ~6 levels.
MAX_YAML_DEPTH = 64


class SessionInfoError(ValueError):
    """The session-info text could not be parsed; the message says where."""


def decode_session_bytes(raw: bytes) -> str:
    """IRacing's session-info bytes as text (ISO-8859-1; UTF-8 when it says so)."""
    raw = raw.rstrip(b"\0")
    if raw.startswith(b"---\nWeekendInfo:\n Encoding: UTF8"):
        return raw.decode("utf-8", errors="replace")
    return raw.decode("latin-1")


def parse_session_info(text: str) -> dict[str, Any]:
    """Parse session-info YAML the way pyirsdk does, so team names like ``- X -`` survive."""

    def quote(m: re.Match[str]) -> str:
        escaped = re.sub(r'(["\\])', r"\\\1", m.group("value"))
        return m.group("key") + f'"{escaped}"'

    src = text.translate(dict.fromkeys(_translater_deletions()))
    src = re.sub(YamlReader.NON_PRINTABLE, "", src)
    src = _NAME_KEYS.sub(quote, src)
    src = _COMMA_VALUE.sub(quote, src)
    try:
        _check_depth(src)
        data = yaml.load(src, Loader=CustomYamlSafeLoader)
    except yaml.YAMLError as exc:
        raise SessionInfoError(f"session info is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SessionInfoError("session info is not a YAML mapping")
    return data


def _check_depth(src: str) -> None:
    """Refuse YAML nested deeper than ``MAX_YAML_DEPTH`` before it is composed.

    libyaml's composer recurses in C without a limit: ~100,000 nested ``[`` or ``- ``
    overflow the stack and kill the process (SIGSEGV). Its event parser is iterative,
    so the depth is measured on the events first. Real session info nests ≤ 6 deep.
    """
    depth = 0
    for event in yaml.parse(src, Loader=CustomYamlSafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise SessionInfoError(
                    f"session info nests deeper than {MAX_YAML_DEPTH} levels"
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _translater_deletions() -> list[int]:
    # pyirsdk's YAML_TRANSLATER deletes control bytes; reuse its table on text.
    table = YAML_TRANSLATER
    return [i for i in range(256) if table[i] != i and i < 32]


@dataclass(frozen=True, slots=True)
class TeamDriver:
    """Who is in the team car: the driver entry for the player's car."""

    car_idx: int
    user_id: int
    user_name: str
    team_name: str
    car_number: str


def current_driver(info: dict[str, Any]) -> TeamDriver | None:
    """The driver of the player's (team) car according to ``DriverInfo``."""
    driver_info = info.get("DriverInfo")
    if not isinstance(driver_info, dict):
        return None
    car_idx = driver_info.get("DriverCarIdx")
    if not isinstance(car_idx, int):
        return None
    for entry in driver_info.get("Drivers") or []:
        if isinstance(entry, dict) and entry.get("CarIdx") == car_idx:
            return TeamDriver(
                car_idx=int(car_idx),
                user_id=int(entry.get("UserID") or 0),
                user_name=str(entry.get("UserName") or ""),
                team_name=str(entry.get("TeamName") or ""),
                car_number=str(entry.get("CarNumber") or ""),
            )
    return None


def track_info(info: dict[str, Any]) -> dict[str, Any]:
    """Track name and length (km) from ``WeekendInfo``, as plain values."""
    wi = info.get("WeekendInfo") or {}
    length = str(wi.get("TrackLength") or "0 km").split()[0]
    try:
        km = float(length)
    except ValueError:
        km = 0.0
    return {
        "track": str(wi.get("TrackDisplayName") or wi.get("TrackName") or ""),
        "track_length_km": km,
        "subsession_id": int(wi.get("SubSessionID") or 0),
        "session_id": int(wi.get("SessionID") or 0),
        "team_racing": bool(wi.get("TeamRacing") or 0),
    }
