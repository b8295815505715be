"""Envelope and body codec: columnar, quantised, compressed, authenticated wire messages.

Envelope (all integers little-endian)::

    b"PBX" | schema u8 | type u8 | source_len u8 | source | seq u64 | nonce[12] | AES-GCM(body)

Everything before the nonce is authenticated as associated data, so a message cannot be
moved to another source, type or sequence number. Each source has its own AES-256 key (a
:class:`Keyring` maps source → key, from device pairing); a revoked or unknown source is
rejected before any decryption, and a shared team key may stand in as the legacy key. The body is zstd-compressed; telemetry
bodies are columnar (one array per channel, delta-coded integers at the channel's
precision). Decoding checks every size before it allocates.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from driver_pc.protocol import body_dictionary
from driver_pc.protocol.channels import ChannelSpec, frame_dtype
from driver_pc.protocol.messages import (
    SCHEMA_VERSION,
    TYPE_OF,
    ChannelDictionary,
    JsonMessage,
    Message,
    MessageType,
    TelemetryBatch,
    message_from_json,
    message_to_json,
)

MAGIC = b"PBX"
MAX_MESSAGE_BYTES = 2 * 1024 * 1024
MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_FRAMES_PER_BATCH = 60 * 60
NONCE_BYTES = 12
_HEAD = struct.Struct("<3sBBB")
_SEQ = struct.Struct("<Q")
_BATCH_HEAD = struct.Struct("<IIB")
_WIDTHS = (1, 2, 4, 8)
CHAIN_MAGIC = b"PBT\x02"  # body version 2 (still decoded; no longer sent)
CHAIN_MAGIC_3 = b"PBT\x03"  # body version 3: what a Codec sends
_CHAIN_MAGICS = (CHAIN_MAGIC, CHAIN_MAGIC_3)
_CHAIN_HEAD = struct.Struct("<4sBQQ")
_FLAG_KEYFRAME = 1
_FLAG_CARRIES_BASE = 2  # the base's rows travel in the payload (a chunk stored alone)
_FLAG_RAW = 4  # version 3: a channel travels as raw floats
_FLAG_DICTIONARY = 8  # version 3: zstd with body_dictionary (dictionary 1)
_FRAMES = struct.Struct("<H")
_ROWS_LEN = struct.Struct("<I")
_MODE_ZERO = 12  # every residual of the column is 0: nothing is sent
HISTORY_ROWS = 4
DEFAULT_KEYFRAME_EVERY = 40  # batches: 2 s at 50 ms
# zstd level of the bodies a Codec sends. 7 would save ~3.5 % of the full live set's
# telemetry bytes (9 no more) for ~20-40 us more per batch, but the shim's per-tick CPU
# p99 is already 0.66-0.84 ms at 3: kept at 3 (docs/decisions.md, 2026-12-03).
DEFAULT_LEVEL = 3


class DecodeError(ValueError):
    """A message was rejected; ``reason`` is a short stable label for counting."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded message with who sent it and its per-source sequence number."""

    source: str
    seq: int
    kind: MessageType
    message: Message


class Keyring:
    """Message keys by source: each paired device's own key, and who is revoked.

    A source that is revoked is refused even when a legacy key is set; a source
    with no key of its own uses ``legacy_key`` (the shared team key) if there is
    one, and is refused as ``unknown_key`` otherwise. :meth:`replace` swaps the
    whole table at once, so readers on other threads never see half an update.
    """

    def __init__(self, legacy_key: bytes | None = None) -> None:
        self._legacy = _aead(legacy_key) if legacy_key is not None else None
        self._keys: dict[str, AESGCM] = {}
        self._revoked: frozenset[str] = frozenset()

    def replace(self, keys: Mapping[str, bytes], revoked: Iterable[str] = ()) -> None:
        """Install the complete set of device keys and revoked sources."""
        table = {source: _aead(key) for source, key in keys.items()}
        gone = frozenset(revoked)
        self._keys, self._revoked = table, gone

    @property
    def has_legacy_key(self) -> bool:
        """Whether sources without a key of their own fall back to the team key."""
        return self._legacy is not None

    def aead(self, source: str) -> AESGCM:
        """The cipher for ``source``. Raises DecodeError (revoked_key, unknown_key)."""
        if source in self._revoked:
            raise DecodeError("revoked_key", f"source {source!r} has been revoked")
        found = self._keys.get(source, self._legacy)
        if found is None:
            raise DecodeError("unknown_key", f"no message key for source {source!r}")
        return found


def _aead(key: bytes) -> AESGCM:
    if len(key) != 32:
        raise ValueError("a message key must be 32 bytes (AES-256)")
    return AESGCM(key)


class Codec:
    """Encodes and decodes messages (AES-256-GCM, zstd).

    Give it one 32-byte key (used for every source: the shim's own key, or the
    legacy team key) or a :class:`Keyring` for per-source keys.
    """

    def __init__(
        self,
        key: bytes | Keyring,
        level: int = DEFAULT_LEVEL,
        keyframe_every: int = DEFAULT_KEYFRAME_EVERY,
    ) -> None:
        if isinstance(key, Keyring):
            self.keyring = key
        else:
            if len(key) != 32:
                raise ValueError("team key must be 32 bytes")
            self.keyring = Keyring(legacy_key=key)
        self._compressor = zstandard.ZstdCompressor(level=level)
        self._body_compressor = zstandard.ZstdCompressor(
            level=level, dict_data=body_dictionary.dictionary(), write_dict_id=False
        )
        self._decompressor = zstandard.ZstdDecompressor()
        if keyframe_every < 1:
            raise ValueError("keyframe_every must be at least 1")
        self.keyframe_every = keyframe_every
        # Per source: the state after its last telemetry batch, and batches since a keyframe.
        self._chains: dict[str, tuple[ChainState, int]] = {}
        self._received: dict[str, ChainState] = {}  # per source, for :meth:`decode`

    # ---- encoding -------------------------------------------------------------
    def encode(
        self, source: str, seq: int, message: Message, *, key_of: str | None = None
    ) -> bytes:
        """One message as wire bytes, sealed with the key of ``key_of or source``.

        The appliance sends a command as source ``appliance`` under the key of
        the device it is addressed to (``key_of``).
        """
        src = source.encode()
        if not 0 < len(src) <= 64:
            raise ValueError("source id must be 1-64 bytes")
        try:
            aead = self.keyring.aead(key_of or source)
        except DecodeError as exc:
            raise ValueError(str(exc)) from None
        if isinstance(message, TelemetryBatch):
            kind, payload = MessageType.TELEMETRY, self._telemetry(source, seq, message)
        else:
            kind, body = self._body(message)
            payload = self._compressor.compress(body)
        head = _HEAD.pack(MAGIC, SCHEMA_VERSION, int(kind), len(src)) + src
        head += _SEQ.pack(seq)
        nonce = os.urandom(NONCE_BYTES)
        sealed = aead.encrypt(nonce, payload, head)
        return head + nonce + sealed

    def _telemetry(self, source: str, seq: int, batch: TelemetryBatch) -> bytes:
        """A version-2 payload: a delta on the source's previous batch, or a keyframe.

        A keyframe starts every ``keyframe_every`` batches, and whenever the previous
        batch is of another session or channel set, or not numbered below ``seq``.
        """
        chain = self._chains.get(source)
        base: ChainState | None = None
        since = 0
        if chain is not None:
            last, count = chain
            if (
                last.seq < seq
                and last.dict_id == batch.dict_id
                and last.session_key == batch.session_key
                and count + 1 < self.keyframe_every
            ):
                base, since = last, count + 1
        body, state = encode_chained(
            batch, seq, base, base.key_seq if base is not None else seq
        )
        self._chains[source] = (state, since)
        head = bytearray(body[: _CHAIN_HEAD.size])
        head[4] |= _FLAG_DICTIONARY
        return bytes(head) + self._body_compressor.compress(body[_CHAIN_HEAD.size :])

    def _body(self, message: Message) -> tuple[MessageType, bytes]:
        if isinstance(message, TelemetryBatch):
            return MessageType.TELEMETRY, encode_batch(message)
        if isinstance(message, ChannelDictionary):
            return MessageType.CHANNELS, json.dumps(message.to_json()).encode()
        return TYPE_OF[type(message)], json.dumps(message_to_json(message)).encode()

    # ---- decoding -------------------------------------------------------------
    def open(self, data: bytes) -> tuple[str, int, MessageType, bytes]:
        """Verify and decrypt: (source, seq, type, plain body). Raises DecodeError."""
        source, seq, msg_type, compressed = self.open_compressed(data)
        return source, seq, msg_type, self.decompress(compressed)

    def open_compressed(self, data: bytes) -> tuple[str, int, MessageType, bytes]:
        """Verify and decrypt, leaving the body zstd-compressed. Raises DecodeError."""
        if len(data) > MAX_MESSAGE_BYTES:
            raise DecodeError("oversized", f"{len(data)} bytes > {MAX_MESSAGE_BYTES}")
        if len(data) < _HEAD.size:
            raise DecodeError(
                "truncated", f"{len(data)} bytes is shorter than a header"
            )
        magic, version, kind, src_len = _HEAD.unpack_from(data)
        if magic != MAGIC:
            raise DecodeError("bad_magic", f"not a PitBox message ({magic!r})")
        if version != SCHEMA_VERSION:
            raise DecodeError(
                "bad_version", f"schema {version}, expected {SCHEMA_VERSION}"
            )
        try:
            msg_type = MessageType(kind)
        except ValueError:
            raise DecodeError("bad_type", f"unknown message type {kind}") from None
        head_len = _HEAD.size + src_len + _SEQ.size
        if len(data) < head_len + NONCE_BYTES + 16:
            raise DecodeError(
                "truncated", f"{len(data)} bytes, header needs {head_len}"
            )
        try:
            source = data[_HEAD.size : _HEAD.size + src_len].decode()
        except UnicodeDecodeError:
            raise DecodeError("bad_source", "source id is not UTF-8") from None
        (seq,) = _SEQ.unpack_from(data, _HEAD.size + src_len)
        nonce = data[head_len : head_len + NONCE_BYTES]
        aead = self.keyring.aead(source)
        try:
            compressed = aead.decrypt(
                nonce, data[head_len + NONCE_BYTES :], data[:head_len]
            )
        except InvalidTag:
            raise DecodeError(
                "bad_auth", f"authentication failed (source {source!r})"
            ) from None
        return source, seq, msg_type, compressed

    def decompress(self, compressed: bytes) -> bytes:
        """A verified body, decompressed with a bound on its size.

        A version-2 telemetry payload keeps its chain head in front of the body.
        """
        return decompress_body(self._decompressor, compressed)

    def decode(
        self, data: bytes, dictionaries: dict[int, ChannelDictionary] | None = None
    ) -> Envelope:
        """Verify, decrypt and parse one message. Telemetry needs its channel dictionary.

        A delta batch builds on the source's last batch decoded here (a stream read in
        order); the core's :class:`~driver_pc.protocol.chains.ChainBook` also rebuilds
        bases from storage.
        """
        source, seq, kind, body = self.open(data)
        if kind is MessageType.TELEMETRY and chain_link(body) is not None:
            # Delta-chained: builds on the last batch this codec decoded of the source.
            batch, state = decode_chained(
                body, dictionaries or {}, None, self._received.get(source), seq
            )
            self._received[source] = state
            return Envelope(source, seq, kind, batch)
        return Envelope(source, seq, kind, parse_body(kind, body, dictionaries or {}))


def decompress_body(
    decompressor: zstandard.ZstdDecompressor, compressed: bytes
) -> bytes:
    """A payload or stored chunk decompressed, bounded; raises DecodeError.

    A version-2 telemetry payload keeps its chain head in front of the body.
    """
    head = b""
    link = chain_link(compressed)
    if compressed[:4] in _CHAIN_MAGICS:
        if link is None:
            raise DecodeError("truncated", "chain head cut short")
        head = compressed[: _CHAIN_HEAD.size]
        compressed = compressed[_CHAIN_HEAD.size :]
        if link.carries_base:
            if len(compressed) < _ROWS_LEN.size:
                raise DecodeError("truncated", "carried base cut short")
            (size,) = _ROWS_LEN.unpack_from(compressed)
            rows = compressed[_ROWS_LEN.size : _ROWS_LEN.size + size]
            if len(rows) != size:
                raise DecodeError("truncated", "carried base cut short")
            try:
                plain = decompressor.decompress(rows, max_output_size=MAX_BODY_BYTES)
            except zstandard.ZstdError as exc:
                raise DecodeError("bad_compression", str(exc)) from None
            head += _ROWS_LEN.pack(len(plain)) + plain
            compressed = compressed[_ROWS_LEN.size + size :]
    if head and link is not None and link.dictionary:
        decompressor = _body_decompressor()
    try:
        body = decompressor.decompress(compressed, max_output_size=MAX_BODY_BYTES)
    except zstandard.ZstdError as exc:
        raise DecodeError("bad_compression", str(exc)) from None
    if len(body) > MAX_BODY_BYTES:
        raise DecodeError("oversized", "body too large")
    return head + body


_THREAD_DECOMPRESSORS = threading.local()


def _body_decompressor() -> zstandard.ZstdDecompressor:
    """The calling thread's decompressor of bodies compressed with body_dictionary's dictionary 1.

    A ZstdDecompressor must not be used by two threads at once (the ingest and the live
    peek decode in parallel), so each thread keeps its own.
    """
    decompressor: zstandard.ZstdDecompressor | None = getattr(
        _THREAD_DECOMPRESSORS, "dictionary", None
    )
    if decompressor is None:
        # The dictionary object too: it builds its zstd digest lazily, on first use.
        own = zstandard.ZstdCompressionDict(body_dictionary.dictionary().as_bytes())
        decompressor = zstandard.ZstdDecompressor(dict_data=own)
        _THREAD_DECOMPRESSORS.dictionary = decompressor
    return decompressor


def parse_body(
    kind: MessageType,
    body: bytes,
    dictionaries: dict[int, ChannelDictionary],
    only: frozenset[str] | None = None,
) -> Message:
    """Typed message from a verified plain body. Raises DecodeError."""
    if kind is MessageType.TELEMETRY:
        return decode_batch(body, dictionaries, only)
    try:
        data: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError("bad_json", str(exc)) from None
    except RecursionError:
        raise DecodeError("bad_json", "nested too deeply") from None
    if not isinstance(data, dict):
        raise DecodeError("bad_json", "body is not an object")
    try:
        if kind is MessageType.CHANNELS:
            return ChannelDictionary.from_json(data)
        msg: JsonMessage = message_from_json(kind, data)
    except (ValueError, TypeError) as exc:
        raise DecodeError("bad_field", str(exc)) from None
    return msg


# ---- columnar telemetry ----------------------------------------------------------
# Body: dict_id u32 | frames u32 | key_len u8 | key | columns u32 | mode[columns] u8 |
# delta-coded columns grouped by byte width (1, 2, 4, 8), each column-major |
# constant columns (one value each) grouped by width |
# raw columns (non-finite or out-of-range floats), each at its own item size.
# Every array channel expands into ``count`` columns. The work is vectorised over all
# columns at once: a batch costs a handful of numpy calls, not a few per channel.
_MODE_RAW = 4
_MODE_CONST = 8  # + width code: the column holds one value for the whole batch


def _quantised(
    batch: TelemetryBatch,
) -> tuple[np.ndarray[Any, np.dtype[np.int64]], np.ndarray[Any, np.dtype[np.bool_]]]:
    """Every column of ``batch`` in units of its quantum, and which columns go raw.

    A column goes raw (as the floats themselves) when a value is not finite or too
    big for an exact integer; its integers are then 0.
    """
    frames = batch.frames
    n = len(frames)
    quanta = _column_quanta(batch.channels, batch.dict_id)
    columns = len(quanta)
    source = _as_columns(batch.channels, batch.dict_id)
    if frames.dtype.names == source.names:
        # One structured cast in C: each field to float64 at its columns.
        matrix = frames.astype(source).view(np.float64).reshape(n, columns)
    else:
        matrix = np.empty((n, columns), dtype=np.float64)
        col = 0
        for ch in batch.channels:
            matrix[:, col : col + ch.count] = frames[ch.name].reshape(n, ch.count)
            col += ch.count
    lossless = np.isnan(quanta)
    scaled = np.where(lossless, matrix, matrix / np.where(lossless, 1.0, quanta))
    with np.errstate(invalid="ignore"):
        scaled = np.rint(scaled)
        raw = ~np.all(np.isfinite(scaled), axis=0) | (
            np.max(np.abs(scaled), axis=0) >= 2**52
        )
    return np.where(raw, 0, scaled).astype(np.int64), raw


_AS_COLUMNS: dict[int, np.dtype[np.void]] = {}


def _as_columns(channels: tuple[ChannelSpec, ...], dict_id: int) -> np.dtype[np.void]:
    """A row of ``channels`` as float64 columns (cached by dictionary id)."""
    dtype = _AS_COLUMNS.get(dict_id)
    if dtype is None:
        fields = []
        col = 0
        for ch in channels:
            fields.append((ch.name, col, ch.count, ch.numpy_type))
            col += ch.count
        dtype = _source_dtype(tuple(fields), col)
        if len(_AS_COLUMNS) > 64:
            _AS_COLUMNS.clear()
        _AS_COLUMNS[dict_id] = dtype
    return dtype


def _pack_columns(
    parts: list[bytes],
    batch: TelemetryBatch,
    values: np.ndarray[Any, np.dtype[np.int64]],
    first: np.ndarray[Any, np.dtype[np.int64]],
    modes: np.ndarray[Any, np.dtype[np.uint8]],
    raw: np.ndarray[Any, np.dtype[np.bool_]],
) -> None:
    """Append the columns in body order: by width, the constants, then the raw floats."""
    for code, width in enumerate(_WIDTHS):
        cols = np.flatnonzero(modes == code)
        if len(cols):
            parts.append(
                np.ascontiguousarray(values[:, cols].T).astype(f"<i{width}").tobytes()
            )
    for code, width in enumerate(_WIDTHS):
        cols = np.flatnonzero(modes == code + _MODE_CONST)
        if len(cols):
            parts.append(first[cols].astype(f"<i{width}").tobytes())
    if raw.any():
        frames, n = batch.frames, len(batch.frames)
        col = 0
        for ch in batch.channels:
            block = frames[ch.name].reshape(n, ch.count)
            for j in range(ch.count):
                if raw[col + j]:
                    parts.append(np.ascontiguousarray(block[:, j]).tobytes())
            col += ch.count


def encode_batch(batch: TelemetryBatch) -> bytes:
    """Columnar body: every column quantised, delta-coded and packed at its own width."""
    frames = batch.frames
    n = len(frames)
    key = batch.session_key.encode()
    ints, raw = _quantised(batch)
    columns = ints.shape[1]
    deltas = np.diff(ints, axis=0, prepend=np.zeros((1, ints.shape[1]), np.int64))
    rest = deltas[1:]
    lo, hi = rest.min(axis=0, initial=0), rest.max(axis=0, initial=0)
    first = deltas[0]
    constant = (lo == 0) & (hi == 0)
    lo, hi = np.minimum(lo, first), np.maximum(hi, first)
    modes = np.full(columns, 3, dtype=np.uint8)
    for code in (2, 1, 0):
        bits = 8 * _WIDTHS[code] - 1
        modes[(lo >= -(2**bits)) & (hi < 2**bits)] = code
    # A column that does not change within the batch (most of a 64-car field's
    # empty slots, flags, setup values) travels as one value at its width.
    modes[constant] += _MODE_CONST
    modes[raw] = _MODE_RAW
    parts = [
        _BATCH_HEAD.pack(batch.dict_id, n, len(key)),
        key,
        struct.pack("<I", columns),
        modes.tobytes(),
    ]
    _pack_columns(parts, batch, deltas, first, modes, raw)
    return b"".join(parts)


def has_raw_columns(body: bytes) -> bool:
    """Whether a telemetry body (either version) carries a column as raw floats.

    Only those can hold a non-finite or huge value; every other column travels as
    integers at its precision. True when the body is too short to tell.
    """
    try:
        at = 0
        link = chain_link(body)
        if link is not None and link.version == 3:
            return link.raw
        if link is not None:
            at = _CHAIN_HEAD.size
            if link.carries_base:
                (size,) = _ROWS_LEN.unpack_from(body, at)
                at += _ROWS_LEN.size + size
        _dict_id, _frames, key_len = _BATCH_HEAD.unpack_from(body, at)
        at += _BATCH_HEAD.size + key_len
        (columns,) = struct.unpack_from("<I", body, at)
    except struct.error:
        return True
    return _MODE_RAW in body[at + 4 : at + 4 + columns]


def decode_batch(
    body: bytes,
    dictionaries: dict[int, ChannelDictionary],
    only: frozenset[str] | None = None,
) -> TelemetryBatch:
    """Inverse of :func:`encode_batch`, checking every length before reading.

    ``only`` limits the returned record array to those channels (the rest are still
    length-checked): the appliance's live path needs a handful of the hundreds sent.
    A version-2 body decodes here when it is a keyframe; a delta needs its stream's
    state (:func:`decode_chained`) and raises DecodeError ``missing_base``.
    """
    if chain_link(body) is not None:
        return decode_chained(body, dictionaries, only, None, 0)[0]
    if len(body) < _BATCH_HEAD.size + 4:
        raise DecodeError("truncated", "telemetry body shorter than its header")
    dict_id, n, key_len = _BATCH_HEAD.unpack_from(body)
    dictionary = dictionaries.get(dict_id)
    if dictionary is None:
        raise DecodeError(
            "unknown_dictionary", f"no channel dictionary {dict_id:#010x}"
        )
    if not 0 < n <= MAX_FRAMES_PER_BATCH:
        raise DecodeError("bad_batch", f"{n} frames in one batch")
    pos = _BATCH_HEAD.size
    session_key = body[pos : pos + key_len].decode(errors="replace")
    pos += key_len
    if pos + 4 > len(body):
        raise DecodeError("truncated", "telemetry body ends before its column count")
    (ncols,) = struct.unpack_from("<I", body, pos)
    pos += 4
    plan = _plan(dictionary, dict_id)
    if ncols != len(plan.scale) or pos + ncols > len(body):
        raise DecodeError(
            "bad_batch", f"{ncols} columns, dictionary has {len(plan.scale)}"
        )
    modes = np.frombuffer(body, dtype=np.uint8, count=ncols, offset=pos)
    pos += ncols
    if np.any((modes > _MODE_RAW) & (modes < _MODE_CONST)) or np.any(
        modes >= _MODE_CONST + len(_WIDTHS)
    ):
        raise DecodeError("bad_batch", "unknown column mode")
    values = np.zeros((n, ncols), dtype=np.float64)
    for code, width in enumerate(_WIDTHS):
        cols = np.flatnonzero(modes == code)
        if not len(cols):
            continue
        size = len(cols) * n * width
        if pos + size > len(body):
            raise DecodeError("truncated", f"{width}-byte columns run past the end")
        block = np.frombuffer(body, dtype=f"<i{width}", count=len(cols) * n, offset=pos)
        ints = _running_sum(block.reshape(len(cols), n).T.astype(np.int64))
        values[:, cols] = ints * plan.scale[cols]
        pos += size
    for code, width in enumerate(_WIDTHS):
        cols = np.flatnonzero(modes == code + _MODE_CONST)
        if not len(cols):
            continue
        size = len(cols) * width
        if pos + size > len(body):
            raise DecodeError("truncated", f"{width}-byte constants run past the end")
        block = np.frombuffer(body, dtype=f"<i{width}", count=len(cols), offset=pos)
        values[:, cols] = block.astype(np.int64) * plan.scale[cols]
        pos += size
    for raw_col in np.flatnonzero(modes == _MODE_RAW):
        col = int(raw_col)
        kind = plan.column_types[col]
        size = n * np.dtype(kind).itemsize
        if pos + size > len(body):
            raise DecodeError("truncated", f"raw column {col} runs past the end")
        values[:, col] = np.frombuffer(body, dtype=kind, count=n, offset=pos)
        pos += size
    if pos != len(body):
        raise DecodeError("bad_batch", f"{len(body) - pos} trailing bytes")
    if only is not None:
        plan = _subset(plan, dictionary, dict_id, only)
    return TelemetryBatch(session_key, dict_id, plan.channels, _frames(values, plan))


# ---- delta-chained telemetry (body versions 2 and 3) ---------------------------------------
# Payload (what the envelope seals, and what the core stores as a chunk):
#   b"PBT\x02" or b"PBT\x03" | flags u8 (1: keyframe, 2: carries its base, 4: raw
#   floats, version 3) | key_seq u64 | base_seq u64 | zstd(inner)
# The decompressed body keeps the same 21-byte head in front of the inner body, so a
# version-1 body (a bare zstd frame: dict_id first) is never taken for one.
# Version-2 inner: dict_id u32 | frames u32 | key_len u8 | key | columns u32 |
# mode[columns] u8 | residual columns grouped by width (1, 2, 4, 8), column-major |
# constants by width | raw columns.
# Version-3 inner: a keyframe, dict_id u32 | frames u16 | key_len u8 | key; a delta,
# frames u16 only (its channel set and session are its base's) | mode[channels] u8 |
# the columns as in version 2, every column of a channel at the channel's mode.
# A residual is what is left of a column's quantised integer after its prediction from
# the stream's last rows (:class:`ChainState`): the previous value, or the previous
# value plus the previous step for a column that moved steadily (a lap distance, a
# session time). In version 3 a channel of samples within the tick (360 Hz) is
# predicted along time, each sample from the ones just before it. A keyframe predicts
# from nothing (each column's first value whole, then steps), so it decodes alone;
# ``base_seq`` names the batch a delta builds on and ``key_seq`` the keyframe its chain
# starts from. A carried base (flag 2) is zstd(its rows as int64), preceded in version
# 3 by dict_id u32 | key_len u8 | key.
BODY_VERSION = 3


@dataclass(frozen=True, slots=True)
class ChainLink:
    """Where a chained telemetry batch sits: its keyframe and the batch it builds on."""

    key_seq: int
    base_seq: int | None  # None: a keyframe
    carries_base: bool = False  # the base's rows are in the payload itself
    version: int = 2
    raw: bool = False  # version 3: some channel travels as raw floats
    dictionary: bool = False  # version 3: zstd with body dictionary 1

    @property
    def standalone(self) -> bool:
        """Whether the batch decodes without any other batch."""
        return self.base_seq is None or self.carries_base


def chain_link(data: bytes) -> ChainLink | None:
    """The chain head of a chained payload or body; None for a version-1 one."""
    if len(data) < _CHAIN_HEAD.size or data[:4] not in _CHAIN_MAGICS:
        return None
    # A message's payload and body share their head, and a receiver asks for it
    # several times a message (decompress, decode, the raw check, storage): each head
    # is read once (a frozen dataclass costs several microseconds to make).
    head = bytes(data[: _CHAIN_HEAD.size])
    link = _LINKS.get(head)
    if link is not None:
        return link
    magic, flags, key_seq, base_seq = _CHAIN_HEAD.unpack_from(head)
    version = magic[3]
    raw = version == 3 and bool(flags & _FLAG_RAW)
    dictionary = version == 3 and bool(flags & _FLAG_DICTIONARY)
    if flags & _FLAG_KEYFRAME:
        link = ChainLink(key_seq, None, False, version, raw, dictionary)
    else:
        link = ChainLink(
            key_seq,
            base_seq,
            bool(flags & _FLAG_CARRIES_BASE),
            version,
            raw,
            dictionary,
        )
    if len(_LINKS) >= _LINKS_KEPT:
        _LINKS.clear()
    _LINKS[head] = link
    return link


# The heads read last (chain_link); a few messages' worth, shared by the threads (a
# ChainLink is immutable, and a dict's get and set are atomic).
_LINKS: dict[bytes, ChainLink] = {}
_LINKS_KEPT = 64


def with_base(payload: bytes, base: ChainState) -> bytes:
    """A delta payload made standalone: ``base``'s rows travel in front of its body.

    The core stores a batch so when the batch it builds on was not stored (another PC
    was driving): every stored chunk decodes from what is stored.
    """
    link = chain_link(payload)
    if link is None or link.standalone:
        return payload
    if link.base_seq != base.seq:
        raise ValueError(f"base {base.seq} is not the one the batch names")
    magic, flags, key_seq, base_seq = _CHAIN_HEAD.unpack_from(payload)
    plain = np.ascontiguousarray(base.rows, dtype="<i8").tobytes()
    if link.version == 3:
        key = base.session_key.encode()
        plain = struct.pack("<IB", base.dict_id, len(key)) + key + plain
    rows = zstandard.ZstdCompressor(level=3).compress(plain)
    return b"".join(
        (
            _CHAIN_HEAD.pack(magic, flags | _FLAG_CARRIES_BASE, key_seq, base_seq),
            _ROWS_LEN.pack(len(rows)),
            rows,
            payload[_CHAIN_HEAD.size :],
        )
    )


@dataclass(frozen=True, slots=True)
class ChainState:
    """A stream's last rows as quantised integers: what its next delta is predicted from.

    ``steady`` marks the columns predicted as previous value plus previous step;
    encoder and decoder derive it from ``rows`` the same way, so it is never sent.
    ``drift`` is that previous step on steady columns and 0 elsewhere, so a batch is
    rebuilt with whole-array operations (no indexing of selected columns).
    ``samples`` (version 3) holds, per array length, the columns of the channels of
    samples within a tick (channels x samples), and ``samples_steady`` whether each
    such channel moved steadily along time. A state decoded for some channels only
    (``only``) holds their columns alone: it serves deltas decoded for those channels.
    """

    seq: int
    key_seq: int
    dict_id: int
    session_key: str
    rows: np.ndarray[Any, np.dtype[np.int64]]  # (HISTORY_ROWS, columns)
    steady: np.ndarray[Any, np.dtype[np.bool_]]
    drift: np.ndarray[Any, np.dtype[np.int64]]
    samples: tuple[np.ndarray[Any, np.dtype[np.intp]], ...] = ()
    samples_steady: tuple[np.ndarray[Any, np.dtype[np.bool_]], ...] = ()
    only: frozenset[str] | None = None  # the channels ``rows`` covers (None: all)


_Samples = tuple[np.ndarray[Any, np.dtype[np.intp]], ...]


def _next_state(
    seq: int,
    key_seq: int,
    dict_id: int,
    session_key: str,
    base: ChainState | None,
    ints: np.ndarray[Any, np.dtype[np.int64]],
    samples: _Samples = (),
    only: frozenset[str] | None = None,
) -> ChainState:
    n = len(ints)
    if n >= HISTORY_ROWS:
        rows = ints[-HISTORY_ROWS:]
    elif base is None:
        rows = np.concatenate([np.repeat(ints[:1], HISTORY_ROWS - n, axis=0), ints])
    else:
        rows = np.concatenate([base.rows[n:], ints])
    return _state(
        seq, key_seq, dict_id, session_key, np.ascontiguousarray(rows), samples, only
    )


def _state_of_rows(
    link: ChainLink,
    dict_id: int,
    session_key: str,
    rows: np.ndarray[Any, np.dtype[np.int64]],
    samples: _Samples = (),
) -> ChainState:
    """The state a carried base stands for (its rows are the last ones of a stream)."""
    base_seq = link.base_seq if link.base_seq is not None else 0
    return _state(base_seq, link.key_seq, dict_id, session_key, rows, samples)


def _state(
    seq: int,
    key_seq: int,
    dict_id: int,
    session_key: str,
    rows: np.ndarray[Any, np.dtype[np.int64]],
    samples: _Samples = (),
    only: frozenset[str] | None = None,
) -> ChainState:
    """The state after ``rows``: which columns move steadily, and their last step.

    Steady: the column's steps, over ``rows``, vary less than its values do. Integer
    arrays wrap on overflow without a warning, the same way in encoder and decoder.
    A channel of samples within a tick is judged the same way along its samples.
    """
    steps = rows[1:] - rows[:-1]
    jitter = np.abs(steps[1:] - steps[:-1]).sum(axis=0)
    steady = jitter < np.abs(steps).sum(axis=0)
    drift = steps[-1] * steady
    along: list[np.ndarray[Any, np.dtype[np.bool_]]] = []
    for block in samples:
        line = _in_time(rows, block)
        step = line[:, 1:] - line[:, :-1]
        wobble = np.abs(step[:, 1:] - step[:, :-1]).sum(axis=1)
        along.append(wobble < np.abs(step).sum(axis=1))
    return ChainState(
        seq,
        key_seq,
        dict_id,
        session_key,
        rows,
        steady,
        drift,
        samples,
        tuple(along),
        only,
    )


def _in_time(
    ints: np.ndarray[Any, np.dtype[np.int64]],
    block: np.ndarray[Any, np.dtype[np.intp]],
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Channels x samples in time order: the ``block`` columns of ``ints``' rows."""
    k, c = block.shape
    line: np.ndarray[Any, np.dtype[np.int64]] = (
        ints[:, block].transpose(1, 0, 2).reshape(k, len(ints) * c)
    )
    return line


def _put_in_time(
    ints: np.ndarray[Any, np.dtype[np.int64]],
    block: np.ndarray[Any, np.dtype[np.intp]],
    line: np.ndarray[Any, np.dtype[np.int64]],
) -> None:
    """Inverse of :func:`_in_time`: ``line`` written back into ``ints``' columns."""
    k, c = block.shape
    ints[:, block] = line.reshape(k, len(ints), c).transpose(1, 0, 2)


_ROW_LOOP_MAX = 64  # rows up to which a running sum loops over rows
_STEP_COUNT = np.arange(1, MAX_FRAMES_PER_BATCH + 1, dtype=np.int64)[:, None]


def _reconstruct(
    residuals: np.ndarray[Any, np.dtype[np.int64]],
    base: ChainState | None,
    samples: _Samples = (),
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Quantised integers from residuals and the stream's last rows (None: a keyframe).

    Row k of a column predicted from its last value is ``last + run[k]`` (``run``:
    the residuals summed); of a steady column, ``last + (k + 1) * drift`` plus the
    run summed once more. Both are computed for every column and one is kept per
    column (``np.where``): cheaper than indexing the steady columns out and back.
    The columns of ``samples`` are then rebuilt the same way along time.
    """
    run = _running_sum(residuals)
    if base is None:
        ints = run
    else:
        ints = run + base.rows[-1]
        if base.steady.any():
            twice = _running_sum(run)
            twice += base.rows[-1]
            twice += _STEP_COUNT[: len(run)] * base.drift
            ints = np.where(base.steady, twice, ints)
    for i, block in enumerate(samples):
        if not len(block):
            continue
        line = np.cumsum(_in_time(residuals, block), axis=1)
        if base is not None:
            last = base.rows[-1, block[:, -1]][:, None]
            step = last - base.rows[-1, block[:, -2]][:, None]
            twice = np.cumsum(line, axis=1)
            twice += last
            twice += np.arange(1, line.shape[1] + 1, dtype=np.int64) * step
            line += last
            line = np.where(base.samples_steady[i][:, None], twice, line)
        _put_in_time(ints, block, line)
    return ints


def _running_sum(
    rows: np.ndarray[Any, np.dtype[np.int64]],
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """``np.cumsum(rows, axis=0)``, row by row when there are few rows.

    A batch is a few rows of many columns; cumsum along the short axis runs one
    tiny inner loop per column (~16 µs for 3 x 1,000), a loop over rows ~2.5 µs.
    """
    if len(rows) > _ROW_LOOP_MAX:
        summed: np.ndarray[Any, np.dtype[np.int64]] = np.cumsum(rows, axis=0)
        return summed
    out = rows.copy()
    for k in range(1, len(out)):
        out[k] += out[k - 1]
    return out


def _residuals(
    ints: np.ndarray[Any, np.dtype[np.int64]],
    base: ChainState | None,
    samples: _Samples = (),
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Inverse of :func:`_reconstruct`."""
    if base is None:
        out = np.diff(ints, axis=0, prepend=np.zeros((1, ints.shape[1]), np.int64))
    else:
        last = base.rows[-1:]
        out = np.diff(ints, axis=0, prepend=last)
        if base.steady.any():
            cols = np.flatnonzero(base.steady)
            ext = np.vstack([base.rows[-2:, cols], ints[:, cols]])
            out[:, cols] = np.diff(ext, n=2, axis=0)
    for i, block in enumerate(samples):
        if not len(block):
            continue
        line = _in_time(ints, block)
        if base is None:
            _put_in_time(out, block, np.diff(line, axis=1, prepend=0))
            continue
        ext = np.concatenate([base.rows[-1, block[:, -2:]], line], axis=1)
        once = ext[:, 2:] - ext[:, 1:-1]
        twice = once - (ext[:, 1:-1] - ext[:, :-2])
        _put_in_time(out, block, np.where(base.samples_steady[i][:, None], twice, once))
    return out


@dataclass(frozen=True, slots=True)
class _Layout:
    """A channel set's columns (version 3): where each channel's columns are."""

    starts: np.ndarray[Any, np.dtype[np.intp]]  # each channel's first column
    counts: np.ndarray[Any, np.dtype[np.intp]]  # each channel's columns
    samples: _Samples  # per length: columns of the channels of samples in a tick


_LAYOUTS: dict[int, _Layout] = {}


def _layout(channels: tuple[ChannelSpec, ...], dict_id: int) -> _Layout:
    """The layout of a channel set (cached by its dictionary id)."""
    layout = _LAYOUTS.get(dict_id)
    if layout is None:
        counts = np.array([ch.count for ch in channels], dtype=np.intp)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)
        by_length: dict[int, list[int]] = {}
        for ch, start in zip(channels, starts.tolist(), strict=True):
            if ch.samples_in_tick:
                by_length.setdefault(ch.count, []).append(start)
        samples = tuple(
            (np.array(firsts, dtype=np.intp)[:, None] + np.arange(length)).astype(
                np.intp
            )
            for length, firsts in sorted(by_length.items())
        )
        layout = _Layout(starts, counts, samples)
        if len(_LAYOUTS) > 256:
            _LAYOUTS.clear()
        _LAYOUTS[dict_id] = layout
    return layout


def _modes(
    residuals: np.ndarray[Any, np.dtype[np.int64]],
) -> tuple[
    np.ndarray[Any, np.dtype[np.uint8]],
    np.ndarray[Any, np.dtype[np.bool_]],
    np.ndarray[Any, np.dtype[np.bool_]],
]:
    """Per column: the narrowest width code, whether constant after row 0, all zero."""
    rest = residuals[1:]
    lo, hi = rest.min(axis=0, initial=0), rest.max(axis=0, initial=0)
    first = residuals[0]
    constant = (lo == 0) & (hi == 0)
    zero = constant & (first == 0)
    lo, hi = np.minimum(lo, first), np.maximum(hi, first)
    widths = np.full(residuals.shape[1], 3, dtype=np.uint8)
    for code in (2, 1, 0):
        bits = 8 * _WIDTHS[code] - 1
        widths[(lo >= -(2**bits)) & (hi < 2**bits)] = code
    return widths, constant, zero


def encode_chained(
    batch: TelemetryBatch,
    seq: int,
    base: ChainState | None,
    key_seq: int,
    version: int = BODY_VERSION,
) -> tuple[bytes, ChainState]:
    """Chained body (uncompressed) of ``batch`` as number ``seq``, and the new state.

    ``base`` is the state after the stream's previous batch (None: a keyframe, whose
    ``key_seq`` is ``seq`` itself). ``version`` 2 is kept for tests of stored bodies.
    """
    if version == 2:
        return _encode_version2(batch, seq, base, key_seq)
    frames = batch.frames
    n = len(frames)
    key = batch.session_key.encode()
    layout = _layout(batch.channels, batch.dict_id)
    ints, raw = _quantised(batch)
    # A channel with a raw column travels raw whole (one mode per channel).
    raw_channels = np.logical_or.reduceat(raw, layout.starts)
    raw = np.repeat(raw_channels, layout.counts)
    residuals = _residuals(ints, base, layout.samples)
    residuals[:, raw] = 0
    # The state is what the decoder will rebuild: a raw column continues its prediction.
    state = _next_state(
        seq,
        seq if base is None else key_seq,
        batch.dict_id,
        batch.session_key,
        base,
        _reconstruct(residuals, base, layout.samples) if raw.any() else ints,
        layout.samples,
    )
    widths, constant, zero = _modes(residuals)
    modes = np.maximum.reduceat(widths, layout.starts)
    modes[np.logical_and.reduceat(constant, layout.starts)] += _MODE_CONST
    modes[np.logical_and.reduceat(zero, layout.starts)] = _MODE_ZERO
    modes[raw_channels] = _MODE_RAW
    flags = (_FLAG_KEYFRAME if base is None else 0) | (
        _FLAG_RAW if raw_channels.any() else 0
    )
    parts = [
        _CHAIN_HEAD.pack(
            CHAIN_MAGIC_3, flags, state.key_seq, 0 if base is None else base.seq
        )
    ]
    if base is None:
        parts += [struct.pack("<I", batch.dict_id), _FRAMES.pack(n), bytes([len(key)])]
        parts.append(key)
    else:
        parts.append(_FRAMES.pack(n))
    parts.append(modes.tobytes())
    _pack_columns(
        parts, batch, residuals, residuals[0], np.repeat(modes, layout.counts), raw
    )
    return b"".join(parts), state


def _encode_version2(
    batch: TelemetryBatch, seq: int, base: ChainState | None, key_seq: int
) -> tuple[bytes, ChainState]:
    """Version-2 body of ``batch`` (no longer sent; tests of stored bodies use it)."""
    n = len(batch.frames)
    key = batch.session_key.encode()
    ints, raw = _quantised(batch)
    residuals = _residuals(ints, base)
    residuals[:, raw] = 0
    state = _next_state(
        seq,
        seq if base is None else key_seq,
        batch.dict_id,
        batch.session_key,
        base,
        _reconstruct(residuals, base) if raw.any() else ints,
    )
    modes, constant, zero = _modes(residuals)
    modes[constant] += _MODE_CONST
    modes[zero] = _MODE_ZERO
    modes[raw] = _MODE_RAW
    flags = _FLAG_KEYFRAME if base is None else 0
    parts = [
        _CHAIN_HEAD.pack(
            CHAIN_MAGIC, flags, state.key_seq, 0 if base is None else base.seq
        ),
        _BATCH_HEAD.pack(batch.dict_id, n, len(key)),
        key,
        struct.pack("<I", len(modes)),
        modes.tobytes(),
    ]
    _pack_columns(parts, batch, residuals, residuals[0], modes, raw)
    return b"".join(parts), state


def decode_chained(
    body: bytes,
    dictionaries: dict[int, ChannelDictionary],
    only: frozenset[str] | None,
    base: ChainState | None,
    seq: int,
) -> tuple[TelemetryBatch, ChainState]:
    """A chained body decoded on ``base`` (the state after the batch it names).

    Returns the batch (limited to ``only``) and the stream's state after it, as batch
    ``seq``. Raises DecodeError, ``missing_base`` when a delta comes without its base.
    """
    link = chain_link(body)
    if link is None:
        raise DecodeError("bad_batch", "not a chained telemetry body")
    pos = _CHAIN_HEAD.size
    carried: bytes | None = None
    if link.carries_base:
        if len(body) < pos + _ROWS_LEN.size:
            raise DecodeError("truncated", "carried base cut short")
        (size,) = _ROWS_LEN.unpack_from(body, pos)
        pos += _ROWS_LEN.size
        carried = body[pos : pos + size]
        pos += size
    elif link.base_seq is None:
        base = None
    elif base is None or base.seq != link.base_seq:
        raise DecodeError(
            "missing_base",
            f"batch {seq} builds on batch {link.base_seq}, which is not known "
            f"(its keyframe is {link.key_seq})",
        )
    if link.version == 3:
        return _decode_version3(body, pos, link, carried, dictionaries, only, base, seq)
    if len(body) < pos + _BATCH_HEAD.size + 4:
        raise DecodeError("truncated", "telemetry body shorter than its header")
    dict_id, n, key_len = _BATCH_HEAD.unpack_from(body, pos)
    dictionary = dictionaries.get(dict_id)
    if dictionary is None:
        raise DecodeError(
            "unknown_dictionary", f"no channel dictionary {dict_id:#010x}"
        )
    if base is not None and base.dict_id != dict_id:
        raise DecodeError("missing_base", f"base {base.seq} has another channel set")
    if not 0 < n <= MAX_FRAMES_PER_BATCH:
        raise DecodeError("bad_batch", f"{n} frames in one batch")
    pos += _BATCH_HEAD.size
    session_key = body[pos : pos + key_len].decode(errors="replace")
    pos += key_len
    if pos + 4 > len(body):
        raise DecodeError("truncated", "telemetry body ends before its column count")
    (ncols,) = struct.unpack_from("<I", body, pos)
    pos += 4
    plan = _plan(dictionary, dict_id)
    if ncols != len(plan.scale) or pos + ncols > len(body):
        raise DecodeError(
            "bad_batch", f"{ncols} columns, dictionary has {len(plan.scale)}"
        )
    if carried is not None:
        if len(carried) != HISTORY_ROWS * ncols * 8:
            raise DecodeError("bad_batch", "carried base has the wrong size")
        rows = np.frombuffer(carried, dtype="<i8").reshape(HISTORY_ROWS, ncols)
        base = _state_of_rows(link, dict_id, session_key, rows.astype(np.int64))
    sub = None if only is None else _columns_of(dictionary, dict_id, only, 2)
    base = _fitted(base, sub)
    modes = np.frombuffer(body, dtype=np.uint8, count=ncols, offset=pos)
    pos += ncols
    residuals, raw_values, pos = _read_residuals(body, pos, modes, n, plan, sub)
    if pos != len(body):
        raise DecodeError("bad_batch", f"{len(body) - pos} trailing bytes")
    ints = _reconstruct(residuals, base)
    state = _next_state(
        seq,
        seq if base is None else link.key_seq,
        dict_id,
        session_key,
        base,
        ints,
        (),
        only,
    )
    plan = plan if sub is None else sub.plan
    return _batch_of(ints, raw_values, plan, dict_id, session_key), state


def _decode_version3(
    body: bytes,
    pos: int,
    link: ChainLink,
    carried: bytes | None,
    dictionaries: dict[int, ChannelDictionary],
    only: frozenset[str] | None,
    base: ChainState | None,
    seq: int,
) -> tuple[TelemetryBatch, ChainState]:
    """:func:`decode_chained` of a version-3 body, from ``pos`` past the chain head."""
    if carried is not None:
        if len(carried) < 5 or len(carried) < 5 + carried[4]:
            raise DecodeError("truncated", "carried base cut short")
        (dict_id,) = struct.unpack_from("<I", carried)
        session_key = carried[5 : 5 + carried[4]].decode(errors="replace")
        rows_bytes = carried[5 + carried[4] :]
    elif base is None:  # a keyframe
        if len(body) < pos + 7 or len(body) < pos + 7 + body[pos + 6]:
            raise DecodeError("truncated", "telemetry body shorter than its header")
        (dict_id,) = struct.unpack_from("<I", body, pos)
        session_key = body[pos + 7 : pos + 7 + body[pos + 6]].decode(errors="replace")
        pos += 4
    else:
        dict_id, session_key = base.dict_id, base.session_key
    if len(body) < pos + _FRAMES.size:
        raise DecodeError("truncated", "telemetry body shorter than its header")
    (n,) = _FRAMES.unpack_from(body, pos)
    pos += _FRAMES.size
    if base is None and carried is None:
        pos += 1 + body[pos]  # the session key, read above
    dictionary = dictionaries.get(dict_id)
    if dictionary is None:
        raise DecodeError(
            "unknown_dictionary", f"no channel dictionary {dict_id:#010x}"
        )
    if not 0 < n <= MAX_FRAMES_PER_BATCH:
        raise DecodeError("bad_batch", f"{n} frames in one batch")
    plan = _plan(dictionary, dict_id)
    layout = _layout(dictionary.channels, dict_id)
    ncols = len(plan.scale)
    if carried is not None:
        if len(rows_bytes) != HISTORY_ROWS * ncols * 8:
            raise DecodeError("bad_batch", "carried base has the wrong size")
        rows = np.frombuffer(rows_bytes, dtype="<i8").reshape(HISTORY_ROWS, ncols)
        base = _state_of_rows(
            link, dict_id, session_key, rows.astype(np.int64), layout.samples
        )
    elif base is not None and (
        base.dict_id != dict_id or len(base.samples) != len(layout.samples)
    ):
        raise DecodeError("missing_base", f"base {base.seq} has another channel set")
    sub = None if only is None else _columns_of(dictionary, dict_id, only, 3)
    base = _fitted(base, sub)
    samples = layout.samples if sub is None else sub.samples
    nch = len(layout.counts)
    if pos + nch > len(body):
        raise DecodeError("truncated", "telemetry body ends before its modes")
    channel_modes = np.frombuffer(body, dtype=np.uint8, count=nch, offset=pos)
    pos += nch
    if sub is None:
        modes = np.repeat(channel_modes, layout.counts)
        residuals, raw_values, pos = _read_residuals(body, pos, modes, n, plan)
    else:
        residuals, raw_values, pos = _read_channels(
            body, pos, channel_modes, n, plan, layout, sub
        )
    if pos != len(body):
        raise DecodeError("bad_batch", f"{len(body) - pos} trailing bytes")
    if link.raw != (_MODE_RAW in channel_modes.tobytes()):
        raise DecodeError("bad_batch", "raw columns and the head's flag disagree")
    ints = _reconstruct(residuals, base, samples)
    state = _next_state(
        seq,
        seq if base is None else link.key_seq,
        dict_id,
        session_key,
        base,
        ints,
        samples,
        only,
    )
    plan = plan if sub is None else sub.plan
    return _batch_of(ints, raw_values, plan, dict_id, session_key), state


@dataclass(frozen=True, slots=True)
class _Columns:
    """Some channels of a set: their columns, and a full state's parts that are theirs."""

    only: frozenset[str]
    columns: np.ndarray[Any, np.dtype[np.intp]]  # in the full set, in column order
    position: np.ndarray[Any, np.dtype[np.intp]]  # full column -> its place here, or -1
    samples: _Samples  # the full layout's sample blocks, at their places here
    keep: tuple[np.ndarray[Any, np.dtype[np.intp]], ...]  # each block's channels kept
    plan: _DecodePlan  # values and frames of these columns
    channel: np.ndarray[Any, np.dtype[np.intp]]  # each column's channel (full set)
    offset: np.ndarray[Any, np.dtype[np.intp]]  # each column's place in its channel


_COLUMNS: dict[tuple[int, frozenset[str], int], _Columns] = {}


def _columns_of(
    dictionary: ChannelDictionary, dict_id: int, only: frozenset[str], version: int
) -> _Columns:
    """The columns of the channels in ``only`` (cached by dictionary and version)."""
    key = (dict_id, only, version)
    found = _COLUMNS.get(key)
    if found is not None:
        return found
    plan = _plan(dictionary, dict_id)
    layout = _layout(dictionary.channels, dict_id)
    picked: list[int] = []
    fields: list[tuple[str, int, int, str]] = []
    channels: list[ChannelSpec] = []
    owner: list[int] = []
    offset: list[int] = []
    for index, (ch, start) in enumerate(
        zip(dictionary.channels, layout.starts.tolist(), strict=True)
    ):
        if ch.name in only:
            fields.append((ch.name, len(picked), ch.count, ch.numpy_type))
            picked.extend(range(start, start + ch.count))
            channels.append(ch)
            owner.extend([index] * ch.count)
            offset.extend(range(ch.count))
    columns = np.array(picked, dtype=np.intp)
    position = np.full(len(plan.scale), -1, dtype=np.intp)
    position[columns] = np.arange(len(columns))
    samples: list[np.ndarray[Any, np.dtype[np.intp]]] = []
    keep: list[np.ndarray[Any, np.dtype[np.intp]]] = []
    for block in layout.samples if version == 3 else ():
        kept = np.flatnonzero(position[block[:, 0]] >= 0)
        keep.append(kept)
        samples.append(position[block[kept]])
    found = _Columns(
        only,
        columns,
        position,
        tuple(samples),
        tuple(keep),
        _DecodePlan(
            plan.scale[columns],
            tuple(plan.column_types[c] for c in picked),
            tuple(fields),
            frame_dtype(channels),
            tuple(channels),
            _source_dtype(tuple(fields), len(columns)),
        ),
        np.array(owner, dtype=np.intp),
        np.array(offset, dtype=np.intp),
    )
    if len(_COLUMNS) > 256:
        _COLUMNS.clear()
    _COLUMNS[key] = found
    return found


def _fitted(base: ChainState | None, sub: _Columns | None) -> ChainState | None:
    """``base`` for a decode of ``sub``'s channels (None: all): a full one cut down."""
    if base is None or base.only == (None if sub is None else sub.only):
        return base
    if sub is None or base.only is not None:
        raise DecodeError(
            "missing_base", f"base {base.seq} was decoded for other channels"
        )
    cols = sub.columns
    return ChainState(
        base.seq,
        base.key_seq,
        base.dict_id,
        base.session_key,
        base.rows[:, cols],
        base.steady[cols],
        base.drift[cols],
        sub.samples,
        tuple(
            steady[kept]
            for steady, kept in zip(base.samples_steady, sub.keep, strict=True)
        ),
        sub.only,
    )


def _batch_of(
    ints: np.ndarray[Any, np.dtype[np.int64]],
    raw_values: dict[int, np.ndarray[Any, Any]],
    plan: _DecodePlan,
    dict_id: int,
    session_key: str,
) -> TelemetryBatch:
    """The decoded batch of rebuilt integers and raw columns (``plan``'s columns)."""
    values = ints * plan.scale
    for index, column in raw_values.items():
        values[:, index] = column
    return TelemetryBatch(session_key, dict_id, plan.channels, _frames(values, plan))


# Where each column mode's data sits in a body: residual blocks by width (0-3), then
# constants by width (4-7); raw and all-zero columns have no residuals (8); 255: no
# such mode.
_BODY_GROUP = np.full(256, 255, dtype=np.uint8)
_BODY_GROUP[[0, 1, 2, 3]] = [0, 1, 2, 3]
_BODY_GROUP[[_MODE_CONST + code for code in range(len(_WIDTHS))]] = [4, 5, 6, 7]
_BODY_GROUP[[_MODE_RAW, _MODE_ZERO]] = 8


def _read_residuals(
    body: bytes,
    pos: int,
    modes: np.ndarray[Any, np.dtype[np.uint8]],
    n: int,
    plan: _DecodePlan,
    sub: _Columns | None = None,
) -> tuple[np.ndarray[Any, np.dtype[np.int64]], dict[int, np.ndarray[Any, Any]], int]:
    """A chained body's residual matrix (frames x columns), raw columns, end offset.

    The columns are read in body order (grouped by mode) into one matrix with slice
    assignments, then put in column order with a single gather: a handful of numpy
    calls a batch whatever the mix of modes. With ``sub``, only its columns are
    gathered, and raw columns are keyed by their place among them.
    """
    groups = _BODY_GROUP[modes]
    counts = np.bincount(groups, minlength=9)
    if len(counts) > 9:
        raise DecodeError("bad_batch", "unknown column mode")
    ncols = len(modes)
    order = np.argsort(groups, kind="stable")
    want: np.ndarray[Any, np.dtype[np.intp]] | None = None
    if sub is None:
        in_body = np.zeros((n, ncols), dtype=np.int64)
    else:
        # Each wanted column's place in body order; only those are gathered.
        rank = np.empty_like(order)
        rank[order] = np.arange(ncols)
        want = rank[sub.columns]
        in_body = np.zeros((n, len(want)), dtype=np.int64)
    at = 0
    for code, width in enumerate(_WIDTHS):
        k = int(counts[code])
        if not k:
            continue
        size = k * n * width
        if pos + size > len(body):
            raise DecodeError("truncated", f"{width}-byte columns run past the end")
        block = np.frombuffer(body, dtype=f"<i{width}", count=k * n, offset=pos)
        if want is None:
            in_body[:, at : at + k] = block.reshape(k, n).T
        else:
            hit = (want >= at) & (want < at + k)
            in_body[:, hit] = block.reshape(k, n)[want[hit] - at].T
        at += k
        pos += size
    for code, width in enumerate(_WIDTHS):
        k = int(counts[4 + code])
        if not k:
            continue
        size = k * width
        if pos + size > len(body):
            raise DecodeError("truncated", f"{width}-byte constants run past the end")
        values = np.frombuffer(body, dtype=f"<i{width}", count=k, offset=pos)
        if want is None:
            in_body[0, at : at + k] = values
        else:
            hit = (want >= at) & (want < at + k)
            in_body[0, hit] = values[want[hit] - at]
        at += k
        pos += size
    if want is None:
        residuals = np.empty_like(in_body)
        residuals[:, order] = in_body
    else:
        residuals = in_body
    raw_values: dict[int, np.ndarray[Any, Any]] = {}
    if counts[8]:
        for raw_col in np.flatnonzero(modes == _MODE_RAW):
            index = int(raw_col)
            kind = plan.column_types[index]
            size = n * np.dtype(kind).itemsize
            if pos + size > len(body):
                raise DecodeError("truncated", f"raw column {index} runs past the end")
            place = index if sub is None else int(sub.position[index])
            if place >= 0:
                raw_values[place] = np.frombuffer(body, dtype=kind, count=n, offset=pos)
            pos += size
    return residuals, raw_values, pos


def _read_channels(
    body: bytes,
    pos: int,
    channel_modes: np.ndarray[Any, np.dtype[np.uint8]],
    n: int,
    plan: _DecodePlan,
    layout: _Layout,
    sub: _Columns,
) -> tuple[np.ndarray[Any, np.dtype[np.int64]], dict[int, np.ndarray[Any, Any]], int]:
    """:func:`_read_residuals` of a version-3 body, for ``sub``'s columns only.

    A channel's columns lie together in the body, so where each wanted column sits is
    worked out per channel (a few hundred) rather than per column (thousands). Every
    column of the body is laid in one matrix in body order (one ``concatenate`` of
    the blocks of each width, constants and all-zero columns as rows of their own),
    and the wanted ones taken from it in a single gather.
    """
    groups = _BODY_GROUP[channel_modes]
    counts = np.bincount(groups, weights=layout.counts, minlength=9).astype(np.intp)
    if len(counts) > 9:
        raise DecodeError("bad_batch", "unknown column mode")
    order = np.argsort(groups, kind="stable")
    sizes = layout.counts[order]
    first = np.empty_like(order)
    first[order] = np.cumsum(sizes) - sizes  # each channel's first column in the body
    want = first[sub.channel] + sub.offset
    per_group = counts.tolist()
    parts: list[np.ndarray[Any, Any]] = []
    for code, width in enumerate(_WIDTHS):
        k = per_group[code]
        if not k:
            continue
        size = k * n * width
        if pos + size > len(body):
            raise DecodeError("truncated", f"{width}-byte columns run past the end")
        parts.append(
            np.frombuffer(body, dtype=f"<i{width}", count=k * n, offset=pos).reshape(
                k, n
            )
        )
        pos += size
    constants = sum(per_group[4:8])
    if constants:
        block = np.zeros((constants, n), dtype=np.int64)
        at = 0
        for code, width in enumerate(_WIDTHS):
            k = per_group[4 + code]
            if not k:
                continue
            size = k * width
            if pos + size > len(body):
                raise DecodeError(
                    "truncated", f"{width}-byte constants run past the end"
                )
            block[at : at + k, 0] = np.frombuffer(
                body, dtype=f"<i{width}", count=k, offset=pos
            )
            at += k
            pos += size
        parts.append(block)
    if per_group[8]:
        parts.append(np.zeros((per_group[8], n), dtype=np.int64))
    in_body = np.concatenate(parts, dtype=np.int64) if parts else _NO_COLUMNS
    residuals: np.ndarray[Any, np.dtype[np.int64]] = in_body[want].T
    raw_values: dict[int, np.ndarray[Any, Any]] = {}
    if per_group[8] and _MODE_RAW in channel_modes.tobytes():
        for raw_channel in np.flatnonzero(channel_modes == _MODE_RAW):
            start = int(layout.starts[raw_channel])
            for index in range(start, start + int(layout.counts[raw_channel])):
                kind = plan.column_types[index]
                size = n * np.dtype(kind).itemsize
                if pos + size > len(body):
                    raise DecodeError(
                        "truncated", f"raw column {index} runs past the end"
                    )
                place = int(sub.position[index])
                if place >= 0:
                    raw_values[place] = np.frombuffer(
                        body, dtype=kind, count=n, offset=pos
                    )
                pos += size
    return residuals, raw_values, pos


_NO_COLUMNS = np.zeros((0, 0), dtype=np.int64)


def _frames(
    values: np.ndarray[Any, np.dtype[np.float64]], plan: _DecodePlan
) -> np.ndarray[Any, np.dtype[np.void]]:
    """The record array of ``values`` (frames x columns): one structured cast.

    ``plan.source`` views a row of float64 columns as the plan's fields (at their
    column offsets); numpy casts field by field to the channels' own types in C.
    """
    rows = np.ascontiguousarray(values).view(plan.source)[:, 0]
    frames: np.ndarray[Any, np.dtype[np.void]] = rows.astype(plan.dtype)
    return frames


@dataclass(frozen=True, slots=True)
class _DecodePlan:
    scale: np.ndarray[Any, np.dtype[np.float64]]
    column_types: tuple[str, ...]
    fields: tuple[tuple[str, int, int, str], ...]
    dtype: np.dtype[np.void]
    channels: tuple[ChannelSpec, ...]
    source: np.dtype[np.void]  # the fields as float64 columns of a decoded row


def _source_dtype(
    fields: tuple[tuple[str, int, int, str], ...], columns: int
) -> np.dtype[np.void]:
    """``fields`` laid over a row of ``columns`` float64 values, at their columns."""
    return np.dtype(
        {
            "names": [name for name, _col, _count, _kind in fields],
            "formats": [
                "<f8" if count == 1 else ("<f8", (count,))
                for _name, _col, count, _kind in fields
            ],
            "offsets": [8 * col for _name, col, _count, _kind in fields],
            "itemsize": 8 * columns,
        }
    )


_PLANS: dict[int, _DecodePlan] = {}
_SUBSETS: dict[tuple[int, frozenset[str]], _DecodePlan] = {}


def _subset(
    plan: _DecodePlan, dictionary: ChannelDictionary, dict_id: int, only: frozenset[str]
) -> _DecodePlan:
    """The plan restricted to the channels in ``only`` (cached)."""
    key = (dict_id, only)
    sub = _SUBSETS.get(key)
    if sub is None:
        channels = tuple(c for c in dictionary.channels if c.name in only)
        fields = tuple(f for f in plan.fields if f[0] in only)
        sub = _DecodePlan(
            plan.scale,
            plan.column_types,
            fields,
            frame_dtype(channels),
            channels,
            _source_dtype(fields, len(plan.scale)),
        )
        if len(_SUBSETS) > 256:
            _SUBSETS.clear()
        _SUBSETS[key] = sub
    return sub


def _plan(dictionary: ChannelDictionary, dict_id: int) -> _DecodePlan:
    """Per-dictionary tables for decoding, computed once (keyed by the dictionary id)."""
    plan = _PLANS.get(dict_id)
    if plan is None:
        quanta = _column_quanta(dictionary.channels, dict_id)
        types: list[str] = []
        fields = []
        col = 0
        for ch in dictionary.channels:
            types.extend([ch.numpy_type] * ch.count)
            fields.append((ch.name, col, ch.count, ch.numpy_type))
            col += ch.count
        plan = _DecodePlan(
            np.where(np.isnan(quanta), 1.0, quanta),
            tuple(types),
            tuple(fields),
            frame_dtype(dictionary.channels),
            dictionary.channels,
            _source_dtype(tuple(fields), col),
        )
        if len(_PLANS) > 256:
            _PLANS.clear()
        _PLANS[dict_id] = plan
    return plan


_QUANTA_CACHE: dict[int, np.ndarray[Any, np.dtype[np.float64]]] = {}


def _column_quanta(
    channels: tuple[ChannelSpec, ...], dict_id: int
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Per expanded column: the float quantum, or NaN for lossless integer columns."""
    cached = _QUANTA_CACHE.get(dict_id)
    if cached is None:
        values: list[float] = []
        for ch in channels:
            q = ch.quantum
            values.extend([np.nan if q is None else q] * ch.count)
        cached = np.array(values, dtype=np.float64)
        if len(_QUANTA_CACHE) > 64:
            _QUANTA_CACHE.clear()
        _QUANTA_CACHE[dict_id] = cached
    return cached
