"""``POST /api/v1/pair``: a driver PC redeems a pairing code for its credentials (no token).

The code is the secret, and it never crosses the network: the request carries a nonce
and a proof made from the code, the answer is sealed with a key made from the code
(``driver_pc.pairing``). Attempts are rate-limited per client address and overall,
which also bounds the scrypt work an attacker can make the appliance do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
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
ATTEMPTS_OVERALL = 30
WINDOW_S = 60.0


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
    """Sliding-window limits: failures per client address, attempts overall."""

    per_client: int = FAILURES_PER_CLIENT
    overall: int = ATTEMPTS_OVERALL
    window_s: float = WINDOW_S
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _attempts: deque[float] = field(default_factory=deque)

    def retry_after(self, client: str, now: float) -> float:
        """Seconds until ``client`` may try again (0: now)."""
        self._expire(now)
        waits = [0.0]
        failures = self._failures.get(client)
        if failures is not None and len(failures) >= self.per_client:
            waits.append(failures[0] + self.window_s - now)
        if len(self._attempts) >= self.overall:
            waits.append(self._attempts[0] + self.window_s - now)
        return max(waits)

    def attempt(self, client: str, now: float, failed: bool) -> None:
        """Record one attempt of ``client``."""
        self._attempts.append(now)
        if failed:
            self._failures.setdefault(client, deque()).append(now)

    def _expire(self, now: float) -> None:
        horizon = now - self.window_s
        while self._attempts and self._attempts[0] < horizon:
            self._attempts.popleft()
        for client in list(self._failures):
            queue = self._failures[client]
            while queue and queue[0] < horizon:
                queue.popleft()
            if not queue:
                del self._failures[client]


LIMITER = web.AppKey("pairing_limiter", PairingLimiter)


def setup(app: web.Application) -> None:
    """Give ``app`` its pairing rate limiter."""
    app[LIMITER] = PairingLimiter()


@routes.post("/api/v1/pair")
async def pair(request: web.Request) -> web.Response:
    """Redeem a pairing code: register the device, answer with its sealed credentials."""
    limiter = request.app[LIMITER]
    client = request.remote or "?"
    wait = limiter.retry_after(client, time.monotonic())
    if wait > 0:
        response = error_response(429, "pairing: too many attempts; try again later")
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    body = await read_body(request, PairIn)
    if isinstance(body, web.Response):
        limiter.attempt(client, time.monotonic(), failed=True)
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
        # scrypt and mosquitto_passwd are slow: keep them off the event loop.
        new = await loop.run_in_executor(None, registry.redeem, nonce, proof)
    except PairingRefused as exc:
        limiter.attempt(client, time.monotonic(), failed=True)
        logger.warning("pairing refused from %s: %s", client, exc.reason)
        return error_response(403, f"pairing: {exc}")
    except (RuntimeError, OSError, ValueError) as exc:  # registry or mosquitto_passwd
        logger.error("pairing failed: %s", exc)
        return error_response(503, "pairing: the appliance could not add the device")
    limiter.attempt(client, time.monotonic(), failed=False)
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
    }
    if security.public_host and security.public_host != payload["mqtt_host"]:
        payload["mqtt_public_host"] = security.public_host
    try:
        sealed = seal_reply(new.code, nonce, payload)
    except (PairingError, ValueError):  # pragma: no cover - the code was just matched
        return error_response(500, "pairing: could not seal the answer")
    return json_response(PairOut(**sealed))
