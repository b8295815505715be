"""Ingest: everything between the broker and the database, routed to one tracker per car.

Decoding is ``decode.WireDecoder``; a car's state is ``car.CarTracker``; what goes out
to the pit wall is ``live.LivePublisher``; commands and their answers are
``commands.CommandBook``. The ``Ingestor`` owns one of each and routes every message.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from driver_pc.protocol import topics
from driver_pc.protocol.codec import Codec, DecodeError
from driver_pc.protocol.data_dirs import track_outlines_dir
from driver_pc.protocol.events import CommandResultEvent, Event, EventKind
from driver_pc.protocol.live import Predictions
from driver_pc.protocol.messages import (
    ChannelDictionary,
    CommandResult,
    DriverChange,
    InvalidMessage,
    SessionInfo,
    ShimStatus,
    TelemetryBatch,
)
from pitbox_appliance.analysis.corners import CornerCache
from pitbox_appliance.analysis.track_outline import OutlineStore
from pitbox_appliance.core.car import CarTracker
from pitbox_appliance.core.commands import CommandBook, SentCommand
from pitbox_appliance.core.decode import Decoded, Opened, WireDecoder
from pitbox_appliance.core.live import LiveCar, LivePublisher, Publication
from pitbox_appliance.storage.writer import SessionWriter, environmental
from pitbox_appliance.strategy.settings import StrategySettings

logger = logging.getLogger(__name__)


@dataclass
class IngestStats:
    """Counters of what ingest accepted and why it rejected the rest."""

    accepted: int = 0
    duplicates: int = 0
    # Driver changes older than the one the car already took (a PC that joined
    # late announcing the driver it saw at its start): history, not a change.
    stale_driver_changes: int = 0
    frames: int = 0
    laps: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    # Authentic messages that failed (a field out of bounds, analysis raised...),
    # kept in the dead-letter table: reason → count.
    dead_letters: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "stale_driver_changes": self.stale_driver_changes,
            "frames": self.frames,
            "laps": self.laps,
            "rejected": dict(self.rejected),
            "dead_letters": dict(self.dead_letters),
        }


class Outcome(StrEnum):
    """What became of one message."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"  # not authentic, or refused: counted, never kept
    DEAD_LETTER = "dead_letter"  # authentic but failed: kept aside with the reason


@dataclass(frozen=True, slots=True)
class Handled:
    """One message's outcome and, unless stored, the short reason."""

    outcome: Outcome
    reason: str = ""

    @property
    def stored(self) -> bool:
        return self.outcome is Outcome.STORED


class Ingestor:
    """Everything between the broker and the database, for any number of cars.

    Each message is its own fault domain: ``ingest`` never raises because of what a
    message holds. One that is not authentic is counted; one that is but fails (a
    field out of bounds, analysis raising, a row SQLite refuses) leaves none of its
    rows, is counted by reason and kept as a dead letter, and its car's state is
    rebuilt from storage at its next message; other cars never notice. Only the
    machine's failures (disk full, I/O error: ``writer.environmental``) are raised,
    for the caller to roll back and hold the batch.
    Call ``flush`` to commit; the caller acknowledges messages only after that.
    ``settings`` are the strategy rules every car's engine uses (config ``strategy``).
    """

    def __init__(
        self,
        codec: Codec,
        writer: SessionWriter,
        settings: StrategySettings | None = None,
        detectors: Iterable[str] | None = None,
        outlines: Path | None = None,
    ) -> None:
        self.writer = writer
        # The per-track outlines the dashboard builds, beside a file database unless
        # given: the detectors judge laps by the track's corners once there is one.
        if outlines is None:
            url = writer.engine.url
            if url.get_backend_name() == "sqlite" and url.database not in (
                None,
                "",
                ":memory:",
            ):
                outlines = track_outlines_dir(Path(str(url.database)))
        self._corners = CornerCache(OutlineStore(outlines) if outlines else None)
        # The detectors every car runs (config ``detectors``; None: all of them).
        self._detector_names = None if detectors is None else tuple(detectors)
        self.stats = IngestStats()
        self.publisher = LivePublisher()
        self.commands = CommandBook()
        self._settings = settings if settings is not None else StrategySettings()
        self._decoder = WireDecoder(
            codec,
            writer.source_seqs(),
            (ChannelDictionary.from_json(d) for d in writer.channel_sets()),
            stored=writer.stored_chain,
        )
        self._cars: dict[str, CarTracker] = {}  # by session key
        # car → (session key, newest SessionTime, wall time it arrived), for the lag.
        self._arrivals: dict[str, tuple[str, float, float]] = {}

    @property
    def live(self) -> dict[str, LiveCar]:
        """Each car's live figures (of its latest session), by car."""
        return {t.car: t.live for t in self._cars.values()}

    # ---- entry points -------------------------------------------------------------------
    def handle(self, payload: bytes, topic_source: str | None = None) -> bool:
        """Verify, decode and ingest one wire message; False if it was not stored."""
        return self.ingest(payload, topic_source).stored

    def ingest(
        self, payload: bytes, topic_source: str | None = None, topic: str = ""
    ) -> Handled:
        """Verify, decode and ingest one wire message, in its own fault domain.

        ``topic`` (as received) is kept with a dead letter. Raises only what
        ``writer.environmental`` calls the machine's failure.
        """
        return self._ingest(payload, topic_source, topic, None)

    def flush(self) -> None:
        """Commit everything handled so far."""
        self.writer.commit()

    def rollback(self) -> None:
        """Forget everything handled since the last commit, so it can be handled again."""
        self.writer.rollback()
        self._decoder.reset_sequences(self.writer.source_seqs())
        self._cars.clear()

    def put_aside(
        self,
        payload: bytes,
        topic_source: str | None,
        topic: str,
        error: BaseException,
    ) -> Handled:
        """Keep a message as a dead letter for ``error`` (its commit failed).

        For the caller that found, by committing messages one at a time, which one
        the database refuses; the transaction must have been rolled back.
        """
        try:
            opened = self._decoder.open(payload, topic_source, replay=True)
        except DecodeError:
            opened = None
        return self._dead_letter(opened, payload, topic, error, None)

    def retry_dead_letter(self, letter_id: int) -> Handled:
        """Ingest a dead letter again (after a fix), as if it had just arrived.

        Stored: the letter is deleted. Failed again: it stays, with the new reason.
        Raises LookupError for an unknown id. Commit afterwards, as for ``ingest``.
        """
        letter = self.writer.dead_letter(letter_id)
        if letter is None:
            raise LookupError(f"no dead letter {letter_id}")
        source = topics.source_of(letter.topic) if letter.topic else None
        handled = self._ingest(letter.payload, source, letter.topic, letter_id)
        if handled.outcome is Outcome.REJECTED:
            self.writer.retried_dead_letter(
                letter_id, handled.reason, "refused on retry", ""
            )
        return handled

    def retry_failed(self, letter_id: int, error: BaseException) -> Handled:
        """A retried dead letter whose commit failed (rolled back): it stays, updated."""
        letter = self.writer.dead_letter(letter_id)
        if letter is None:
            raise LookupError(f"no dead letter {letter_id}")
        try:
            opened = self._decoder.open(letter.payload, None, replay=True)
        except DecodeError:
            opened = None
        return self._dead_letter(opened, letter.payload, letter.topic, error, letter_id)

    def car_lags(self, now: float) -> dict[str, float | None]:
        """Each car's lag: seconds since its newest telemetry arrived (None: none yet)."""
        lags: dict[str, float | None] = dict.fromkeys(self.live)
        for car, (_key, _t, arrived) in self._arrivals.items():
            lags[car] = max(0.0, now - arrived)
        return lags

    def _ingest(
        self,
        payload: bytes,
        topic_source: str | None,
        topic: str,
        retry_of: int | None,
    ) -> Handled:
        try:
            opened = self._decoder.open(
                payload, topic_source, replay=retry_of is not None
            )
        except DecodeError as exc:
            # Not authentic (or not ours): counted, never kept (docs/decisions.md).
            self.stats.rejected[exc.reason] += 1
            logger.warning("rejected message: %s", exc)
            return Handled(Outcome.REJECTED, exc.reason)
        if opened is None:
            self.stats.duplicates += 1
            return Handled(Outcome.DUPLICATE, "duplicate")
        events = self.publisher.event_mark()
        counts = (self.stats.frames, self.stats.laps)
        decoded: Decoded | None = None
        try:
            with self.writer.savepoint():
                decoded = self._decoder.parse(opened)
                self._route(decoded)
                self.writer.mark_source(opened.source, opened.seq)
        except Exception as exc:
            if environmental(exc):
                raise
            # None of the message's rows, events or counts stay; its car starts
            # again from what is stored.
            self.publisher.drop_events_since(events)
            self.stats.frames, self.stats.laps = counts
            self._forget(decoded)
            if isinstance(exc, ForeignSessionError):
                self.stats.rejected[exc.reason] += 1
                logger.warning(
                    "refused %s from %s: %s", opened.kind.name, opened.source, exc
                )
                return Handled(Outcome.REJECTED, exc.reason)
            return self._dead_letter(opened, payload, topic, exc, retry_of)
        self._decoder.accepted(opened.source, opened.seq, decoded.message)
        self.stats.accepted += 1
        self._note_arrival(decoded)
        if retry_of is not None:
            self.writer.delete_dead_letter(retry_of)
        return Handled(Outcome.STORED)

    def _dead_letter(
        self,
        opened: Opened | None,
        payload: bytes,
        topic: str,
        exc: BaseException,
        retry_of: int | None,
    ) -> Handled:
        """Count ``exc`` and keep the message (or, on a retry, update its letter)."""
        reason = failure_reason(exc)
        detail = str(getattr(exc, "orig", None) or exc)[:2000]
        trace = "".join(traceback.format_exception(exc))[-20_000:]
        kind = opened.kind.name.lower() if opened is not None else "unknown"
        source = opened.source if opened is not None else None
        seq = opened.seq if opened is not None else None
        self.stats.dead_letters[reason] += 1
        logger.error(
            "dead letter (%s): %s #%s from %s: %s",
            reason,
            kind,
            seq,
            source or topic or "?",
            detail,
            exc_info=not isinstance(exc, InvalidMessage | DecodeError),
        )
        try:
            with self.writer.savepoint():
                if retry_of is not None:
                    self.writer.retried_dead_letter(retry_of, reason, detail, trace)
                    return Handled(Outcome.DEAD_LETTER, reason)
                kept = self.writer.add_dead_letter(
                    topic=topic,
                    source=source,
                    seq=seq,
                    kind=kind,
                    reason=reason,
                    detail=detail,
                    traceback=trace,
                    payload=payload,
                )
                if opened is not None:
                    # A re-delivery of it is a duplicate from now on.
                    self.writer.mark_source(opened.source, opened.seq)
        except Exception as failure:
            if environmental(failure):
                raise
            logger.exception("could not keep the dead letter; dropping the message")
            self.stats.rejected["dead_letter_failed"] += 1
            return Handled(Outcome.REJECTED, "dead_letter_failed")
        if kept is None:
            self.stats.rejected["dead_letters_full"] += 1
            logger.error(
                "dead-letter table full: %s #%s from %s dropped (counted only)",
                kind,
                seq,
                source,
            )
        if opened is not None:
            self._decoder.accepted(opened.source, opened.seq)
        return Handled(Outcome.DEAD_LETTER, reason)

    def _forget(self, decoded: Decoded | None) -> None:
        """Drop the car that a failed message reached: its next message resumes it."""
        message = decoded.message if decoded is not None else None
        if isinstance(
            message, ChannelDictionary | TelemetryBatch | SessionInfo | DriverChange
        ):
            self._cars.pop(message.session_key, None)
        try:
            # The resume reads stored telemetry: the batch's earlier chunks too.
            with self.writer.savepoint():
                self.writer.flush_chunks()
        except Exception as exc:
            if environmental(exc):
                raise
            # One of them is refused: the commit will find which.
            logger.warning("queued telemetry not insertable yet: %s", exc)

    def _note_arrival(self, decoded: Decoded) -> None:
        message = decoded.message
        if not isinstance(message, TelemetryBatch) or not len(message.frames):
            return
        car = car_of_source(decoded.source)
        newest = float(message.frames["SessionTime"].max())
        known = self._arrivals.get(car)
        if known is None or known[0] != message.session_key or newest >= known[1]:
            self._arrivals[car] = (message.session_key, newest, time.time())

    # ---- what the core's service asks ---------------------------------------------------
    def source_of(self, car: str) -> str | None:
        """The PC that drives ``car`` now (commands go only there); None if none does."""
        tracker = self._tracker_of(car)
        return tracker.driving_source if tracker is not None else None

    def session_of(self, car: str) -> int | None:
        """The session id of ``car``'s current session here, if it has one."""
        live = self.live.get(car)
        return live.session_id if live is not None else None

    def record_event(
        self, car: str, kind: EventKind, session_time: float, payload: BaseModel
    ) -> int:
        """Store and publish an event raised outside ingest; the car's session id.

        Raises LookupError when the car has no session on this appliance.
        """
        tracker = self._tracker_of(car)
        if tracker is None:
            raise LookupError(f"car {car!r} has no session on this appliance")
        tracker.record(kind, session_time, payload)
        return tracker.session_id

    def end_of_streams(self) -> None:
        """Every stream ended (an import is done): store the laps still waiting."""
        for tracker in self._cars.values():
            tracker.end_of_stream()

    def set_predictions(self, car: str, predictions: Predictions) -> None:
        """The models' outputs after ``car``'s last lap: shown with its next state."""
        tracker = self._tracker_of(car)
        if tracker is not None:
            tracker.live.predictions = predictions
            self.publisher.mark_dirty(car)

    def take_live(self, due: set[str], now: float) -> Publication:
        """The live states of the ``due`` cars and the events not yet published."""
        return self.publisher.take(due, self.live, now)

    # ---- routing ------------------------------------------------------------------------
    def _route(self, decoded: Decoded) -> None:
        source, message = decoded.source, decoded.message
        if isinstance(message, ChannelDictionary):
            tracker = self._tracker(message.session_key, source)
            self.writer.add_channel_set(
                tracker.session_id, message.dict_id, message.to_json()
            )
        elif isinstance(message, TelemetryBatch):
            names = message.frames.dtype.names or ()
            if "SessionTime" not in names or "LapDistPct" not in names:
                raise ValueError("telemetry lacks SessionTime/LapDistPct")
            tracker = self._tracker(message.session_key, source)
            tracker.telemetry(source, decoded.seq, message, decoded.compressed)
        elif isinstance(message, SessionInfo):
            self._tracker(message.session_key, source).session_info(message)
        elif isinstance(message, DriverChange):
            self._tracker(message.session_key, source).driver_change(source, message)
        elif isinstance(message, ShimStatus):
            self.publisher.set_shim_status(source, asdict(message))
        elif isinstance(message, CommandResult):
            self._command_result(source, message)
        else:
            logger.info("ignoring %s from %s", decoded.kind.name, source)

    def _command_result(self, source: str, result: CommandResult) -> None:
        command = self.commands.answered(source, result)
        payload = CommandResultEvent(
            command_id=result.command_id,
            ok=result.ok,
            detail=result.detail,
            by=command.by,
        )
        self.publisher.emit(Event(command.car, EventKind.COMMAND_RESULT, payload))
        if command.kind == "message":
            self._log_message(source, command, result)

    def _log_message(
        self, source: str, command: SentCommand, result: CommandResult
    ) -> None:
        """Store a team message with the car's session (the shim's answer closes it)."""
        car = self.live.get(command.car)
        if car is None:
            return
        self.writer.add_event(
            car.session_id,
            "team_message",
            float(car.values.get("SessionTime", 0.0)),
            {
                "text": str(command.args.get("text", "")),
                "source": source,
                "command_id": result.command_id,
                "ok": result.ok,
                "detail": result.detail,
                "sent_at": command.sent_at,
                "by": command.by,
            },
        )

    def _tracker_of(self, car: str) -> CarTracker | None:
        """The tracker of ``car``'s latest session (as ``live`` shows it)."""
        found = None
        for tracker in self._cars.values():
            if tracker.car == car:
                found = tracker
        return found

    def _tracker(self, session_key: str, source: str) -> CarTracker:
        """The tracker of ``session_key``, which must be a session of ``source``'s car.

        A source is bound to its car by its name (``<car>-<pc>``), which pairing fixed
        and the broker, the topic and the device key enforce: a message that names a
        session of another car is refused (``ForeignSessionError``), so no device can
        write into another car's session.
        """
        car = car_of_source(source)
        tracker = self._cars.get(session_key)
        if tracker is None:
            owner = self.writer.session_car(session_key)
            if owner is not None and owner != car:
                raise ForeignSessionError(source, session_key, owner)
            sid = self.writer.session_id(session_key, car)
            live = LiveCar(car, session_key, sid, source=source)
            tracker = self._new_tracker(live)
            self._cars[session_key] = tracker
            try:
                self._resume(tracker)
            except Exception as exc:
                if environmental(exc):
                    raise
                # Its stored state cannot be read back: the car goes on from here
                # (laps already stored stay stored) rather than losing every message.
                logger.exception(
                    "car %s: cannot resume session %s from storage; starting afresh",
                    car,
                    session_key,
                )
                tracker = self._new_tracker(live)
                self._cars[session_key] = tracker
        elif tracker.car != car:
            raise ForeignSessionError(source, session_key, tracker.car)
        return tracker

    def _new_tracker(self, live: LiveCar) -> CarTracker:
        return CarTracker(
            live,
            self.writer,
            self.publisher,
            self.stats,
            self._settings,
            self._detector_names,
            self._corners,
        )

    def _resume(self, tracker: CarTracker) -> None:
        """Hand a car's stored state to its new tracker, after a restart of the core."""
        state = self.writer.resume_state(tracker.session_id)
        if state is None:
            return
        batches = self._decoder.stored_batches(state.chunks)
        tracker.resume(
            (batch.frames for batch in batches),
            state.laps,
            (state.stint_id, state.stint_number, state.stint_start),
            (state.driver_id, state.driver_name),
        )


class ForeignSessionError(ValueError):
    """A source sent a message for a session of another car: refused, never stored."""

    reason = "foreign_session"

    def __init__(self, source: str, session_key: str, owner: str) -> None:
        super().__init__(
            f"{source!r} (car {car_of_source(source)!r}) sent a message for session "
            f"{session_key!r} of car {owner!r}"
        )


def failure_reason(exc: BaseException) -> str:
    """The short label a failed message is counted under.

    ``invalid:<Message.field>`` for a field out of the contract's limits, the
    codec's reason for an undecodable body, else the exception's type.
    """
    if isinstance(exc, InvalidMessage):
        return f"invalid:{exc.field}"
    if isinstance(exc, DecodeError):
        return exc.reason
    return type(exc).__name__


def car_of_source(source: str) -> str:
    """The car a source belongs to: source ids are ``<car>-<pc>`` (``car42-pc1``)."""
    return source.split("-", 1)[0] if "-" in source else source
