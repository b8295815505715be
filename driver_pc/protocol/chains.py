"""Receiving delta-chained telemetry: each source's recent stream states, and bases rebuilt from stored chunks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import zstandard

from driver_pc.protocol.codec import (
    ChainState,
    DecodeError,
    chain_link,
    decode_batch,
    decode_chained,
    decompress_body,
)
from driver_pc.protocol.messages import ChannelDictionary, TelemetryBatch

#: (source, first seq, last seq) → that source's stored payloads in the range, by seq.
StoredChain = Callable[[str, int, int], Sequence[tuple[int, bytes]]]

#: States kept per source: a retried or resent batch a few behind the head still
#: finds its base without a trip to storage.
STATES_PER_SOURCE = 16


class ChainBook:
    """Decodes telemetry bodies of any version, keeping what the next delta builds on.

    A delta needs the state after the batch it names (its base). The book looks in
    the states it remembers, then asks ``stored`` for the source's chunks from the
    delta's keyframe to its base and decodes them in order. A base found nowhere
    raises DecodeError ``missing_base``; the stream recovers at its next keyframe.
    A decoded batch's state is kept when the caller says so (:meth:`remember`).
    """

    def __init__(self, stored: StoredChain | None = None) -> None:
        self._stored = stored
        self._states: dict[str, dict[int, ChainState]] = {}
        self._decompressor = zstandard.ZstdDecompressor()

    def decode(
        self,
        source: str,
        seq: int,
        body: bytes,
        dictionaries: dict[int, ChannelDictionary],
        only: frozenset[str] | None = None,
    ) -> tuple[TelemetryBatch, ChainState | None, ChainState | None]:
        """A decompressed body's batch, the stream state after it and the base it used.

        Both states are None for a version-1 body; the base is None for a standalone one.
        """
        link = chain_link(body)
        if link is None:
            return decode_batch(body, dictionaries, only), None, None
        base = None
        if not link.standalone and link.base_seq is not None:
            base = self._states.get(source, {}).get(link.base_seq)
            if base is None:
                base = self._rebuild(source, link.key_seq, link.base_seq, dictionaries)
        batch, state = decode_chained(body, dictionaries, only, base, seq)
        return batch, state, base if not link.standalone else None

    def remember(self, source: str, state: ChainState) -> None:
        """``state`` may be built on from now (its batch was taken)."""
        states = self._states.setdefault(source, {})
        states.pop(state.seq, None)
        states[state.seq] = state  # the newest remembered last
        if len(states) > STATES_PER_SOURCE:
            del states[next(iter(states))]

    def clear(self) -> None:
        """Forget every state (after a rollback: what was taken may not be stored)."""
        self._states.clear()

    def _rebuild(
        self,
        source: str,
        key_seq: int,
        base_seq: int,
        dictionaries: dict[int, ChannelDictionary],
    ) -> ChainState | None:
        """The state after stored batch ``base_seq``, decoded from its keyframe on."""
        if self._stored is None or not key_seq <= base_seq:
            return None
        chain = list(self._stored(source, key_seq, base_seq))
        start = None
        for i, (_seq, payload) in enumerate(chain):
            link = chain_link(payload)
            if link is not None and link.standalone:
                start = i  # the newest standalone batch: decode from there
        if start is None:
            return None
        state: ChainState | None = None
        try:
            for seq, payload in chain[start:]:
                body = decompress_body(self._decompressor, payload)
                link = chain_link(body)
                if link is None:
                    return None
                if not link.standalone and (
                    state is None or state.seq != link.base_seq
                ):
                    return None  # a gap in what is stored
                _batch, state = decode_chained(
                    body, dictionaries, frozenset(), state, seq
                )
        except DecodeError:
            return None
        if state is None or state.seq != base_seq:
            return None
        self.remember(source, state)
        return state
