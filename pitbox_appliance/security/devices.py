"""The device registry: pairing codes, paired driver PCs with their keys, revocation.

The registry is one JSON file (mode 0600) beside the CA, not a table in the race
database: that database is compacted and uploaded to the cloud, and device keys must
never travel with it. Every change happens under an exclusive ``flock`` and is written
atomically, so ``pitbox devices`` (its own process) and the core's pairing endpoint can
both change it. Broker logins live in Mosquitto's password file (hashed); the ACL
gives each username (= the device's source id) only its own topics.
"""

from __future__ import annotations

import fcntl
import hmac
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from driver_pc.protocol import data_dirs
from driver_pc.protocol.codec import Keyring
from driver_pc.protocol.pairing import CODE_ALPHABET, CODE_LENGTH, pairing_proof
from pitbox_appliance.broker import (
    PROGRAM_USERS,
    delete_user,
    reload_by_pid_file,
    set_password,
)
from pitbox_appliance.config import SecurityConfig
from pitbox_appliance.security.files import write_private

logger = logging.getLogger(__name__)

REGISTRY_VERSION = 1
# <car>-<pc>: the source id is also the MQTT username and a topic segment.
_SOURCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.]{0,30}-[A-Za-z0-9_.]{1,31}")
# Broker logins of the appliance's programs (PROGRAM_USERS) start with this.
_PROGRAM_PREFIX = "pitbox-"


class PairingRefused(ValueError):
    """A pairing attempt was refused; ``reason`` is a short label for counting."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Device:
    """A paired driver PC. ``message_key`` is hex; it never appears in repr or logs."""

    device_id: str
    source: str
    name: str
    paired_at: float
    message_key: str
    revoked_at: float | None = None

    def __repr__(self) -> str:
        state = "revoked" if self.revoked_at else "active"
        return f"Device({self.device_id!r}, {self.source!r}, {state})"

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None


#: Wrong pairing attempts that retire a pending code (its owner makes a new one). The appliance cannot tell which code a wrong proof was
#: meant for, so every wrong attempt counts against every pending code.
MAX_WRONG_GUESSES = 20


@dataclass(frozen=True, slots=True)
class PendingPairing:
    """A code shown to the engineer, waiting for its driver PC."""

    code: str
    source: str
    expires_at: float
    wrong_guesses: int = 0

    def __repr__(self) -> str:
        return f"PendingPairing({self.source!r}, expires_at={self.expires_at})"


@dataclass(frozen=True, slots=True)
class NewDevice:
    """The result of a redeemed code: the device and its one-time-shown secrets."""

    device: Device
    mqtt_password: str
    code: str

    def __repr__(self) -> str:
        return f"NewDevice({self.device!r})"


def security_dir(config: SecurityConfig) -> Path:
    """Where the CA and the registry live."""
    if config.dir:
        return Path(config.dir)
    return data_dirs.security_dir()


def broker_run_dir(config: SecurityConfig) -> Path:
    """The broker's folder (its password file and pid file)."""
    if config.broker_run_dir:
        return Path(config.broker_run_dir)
    return data_dirs.broker_run_dir()


class DeviceRegistry:
    """Pairs, lists and revokes devices; keeps the broker's logins in step.

    ``broker_dir`` holds Mosquitto's ``passwd`` and ``mosquitto.pid``; after a change
    of logins the broker is sent SIGHUP (Mosquitto 2.0 then disconnects any client
    whose login is gone).
    """

    def __init__(
        self, directory: Path, broker_dir: Path, appliance_user: str = "appliance"
    ) -> None:
        self.path = directory / "devices.json"
        self._lock_path = directory / "devices.lock"
        self.password_file = broker_dir / "passwd"
        self.pid_file = broker_dir / "mosquitto.pid"
        self.appliance_user = appliance_user

    @classmethod
    def from_config(cls, config: SecurityConfig, appliance_user: str) -> DeviceRegistry:
        """The registry named by the appliance configuration."""
        return cls(security_dir(config), broker_run_dir(config), appliance_user)

    # ---- engineer's side --------------------------------------------------------------
    def start_pairing(self, source: str, ttl_s: float = 600.0) -> PendingPairing:
        """A one-time code that lets one driver PC pair as ``source``."""
        check_source(source, self.appliance_user)
        with self._locked() as state:
            if any(d.source == source and d.active for d in state.devices):
                raise ValueError(
                    f"{source!r} is already paired; revoke it first "
                    "(pitbox devices revoke)"
                )
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
            pending = PendingPairing(code, source, time.time() + ttl_s)
            state.pairings = [p for p in state.pairings if p.source != source]
            state.pairings.append(pending)
        logger.info("pairing started for %s", source)
        return pending

    def devices(self) -> list[Device]:
        """Every device ever paired (revoked ones included)."""
        return self._read().devices

    def pending(self) -> list[PendingPairing]:
        """The pairings whose code still works (not redeemed, not expired)."""
        now = time.time()
        return [p for p in self._read().pairings if p.expires_at > now]

    def revoke(self, which: str) -> Device:
        """Revoke a device by id or source: its login goes, its key is refused."""
        with self._locked() as state:
            matches = [
                d
                for d in state.devices
                if d.active and which in (d.device_id, d.source)
            ]
            if not matches:
                raise LookupError(f"no active device {which!r}")
            device = matches[0]
            revoked = Device(**{**asdict(device), "revoked_at": time.time()})
            state.devices = [revoked if d is device else d for d in state.devices]
            delete_user(self.password_file, device.source)
        reload_by_pid_file(self.pid_file)
        logger.info("revoked device %s (%s)", device.device_id, device.source)
        return revoked

    # ---- the pairing endpoint's side --------------------------------------------------
    def redeem(
        self, nonce: bytes, proof: bytes, max_wrong: int = MAX_WRONG_GUESSES
    ) -> NewDevice:
        """The device for the pending code that ``proof`` was made with.

        Each code works once; an expired code is removed. A wrong proof counts
        against every pending code, and a code with ``max_wrong`` wrong guesses
        is retired. Raises PairingRefused.
        """
        now = time.time()
        new: NewDevice | None = None
        retired: list[str] = []
        with self._locked() as state:
            live = [p for p in state.pairings if p.expires_at > now]
            expired = [p for p in state.pairings if p.expires_at <= now]
            # Expired codes are dropped and saved even when this attempt fails, so
            # each costs one more scrypt at most.
            state.pairings = live
            match = _matching(live, nonce, proof)
            if match is not None:
                state.pairings = [p for p in live if p is not match]
                new = self._add_device(state, match, now)
            else:
                counted = [replace(p, wrong_guesses=p.wrong_guesses + 1) for p in live]
                state.pairings = [p for p in counted if p.wrong_guesses < max_wrong]
                retired = [p.source for p in counted if p.wrong_guesses >= max_wrong]
        for source in retired:
            logger.warning(
                "pairing code for %s retired after %d wrong guesses; make a new one",
                source,
                max_wrong,
            )
        if new is None:
            if _matching(expired, nonce, proof) is not None:
                raise PairingRefused("expired_code", "the pairing code has expired")
            raise PairingRefused(
                "unknown_code", "no pending pairing has this code (used or wrong)"
            )
        reload_by_pid_file(self.pid_file)
        logger.info("paired device %s as %s", new.device.device_id, new.device.source)
        return new

    def _add_device(
        self, state: _State, pending: PendingPairing, now: float
    ) -> NewDevice:
        password = secrets.token_urlsafe(24)
        device = Device(
            device_id=secrets.token_hex(4),
            source=pending.source,
            name=pending.source,
            paired_at=now,
            message_key=os.urandom(32).hex(),
        )
        self.password_file.parent.mkdir(parents=True, exist_ok=True)
        set_password(self.password_file, device.source, password)
        state.devices.append(device)
        return NewDevice(device, password, pending.code)

    # ---- the core's side --------------------------------------------------------------
    def load_into(self, keyring: Keyring) -> None:
        """Install every active device's key, and the revoked sources, in ``keyring``."""
        devices = self._read().devices
        keys = {d.source: bytes.fromhex(d.message_key) for d in devices if d.active}
        revoked = {d.source for d in devices if not d.active} - set(keys)
        keyring.replace(keys, revoked)

    def stamp(self) -> tuple[int, int] | None:
        """Changes when the registry file does (for cheap polling)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    # ---- storage ----------------------------------------------------------------------
    def _read(self) -> _State:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return _State([], [])
        return _State.from_json(text, self.path)

    @contextmanager
    def _locked(self) -> Iterator[_State]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            state = self._read()
            yield state
            write_private(self.path, state.to_json().encode())
        finally:
            os.close(fd)  # closing releases the lock


def _matching(
    pending: list[PendingPairing], nonce: bytes, proof: bytes
) -> PendingPairing | None:
    """The pending pairing whose code made ``proof`` (one scrypt per entry)."""
    for candidate in pending:
        if hmac.compare_digest(pairing_proof(candidate.code, nonce), proof):
            return candidate
    return None


def check_source(source: str, appliance_user: str = "appliance") -> str:
    """Raise ValueError unless ``source`` is a valid device name (``<car>-<pc>``).

    The name becomes the device's broker login and so its client id: the appliance's
    logins (``appliance``, ``pitbox-core``, …) and the ``pitbox-`` prefix, kept for
    the appliance's programs, are refused.
    """
    if source == appliance_user or not _SOURCE.fullmatch(source):
        raise ValueError(
            f"device name {source!r}: use <car>-<pc> (letters, digits, '_' or '.'), "
            "e.g. car42-pc1"
        )
    if source in PROGRAM_USERS or source.startswith(_PROGRAM_PREFIX):
        raise ValueError(
            f"device name {source!r}: names starting with {_PROGRAM_PREFIX!r} are "
            "the appliance's own broker logins"
        )
    return source


@dataclass(slots=True)
class _State:
    devices: list[Device]
    pairings: list[PendingPairing]

    @classmethod
    def from_json(cls, text: str, path: Path) -> _State:
        try:
            data: Any = json.loads(text)
            if data.get("version") != REGISTRY_VERSION:
                raise ValueError(f"version {data.get('version')!r}")
            return cls(
                [Device(**d) for d in data["devices"]],
                [PendingPairing(**p) for p in data["pairings"]],
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"{path}: not a PitBox device registry ({exc})") from None

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": REGISTRY_VERSION,
                "devices": [asdict(d) for d in self.devices],
                "pairings": [asdict(p) for p in self.pairings],
            },
            indent=1,
        )
