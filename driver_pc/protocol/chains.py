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
#: Bodies kept per source, to rebuild a state of other channels (a keyframe every
#: 40 batches: a whole chain and some).
BODIES_PER_SOURCE = 64


class ChainBook:
    """Decodes telemetry bodies of any version, keeping what the next delta builds on.

    A delta needs the state after the batch it names (its base). The book looks in
    the states it remembers, then rebuilds it from the bodies it decoded or, for those
    it has not, from ``stored`` (the source's chunks from the delta's keyframe to its
    base), decoding them in order. A base found nowhere raises DecodeError
    ``missing_base``; the stream recovers at its next keyframe. A decoded batch's state
    is kept when the caller says so (:meth:`remember`).

    Decoded for some channels only (``only``), a batch's state holds their columns
    alone, so a delta costs the work of those columns; :meth:`full_state` rebuilds a
    state of every column when one is needed (a chunk stored with its base).
    """

    def __init__(self, stored: StoredChain | None = None) -> None:
        self._stored = stored
        self._states: dict[str, dict[int, ChainState]] = {}
        self._bodies: dict[str, dict[int, bytes]] = {}
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
            if base is not None and base.only not in (None, only):
                base = None  # decoded for other channels: rebuilt for these
            if base is None:
                base = self._rebuild(
                    source, link.key_seq, link.base_seq, dictionaries, only
                )
        batch, state = decode_chained(body, dictionaries, only, base, seq)
        bodies = self._bodies.setdefault(source, {})
        bodies.pop(seq, None)
        bodies[seq] = body
        if len(bodies) > BODIES_PER_SOURCE:
            del bodies[next(iter(bodies))]
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
        self._bodies.clear()

    def full_state(
        self,
        source: str,
        seq: int,
        dictionaries: dict[int, ChannelDictionary],
        key_seq: int | None = None,
    ) -> ChainState | None:
        """The state of every column after batch ``seq`` of ``source``; None if unknown.

        ``key_seq``: the keyframe of its chain, for a look in storage.
        """
        known = self._states.get(source, {}).get(seq)
        if known is not None and known.only is None:
            return known
        return self._decode_to(source, seq, key_seq, dictionaries, None)

    def _rebuild(
        self,
        source: str,
        key_seq: int,
        base_seq: int,
        dictionaries: dict[int, ChannelDictionary],
        only: frozenset[str] | None,
    ) -> ChainState | None:
        """The state after batch ``base_seq``, decoded from its keyframe on."""
        state = self._decode_to(source, base_seq, key_seq, dictionaries, only)
        if state is not None:
            self.remember(source, state)
        return state

    def _decode_to(
        self,
        source: str,
        seq: int,
        key_seq: int | None,
        dictionaries: dict[int, ChannelDictionary],
        only: frozenset[str] | None,
    ) -> ChainState | None:
        """The state after ``seq``: its chain decoded from the newest standalone batch."""
        state: ChainState | None = None
        try:
            for at, body in self._chain_to(source, seq, key_seq):
                link = chain_link(body)
                if link is None:
                    return None
                if not link.standalone and (
                    state is None or state.seq != link.base_seq
                ):
                    return None  # a gap in what is stored
                _batch, state = decode_chained(body, dictionaries, only, state, at)
        except DecodeError:
            return None
        if state is None or state.seq != seq:
            return None
        return state

    def _chain_to(
        self, source: str, seq: int, key_seq: int | None
    ) -> list[tuple[int, bytes]]:
        """Bodies from the newest standalone batch up to ``seq`` (empty: not found).

        Walks back from ``seq`` through the bodies decoded here, then takes the rest
        from storage: the source's chunks from the chain's keyframe on.
        """
        kept = self._bodies.get(source, {})
        chain: list[tuple[int, bytes]] = []
        at = seq
        while at in kept:
            body = kept[at]
            link = chain_link(body)
            if link is None or len(chain) > BODIES_PER_SOURCE:
                return []
            chain.append((at, body))
            if link.standalone or link.base_seq is None:
                return chain[::-1]
            key_seq, at = link.key_seq, link.base_seq
        if self._stored is None or key_seq is None or not key_seq <= at:
            return []
        stored = list(self._stored(source, key_seq, at))
        start = None
        for i, (_seq, payload) in enumerate(stored):
            link = chain_link(payload)
            if link is not None and link.standalone:
                start = i  # the newest standalone batch: decode from there
        if start is None:
            return []
        try:
            bodies = [
                (s, decompress_body(self._decompressor, payload))
                for s, payload in stored[start:]
            ]
        except DecodeError:
            return []
        return bodies + chain[::-1]
