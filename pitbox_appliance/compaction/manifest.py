"""The manifest of a compacted session: schema version, files with checksums, summary."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Bump when a reader of an older version could misread the files; readers refuse a
# manifest whose schema_version they do not know (cloud_sync checks this too).
SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
MANIFEST_KIND = "pitbox.compacted_session"


@dataclass(frozen=True, slots=True)
class Partition:
    """Where a session lives in the partitioned layout (all values path-safe)."""

    team: str
    season: int
    track: str
    session: str

    @property
    def path(self) -> str:
        """``team=<team>/season=<yyyy>/track=<track>/session=<id>``."""
        return (
            f"team={self.team}/season={self.season}/"
            f"track={self.track}/session={self.session}"
        )


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of the compacted set, relative to the session directory."""

    path: str
    table: str
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Manifest:
    """What ``manifest.json`` holds; written last, so its presence means complete."""

    partition: Partition
    files: tuple[FileEntry, ...]
    session: dict[str, Any]
    analytics: dict[str, Any]
    telemetry: dict[str, Any]
    created_at: str
    generator: str = "pitbox 0.1.0"
    schema_version: int = SCHEMA_VERSION
    kind: str = MANIFEST_KIND
    notes: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        """The session directory relative to the outbox (and to the bucket prefix)."""
        return self.partition.path

    def file(self, table: str) -> FileEntry:
        """The file entry of ``table`` (``laps``, ``telemetry``...)."""
        for entry in self.files:
            if entry.table == table:
                return entry
        raise KeyError(table)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = self.path
        # Stable key order for humans: identification first, details after.
        order = (
            "kind",
            "schema_version",
            "generator",
            "created_at",
            "path",
            "partition",
            "files",
            "session",
            "analytics",
            "telemetry",
            "notes",
        )
        return {key: data[key] for key in order}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        if data.get("kind") != MANIFEST_KIND:
            raise ValueError(f"not a PitBox manifest (kind {data.get('kind')!r})")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"manifest schema {data.get('schema_version')!r}, "
                f"this reader knows {SCHEMA_VERSION}"
            )
        return cls(
            partition=Partition(**data["partition"]),
            files=tuple(FileEntry(**f) for f in data["files"]),
            session=dict(data["session"]),
            analytics=dict(data["analytics"]),
            telemetry=dict(data["telemetry"]),
            created_at=str(data["created_at"]),
            generator=str(data["generator"]),
            notes=list(data.get("notes", [])),
        )

    @classmethod
    def load(cls, session_dir: Path) -> Manifest:
        """Read ``manifest.json`` of a compacted session directory."""
        return cls.from_json(json.loads((session_dir / MANIFEST_NAME).read_text()))


def file_entry(root: Path, rel: str, table: str, rows: int) -> FileEntry:
    """Size and SHA-256 of ``root/rel``."""
    path = root / rel
    return FileEntry(rel, table, rows, path.stat().st_size, sha256_of(path))


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
