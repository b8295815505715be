"""Ingest: everything between the broker and the database, routed to one tracker per car.

Decoding is ``decode.WireDecoder``; a car's state is ``car.CarTracker``; what goes out
to the pit wall is ``live.LivePublisher``; commands and their answers are
``commands.CommandBook``. The ``Ingestor`` owns one of each and routes every message.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel

from driver_pc.protocol.codec import Codec, DecodeError
from driver_pc.protocol.events import CommandResultEvent, Event, EventKind
from driver_pc.protocol.live import Predictions
from driver_pc.protocol.messages import (
    ChannelDictionary,
    CommandResult,
    DriverChange,
    SessionInfo,
    ShimStatus,
    TelemetryBatch,
)
from pitbox_appliance.core.car import CarTracker
from pitbox_appliance.core.commands import CommandBook, SentCommand
from pitbox_appliance.core.decode import Decoded, WireDecoder
from pitbox_appliance.core.live import LiveCar, LivePublisher, Publication
from pitbox_appliance.storage.writer import SessionWriter
from pitbox_appliance.strategy.settings import StrategySettings

logger = logging.getLogger(__name__)


@dataclass
class IngestStats:
    """Counters of what ingest accepted and why it rejected the rest."""

    accepted: int = 0
    duplicates: int = 0
    frames: int = 0
    laps: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "frames": self.frames,
            "laps": self.laps,
            "rejected": dict(self.rejected),
        }


class Ingestor:
    """Everything between the broker and the database, for any number of cars.

    ``handle`` never raises on bad input: it counts the reason and returns False.
    Call ``flush`` to commit; the caller acknowledges messages only after that.
    ``settings`` are the strategy rules every car's engine uses (config ``strategy``).
    """

    def __init__(
        self,
        codec: Codec,
        writer: SessionWriter,
        settings: StrategySettings | None = None,
    ) -> None:
        self.writer = writer
        self.stats = IngestStats()
        self.publisher = LivePublisher()
        self.commands = CommandBook()
        self._settings = settings if settings is not None else StrategySettings()
        self._decoder = WireDecoder(
            codec,
            writer.source_seqs(),
            (ChannelDictionary.from_json(d) for d in writer.channel_sets()),
        )
        self._cars: dict[str, CarTracker] = {}  # by session key

    @property
    def live(self) -> dict[str, LiveCar]:
        """Each car's live figures (of its latest session), by car."""
        return {t.car: t.live for t in self._cars.values()}

    # ---- entry points -------------------------------------------------------------------
    def handle(self, payload: bytes, topic_source: str | None = None) -> bool:
        """Verify, decode and ingest one wire message; False if it was not stored."""
        try:
            decoded = self._decoder.decode(payload, topic_source)
        except DecodeError as exc:
            self.stats.rejected[exc.reason] += 1
            logger.warning("rejected message: %s", exc)
            return False
        if decoded is None:
            self.stats.duplicates += 1
            return False
        try:
            self._route(decoded)
        except (ValueError, KeyError, TypeError) as exc:
            self.stats.rejected["bad_content"] += 1
            logger.warning(
                "rejected %s from %s: %s", decoded.kind.name, decoded.source, exc
            )
            return False
        self._decoder.accepted(decoded.source, decoded.seq)
        self.writer.mark_source(decoded.source, decoded.seq)
        self.stats.accepted += 1
        return True

    def flush(self) -> None:
        """Commit everything handled so far."""
        self.writer.commit()

    def rollback(self) -> None:
        """Forget everything handled since the last commit, so it can be handled again."""
        self.writer.rollback()
        self._decoder.reset_sequences(self.writer.source_seqs())
        self._cars.clear()

    # ---- what the core's service asks ---------------------------------------------------
    def source_of(self, car: str) -> str | None:
        """The shim of ``car`` that streamed last (the active driver's), if any."""
        live = self.live.get(car)
        return live.source if live is not None else None

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
            command_id=result.command_id, ok=result.ok, detail=result.detail
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
        tracker = self._cars.get(session_key)
        if tracker is None:
            car = car_of_source(source)
            sid = self.writer.session_id(session_key, car)
            live = LiveCar(car, session_key, sid, source=source)
            tracker = CarTracker(
                live, self.writer, self.publisher, self.stats, self._settings
            )
            self._cars[session_key] = tracker
            self._resume(tracker)
        tracker.live.source = source
        return tracker

    def _resume(self, tracker: CarTracker) -> None:
        """Hand a car's stored state to its new tracker, after a restart of the core."""
        state = self.writer.resume_state(tracker.session_id)
        if state is None:
            return
        batches = (
            self._decoder.stored_batch(dict_id, data) for dict_id, data in state.chunks
        )
        tracker.resume(
            (batch.frames for batch in batches if batch is not None),
            state.laps,
            (state.stint_id, state.stint_number),
            (state.driver_id, state.driver_name),
        )


def car_of_source(source: str) -> str:
    """The car a source belongs to: source ids are ``<car>-<pc>`` (``car42-pc1``)."""
    return source.split("-", 1)[0] if "-" in source else source
