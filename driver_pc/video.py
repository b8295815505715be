"""Driver POV video: finished segments in a folder, uploaded to the appliance's video endpoint."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driver_pc.appliance_api import ApiError, ApplianceApi

logger = logging.getLogger(__name__)

# What OBS and the like write, and the media type the appliance accepts for each.
MEDIA_TYPES = {
    ".mp4": "video/mp4",
    ".mkv": "video/x-matroska",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".ts": "video/mp2t",
}


class SessionClock:
    """Maps this PC's monotonic clock to the sim's session time, from the latest frame."""

    def __init__(self) -> None:
        self._anchor: tuple[float, float] | None = None
        self._lock = threading.Lock()

    def note(self, session_time: float, at: float | None = None) -> None:
        with self._lock:
            self._anchor = (session_time, time.monotonic() if at is None else at)

    def session_time(self, at: float) -> float | None:
        """The session time at monotonic time ``at``; None before the first frame."""
        with self._lock:
            if self._anchor is None:
                return None
            session, mono = self._anchor
        return max(0.0, session + (at - mono))


class UploadError(ApiError):
    """The appliance refused a segment or could not be reached; says which and why."""


@dataclass
class _Seen:
    size: int
    mtime: float
    first_seen: float
    stable_since: float
    start_time: float | None
    failures: int = 0
    retry_at: float = 0.0


@dataclass
class VideoSegmentWatcher:
    """Uploads each video file in ``folder`` once it has stopped growing.

    A segment's start is when its file appeared, its end when it stopped growing,
    both mapped to session time through ``clock`` (recorders do not say more
    without parsing the container). Uploaded names are remembered in
    ``state_path`` so a restarted shim does not send them again.
    """

    folder: Path
    target: ApplianceApi
    clock: SessionClock
    state_path: Path
    settle_s: float = 3.0
    uploaded: set[str] = field(default_factory=set)
    _seen: dict[str, _Seen] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.state_path.exists():
            try:
                names = json.loads(self.state_path.read_text())
                self.uploaded = {str(n) for n in names}
            except (OSError, ValueError) as exc:
                logger.warning("video state %s unreadable (%s)", self.state_path, exc)

    def poll(self, now: float | None = None) -> list[str]:
        """Look at the folder once; upload what has settled. The names uploaded."""
        now = time.monotonic() if now is None else now
        done: list[str] = []
        try:
            entries = sorted(self.folder.iterdir())
        except OSError as exc:
            logger.warning("video folder %s unreadable: %s", self.folder, exc)
            return done
        for path in entries:
            if path.suffix.lower() not in MEDIA_TYPES or path.name in self.uploaded:
                continue
            try:
                stat = path.stat()
            except OSError:
                continue
            seen = self._seen.get(path.name)
            if seen is None or (seen.size, seen.mtime) != (stat.st_size, stat.st_mtime):
                first = seen.first_seen if seen else now
                start = seen.start_time if seen else self.clock.session_time(now)
                self._seen[path.name] = _Seen(
                    stat.st_size, stat.st_mtime, first, now, start
                )
                continue
            if stat.st_size == 0 or now - seen.stable_since < self.settle_s:
                continue
            if now < seen.retry_at:
                continue
            end = self.clock.session_time(seen.stable_since)
            if end is None:
                continue  # no telemetry yet: cannot place it in the session
            start = end if seen.start_time is None else min(seen.start_time, end)
            try:
                self.upload(path, start, end)
            except UploadError as exc:
                seen.failures += 1
                seen.retry_at = now + min(300.0, 5.0 * 2**seen.failures)
                logger.warning("video %s not uploaded (%s); will retry", path.name, exc)
                continue
            self.uploaded.add(path.name)
            self._seen.pop(path.name, None)
            self._save()
            done.append(path.name)
        return done

    def upload(self, path: Path, start: float, end: float) -> dict[str, Any]:
        """POST one file, streamed from disk; the appliance's record of it."""
        params = {
            "source": self.target.source,
            "name": path.name,
            "start": f"{start:.3f}",
            "end": f"{end:.3f}",
        }
        route = "/api/v1/video/upload"
        size = path.stat().st_size
        with path.open("rb") as body:
            request = urllib.request.Request(
                self.target.url(route, params),
                data=body,
                method="POST",
                headers={
                    "Content-Type": MEDIA_TYPES[path.suffix.lower()],
                    "Content-Length": str(size),
                    "Authorization": self.target.authorization("POST", route, params),
                },
            )
            try:
                record = self.target.send(request)
            except ApiError as exc:
                if exc.status == 409 and "already uploaded" in str(exc):
                    return {"path": path.name, "duplicate": True}
                raise UploadError(str(exc), exc.status) from None
        return record

    def run(self, stop: threading.Event, interval_s: float = 2.0) -> None:
        """Poll until ``stop`` is set (the shim runs this in its own thread)."""
        while not stop.wait(interval_s):
            self.poll()

    def _save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(self.uploaded)))
        tmp.replace(self.state_path)
