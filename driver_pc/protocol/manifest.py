"""The compacted-session manifest contract: written by compaction, read by the uploader and the cloud side."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

# Bump when a reader of an older version could misread the files; readers refuse a
# manifest whose schema_version they do not know.
SCHEMA_VERSION = 1
KNOWN_SCHEMA_VERSIONS = frozenset({SCHEMA_VERSION})
MANIFEST_NAME = "manifest.json"
MANIFEST_KIND = "pitbox.compacted_session"
# team=<team>/season=<yyyy>/track=<track>/session=<id>/manifest.json
SET_GLOB = f"team=*/season=*/track=*/session=*/{MANIFEST_NAME}"


class ManifestError(ValueError):
    """A compacted set is unreadable, incomplete or does not match its manifest."""


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
    def from_json(cls, data: Any, where: str = "manifest") -> Manifest:
        """The manifest in ``data``; ManifestError naming ``where`` and what is wrong."""
        if not isinstance(data, dict) or data.get("kind") != MANIFEST_KIND:
            raise ManifestError(f"{where}: not a PitBox compacted-session manifest")
        if data.get("schema_version") not in KNOWN_SCHEMA_VERSIONS:
            raise ManifestError(
                f"{where}: schema_version {data.get('schema_version')!r} unknown "
                f"(this reader knows {sorted(KNOWN_SCHEMA_VERSIONS)})"
            )
        try:
            files = tuple(_file_entry(f, where) for f in data["files"])
            manifest = cls(
                partition=Partition(**data["partition"]),
                files=files,
                session=dict(data["session"]),
                analytics=dict(data["analytics"]),
                telemetry=dict(data["telemetry"]),
                created_at=str(data["created_at"]),
                generator=str(data["generator"]),
                schema_version=int(data["schema_version"]),
                notes=list(data.get("notes", [])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ManifestError):
                raise
            raise ManifestError(f"{where}: malformed manifest ({exc!r})") from None
        if "path" in data and data["path"] != manifest.path:
            raise ManifestError(
                f"{where}: path {data['path']!r} does not match its partition"
            )
        return manifest

    @classmethod
    def parse(cls, raw: bytes, where: str = "manifest") -> Manifest:
        """The manifest in the bytes of a ``manifest.json``."""
        try:
            data: Any = json.loads(raw)
        except ValueError as exc:
            raise ManifestError(f"{where}: {exc}") from None
        return cls.from_json(data, where)

    @classmethod
    def load(cls, session_dir: Path) -> Manifest:
        """Read ``manifest.json`` of a compacted session directory."""
        path = session_dir / MANIFEST_NAME
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ManifestError(f"{path}: {exc}") from None
        return cls.parse(raw, str(path))


def _file_entry(entry: Any, where: str) -> FileEntry:
    """A file entry, refusing paths that would leave the set's directory."""
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: bad file entry {entry!r}")
    try:
        item = FileEntry(
            str(entry["path"]),
            str(entry["table"]),
            int(entry["rows"]),
            int(entry["bytes"]),
            str(entry["sha256"]),
        )
    except (KeyError, TypeError, ValueError):
        raise ManifestError(f"{where}: bad file entry {entry!r}") from None
    pure = PurePosixPath(item.path)
    if pure.is_absolute() or ".." in pure.parts or item.path == MANIFEST_NAME:
        raise ManifestError(f"{where}: unsafe file path {item.path!r}")
    return item


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
