"""The driver PC's side of pairing: asks the appliance, and keeps the credentials it yields.

The handshake itself is the contract in ``driver_pc.protocol.pairing``.

The engineer starts a pairing on the appliance, which shows a one-time code (40 bits,
``XXXX-XXXX``). ``pitbox-shim pair`` never sends the code: it sends a random nonce and
an HMAC proof keyed by scrypt(code, nonce). The appliance finds the pending code that
matches, and answers with the device's credentials sealed with AES-256-GCM under a
second key from the same scrypt output. A stranger on the LAN who sees both messages
learns nothing without the code (scrypt makes guessing the 2^40 codes costly), and
cannot pose as the appliance, so the CA certificate the shim receives is trusted
because the engineer typed the code. The credentials are stored with mode 0600.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from driver_pc.protocol import data_dirs
from driver_pc.protocol.discovery import browse
from driver_pc.protocol.mqtt import BrokerAddress
from driver_pc.protocol.pairing import (
    NONCE_BYTES,
    PAIR_PATH,
    PairingError,
    normalize_code,
    open_reply,
    pairing_proof,
)

logger = logging.getLogger(__name__)


# ---- credentials --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeviceCredentials:
    """What pairing gives a driver PC: who it is, how to reach the broker, its key."""

    device_id: str
    source: str
    mqtt_host: str
    mqtt_port: int
    mqtt_username: str
    mqtt_password: str = field(repr=False)
    message_key: bytes = field(repr=False)
    ca_pem: str = field(repr=False)
    #: The appliance's public name or address (router port-forward): tried when
    #: ``mqtt_host`` (the LAN address) does not answer. None: LAN only.
    mqtt_public_host: str | None = None
    #: The appliance API as pairing reached it (``https://…`` once the appliance
    #: has its CA; verified against ``ca_pem``). None: older appliances.
    api_url: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeviceCredentials:
        """Parse the pairing payload / credentials file. Raises ValueError naming the key."""
        try:
            key = bytes.fromhex(str(data["message_key"]))
            creds = cls(
                device_id=str(data["device_id"]),
                source=str(data["source"]),
                mqtt_host=str(data["mqtt_host"]),
                mqtt_port=int(data["mqtt_port"]),
                mqtt_username=str(data["mqtt_username"]),
                mqtt_password=str(data["mqtt_password"]),
                message_key=key,
                ca_pem=str(data["ca_pem"]),
                mqtt_public_host=str(data["mqtt_public_host"])
                if data.get("mqtt_public_host")
                else None,
                api_url=str(data["api_url"]) if data.get("api_url") else None,
            )
        except KeyError as exc:
            raise ValueError(f"credentials lack {exc.args[0]!r}") from None
        except (TypeError, ValueError):
            raise ValueError("credentials hold a malformed value") from None
        if len(key) != 32:
            raise ValueError("credentials: message_key must be 32 bytes")
        if "BEGIN CERTIFICATE" not in creds.ca_pem:
            raise ValueError("credentials: ca_pem is not a PEM certificate")
        return creds

    def to_json(self) -> dict[str, Any]:
        """The credentials as stored (and as the appliance sends them)."""
        extra: dict[str, str] = {}
        if self.mqtt_public_host:
            extra["mqtt_public_host"] = self.mqtt_public_host
        if self.api_url:
            extra["api_url"] = self.api_url
        return {
            "device_id": self.device_id,
            "source": self.source,
            "mqtt_host": self.mqtt_host,
            "mqtt_port": self.mqtt_port,
            "mqtt_username": self.mqtt_username,
            "mqtt_password": self.mqtt_password,
            "message_key": self.message_key.hex(),
            "ca_pem": self.ca_pem,
            **extra,
        }

    def broker_address(self, ca_file: Path) -> BrokerAddress:
        """The TLS broker address, trusting only the CA stored at ``ca_file``.

        The LAN address first; the public one (if pairing gave one) when the LAN
        address does not answer.
        """
        return BrokerAddress(
            self.mqtt_host,
            self.mqtt_port,
            self.mqtt_username,
            self.mqtt_password,
            ca_file=str(ca_file),
            fallback_hosts=(self.mqtt_public_host,) if self.mqtt_public_host else (),
        )


def default_credentials_path() -> Path:
    """Where ``pitbox-shim`` keeps its credentials (per user)."""
    return data_dirs.shim_credentials_file()


def ca_path(credentials_path: Path) -> Path:
    """The CA certificate file beside the credentials (paho needs a file)."""
    return credentials_path.with_name("appliance-ca.crt")


def save_credentials(creds: DeviceCredentials, path: Path) -> None:
    """Store the credentials and the CA certificate with mode 0600."""
    _write_private(path, json.dumps(creds.to_json(), indent=1).encode())
    _write_private(ca_path(path), creds.ca_pem.encode())


def load_credentials(path: Path) -> DeviceCredentials:
    """Read stored credentials. Raises ValueError naming the file and the problem."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        creds = DeviceCredentials.from_json(data)
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if not ca_path(path).exists():
        _write_private(ca_path(path), creds.ca_pem.encode())
    return creds


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


# ---- the driver PC's side -------------------------------------------------------------
#: How long ``pitbox-shim pair`` listens for appliances answering mDNS.
BROWSE_S = 3.0


def pair(appliance_url: str, code: str, timeout: float = 15.0) -> DeviceCredentials:
    """Redeem ``code`` at the appliance's API and return this PC's credentials."""
    url = appliance_url.rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PairingError(f"--appliance must be an http(s) URL, got {appliance_url!r}")
    try:
        normalize_code(code)
    except ValueError as exc:
        raise PairingError(str(exc)) from None
    nonce = os.urandom(NONCE_BYTES)
    body = json.dumps(
        {"nonce": nonce.hex(), "proof": pairing_proof(code, nonce).hex()}
    ).encode()
    request = urllib.request.Request(
        url + PAIR_PATH,
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(
            request, timeout=timeout, context=_pairing_tls(parts.scheme)
        ) as response:
            reply: Any = json.load(response)
    except urllib.error.HTTPError as exc:
        raise PairingError(
            f"the appliance refused pairing ({exc.code}): {_error_text(exc)}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise PairingError(f"cannot reach the appliance at {url}: {exc}") from None
    except ValueError:
        raise PairingError("the appliance's answer is not JSON") from None
    if not isinstance(reply, dict):
        raise PairingError("the appliance's answer is not a JSON object")
    payload = open_reply(code, nonce, reply)
    payload.setdefault("mqtt_host", parts.hostname)
    try:
        return DeviceCredentials.from_json(payload)
    except ValueError as exc:
        raise PairingError(f"the appliance sent bad credentials: {exc}") from None


def _pairing_tls(scheme: str) -> ssl.SSLContext | None:
    """TLS for the pairing request: encryption without certificate checks.

    Before pairing this PC has no appliance CA to check against, and needs none:
    the answer is sealed and authenticated with a key only the code gives (see
    the module docstring), so a server posing as the appliance learns and gives
    nothing. Every later request checks the certificate against the CA received.
    """
    if scheme != "https":
        return None
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        data: Any = json.loads(exc.read())
        return str(data.get("error", "")) if isinstance(data, dict) else ""
    except (ValueError, OSError):
        return str(exc.reason)


def main(argv: list[str] | None = None) -> int:
    """``pitbox-shim pair [--code CODE] [--appliance URL]``: finds the appliance by mDNS."""
    parser = argparse.ArgumentParser(
        prog="pitbox-shim pair",
        description="Pair this driver PC with the appliance (code from the "
        "appliance's /devices page or `pitbox devices pair`). Without --appliance "
        "the appliance is found on the LAN (mDNS).",
    )
    parser.add_argument(
        "--appliance",
        help="API URL, e.g. http://pitbox.local:8081 (default: found on the LAN)",
    )
    parser.add_argument(
        "--code", help="the one-time pairing code (asked for when left out)"
    )
    parser.add_argument(
        "--credentials",
        type=Path,
        default=None,
        help="where to store the credentials (default: user config dir)",
    )
    parser.add_argument(
        "--browse-s",
        type=float,
        default=BROWSE_S,
        help=f"how long to look for appliances on the LAN (default {BROWSE_S:g} s)",
    )
    args = parser.parse_args(argv)
    path: Path = args.credentials or default_credentials_path()
    try:
        url = args.appliance or _find_appliance(args.browse_s)
        code = args.code or _ask_code()
        creds = pair(url, code)
    except PairingError as exc:
        sys.stderr.write(f"pitbox-shim pair: {exc}\n")
        return 1
    save_credentials(creds, path)
    sys.stdout.write(
        f"paired as {creds.source} (device {creds.device_id}); credentials in {path}\n"
    )
    return 0


def _find_appliance(browse_s: float) -> str:
    """The one appliance answering on the LAN; PairingError for none or several."""
    found = browse(browse_s)
    if not found:
        raise PairingError(
            f"no PitBox appliance answered on this network in {browse_s:g} s (mDNS); "
            "is this PC on the appliance's LAN? Else give --appliance URL"
        )
    if len(found) > 1:
        listed = "; ".join(f"{f.label} at {f.url}" for f in found)
        raise PairingError(
            f"{len(found)} appliances answered ({listed}): choose with --appliance URL"
        )
    sys.stdout.write(f"found {found[0].label} at {found[0].url}\n")
    return found[0].url


def _ask_code() -> str:
    if not sys.stdin.isatty():
        raise PairingError("--code is required (no terminal to ask for it)")
    return input("pairing code shown on the appliance: ").strip()
