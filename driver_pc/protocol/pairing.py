"""The pairing handshake both ends speak: code format, proof, and the sealed reply.

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

import base64
import hashlib
import hmac
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

PAIR_PATH = "/api/v1/pair"
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
CODE_LENGTH = 8
NONCE_BYTES = 16
SCRYPT_N = 2**14
_AAD = b"pitbox-pair-v1"


class PairingError(RuntimeError):
    """Pairing failed; the message says why (never the code or a key)."""


# ---- the handshake (both sides) ---------------------------------------------------
def normalize_code(code: str) -> str:
    """The code as typed (any case, dashes, spaces) in its canonical form."""
    text = "".join(ch for ch in code.upper() if ch not in "- ")
    # Crockford decoding of look-alikes, so a misread character still matches.
    text = text.translate(str.maketrans("ILO", "110"))
    if len(text) != CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in text):
        raise ValueError(
            f"a pairing code is {CODE_LENGTH} characters from {CODE_ALPHABET}"
        )
    return text


def pairing_proof(code: str, nonce: bytes) -> bytes:
    """What the driver PC sends to show it knows ``code``."""
    proof_key, _ = _derive(code, nonce)
    return hmac.new(proof_key, _AAD + b" proof" + nonce, hashlib.sha256).digest()


def seal_reply(code: str, nonce: bytes, payload: dict[str, Any]) -> dict[str, str]:
    """The appliance's answer: ``payload`` readable only with the code."""
    _, reply_key = _derive(code, nonce)
    reply_nonce = os.urandom(12)
    sealed = AESGCM(reply_key).encrypt(
        reply_nonce, json.dumps(payload).encode(), _AAD + nonce
    )
    return {"nonce": reply_nonce.hex(), "sealed": base64.b64encode(sealed).decode()}


def open_reply(code: str, nonce: bytes, reply: dict[str, Any]) -> dict[str, Any]:
    """The payload of :func:`seal_reply`. Raises PairingError if it was not sealed so."""
    _, reply_key = _derive(code, nonce)
    try:
        plain = AESGCM(reply_key).decrypt(
            bytes.fromhex(str(reply["nonce"])),
            base64.b64decode(str(reply["sealed"]), validate=True),
            _AAD + nonce,
        )
        data: Any = json.loads(plain)
    except (KeyError, ValueError, InvalidTag):
        raise PairingError(
            "the appliance's answer is not sealed with this code "
            "(wrong appliance, or someone in between)"
        ) from None
    if not isinstance(data, dict):
        raise PairingError("the appliance's answer is not a JSON object")
    return data


def _derive(code: str, nonce: bytes) -> tuple[bytes, bytes]:
    key = Scrypt(salt=nonce, length=64, n=SCRYPT_N, r=8, p=1).derive(
        normalize_code(code).encode()
    )
    return key[:32], key[32:]
