"""Compaction: a finished session from the appliance database → Parquet files and a manifest in the outbox."""

from driver_pc.protocol.manifest import SCHEMA_VERSION, Manifest
from pitbox_appliance.compaction.compactor import (
    AlreadyCompactedError,
    CompactionError,
    compact_session,
    compacted_path,
)

__all__ = [
    "SCHEMA_VERSION",
    "AlreadyCompactedError",
    "CompactionError",
    "Manifest",
    "compact_session",
    "compacted_path",
]
