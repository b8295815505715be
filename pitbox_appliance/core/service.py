"""The core process's main object: broker → ingest → SQLite, live state and events back out."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from driver_pc.protocol import topics
from driver_pc.protocol.codec import Codec, Keyring
from driver_pc.protocol.events import Event, EventError, EventKind
from driver_pc.protocol.live import Predictions
from driver_pc.protocol.messages import Command
from driver_pc.protocol.mqtt import BrokerAddress, MqttConnection
from pitbox_appliance.config import ApplianceConfig, mqtt_password_from_env
from pitbox_appliance.core.commands import SentCommand
from pitbox_appliance.core.ingest import Ingestor
from pitbox_appliance.models.advisor import ModelAdvisor
from pitbox_appliance.security.devices import DeviceRegistry
from pitbox_appliance.storage.database import open_database
from pitbox_appliance.storage.writer import SessionWriter
from pitbox_appliance.strategy.settings import StrategySettings

logger = logging.getLogger(__name__)

# The envelope source of everything the appliance sends to shims.
APPLIANCE_SOURCE = "appliance"


class CoreService:
    """Ingests every shim's messages, commits in batches, acknowledges only what is committed.

    The paho thread only queues messages. One ingest thread (the database's only
    writer) decodes, segments, stores, commits, then sends the PUBACKs, and publishes
    each car's live state as soon as new telemetry of it is stored.
    """

    def __init__(self, config: ApplianceConfig, team_key: bytes | None) -> None:
        self.config = config
        self.engine = open_database(config.core.db_url)
        self.writer = SessionWriter(self.engine)
        # Per-device keys from the registry; the team key only as the legacy key.
        legacy = team_key if config.security.legacy_team_key else None
        self.keyring = Keyring(legacy_key=legacy)
        self.devices = DeviceRegistry.from_config(config.security, config.mqtt.username)
        self._keys_stamp: tuple[int, int] | None = None
        self.refresh_keys()
        self.codec = Codec(self.keyring)
        self.ingestor = Ingestor(
            self.codec, self.writer, StrategySettings(**dict(config.strategy))
        )
        mq = config.mqtt
        self.connection = MqttConnection(
            "pitbox-core",
            BrokerAddress(mq.host, mq.port, mq.core_username, mqtt_password_from_env()),
            clean_session=False,
            manual_ack=True,
            max_inflight=1000,
        )
        self._inbox: queue.Queue[tuple[str, bytes, int]] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._ingest_loop, name="ingest", daemon=True
        )
        self.live_published = 0
        self._command_seq = 0
        self.started = time.time()
        self._lock = threading.Lock()
        # Called (on the ingest thread) with every event message as published.
        self.event_listeners: list[Callable[[dict[str, Any]], None]] = []
        # Model inference runs on its own thread after each completed lap.
        self.advisor = ModelAdvisor(self._on_predictions)

    def start(self) -> None:
        self.connection.subscribe(topics.ALL_SHIM_DATA, 1, self._on_message)
        self.connection.start()
        self.advisor.start()
        self._thread.start()

    def refresh_keys(self, force: bool = False) -> None:
        """Reload device keys and revocations if the registry file changed."""
        stamp = self.devices.stamp()
        if force or stamp != self._keys_stamp:
            self._keys_stamp = stamp
            try:
                self.devices.load_into(self.keyring)
            except ValueError:
                logger.exception("device registry unreadable; keeping the old keys")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.advisor.stop()
        self.connection.stop()
        self.writer.close()
        self.engine.dispose()

    def send_command(self, car: str, kind: str, args: dict[str, Any]) -> Command:
        """Send a command to the shim of ``car`` that streamed last (the active driver).

        Raises LookupError when no shim of that car has been seen.
        """
        with self._lock:
            source = self.ingestor.source_of(car)
        if source is None:
            raise LookupError(f"no shim of car {car!r} has streamed yet")
        command = Command(uuid.uuid4().hex, kind, args)
        with self._lock:
            self._command_seq = max(self._command_seq + 1, time.time_ns() // 1000)
            # Sealed with the addressed device's own key.
            try:
                payload = self.codec.encode(
                    APPLIANCE_SOURCE, self._command_seq, command, key_of=source
                )
            except ValueError as exc:  # the device was revoked
                raise LookupError(f"car {car!r}: {exc}") from None
            self.ingestor.commands.sent(
                SentCommand(command.command_id, car, source, kind, args, time.time())
            )
        self.connection.publish(topics.shim_commands(source), payload)
        return command

    def record_event(
        self, car: str, kind: str, session_time: float, payload: dict[str, Any]
    ) -> int:
        """Store an event raised outside ingest (an upload) and publish it; its session id.

        Raises LookupError when the car has no session on this appliance, and
        EventError when the payload does not match the kind's schema.
        """
        event = Event.of(car, kind, payload)
        with self._lock:
            session_id = self.ingestor.record_event(
                car, event.kind, session_time, event.payload
            )
            self.ingestor.flush()
            return session_id

    def command_status(self, command_id: str) -> dict[str, Any] | None:
        """What became of a command: None if unknown, ``result`` None while pending."""
        with self._lock:
            return self.ingestor.commands.status(command_id)

    def health(self) -> dict[str, Any]:
        """Counters for the health endpoint and the dashboard."""
        with self._lock:
            return {
                "broker_connected": self.connection.connected.is_set(),
                "uptime_s": round(time.time() - self.started, 1),
                "queue": self._inbox.qsize(),
                "ingest": self.ingestor.stats.as_dict(),
                "live_published": self.live_published,
                "shims": self.ingestor.publisher.shim_statuses(),
            }

    def session_of(self, car: str) -> int | None:
        """The id of ``car``'s current session on this appliance, if it has one."""
        with self._lock:
            return self.ingestor.session_of(car)

    def merge_shim_status(self, source: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Update what the core reports of a shim (its status API); the merged status."""
        with self._lock:
            return self.ingestor.publisher.merge_shim_status(source, fields)

    def _on_predictions(self, car: str, predictions: dict[str, Any]) -> None:
        """Called on the advisor's thread: the car's live state shows them next."""
        try:
            typed = Predictions.model_validate(predictions)
        except ValidationError:
            logger.exception("models: predictions of %s do not fit the live state", car)
            return
        with self._lock:
            self.ingestor.set_predictions(car, typed)

    def _on_message(self, topic: str, payload: bytes, mid: int) -> None:
        self._inbox.put((topic, payload, mid))

    def _ingest_loop(self) -> None:
        core = self.config.core
        # Handled but not yet committed (nor acknowledged); kept whole so that a
        # failed commit (disk full, I/O error) can be retried from the start.
        pending: list[tuple[str, bytes, int]] = []
        last_commit = time.monotonic()
        last_live: dict[str, float] = {}
        heartbeat = 0.0
        while not self._stop.is_set():
            try:
                item = self._inbox.get(timeout=0.01)
            except queue.Empty:
                pass
            else:
                pending.append(item)
                try:
                    with self._lock:
                        self.ingestor.handle(item[1], topics.source_of(item[0]))
                except SQLAlchemyError as exc:
                    self._commit(pending, failure=exc)
                    pending = []
                    last_commit = time.monotonic()
            now = time.monotonic()
            if pending and (
                len(pending) >= core.commit_max_messages
                or now - last_commit >= core.commit_interval_s
            ):
                self._commit(pending)
                pending = []
                last_commit = now
            # A car's live state goes out as soon as new telemetry of it is in
            # (at most every live_interval_s), and every car's once a second.
            with self._lock:
                dirty = self.ingestor.publisher.dirty()
                cars = set(self.ingestor.live)
                has_events = self.ingestor.publisher.has_events()
            due = {
                car
                for car in dirty
                if now - last_live.get(car, 0.0) >= core.live_interval_s
            }
            if now - heartbeat >= 1.0:
                due |= cars
                heartbeat = now
                self.refresh_keys()  # a revocation takes effect within a second
            if due or has_events:
                self._publish_live(due)
                for car in due:
                    last_live[car] = now
        if pending:
            self._commit(pending)

    def _commit(
        self,
        pending: list[tuple[str, bytes, int]],
        failure: SQLAlchemyError | None = None,
    ) -> None:
        """Commit ``pending``, then PUBACK it; on a storage error retry until it works.

        Nothing is acknowledged that is not committed: after a failure (disk full,
        I/O error) the transaction is rolled back, the same messages are handled
        again after a back-off and committed together, and only then acknowledged.
        New messages wait meanwhile (the broker holds them; at most its in-flight
        window is queued here). Returns without acknowledging when the core stops.
        """
        delay = 1.0
        while True:
            try:
                if failure is not None:
                    raise failure
                with self._lock:
                    self.ingestor.flush()
            except SQLAlchemyError as exc:
                logger.error(
                    "storage failed, %d messages stay unacknowledged and are retried"
                    " in %.0f s: %s",
                    len(pending),
                    delay,
                    getattr(exc, "orig", None) or exc,
                )
                with self._lock:
                    self.ingestor.rollback()
                failure = None
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, 30.0)
                try:
                    with self._lock:
                        for topic, payload, _mid in pending:
                            self.ingestor.handle(payload, topics.source_of(topic))
                except SQLAlchemyError as again:
                    failure = again
                continue
            if delay > 1.0:
                logger.warning(
                    "storage recovered: %d held messages committed", len(pending)
                )
            for _topic, _payload, mid in pending:
                self.connection.ack(mid)
            return

    def _publish_live(self, due: set[str]) -> None:
        with self._lock:
            out = self.ingestor.take_live(due, time.time())
        for state in out.states:
            self.connection.publish(
                topics.live_state(state.car), state.model_dump_json()
            )
            self.live_published += 1
        for event in out.events:
            self._publish_event(event)

    def _publish_event(self, event: Event) -> None:
        if event.kind is EventKind.LAP_COMPLETED:
            self.advisor.submit(event.car, event.payload.model_dump())
        try:
            message = event.message()
        except EventError:
            logger.exception(
                "dropping a malformed %s event of %s", event.kind, event.car
            )
            return
        self.connection.publish(topics.events(event.car), json.dumps(message))
        for listener in list(self.event_listeners):
            try:
                listener(message)
            except Exception:
                logger.exception("event listener failed")
