"""``POST /api/v1/pair``: a driver PC redeems a pairing code for its credentials (no token).

The code is the secret, and it never crosses the network: the request carries a nonce
and a proof made from the code, the answer is sealed with a key made from the code
(``driver_pc.pairing``). Attempts are limited per client address (reserved before any
work, so a concurrent burst gets no more tries than a sequential one) and in flight
overall, and each pending code dies after a number of wrong guesses; the proof check
runs on a thread of its own, so a burst never stalls health, reads or ingest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from driver_pc.protocol.pairing import PairingError, seal_reply
from pitbox_appliance.api.context import (
    SERVICE,
    error_response,
    json_response,
    read_body,
)
from pitbox_appliance.security.devices import DeviceRegistry, PairingRefused
from pitbox_appliance.security.pki import PkiFiles

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()

FAILURES_PER_CLIENT = 5
WINDOW_S = 60.0
#: Attempts admitted to the proof check at once, all addresses together (running or
#: waiting for the one pairing thread); more are answered 429 at once.
MAX_ADMITTED = 8
#: Threads that run scrypt and mosquitto_passwd for pairing. Not the loop's default
#: executor: health, reads and ingest keep theirs while a burst of guesses waits.
PAIRING_THREADS = 1


class PairIn(BaseModel):
    """A pairing attempt: a fresh nonce and the proof made from it and the code."""

    model_config = ConfigDict(extra="forbid")

    nonce: str = Field(description="16 random bytes, hex", pattern=r"^[0-9a-f]{32}$")
    proof: str = Field(
        description="HMAC-SHA256 keyed by scrypt(code, nonce), hex",
        pattern=r"^[0-9a-f]{64}$",
    )


class PairOut(BaseModel):
    """The device's credentials, AES-256-GCM sealed under a key made from the code."""

    nonce: str = Field(description="12-byte AES-GCM nonce, hex")
    sealed: str = Field(
        description="base64 of the sealed JSON credentials (driver_pc.pairing)"
    )


@dataclass
class PairingLimiter:
    """Who may try a pairing proof now: per client address, and how many at once.

    An attempt is *reserved* before any work is done (before the body is read, long
    before scrypt), and the reservation counts against its address until it ends:
    300 concurrent guesses from one address get ``per_client`` tries, not 300. A
    failed attempt stays counted for ``window_s``; a successful one is forgotten.
    There is no overall lockout (it let a guesser lock out a genuine PC from
    another address); the overall bound is ``max_admitted`` attempts in flight, and
    each pending code dies after a number of wrong guesses (``DeviceRegistry``).
    """

    per_client: int = FAILURES_PER_CLIENT
    window_s: float = WINDOW_S
    max_admitted: int = MAX_ADMITTED
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _in_flight: dict[str, int] = field(default_factory=dict)

    def reserve(self, client: str, now: float) -> float:
        """Admit one attempt of ``client`` (0.0), or the seconds to wait first."""
        self._expire(now)
        failures = self._failures.get(client, deque())
        if len(failures) + self._in_flight.get(client, 0) >= self.per_client:
            return failures[0] + self.window_s - now if failures else 1.0
        if sum(self._in_flight.values()) >= self.max_admitted:
            return 1.0
        self._in_flight[client] = self._in_flight.get(client, 0) + 1
        return 0.0

    def release(self, client: str, now: float, failed: bool) -> None:
        """End a reserved attempt; a failed one counts for ``window_s``."""
        left = self._in_flight.get(client, 0) - 1
        if left > 0:
            self._in_flight[client] = left
        else:
            self._in_flight.pop(client, None)
        if failed:
            self._failures.setdefault(client, deque()).append(now)

    def _expire(self, now: float) -> None:
        horizon = now - self.window_s
        for client in list(self._failures):
            queue = self._failures[client]
            while queue and queue[0] < horizon:
                queue.popleft()
            if not queue:
                del self._failures[client]


LIMITER = web.AppKey("pairing_limiter", PairingLimiter)
EXECUTOR = web.AppKey("pairing_executor", ThreadPoolExecutor)


def setup(app: web.Application) -> None:
    """Give ``app`` its pairing rate limiter and the thread its proofs are checked on."""
    app[LIMITER] = PairingLimiter()
    app[EXECUTOR] = ThreadPoolExecutor(PAIRING_THREADS, "pitbox-pairing")
    app.on_cleanup.append(_stop_executor)


async def _stop_executor(app: web.Application) -> None:
    app[EXECUTOR].shutdown(wait=False, cancel_futures=True)


@routes.post("/api/v1/pair")
async def pair(request: web.Request) -> web.Response:
    """Redeem a pairing code: register the device, answer with its sealed credentials."""
    limiter = request.app[LIMITER]
    client = request.remote or "?"
    # The limit is checked (and the attempt reserved) before anything costly.
    wait = limiter.reserve(client, time.monotonic())
    if wait > 0:
        response = error_response(429, "pairing: too many attempts; try again later")
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    failed = True
    try:
        response = await _redeem(request)
        # A 503 is the appliance's fault (not set up, mosquitto_passwd failed), not a
        # wrong guess: it does not count against the address.
        failed = response.status not in (200, 503)
        return response
    finally:
        limiter.release(client, time.monotonic(), failed)


async def _redeem(request: web.Request) -> web.Response:
    """Check the proof against the pending codes; the sealed answer, or the refusal."""
    client = request.remote or "?"
    body = await read_body(request, PairIn)
    if isinstance(body, web.Response):
        return body
    service = request.app[SERVICE]
    security = service.config.security
    pki = PkiFiles(service.devices.path.parent)
    if not pki.ca_cert.exists():
        return error_response(
            503, "pairing: TLS is not set up on the appliance (pitbox devices setup)"
        )
    nonce, proof = bytes.fromhex(body.nonce), bytes.fromhex(body.proof)
    registry: DeviceRegistry = service.devices
    loop = asyncio.get_running_loop()
    try:
        # scrypt and mosquitto_passwd are slow: off the event loop, on the pairing
        # thread (queued attempts never hold the threads health and reads use).
        new = await loop.run_in_executor(
            request.app[EXECUTOR], registry.redeem, nonce, proof
        )
    except PairingRefused as exc:
        logger.warning("pairing refused from %s: %s", client, exc.reason)
        return error_response(403, f"pairing: {exc}")
    except (RuntimeError, OSError, ValueError) as exc:  # registry or mosquitto_passwd
        logger.error("pairing failed: %s", exc)
        return error_response(503, "pairing: the appliance could not add the device")
    service.refresh_keys(force=True)
    device = new.device
    payload = {
        "device_id": device.device_id,
        "source": device.source,
        # LAN first (the address the PC reached us by); the public name, when
        # set, is the shim's fallback off the LAN (docs/remote.md).
        "mqtt_host": request.url.host or security.public_host or "127.0.0.1",
        "mqtt_port": security.tls_port,
        "mqtt_username": device.source,
        "mqtt_password": new.mqtt_password,
        "message_key": device.message_key,
        "ca_pem": pki.ca_cert.read_text(encoding="ascii"),
        # The API as this PC reached it: https once the appliance has its CA.
        "api_url": str(request.url.origin()),
    }
    if security.public_host and security.public_host != payload["mqtt_host"]:
        payload["mqtt_public_host"] = security.public_host
    try:
        sealed = seal_reply(new.code, nonce, payload)
    except (PairingError, ValueError):  # pragma: no cover - the code was just matched
        return error_response(500, "pairing: could not seal the answer")
    return json_response(PairOut(**sealed))
