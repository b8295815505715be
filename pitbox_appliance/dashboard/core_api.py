"""The dashboard's client of the core's HTTP API: commands, shim health and paired devices.

Commands (camera switch, team message) go ``POST /api/v1/cars/{car}/commands``; the core
forwards them over MQTT to the car's active shim, and the page polls
``GET /api/v1/commands/{id}`` until the shim's answer arrives. The dashboard never
publishes on MQTT itself (docs/api.md). Every call but health needs a bearer token:
the dashboard's own (``service:dashboard``, scopes ``read`` and ``commands``) from
``PITBOX_API_TOKEN``, which supervisor gives it (``command_token``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import aiohttp

from pitbox_appliance.api.auth import TokenConfigError, parse_tokens

logger = logging.getLogger(__name__)

#: How long to wait for the shim to confirm a command.
CONFIRM_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.2
REQUEST_TIMEOUT_S = 3.0
#: Marking a session as training measures every stored lap of the track first.
TRAINING_TIMEOUT_S = 180.0
#: How often the pit wall asks the core whether ingest keeps up (one poll per process).
HEALTH_POLL_S = 1.0
HEALTH_TIMEOUT_S = 1.5


class Outcome(StrEnum):
    """What became of a command."""

    CONFIRMED = "confirmed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """The end of one command: confirmed, failed by the shim, or never answered."""

    outcome: Outcome
    detail: str
    command_id: str | None = None
    source: str = ""
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.CONFIRMED


@dataclass(frozen=True, slots=True)
class ShimHealth:
    """A shim as the core last heard from it (``/api/v1/health``)."""

    source: str
    state: str
    adapter: str
    spool_depth: int


@dataclass(frozen=True, slots=True)
class CoreHealth:
    """Whether the core's ingest keeps up, as ``/api/v1/health`` last said."""

    reachable: bool
    stalled: str | None  # why, when the core says ingest stalled (HTTP 503)
    cars: frozenset[str]  # the cars the core tracks (it publishes each every second)
    checked_at: float  # wall clock


class CoreApi:
    """Sends commands through the core and reads its health; one per process."""

    def __init__(
        self,
        base_url: str | None,
        *,
        token: str | None = None,
        confirm_timeout_s: float = CONFIRM_TIMEOUT_S,
        poll_interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self.base_url = base_url.rstrip("/") if base_url else None
        self._token = token
        self.confirm_timeout_s = confirm_timeout_s
        self.poll_interval_s = poll_interval_s
        self._session: aiohttp.ClientSession | None = None
        #: The newest answer of ``poll_health`` (None before the first).
        self.last_health: CoreHealth | None = None
        self._health_asked = float("-inf")

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def send(
        self, car: str, kind: str, args: dict[str, Any], *, by: str | None = None
    ) -> CommandOutcome:
        """Send a command to ``car``'s active shim and wait for its confirmation.

        ``by`` is the logged-in user: the core keeps it with the command and its result.
        """
        if self.base_url is None:
            return CommandOutcome(
                Outcome.UNREACHABLE, "the core API address is unknown"
            )
        started = time.monotonic()
        try:
            status, body = await self._request(
                "POST",
                f"/api/v1/cars/{quote(car, safe='')}/commands",
                {"kind": kind, "args": args} | ({"by": by} if by else {}),
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return CommandOutcome(Outcome.UNREACHABLE, f"core API unreachable: {exc}")
        if status != 202:
            error = str(body.get("error") or f"HTTP {status}")
            return CommandOutcome(Outcome.REFUSED, error)
        command_id = str(body.get("command_id") or "")
        source = str(body.get("source") or "")
        deadline = started + self.confirm_timeout_s
        while time.monotonic() < deadline:
            result = body.get("result")
            if isinstance(result, dict):
                ok = bool(result.get("ok"))
                return CommandOutcome(
                    Outcome.CONFIRMED if ok else Outcome.FAILED,
                    str(result.get("detail") or ""),
                    command_id,
                    source,
                    time.monotonic() - started,
                )
            await asyncio.sleep(self.poll_interval_s)
            try:
                status, body = await self._request(
                    "GET", f"/api/v1/commands/{quote(command_id, safe='')}"
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                logger.info("polling command %s: %s", command_id, exc)
                continue
            if status in (401, 403):  # sent, but this token may not read the answer
                error = str(body.get("error") or f"HTTP {status}")
                return CommandOutcome(
                    Outcome.REFUSED,
                    f"sent, but its confirmation cannot be read: {error}",
                    command_id,
                    source,
                    time.monotonic() - started,
                )
        return CommandOutcome(
            Outcome.TIMEOUT,
            f"no answer from {source or 'the shim'} in {self.confirm_timeout_s:.0f} s",
            command_id,
            source,
            time.monotonic() - started,
        )

    async def shims(self) -> tuple[ShimHealth, ...] | None:
        """Every shim the core has heard from; None when the API does not answer."""
        if self.base_url is None:
            return None
        try:
            status, body = await self._request("GET", "/api/v1/health")
        except (aiohttp.ClientError, TimeoutError):
            return None
        # 503: ingest stalled, the rest of the answer holds (the last shim statuses).
        if status not in (200, 503) or not isinstance(body.get("shims"), dict):
            return None
        out = []
        for source, info in sorted(body["shims"].items()):
            if not isinstance(info, dict):
                continue
            depth = info.get("spool_depth")
            out.append(
                ShimHealth(
                    source=str(source),
                    state=str(info.get("state") or "unknown"),
                    adapter=str(info.get("adapter") or ""),
                    spool_depth=depth if isinstance(depth, int) else 0,
                )
            )
        return tuple(out)

    # ---- devices (/devices) -----------------------------------------------------------
    async def devices(self) -> dict[str, Any] | None:
        """``GET /api/v1/devices``: paired PCs and waiting codes; None if unreachable."""
        answer = await self._call("GET", "/api/v1/devices")
        return answer[1] if answer is not None and answer[0] == 200 else None

    async def start_pairing(self, source: str) -> tuple[bool, dict[str, Any]]:
        """A new pairing code for ``source``: (True, the code's record) or (False, why)."""
        return await self._changed(
            "POST", "/api/v1/devices/pairings", {"source": source}, 201
        )

    async def revoke(self, device_id: str) -> tuple[bool, dict[str, Any]]:
        """Revoke a paired PC: (True, its record) or (False, why)."""
        path = f"/api/v1/devices/{quote(device_id, safe='')}/revoke"
        return await self._changed("POST", path, {}, 200)

    # ---- drivers and training (/drivers) ----------------------------------------------
    async def drivers(self) -> dict[str, Any] | None:
        """``GET /api/v1/drivers``: every driver's counts; None if unreachable."""
        answer = await self._call("GET", "/api/v1/drivers")
        return answer[1] if answer is not None and answer[0] == 200 else None

    async def driver(self, name: str) -> dict[str, Any] | None:
        """``GET /api/v1/drivers/{name}``: the profile and plan; None if not there."""
        answer = await self._call("GET", f"/api/v1/drivers/{quote(name, safe='')}")
        return answer[1] if answer is not None and answer[0] == 200 else None

    async def sessions(self) -> dict[str, Any] | None:
        """``GET /api/v1/sessions``: stored sessions, newest first."""
        answer = await self._call("GET", "/api/v1/sessions")
        return answer[1] if answer is not None and answer[0] == 200 else None

    async def mark_training(
        self, session_id: int, driver: str, *, active: bool = True
    ) -> tuple[bool, dict[str, Any]]:
        """Mark (or end) a session as training for ``driver``: (True, goals) or why not."""
        if self.base_url is None:
            return False, {"error": "the core's API does not answer"}
        body = {"driver": driver, "active": active}
        path = f"/api/v1/sessions/{session_id}/training"
        try:  # goals are measured from stored telemetry: seconds, not milliseconds
            status, data = await self._request(
                "POST", path, body, timeout_s=TRAINING_TIMEOUT_S
            )
        except (aiohttp.ClientError, TimeoutError):
            return False, {"error": "the core's API does not answer"}
        if status != 200:
            return False, {"error": str(data.get("error") or f"HTTP {status}")}
        return True, data

    async def _changed(
        self, method: str, path: str, body: dict[str, Any], wanted: int
    ) -> tuple[bool, dict[str, Any]]:
        answer = await self._call(method, path, body)
        if answer is None:
            return False, {"error": "the core's API does not answer"}
        status, data = answer
        if status != wanted:
            return False, {"error": str(data.get("error") or f"HTTP {status}")}
        return True, data

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]] | None:
        if self.base_url is None:
            return None
        try:
            return await self._request(method, path, body)
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def poll_health(self) -> CoreHealth | None:
        """``health()`` at most once per HEALTH_POLL_S for the whole process.

        Every pit-wall tab calls it from a timer; the answer is ``last_health``.
        """
        now = time.monotonic()
        if now - self._health_asked < HEALTH_POLL_S * 0.8:
            return self.last_health
        self._health_asked = now
        health = await self.health()
        if health is not None:
            self.last_health = health
        return health

    async def health(self) -> CoreHealth | None:
        """Ingest liveness from the core; None when the API address is unknown."""
        if self.base_url is None:
            return None
        try:
            status, body = await self._request(
                "GET", "/api/v1/health", timeout_s=HEALTH_TIMEOUT_S
            )
        except (aiohttp.ClientError, TimeoutError):
            return CoreHealth(False, None, frozenset(), time.time())
        cars = body.get("cars")
        tracked = frozenset(cars) if isinstance(cars, dict) else frozenset()
        if status == 503:
            reason = str(body.get("reason") or "ingest stalled")
            return CoreHealth(True, reason, tracked, time.time())
        if status != 200:
            return CoreHealth(False, None, tracked, time.time())
        return CoreHealth(True, None, tracked, time.time())

    async def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> tuple[int, dict[str, Any]]:
        session = self._session
        if session is None or session.closed:
            session = self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
            )
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        extra: dict[str, Any] = {}
        if timeout_s is not None:
            extra["timeout"] = aiohttp.ClientTimeout(total=timeout_s)
        async with session.request(
            method, f"{self.base_url}{path}", json=body, headers=headers, **extra
        ) as reply:
            try:
                data = await reply.json(content_type=None)
            except ValueError:
                data = None
            return reply.status, data if isinstance(data, dict) else {}


def api_base_url(host: str, port: int) -> str | None:
    """Where the dashboard reaches the core's API; None when the port is OS-chosen."""
    if port == 0:
        return None
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def command_token(tokens: str) -> str | None:
    """The dashboard's API token: its own ``PITBOX_API_TOKEN`` (read+commands).

    Supervisor gives the dashboard that variable only; a dashboard started by hand
    beside the core may instead pick the first ``commands`` token (with its secret)
    out of ``tokens``, a ``PITBOX_API_TOKENS`` value.
    """
    own = os.environ.get("PITBOX_API_TOKEN", "")
    if own:
        return own
    try:
        parsed = parse_tokens(tokens)
    except TokenConfigError as exc:
        logger.warning("no API token for commands: %s", exc)
        return None
    return next((t for t, scopes in parsed.items() if "commands" in scopes), None)
