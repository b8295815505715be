"""The shim's status file: what a driver or a service manager reads without a terminal.

``pitbox-shim`` rewrites it (atomically) every couple of seconds while it runs:
whether the sim is seen, whether the appliance is reachable, the spool's depth and
when the appliance last acknowledged what was sent. ``pitbox-shim service status``
prints it in words.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: After this long without a rewrite the file describes a shim that is not running.
STALE_S = 30.0


@dataclass(frozen=True, slots=True)
class ShimReport:
    """One status of the running shim."""

    source: str
    state: str
    adapter: str
    session_key: str
    ticks: int
    spool_depth: int
    appliance_connected: bool
    last_ack_at: float | None
    error: str = ""
    updated_at: float = 0.0
    pid: int = 0


def write_status(path: Path, report: ShimReport) -> None:
    """Replace the status file with ``report`` (stamped now; never half-written)."""
    stamped = {**asdict(report), "updated_at": time.time(), "pid": os.getpid()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(stamped, indent=1))
    tmp.replace(path)


def read_status(path: Path) -> dict[str, Any] | None:
    """The last status written, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe(status: dict[str, Any] | None, now: float | None = None) -> str:
    """The status in a driver's words, one fact per line."""
    if status is None:
        return "no status yet: the shim has not run on this PC (or cannot write)"
    now = time.time() if now is None else now
    age = now - float(status.get("updated_at", 0.0))
    lines = [f"shim {status.get('source', '?')}: {status.get('state', '?')}"]
    if age > STALE_S:
        lines[0] += f" (last written {age:.0f} s ago: not running?)"
    sim = status.get("session_key") or ""
    lines.append(
        f"sim: {'session ' + sim if sim else 'not seen'} "
        f"({status.get('adapter', '?')}, {status.get('ticks', 0)} ticks)"
    )
    lines.append(
        "appliance: "
        + ("connected" if status.get("appliance_connected") else "unreachable")
    )
    lines.append(f"spool: {status.get('spool_depth', 0)} messages waiting")
    acked = status.get("last_ack_at")
    lines.append(
        "last acknowledged: "
        + ("never" if acked is None else f"{max(0.0, now - float(acked)):.0f} s ago")
    )
    if status.get("error"):
        lines.append(f"problem: {status['error']}")
    return "\n".join(lines)
