"""Compacted sets in the outbox directory: finding them, their files to upload, checking checksums.

The manifest itself is the contract in ``driver_pc.protocol.manifest``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from driver_pc.protocol.manifest import (
    MANIFEST_NAME,
    SET_GLOB,
    Manifest,
    ManifestError,
)


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
    manifest_path = outbox / path / MANIFEST_NAME
    try:
        raw = manifest_path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{manifest_path}: {exc}") from None
    manifest = Manifest.parse(raw, str(manifest_path))
    if manifest.path != path:
        raise ManifestError(f"{manifest_path}: says it belongs at {manifest.path!r}")
    files = [SetFile(f.path, f.bytes, f.sha256) for f in manifest.files]
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
