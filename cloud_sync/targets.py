"""Upload targets: the interface, its errors, the registry of URL schemes, and ``file:///dir`` (``s3://`` is in s3.py)."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import ParseResult, unquote, urlparse

from cloud_sync.manifest import SetFile
from driver_pc.protocol.plugins import Registry

PartCallback = Callable[[str, int], None]


class TargetError(Exception):
    """An upload did not happen; ``transient`` says whether waiting can help."""

    transient = False


class UnreachableError(TargetError):
    """The endpoint cannot be reached or is overloaded: back off and try again."""

    transient = True


class RefusedError(TargetError):
    """The target refused us (credentials, permissions, no bucket): needs a person."""


class ConflictError(TargetError):
    """An object with that key exists and is not ours; it is never overwritten."""


class VerifyError(TargetError):
    """After the upload the object does not have the expected size or checksum."""


class PutResult(StrEnum):
    """What a create-only put did."""

    CREATED = "created"
    ALREADY_THERE = "already_there"  # an identical object was there: nothing written


class ResumeStore(Protocol):
    """Where a target keeps multipart uploads in progress (the outbox)."""

    def get(self, key: str) -> tuple[str, int] | None: ...

    def save(self, key: str, upload_id: str, part_size: int) -> None: ...

    def clear(self, key: str) -> None: ...


class Target(Protocol):
    """A place compacted sessions go. Puts are create-only and verified."""

    url: str

    def key(self, rel: str) -> str:
        """The object key of a path relative to the outbox (prefix applied)."""
        ...

    def put(
        self, key: str, source: Path, item: SetFile, resume: ResumeStore
    ) -> PutResult:
        """Create ``key`` from ``source`` unless present; verify it; never overwrite."""
        ...

    def list_keys(self) -> list[str]:
        """Every key under the target's prefix."""
        ...

    def download(self, key: str, dest: Path) -> None: ...

    def put_bytes(
        self,
        key: str,
        body: bytes,
        content_type: str,
        *,
        public: bool = False,
        create_only: bool = True,
    ) -> PutResult:
        """Store a published page (report, board); create-only unless told otherwise."""
        ...

    def presign(self, key: str, expires_in: int) -> str:
        """A link to ``key`` that works for ``expires_in`` seconds."""
        ...

    def object_url(self, key: str) -> str:
        """The plain URL of ``key``."""
        ...


def add_target_arguments(parser: Any, flag: str, help: str) -> None:
    """``flag`` (the target URL, default ``$PITBOX_SYNC_TARGET``) and ``--endpoint-url``."""
    parser.add_argument(flag, default=os.environ.get("PITBOX_SYNC_TARGET"), help=help)
    parser.add_argument(
        "--endpoint-url",
        default=os.environ.get("PITBOX_S3_ENDPOINT_URL"),
        help="S3-compatible endpoint (default: AWS; $PITBOX_S3_ENDPOINT_URL)",
    )


def parse_target(url: str, **options: Any) -> Target:
    """The target a URL names: its scheme picks the target class (``s3://``, ``file://``).

    ``options`` go to the class's ``from_url`` (S3: ``endpoint_url``); a class that
    takes none ignores them.
    """
    parts = urlparse(url)
    kind = TARGETS.get(parts.scheme)
    if kind is None:
        examples = " or ".join(k.example for k in TARGETS.values())
        off = "".join(f"; {m} is off ({why})" for m, why in TARGETS.disabled.items())
        raise ValueError(f"{url!r}: target must be {examples}{off}")
    return kind.cls.from_url(url, parts, **options)


def target_url(url: str) -> str:
    """A target URL as the target itself writes it (the outbox's key), without opening it."""
    parts = urlparse(url)
    kind = TARGETS.get(parts.scheme)
    return kind.cls.canonical_url(parts) if kind is not None else url


class TargetClass(Protocol):
    """What a target class declares beside the Target methods: how a URL builds it."""

    def from_url(self, url: str, parts: ParseResult, **options: Any) -> Target:
        """The target ``url`` names (``parts`` is it parsed); ValueError if malformed."""
        ...

    def canonical_url(self, parts: ParseResult) -> str:
        """The URL as the target's ``url`` attribute will read."""
        ...


@dataclass(frozen=True, slots=True)
class TargetKind:
    """One URL scheme and the target class behind it."""

    scheme: str
    example: str  # for messages: ``s3://bucket/prefix``
    cls: TargetClass


#: Every target kind by URL scheme. Target classes live among cloud_sync's other
#: modules (reports, boards) that the uploader must not import, so the registry names
#: the modules that hold one; those in this file register as it is read.
TARGETS: Registry[TargetKind] = Registry("target", modules=("cloud_sync.s3",))

_C = TypeVar("_C", bound=TargetClass)


def register_target(scheme: str, *, example: str) -> Callable[[_C], _C]:
    """Class decorator: ``scheme://`` URLs name targets of this class."""

    def wrap(cls: _C) -> _C:
        TARGETS.add(scheme, TargetKind(scheme, example, cls))
        return cls

    return wrap


@register_target("file", example="file:///dir")
class FileTarget:
    """A directory (local disk, USB drive, NAS mount) laid out like the bucket.

    The directory must exist: a missing one is reported as unreachable, so an
    unmounted drive is waited for instead of being filled on the root filesystem.
    Create-only is a hard link of a fully written temp file (atomic, fails if the
    name exists), with an exclusive create as fallback where links are unsupported.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root}"

    @classmethod
    def from_url(cls, url: str, parts: ParseResult, **options: Any) -> FileTarget:
        """``file:///dir`` (or ``file://localhost/dir``); takes no options."""
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"{url!r}: file URL must be file:///absolute/dir")
        return cls(Path(unquote(parts.path)))

    @staticmethod
    def canonical_url(parts: ParseResult) -> str:
        return f"file://{Path(unquote(parts.path))}"

    def key(self, rel: str) -> str:
        return rel

    def put(
        self, key: str, source: Path, item: SetFile, resume: ResumeStore
    ) -> PutResult:
        dest = self._path(key)
        if dest.exists():
            self._check_existing(dest, item)
            return PutResult.ALREADY_THERE
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.tmp"
            try:
                with source.open("rb") as src, tmp.open("xb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                    out.flush()
                    os.fsync(out.fileno())
                created = _link_exclusive(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)
            _fsync_dir(dest.parent)
        except OSError as exc:
            raise UnreachableError(f"{dest}: {exc}") from None
        if not created:
            self._check_existing(dest, item)
            return PutResult.ALREADY_THERE
        if not _same(dest, item):
            raise VerifyError(f"{dest}: written file does not match its checksum")
        return PutResult.CREATED

    def list_keys(self) -> list[str]:
        self._path("")
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.is_file() and not p.name.endswith(".tmp")
        )

    def download(self, key: str, dest: Path) -> None:
        shutil.copyfile(self._path(key), dest)

    def put_bytes(
        self,
        key: str,
        body: bytes,
        content_type: str,
        *,
        public: bool = False,
        create_only: bool = True,
    ) -> PutResult:
        """Write ``body`` at ``key`` atomically (a directory has no ACLs: ``public`` is moot)."""
        dest = self._path(key)
        if create_only and dest.exists():
            if dest.read_bytes() == body:
                return PutResult.ALREADY_THERE
            raise ConflictError(f"{dest} exists with other content; not overwritten")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.tmp"
        with tmp.open("xb") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
        return PutResult.CREATED

    def presign(self, key: str, expires_in: int) -> str:
        """A directory cannot sign links: its URL (access is the filesystem's)."""
        return self.object_url(key)

    def object_url(self, key: str) -> str:
        return (self.root / key).as_uri()

    def _path(self, key: str) -> Path:
        if not self.root.is_dir():
            raise UnreachableError(
                f"target directory {self.root} is missing (not mounted?)"
            )
        return self.root / key

    @staticmethod
    def _check_existing(dest: Path, item: SetFile) -> None:
        if not _same(dest, item):
            raise ConflictError(f"{dest} exists with other content; not overwritten")


def _link_exclusive(tmp: Path, dest: Path) -> bool:
    """Give ``tmp``'s content the name ``dest`` unless it exists; True if created."""
    try:
        os.link(tmp, dest)
        return True
    except FileExistsError:
        return False
    except OSError:
        pass  # no hard links here (FAT, exFAT, some network mounts)
    try:
        out = dest.open("xb")
    except FileExistsError:
        return False
    try:
        with out, tmp.open("rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        dest.unlink(missing_ok=True)  # never leave a half-written object behind
        raise
    return True


def _same(path: Path, item: SetFile) -> bool:
    if path.stat().st_size != item.size:
        return False
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest() == item.sha256


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
