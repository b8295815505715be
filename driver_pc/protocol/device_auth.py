"""Device-signed API requests: a paired driver PC proves who it is with its own message key.

A paired PC holds no API token; it holds the AES-256-GCM message key pairing gave it
(the appliance keeps the same key per source in its ``Keyring``). A request is signed
by sealing an empty plaintext with that key, the request's method, path, sorted query,
time and (for a JSON body) the body's SHA-256 as associated data; the 16-byte tag is the proof. The appliance opens it with
the source's key, so a revoked PC is refused as its messages are, and a PC can only
speak as itself. Requests older or newer than ``MAX_SKEW_S`` are refused, and a nonce is
accepted once, so a captured header cannot be replayed.

Header: ``Authorization: PitBox-Device source=<id>,ts=<unix s>,nonce=<24 hex>,tag=<32 hex>``.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from driver_pc.protocol.codec import DecodeError, Keyring

SCHEME = "PitBox-Device"
MAX_SKEW_S = 300.0
_HEADER = re.compile(
    r"PitBox-Device source=(?P<source>[A-Za-z0-9_]+-[A-Za-z0-9_-]+),"
    r"ts=(?P<ts>\d{1,12}),nonce=(?P<nonce>[0-9a-f]{24}),tag=(?P<tag>[0-9a-f]{32})"
)


class DeviceAuthError(ValueError):
    """A device signature was malformed, stale, replayed or wrong; says which."""


def _signed_text(
    method: str,
    path: str,
    query: Mapping[str, str],
    source: str,
    ts: int,
    body: bytes | None,
) -> bytes:
    pairs = "&".join(f"{k}={query[k]}" for k in sorted(query))
    digest = "-" if body is None else hashlib.sha256(body).hexdigest()
    return (
        f"pitbox-api-v1\n{method.upper()}\n{path}\n{pairs}\n{source}\n{ts}\n{digest}"
    ).encode()


def sign_request(
    key: bytes,
    source: str,
    method: str,
    path: str,
    query: Mapping[str, str],
    now: float | None = None,
    body: bytes | None = None,
) -> str:
    """The ``Authorization`` header value for one request from ``source``.

    ``body``: a JSON body the signature covers (its SHA-256); None for a streamed
    upload, whose body is not covered (its size limit and checks are the server's).
    """
    ts = int(time.time() if now is None else now)
    nonce = os.urandom(12)
    tag = AESGCM(key).encrypt(
        nonce, b"", _signed_text(method, path, query, source, ts, body)
    )
    return f"{SCHEME} source={source},ts={ts},nonce={nonce.hex()},tag={tag.hex()}"


class DeviceVerifier:
    """Checks device signatures against the appliance's keyring; remembers recent nonces."""

    def __init__(self, keyring: Keyring, max_nonces: int = 10_000) -> None:
        self.keyring = keyring
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._max = max_nonces
        self._lock = threading.Lock()

    def verify(
        self,
        header: str,
        method: str,
        path: str,
        query: Mapping[str, str],
        now: float | None = None,
        body: bytes | None = None,
    ) -> str:
        """The signing source, or raises DeviceAuthError saying what was wrong."""
        found = _HEADER.fullmatch(header.strip())
        if found is None:
            raise DeviceAuthError(
                "Authorization: a PitBox-Device header needs source, ts, nonce and tag"
            )
        source, ts = found["source"], int(found["ts"])
        now = time.time() if now is None else now
        if abs(now - ts) > MAX_SKEW_S:
            raise DeviceAuthError(
                f"Authorization: signed at {ts}, {now - ts:+.0f} s from the "
                f"appliance's clock (more than {MAX_SKEW_S:.0f} s)"
            )
        try:
            aead = self.keyring.aead(source)
        except DecodeError as exc:
            raise DeviceAuthError(f"Authorization: {exc}") from None
        nonce = bytes.fromhex(found["nonce"])
        try:
            aead.decrypt(
                nonce,
                bytes.fromhex(found["tag"]),
                _signed_text(method, path, query, source, ts, body),
            )
        except InvalidTag:
            raise DeviceAuthError(
                f"Authorization: the signature does not match {source!r}'s key"
            ) from None
        with self._lock:
            self._forget(now)
            if found["nonce"] in self._seen:
                raise DeviceAuthError("Authorization: this signature was already used")
            self._seen[found["nonce"]] = now
        return source

    def _forget(self, now: float) -> None:
        while self._seen:
            nonce, at = next(iter(self._seen.items()))
            if now - at <= 2 * MAX_SKEW_S and len(self._seen) < self._max:
                return
            del self._seen[nonce]
