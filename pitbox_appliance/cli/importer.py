"""``pitbox import``: recorded .ibt files through the same encode → decode → segment → store path as live data."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from driver_pc.adapters.base import AdapterUnavailableError
from driver_pc.adapters.iracing_replay import IbtReplayAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.codec import Codec
from pitbox_appliance.core.ingest import Ingestor

COMMIT_EVERY = 200


class ImportError_(RuntimeError):
    """A file could not be imported; the message names the file and the problem."""


def import_file(
    path: Path,
    ingestor: Ingestor,
    codec: Codec,
    car: str = "import",
    progress: Callable[[int], None] | None = None,
) -> int:
    """Import one .ibt file; returns the number of ticks stored."""
    try:
        adapter = IbtReplayAdapter(str(path), speed=0)
    except AdapterUnavailableError as exc:
        raise ImportError_(str(exc)) from None
    digest = hashlib.sha1(
        f"{path.resolve()}:{path.stat().st_size}".encode()
    ).hexdigest()[:10]
    source = f"{car}-import{digest}"
    pipeline = ShimPipeline(adapter)
    stats = ingestor.stats
    rejected_before = sum(stats.rejected.values()) + sum(stats.dead_letters.values())
    try:
        for seq, message in enumerate(pipeline.messages()):
            ingestor.handle(codec.encode(source, seq, message))
            if seq % COMMIT_EVERY == COMMIT_EVERY - 1:
                ingestor.flush()
                if progress is not None:
                    progress(pipeline.stats.ticks)
        ingestor.end_of_streams()
        ingestor.flush()
    finally:
        adapter.close()
    if progress is not None:
        progress(pipeline.stats.ticks)
    if sum(stats.rejected.values()) + sum(stats.dead_letters.values()) > (
        rejected_before
    ):
        raise ImportError_(
            f"{path}: messages were rejected {dict(stats.rejected)} or kept as dead"
            f" letters {dict(stats.dead_letters)} (pitbox deadletters list)"
        )
    return pipeline.stats.ticks


def local_codec() -> Codec:
    """A codec for in-process imports (the key never leaves this process)."""
    return Codec(os.urandom(32))
