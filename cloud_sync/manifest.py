"""Reading compacted sessions from the outbox directory: the manifest.json contract, files and checksums."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

MANIFEST_NAME = "manifest.json"
MANIFEST_KIND = "pitbox.compacted_session"
KNOWN_SCHEMA_VERSIONS = frozenset({1})
# team=<team>/season=<yyyy>/track=<track>/session=<id>/manifest.json
SET_GLOB = f"team=*/season=*/track=*/session=*/{MANIFEST_NAME}"


class ManifestError(ValueError):
    """A compacted set on disk is unreadable, incomplete or does not match its manifest."""


@dataclass(frozen=True, slots=True)
class SetFile:
    """One object to upload: its path inside the set, size and SHA-256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class CompactedSet:
    """A compacted session found in the outbox; ``files`` ends with the manifest."""

    root: Path
    path: str
    files: tuple[SetFile, ...]
    manifest_sha256: str

    def local(self, item: SetFile) -> Path:
        return self.root / self.path / item.path


def find_sets(outbox: Path) -> list[str]:
    """Relative directories of the complete sets in ``outbox`` (staging is ignored)."""
    if not outbox.is_dir():
        return []
    return sorted(
        str(p.parent.relative_to(outbox).as_posix()) for p in outbox.glob(SET_GLOB)
    )


def read_set(outbox: Path, path: str) -> CompactedSet:
    """Read and check the manifest of the set at ``outbox/path``."""
    manifest = outbox / path / MANIFEST_NAME
    try:
        raw = manifest.read_bytes()
        data: Any = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{manifest}: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != MANIFEST_KIND:
        raise ManifestError(f"{manifest}: not a PitBox compacted-session manifest")
    if data.get("schema_version") not in KNOWN_SCHEMA_VERSIONS:
        raise ManifestError(
            f"{manifest}: schema_version {data.get('schema_version')!r} unknown "
            f"(this uploader knows {sorted(KNOWN_SCHEMA_VERSIONS)})"
        )
    if data.get("path") != path:
        raise ManifestError(f"{manifest}: says it belongs at {data.get('path')!r}")
    files = []
    for entry in data.get("files") or []:
        try:
            rel, size, digest = entry["path"], entry["bytes"], entry["sha256"]
        except (KeyError, TypeError):
            raise ManifestError(f"{manifest}: bad file entry {entry!r}") from None
        pure = PurePosixPath(str(rel))
        if pure.is_absolute() or ".." in pure.parts or str(pure) == MANIFEST_NAME:
            raise ManifestError(f"{manifest}: unsafe file path {rel!r}")
        files.append(SetFile(str(pure), int(size), str(digest)))
    files.append(SetFile(MANIFEST_NAME, len(raw), hashlib.sha256(raw).hexdigest()))
    return CompactedSet(outbox, path, tuple(files), files[-1].sha256)


def check_local(item: SetFile, path: Path) -> None:
    """Raise ManifestError unless the file on disk has the manifest's size and SHA-256."""
    digest = hashlib.sha256()
    try:
        size = path.stat().st_size
        if size != item.size:
            raise ManifestError(f"{path}: {size} bytes, manifest says {item.size}")
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    except OSError as exc:
        raise ManifestError(f"{path}: {exc}") from None
    if digest.hexdigest() != item.sha256:
        raise ManifestError(f"{path}: SHA-256 differs from the manifest (disk damage?)")
