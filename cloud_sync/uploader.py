"""The uploader: queues compacted sets found in the outbox directory and drains them into a target."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cloud_sync.manifest import check_local, find_sets, read_set
from cloud_sync.outbox import Entry, EntryState, Outbox
from cloud_sync.targets import (
    ConflictError,
    PutResult,
    RefusedError,
    Target,
    TargetError,
    UnreachableError,
    VerifyError,
)
from driver_pc.protocol.manifest import ManifestError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: ``base * factor**n`` seconds, capped, with +-``jitter``.

    ``attempts`` tries are made in one round (one ``sync`` run) before the session is
    left pending; its next round is then not before ``delay(entry.attempts)``.
    """

    base: float = 1.0
    factor: float = 2.0
    cap: float = 300.0
    jitter: float = 0.2
    attempts: int = 6

    def delay(self, n: int) -> float:
        raw = min(self.cap, self.base * self.factor ** max(0, n))
        return raw * (1 + random.uniform(-self.jitter, self.jitter))


@dataclass
class SyncReport:
    """What one round did."""

    queued: int = 0
    done: list[str] = field(default_factory=list)
    uploaded: int = 0  # objects written
    already_there: int = 0  # identical objects found in place (nothing written)
    pending: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    busy: bool = False  # another uploader was running a round on this outbox

    @property
    def ok(self) -> bool:
        return not self.pending and not self.failed and not self.busy


class _EntryResume:
    """The outbox as a target's ResumeStore, for one entry."""

    def __init__(self, outbox: Outbox, entry_id: int) -> None:
        self._outbox = outbox
        self._entry_id = entry_id

    def get(self, key: str) -> tuple[str, int] | None:
        return self._outbox.multipart(self._entry_id, key)

    def save(self, key: str, upload_id: str, part_size: int) -> None:
        self._outbox.save_multipart(self._entry_id, key, upload_id, part_size)

    def clear(self, key: str) -> None:
        self._outbox.save_multipart(self._entry_id, key, None, None)


class Uploader:
    """Moves compacted sets from ``outbox_dir`` to ``target``, one verified object at a time.

    Objects of a set go data files first and ``manifest.json`` last, so a reader that
    finds a manifest on the target finds the whole set. A set is ``done`` only when
    every object has been verified there.
    """

    def __init__(
        self,
        outbox: Outbox,
        outbox_dir: Path,
        target: Target,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = outbox
        self.outbox_dir = outbox_dir
        self.target = target
        self.backoff = backoff or Backoff()
        self._sleep = sleep
        self._clock = clock

    def scan(self) -> int:
        """Queue every complete set in the outbox directory; returns how many are new."""
        new = 0
        for path in find_sets(self.outbox_dir):
            try:
                found = read_set(self.outbox_dir, path)
            except ManifestError as exc:
                logger.warning("not queued: %s", exc)
                continue
            if self.outbox.enqueue(path, self.target.url, found.manifest_sha256):
                logger.info("queued %s for %s", path, self.target.url)
                new += 1
        return new

    def run_once(self, *, ignore_wait: bool = False) -> SyncReport:
        """Scan, then upload every due session. Stops early if the target is unreachable.

        One round at a time per outbox (a lock file beside the queue): a second
        uploader started meanwhile reports ``busy`` and does nothing.
        """
        with _round_lock(self.outbox.path.with_suffix(".lock")) as acquired:
            if not acquired:
                return SyncReport(busy=True)
            return self._round(ignore_wait)

    def _round(self, ignore_wait: bool) -> SyncReport:
        report = SyncReport(queued=self.scan())
        for entry in self.outbox.due(
            self.target.url, self._clock(), ignore_wait=ignore_wait
        ):
            try:
                uploaded, present = self._upload(entry)
            except UnreachableError as exc:
                next_at = self._clock() + self.backoff.delay(entry.attempts)
                self.outbox.mark_retry(entry.id, str(exc), next_at)
                logger.warning(
                    "%s: target unreachable, left pending: %s", entry.path, exc
                )
                report.errors[entry.path] = str(exc)
                # The endpoint is down: the other sessions would fail the same way.
                report.pending.extend(
                    e.path
                    for e in self.outbox.due(
                        self.target.url, self._clock(), ignore_wait=True
                    )
                )
                break
            except (RefusedError, ConflictError, VerifyError, ManifestError) as exc:
                self.outbox.mark_failed(entry.id, str(exc))
                logger.error("%s: upload failed: %s", entry.path, exc)
                report.failed.append(entry.path)
                report.errors[entry.path] = str(exc)
                if isinstance(exc, RefusedError):
                    break  # credentials or bucket: every other session would fail too
                continue
            self.outbox.mark_done(entry.id)
            report.done.append(entry.path)
            report.uploaded += uploaded
            report.already_there += present
        return report

    def run_forever(self, stop: threading.Event, poll: float = 30.0) -> None:
        """The supervisor program's loop: a round, then wait for the next due session."""
        while not stop.is_set():
            self.run_once()
            due = [
                e.next_attempt_at
                for e in self.outbox.entries(self.target.url)
                if e.state is EntryState.PENDING
            ]
            wait = min([poll, *(at - self._clock() for at in due)])
            stop.wait(max(0.0, wait))

    def _upload(self, entry: Entry) -> tuple[int, int]:
        """Upload and verify every object of one set; (written, already there)."""
        found = read_set(self.outbox_dir, entry.path)
        if found.manifest_sha256 != entry.manifest_sha256:
            # Compacted again since it was queued: queue the new manifest instead.
            self.outbox.enqueue(entry.path, self.target.url, found.manifest_sha256)
        verified = self.outbox.verified_keys(entry.id)
        resume = _EntryResume(self.outbox, entry.id)
        written = present = 0
        for item in found.files:
            key = self.target.key(f"{entry.path}/{item.path}")
            if key in verified:
                continue
            local = found.local(item)
            check_local(item, local)
            result = self._with_backoff(
                functools.partial(self.target.put, key, local, item, resume)
            )
            self.outbox.record_verified(entry.id, key)
            if result is PutResult.CREATED:
                written += 1
            else:
                present += 1
        return written, present

    def _with_backoff(self, put: Callable[[], PutResult]) -> PutResult:
        attempt = 0
        while True:
            try:
                return put()
            except TargetError as exc:
                if not exc.transient:
                    raise
                attempt += 1
                if attempt >= self.backoff.attempts:
                    raise
                delay = self.backoff.delay(attempt - 1)
                logger.info("retrying in %.2f s: %s", delay, exc)
                self._sleep(delay)


@contextlib.contextmanager
def _round_lock(path: Path) -> Iterator[bool]:
    """An exclusive, non-blocking ``flock`` on ``path``; yields whether it was taken."""
    with path.open("a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
