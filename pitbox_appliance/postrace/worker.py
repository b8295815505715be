"""PostRaceService: finds finished sessions and takes each through compact → sync → report.

Runs as its own supervised process (``python -m pitbox_appliance.postrace``), never
on the core's ingest thread. It reads the appliance database read-only, compacts
in-process, and runs ``sync`` and ``report`` as child processes (``python -m
cloud_sync sync``, ``pitbox report``), so the appliance never imports cloud_sync
and a report's plotting memory is returned when it ends. The report's events reach
the core through its API (``POST /api/v1/events``), which stores and publishes them.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from pitbox_appliance.compaction import CompactionError, compact_session, compacted_path
from pitbox_appliance.postrace.finished import FinishWatch
from pitbox_appliance.postrace.progress import Progress, ProgressBook, Step
from pitbox_appliance.storage.database import make_engine
from pitbox_appliance.storage.reader import SessionReader

logger = logging.getLogger(__name__)

STEP_TIMEOUT_S = 1800.0


class StepError(RuntimeError):
    """A step did not complete; the message says why (shown on the pit wall)."""


@dataclass
class PostRaceConfig:
    """What the worker needs: where sessions are, where sets and reports go, where to."""

    db_url: str
    outbox: Path
    progress: Path
    reports: Path
    target: str | None = None
    endpoint_url: str | None = None
    api: str | None = None
    api_token: str = field(default="", repr=False)
    idle_s: float = 600.0
    settle_s: float = 20.0
    poll_s: float = 5.0
    pdf: bool = True
    retry_s: float = 30.0
    retry_max_s: float = 1800.0
    python: str = sys.executable


class PostRaceService:
    """The post-race worker: one round every ``poll_s`` until stopped."""

    def __init__(self, config: PostRaceConfig) -> None:
        self.config = config
        self.watch = FinishWatch(idle_s=config.idle_s, settle_s=config.settle_s)
        self._engine: Engine | None = None
        self.book = ProgressBook(config.progress)

    def run(self, stop: threading.Event) -> None:
        """Rounds until ``stop`` is set; a failing round is logged, not fatal."""
        try:
            while not stop.is_set():
                try:
                    self.round()
                except Exception:
                    logger.exception("post-race round failed; next in %.0f s", 5)
                stop.wait(self.config.poll_s)
        finally:
            self.close()

    def close(self) -> None:
        self.book.close()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def round(self, now: float | None = None) -> list[Progress]:
        """Find newly finished sessions, then advance every due one; their progress."""
        engine = self._db()
        if engine is None:
            return self.book.all()
        reader = SessionReader(engine)
        now = time.time() if now is None else now
        sessions = reader.sessions()
        known = {p.session_id for p in self.book.all()}
        by_id = {s.id: s for s in sessions}
        for session_id, why in self.watch.finished(reader, sessions, now).items():
            if session_id not in known:
                race = by_id[session_id]
                logger.info("session %s finished (%s)", session_id, why)
                self.book.start(session_id, race.session_key, race.car, why)
        for progress in self.book.all():
            if progress.step is not Step.DONE and progress.next_attempt_at <= now:
                self._advance(engine, progress)
        return self.book.all()

    # ---- the steps ------------------------------------------------------------------
    def _advance(self, engine: Engine, progress: Progress) -> None:
        session_id, step = progress.session_id, progress.step
        try:
            if step is Step.COMPACTING:
                path = self._compact(engine, session_id)
                step = Step.SYNCING if self.config.target else Step.REPORTING
                self.book.advance(session_id, step, path=path)
                progress = self._reload(session_id)
            if step is Step.SYNCING:
                self._sync(progress.path)
                step = Step.REPORTING
                self.book.advance(session_id, step)
            if step is Step.REPORTING:
                url = self._report(session_id)
                self.book.advance(session_id, Step.DONE, report_url=url)
                logger.info("session %s: report ready at %s", session_id, url)
        except (StepError, CompactionError, OSError) as exc:
            attempts = self._reload(session_id).attempts
            delay = min(self.config.retry_max_s, self.config.retry_s * 2**attempts)
            logger.warning(
                "session %s: %s failed (%s); again in %.0f s",
                session_id,
                step,
                exc,
                delay,
            )
            self.book.fail(session_id, f"{step}: {exc}", delay)

    def _compact(self, engine: Engine, session_id: int) -> str:
        """The session's set in the outbox (compacted now unless already there)."""
        outbox = self.config.outbox
        path = compacted_path(engine, session_id, outbox)
        if not (path / "manifest.json").exists():
            compact_session(engine, session_id, outbox, replace=path.exists())
        return str(path.relative_to(outbox))

    def _sync(self, path: str) -> None:
        """One upload round (``--retry``: this worker keeps its own back-off), then check."""
        target = self.config.target
        assert target is not None
        base = ["-m", "cloud_sync", "sync", "--target", target]
        base += ["--outbox", str(self.config.outbox)]
        if self.config.endpoint_url:
            base += ["--endpoint-url", self.config.endpoint_url]
        self._child([*base, "--retry", "--attempts", "2", "--json"], check=False)
        rows = json.loads(self._child([*base, "--status", "--json"]).stdout or "[]")
        mine = [r for r in rows if r.get("session") == path]
        if not mine:
            raise StepError(f"{path} is not in the upload queue")
        if mine[0].get("state") != "done":
            error = mine[0].get("last_error") or mine[0].get("state")
            raise StepError(f"not on {target} yet: {error}")

    def _report(self, session_id: int) -> str:
        """``pitbox report``: build, publish (with a target), announce through the API."""
        config = self.config
        args = ["-m", "pitbox_appliance.cli", "report", str(session_id)]
        args += ["--db", config.db_url, "--outbox", str(config.outbox)]
        args += ["--out", str(config.reports / str(session_id)), "--json"]
        if config.target:
            args += ["--target", config.target]
            if config.endpoint_url:
                args += ["--endpoint-url", config.endpoint_url]
        if config.api:
            args += ["--api", config.api]
        if not config.pdf:
            args.append("--no-pdf")
        done = self._child(args, check=False)
        try:
            result: dict[str, Any] = json.loads(done.stdout)
        except ValueError:
            result = {}
        problems = [
            line.removeprefix("pitbox report: ")
            for line in done.stderr.splitlines()
            if line.startswith("pitbox report: ")
        ]
        if done.returncode != 0 and (problems or not result):
            raise StepError(problems[-1] if problems else _tail(done.stderr))
        ready = [
            e for e in result.get("events", []) if e["kind"] == "session_report_ready"
        ]
        if not ready:
            raise StepError("the report named no session_report_ready")
        return str(ready[0]["url"])

    # ---- helpers ----------------------------------------------------------------------
    def _child(
        self, args: list[str], *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        if self.config.api_token:
            env["PITBOX_API_TOKEN"] = self.config.api_token
        try:
            done = subprocess.run(
                [self.config.python, *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=STEP_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise StepError(f"{args[1]} took over {STEP_TIMEOUT_S:.0f} s") from None
        if check and done.returncode != 0:
            raise StepError(_tail(done.stderr) or f"{args[1]} exited {done.returncode}")
        return done

    def _db(self) -> Engine | None:
        if self._engine is None:
            from sqlalchemy.engine.url import make_url

            database = make_url(self.config.db_url).database
            if database and not Path(database).exists():
                return None  # the core has not created it yet
            self._engine = make_engine(self.config.db_url, readonly=True)
        return self._engine

    def _reload(self, session_id: int) -> Progress:
        progress = self.book.get(session_id)
        assert progress is not None
        return progress


def _tail(text: str, chars: int = 300) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][-chars:] if lines else ""
