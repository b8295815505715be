"""The core process's main object: broker → ingest → SQLite, live state and events back out."""

from __future__ import annotations

import functools
import gc
import json
import logging
import os
import queue
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError

from driver_pc.protocol import topics
from driver_pc.protocol.codec import Codec, DecodeError, Keyring
from driver_pc.protocol.events import Event, EventError, EventKind
from driver_pc.protocol.live import Predictions
from driver_pc.protocol.messages import Ack, ChannelDictionary, Command
from driver_pc.protocol.mqtt import BrokerAddress, MqttConnection
from pitbox_appliance.config import ApplianceConfig, mqtt_password_from_env
from pitbox_appliance.core.commands import SentCommand
from pitbox_appliance.core.ingest import Handled, Ingestor, car_of_source
from pitbox_appliance.core.live import LiveCar, LiveStamp, LiveTimings
from pitbox_appliance.core.live_path import LIVE_QUEUE, Fresh, LivePeek
from pitbox_appliance.models.advisor import ModelAdvisor
from pitbox_appliance.security.devices import DeviceRegistry
from pitbox_appliance.storage.database import open_database
from pitbox_appliance.storage.writer import SessionWriter, environmental
from pitbox_appliance.strategy.settings import StrategySettings

logger = logging.getLogger(__name__)

# The envelope source of everything the appliance sends to shims.
APPLIANCE_SOURCE = "appliance"
# What a dead letter records as the topic of a message streamed through the API.
STREAM_TOPIC = "api/v1/telemetry/stream"
# Ingest is stalled when messages wait and none has been handled for this long; the
# health endpoint then answers 503 and the pit wall says so (DESIGN §6: within 2 s).
STALL_AFTER_S = 2.0
# The watchdog ends the process when the ingest loop has not turned for this long while
# messages wait. Holding messages on a full disk still turns it; a hung call does not.
WATCHDOG_S = 30.0
# A car's field (its others) goes out at most this often (wall clock: a replay or a
# backlog refreshes it faster in session time than anyone reads it) ...
FIELD_MIN_S = 0.25
# ... and again after this long even when unchanged.
FIELD_REPEAT_S = 2.0
# The live thread looks for ingest's news at least this often (seconds).
LIVE_POLL_S = 0.02
# With this environment variable set to a file path, the core keeps every live-path
# stamp (LiveStamp), runs a probe thread that notes how late a 2 ms sleep wakes (CPU
# and GIL waits), and writes both there as JSON at stop: for bench/load.py.
LIVE_TRACE_ENV = "PITBOX_LIVE_TRACE"
_PROBE_SLEEP_S = 0.002
_PROBE_LATE_S = 0.003  # wake-ups later than this are kept
# The core's exit status when it ends itself because ingest died or hung (EX_SOFTWARE):
# supervisor restarts it, and the broker re-delivers what was not acknowledged.
EXIT_INGEST_FAILED = 70

Received = tuple[str, bytes, int]  # topic, payload, MQTT message id (to PUBACK)
Peekable = tuple[str, bytes, float]  # topic, payload, when the paho thread got it
# A car's fresh frame not yet published: its session time, when paho got it, when
# LivePeek began and ended reading it (monotonic).
FreshStamps = tuple[float, float, float, float]
T = TypeVar("T")


class StorageUnavailable(RuntimeError):
    """The database cannot commit now (disk full, I/O error); nothing was kept."""


def exit_process(reason: str) -> None:
    """End the core at once with EXIT_INGEST_FAILED (the default ``on_fatal``).

    ``os._exit``: a hung ingest thread would block a clean shutdown, and nothing
    unacknowledged is lost (the broker keeps it for the restarted core).
    """
    logger.critical(
        "pitbox-core exits with status %d so that supervisor restarts it: %s",
        EXIT_INGEST_FAILED,
        reason,
    )
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # exiting anyway
            pass
    os._exit(EXIT_INGEST_FAILED)


class CoreService:
    """Ingests every shim's messages, commits in batches, acknowledges only what is committed.

    The paho thread only queues messages. One ingest thread (the database's only
    writer) decodes, segments, stores, commits, then sends the PUBACKs and publishes
    the events. The live thread publishes each car's live state: it reads every
    message again as it arrives (``LivePeek``), so the pit wall never waits behind
    ingest, a commit or the disk. (The uploader, the bulk work, runs at nice 10.)
    """

    def __init__(
        self,
        config: ApplianceConfig,
        team_key: bytes | None,
        *,
        on_fatal: Callable[[str], None] = exit_process,
        watchdog_s: float = WATCHDOG_S,
    ) -> None:
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
            self.codec,
            self.writer,
            StrategySettings(**dict(config.strategy)),
            detectors=config.detectors.enabled(),
        )
        mq = config.mqtt
        self.connection = MqttConnection(
            "pitbox-core",
            BrokerAddress(mq.host, mq.port, mq.core_username, mqtt_password_from_env()),
            clean_session=False,
            manual_ack=True,
            max_inflight=1000,
        )
        self._inbox: queue.Queue[Received] = queue.Queue()
        # The live thread's copy of every message, and what it keeps of each car.
        self._live_inbox: queue.Queue[Peekable] = queue.Queue(LIVE_QUEUE)
        self._fresh_cars: dict[str, FreshStamps] = {}
        self._last_live: dict[str, float] = {}  # any state of the car went out
        self._last_frame: dict[str, float] = {}  # one with a newer frame went out
        self._shown: dict[str, float] = {}  # SessionTime of the car's last state
        self._news: dict[str, tuple[Any, ...]] = {}  # and the rest it showed
        # The field each car's last LiveField carried, and when it went out.
        self._field_sent: dict[str, tuple[str, object, float]] = {}
        self._trace_path = os.environ.get(LIVE_TRACE_ENV) or None
        self.live_timings = LiveTimings(keep_all=self._trace_path is not None)
        self._probe_late: list[tuple[float, float]] = []
        self._probe_bins = [0] * 1001
        self._native_ids: dict[str, int | None] = {}  # thread name → id, when tracing
        self.live_peek = LivePeek(
            Codec(self.keyring),  # its own: a zstd context is not for two threads
            self.writer.source_seqs(),
            (ChannelDictionary.from_json(d) for d in self.writer.channel_sets()),
        )
        self._live_thread = threading.Thread(
            target=self._run_live, name="live", daemon=True
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run_ingest, name="ingest", daemon=True
        )
        # Handled but not yet committed (nor acknowledged), under _lock. Kept whole so
        # that a failed commit can be retried or searched for the poisonous message.
        self._pending: list[Received] = []
        # The storage failure holding _pending (disk full, I/O error), when one does.
        self._held: BaseException | None = None
        self._held_since = 0.0
        self._retry_at = 0.0
        self._retry_delay = 1.0
        # Liveness, read by health() and the watchdog without the lock.
        self._beat = time.monotonic()  # the ingest loop turned
        self._progress = time.monotonic()  # a message handled, or a commit made
        self._last_handled: float | None = None  # wall clock of the last message
        self._stage = "starting"
        self._ingest_started = False
        self._fatal_reason: str | None = None
        self.on_fatal = on_fatal
        self.watchdog_s = watchdog_s
        self._watchdog = threading.Thread(
            target=self._watch, name="ingest-watchdog", daemon=True
        )
        # Called (lock held) after every commit with the messages it acknowledged.
        self.commit_listeners: list[Callable[[list[Received]], None]] = []
        self.commit_listeners.append(self._ack_shims)  # end-to-end, to the shims
        self._health_cache: dict[str, Any] = {}
        self.live_published = 0
        self._command_seq = 0
        self.started = time.time()
        self._lock = threading.Lock()
        # Called (on the ingest thread) with every event message as published.
        self.event_listeners: list[Callable[[dict[str, Any]], None]] = []
        # Model inference runs on its own thread after each completed lap.
        self.advisor = ModelAdvisor(self._on_predictions)

    def start(self) -> None:
        # Everything made so far (modules, schemas, the engine) lives as long as the
        # process: out of the collector's sight, a full collection that held every
        # thread for ~70 ms (112,000 objects, measured in ingest) takes ~3 ms.
        gc.freeze()
        self.connection.subscribe(topics.ALL_SHIM_DATA, 1, self._on_message)
        self.connection.start()
        self.advisor.start()
        self._ingest_started = True
        self._thread.start()
        self._live_thread.start()
        self._watchdog.start()
        if self._trace_path is not None:
            threading.Thread(target=self._probe, name="probe", daemon=True).start()
            self._native_ids = {t.name: t.native_id for t in threading.enumerate()}

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
        self._live_thread.join(timeout=10)
        self.advisor.stop()
        self.connection.stop()
        self.writer.close()
        self.engine.dispose()
        if self._trace_path is not None:
            self._write_trace(self._trace_path)

    def send_command(
        self, car: str, kind: str, args: dict[str, Any], *, by: str | None = None
    ) -> Command:
        """Send a command to the PC that drives ``car`` now, and only to it.

        ``by`` names who sent it (the dashboard's logged-in user): kept with the
        command, its ``command_result`` event and a team message's stored event.

        Raises LookupError when no PC of that car is driving (none streamed yet, or a
        driver swap is under way): spectating teammates never get the car's commands.
        """
        with self._lock:
            source = self.ingestor.source_of(car)
        if source is None:
            raise LookupError(f"no PC of car {car!r} is driving right now")
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
                SentCommand(
                    command.command_id, car, source, kind, args, time.time(), by=by
                )
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
        return self._exclusively(
            lambda: self.ingestor.record_event(
                car, event.kind, session_time, event.payload
            )
        )

    def record_session_events(
        self, session_id: int, events: Sequence[tuple[Event, float]]
    ) -> None:
        """Store events raised after the fact (reports, goals) and publish them.

        They go into ``session_id`` as one commit of their own (lock held, pending
        ingest committed first), so the database keeps one writer.

        Blocking. Raises StorageUnavailable when the database cannot commit now.
        """
        ingestor = self.ingestor

        def work() -> None:
            for event, at in events:
                ingestor.writer.add_event(
                    session_id,
                    event.kind.value,
                    at,
                    event.payload.model_dump(mode="json"),
                )
                ingestor.publisher.emit(event)

        self._exclusively(work)

    def ingest_frame(self, frame: bytes) -> Handled:
        """Ingest and commit one wire message from the API's telemetry stream.

        Blocking (run it in an executor). Raises StorageUnavailable when the
        database cannot commit now: the client should send the frame again later.
        """
        try:
            return self._exclusively(
                lambda: self.ingestor.ingest(frame, None, STREAM_TOPIC)
            )
        except StorageUnavailable:
            raise
        except Exception as exc:  # the database refused it: its own fault
            return self._exclusively(
                functools.partial(
                    self.ingestor.put_aside, frame, None, STREAM_TOPIC, exc
                )
            )

    def retry_dead_letter(self, letter_id: int) -> Handled:
        """Ingest a dead letter again through the same path; stored: it is deleted.

        Blocking. Raises LookupError (no such letter) or StorageUnavailable.
        """
        try:
            return self._exclusively(lambda: self.ingestor.retry_dead_letter(letter_id))
        except (StorageUnavailable, LookupError):
            raise
        except Exception as exc:  # the database refused it again
            return self._exclusively(
                functools.partial(self.ingestor.retry_failed, letter_id, exc)
            )

    def command_status(self, command_id: str) -> dict[str, Any] | None:
        """What became of a command: None if unknown, ``result`` None while pending."""
        with self._lock:
            return self.ingestor.commands.status(command_id)

    def health(self) -> dict[str, Any]:
        """Counters and ingest liveness for the health endpoint and the dashboard.

        ``status`` is ``stalled`` (with the ``reason``) when ingest is not running,
        storage has been failing, or messages wait and none was handled for
        STALL_AFTER_S. Never waits long for the ingest lock: a hung ingest must not
        hang its own health check (the counters are then the last ones read).
        """
        now = time.time()
        reason = self.stall_reason()
        if self._lock.acquire(timeout=0.5):
            try:
                self._health_cache = {
                    "ingest": self.ingestor.stats.as_dict(),
                    "cars": {
                        car: {"lag_s": None if lag is None else round(lag, 3)}
                        for car, lag in self.ingestor.car_lags(now).items()
                    },
                    "shims": self.ingestor.publisher.shim_statuses(),
                }
            finally:
                self._lock.release()
        last = self._last_handled
        return {
            "status": "stalled" if reason else "ok",
            "reason": reason,
            "broker_connected": self.connection.connected.is_set(),
            "uptime_s": round(now - self.started, 1),
            "queue": self._inbox.qsize(),
            "ingest_alive": self._thread.is_alive(),
            "last_message_age_s": None if last is None else round(now - last, 3),
            "ingest": {},
            "cars": {},
            "shims": {},
            **self._health_cache,
            "live_published": self.live_published,
            "live": self.live_timings.summary()
            | {
                "peeked": self.live_peek.peeked,
                "skipped": dict(self.live_peek.skipped),
            },
        }

    def stall_reason(self) -> str | None:
        """Why ingest is stalled, or None while it keeps up."""
        now = time.monotonic()
        if self._fatal_reason is not None:
            return self._fatal_reason
        if self._ingest_started and not self._thread.is_alive():
            if not self._stop.is_set():
                return "the ingest thread is not running"
        waiting = self._inbox.qsize()
        held = self._held
        if held is not None and now - self._held_since > STALL_AFTER_S:
            return (
                f"storage failing for {now - self._held_since:.0f} s "
                f"({_short(held)}): {len(self._pending)} messages held "
                f"unacknowledged, {waiting} more waiting"
            )
        if waiting and now - self._progress > STALL_AFTER_S:
            return (
                f"no message handled for {now - self._progress:.1f} s while "
                f"{waiting} wait (ingest is {self._stage})"
            )
        return None

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
        try:
            self._live_inbox.put_nowait((topic, payload, time.monotonic()))
        except queue.Full:
            pass  # the live thread is behind: it skips to newer frames

    # ---- the ingest thread ----------------------------------------------------------------
    def _run_ingest(self) -> None:
        """The ingest thread: if it ends by an exception, so does the process."""
        try:
            self._ingest_loop()
        except BaseException as exc:
            logger.critical(
                "the ingest thread died on %s; every message it had not committed stays"
                " unacknowledged and comes back after the restart",
                type(exc).__name__,
                exc_info=True,
            )
            self._fatal(f"the ingest thread died: {type(exc).__name__}: {exc}")

    def _ingest_loop(self) -> None:
        core = self.config.core
        last_commit = time.monotonic()
        heartbeat = 0.0
        while not self._stop.is_set():
            now = self._beat = time.monotonic()
            if self._held is not None:
                # Storage failed: nothing new is taken until the held batch commits.
                self._stage = "holding messages (storage failing)"
                if now >= self._retry_at:
                    self._retry_held()
                    last_commit = time.monotonic()
                else:
                    self._stop.wait(min(0.25, self._retry_at - now))
                continue
            self._stage = "waiting"
            try:
                item = self._inbox.get(timeout=0.01)
            except queue.Empty:
                # Nothing waits: ingest is keeping up (an idle core's first burst
                # must not read as "no message handled for N s").
                self._progress = time.monotonic()
            else:
                self._stage = f"handling a message on {item[0]}"
                with self._lock:
                    self._pending.append(item)
                    self._handle(item)
            now = time.monotonic()
            if (
                self._pending
                and self._held is None
                and (
                    len(self._pending) >= core.commit_max_messages
                    or now - last_commit >= core.commit_interval_s
                )
            ):
                self._stage = f"committing {len(self._pending)} messages"
                with self._lock:
                    self._commit_locked()
                last_commit = now
            if now - heartbeat >= 1.0:
                heartbeat = now
                self.refresh_keys()  # a revocation takes effect within a second
            with self._lock:
                events = self.ingestor.publisher.take_events()
            for event in events:
                self._publish_event(event)
        if self._pending and self._held is None:
            with self._lock:
                self._commit_locked()

    def _handle(self, item: Received) -> None:
        """Ingest one received message (lock held); a storage failure holds the batch."""
        topic, payload, _mid = item
        try:
            self.ingestor.ingest(payload, topics.source_of(topic), topic)
        except Exception as exc:
            if not environmental(exc):
                raise  # a bug outside the message's fault domain: the thread ends
            self._hold(exc)
        self._progress = time.monotonic()
        self._last_handled = time.time()

    def _commit_locked(self) -> bool:
        """Commit ``_pending``, then PUBACK it; False when storage failed (held).

        Nothing is acknowledged that is not committed. When the commit fails because
        of the machine (disk full, I/O error) the transaction is rolled back and the
        messages are held: handled again after a back-off and committed together
        (``_retry_held``). When it fails because of one message's content, the
        messages are committed one at a time to find it (``_isolate``).
        """
        try:
            self.ingestor.flush()
        except Exception as exc:
            self.ingestor.rollback()
            if environmental(exc):
                self._hold(exc)
                return False
            logger.warning(
                "a commit of %d messages failed on a message's content (%s); "
                "committing them one at a time to find it",
                len(self._pending),
                _short(exc),
            )
            return self._isolate()
        self._committed(self._pending)
        self._pending = []
        return True

    def _isolate(self) -> bool:
        """After a content failure: commit each pending message alone (lock held).

        The one the database refuses becomes a dead letter (committed in its place);
        the others are stored. Every car starts again from what is stored (the
        rollback dropped their trackers): a rare path, not the per-message one.
        """
        items, self._pending = self._pending, []
        for index, (topic, payload, mid) in enumerate(items):
            source = topics.source_of(topic)
            try:
                try:
                    self.ingestor.ingest(payload, source, topic)
                    self.ingestor.flush()
                except Exception as exc:
                    self.ingestor.rollback()
                    if environmental(exc):
                        raise
                    self.ingestor.put_aside(payload, source, topic, exc)
                    self.ingestor.flush()
            except Exception as exc:
                self.ingestor.rollback()
                if not environmental(exc):
                    raise
                self._pending = items[index:]
                self._hold(exc)
                return False
            self._committed([(topic, payload, mid)])
        return True

    def _hold(self, failure: BaseException) -> None:
        """Storage failed: roll back and keep ``_pending`` for a retry after a back-off."""
        self.ingestor.rollback()
        now = time.monotonic()
        if self._held is None:
            self._held_since = now
            self._retry_delay = 1.0
        else:
            self._retry_delay = min(self._retry_delay * 2, 30.0)
        self._held = failure
        self._retry_at = now + self._retry_delay
        logger.error(
            "storage failed, %d messages stay unacknowledged and are retried in %.0f s:"
            " %s",
            len(self._pending),
            self._retry_delay,
            _short(failure),
        )

    def _retry_held(self) -> None:
        """Handle the held messages again and commit them together; ack only then.

        New messages wait meanwhile (the broker holds them; at most its in-flight
        window is queued here).
        """
        with self._lock:
            count = len(self._pending)
            try:
                for topic, payload, _mid in self._pending:
                    self.ingestor.ingest(payload, topics.source_of(topic), topic)
            except Exception as exc:
                if not environmental(exc):
                    raise
                self._hold(exc)
                return
            if self._commit_locked():
                self._held = None
                logger.warning("storage recovered: %d held messages committed", count)

    def _committed(self, items: list[Received]) -> None:
        """``items`` are committed: PUBACK them and tell the commit listeners."""
        for _topic, _payload, mid in items:
            self.connection.ack(mid)
        self._progress = time.monotonic()
        for listener in list(self.commit_listeners):
            try:
                listener(items)
            except Exception:
                logger.exception("commit listener failed")

    def _ack_shims(self, items: list[Received]) -> None:
        """A commit listener: one cumulative Ack to each shim with messages in ``items``.

        It tells the shim how far it may empty its spool: the source's last stored
        sequence number (dead letters included), or the number of its last
        authentic message here if that is higher (one refused for good, say a
        ``foreign_session``: sent again it would only be refused again). The shim
        sends in order and the core drops any number it has passed, so everything
        below is handled too. Sealed with the device's own key, as commands are.
        """
        last: dict[str, bytes] = {}
        for topic, payload, _mid in items:
            source = topics.source_of(topic)
            if source is not None:
                last[source] = payload
        if not last:
            return
        stored = self.writer.source_seqs()
        for source, payload in last.items():
            up_to = stored.get(source, -1)
            try:
                sender, seq, _kind, _body = self.codec.open_compressed(payload)
            except DecodeError:
                pass  # forged, or a key we no longer hold: vouches for nothing
            else:
                if sender == source:
                    up_to = max(up_to, seq)
            if up_to < 0:
                continue
            try:
                sealed = self.codec.encode(
                    APPLIANCE_SOURCE,
                    time.time_ns() // 1000,
                    Ack(source, up_to),
                    key_of=source,
                )
            except ValueError:  # revoked, or no key: it could not read an Ack
                continue
            self.connection.publish(topics.shim_ack(source), sealed)

    def _exclusively(self, work: Callable[[], T]) -> T:
        """Run ``work`` (lock held) as a transaction of its own and commit it.

        The ingest loop's pending messages are committed first, so that a failure
        is ``work``'s alone. Raises StorageUnavailable when storage is failing (a
        held batch, or this commit); whatever ``work`` or its commit raised else,
        after rolling ``work`` back.
        """
        with self._lock:
            if self._held is not None or (self._pending and not self._commit_locked()):
                raise StorageUnavailable(f"storage failing: {_short(self._held)}")
            try:
                result = work()
                self.ingestor.flush()
            except Exception as exc:
                self.ingestor.rollback()
                if environmental(exc):
                    raise StorageUnavailable(f"storage failing: {_short(exc)}") from exc
                raise
            self._progress = time.monotonic()
            self._last_handled = time.time()
            return result

    # ---- the watchdog ---------------------------------------------------------------------
    def _watch(self) -> None:
        """End the process when the ingest thread died or its loop stopped turning."""
        while not self._stop.wait(0.5):
            if not self._thread.is_alive():
                self._fatal("the ingest thread is not running")
                return
            if not self._live_thread.is_alive():
                self._fatal("the live thread is not running")
                return
            stuck = time.monotonic() - self._beat
            waiting = self._inbox.qsize() + len(self._pending)
            if waiting and stuck > self.watchdog_s:
                logger.critical(
                    "ingest stuck for %.0f s while %d messages wait; it was %s:\n%s",
                    stuck,
                    waiting,
                    self._stage,
                    _stack_of(self._thread),
                )
                self._fatal(
                    f"ingest stuck for {stuck:.0f} s while {waiting} messages wait"
                    f" (it was {self._stage})"
                )
                return

    def _fatal(self, reason: str) -> None:
        if self._fatal_reason is not None or self._stop.is_set():
            return
        self._fatal_reason = reason
        self.on_fatal(reason)

    # ---- the live thread ----------------------------------------------------------------
    def _run_live(self) -> None:
        """The live thread: if it ends by an exception, so does the process."""
        try:
            self._live_loop()
        except BaseException as exc:
            logger.critical("the live thread died", exc_info=True)
            self._fatal(f"the live thread died: {type(exc).__name__}: {exc}")

    @property
    def _live_interval(self) -> float:
        return self.config.core.live_interval_s

    def _live_loop(self) -> None:
        """Peek at each message, lay fresh values over the car, publish states due.

        A car goes out when a newer frame of it is in, from the live thread's peek
        or from ingest, whichever is first (at once, unless a newer frame of it went
        out less than half ``live_interval_s`` ago: then when that time is up); when
        ingest has other news of it (laps, strategy; every ``live_interval_s`` at
        most, seen within ``LIVE_POLL_S``); and every car once a second. Ingest
        marks a car on every batch: before, that sent the same frame a second time
        and held the next fresh one back by up to half ``live_interval_s``; a mark
        with neither a newer frame nor news (``LiveCar.news_key``) sends nothing.
        """
        interval = self._live_interval
        heartbeat = 0.0
        wait = LIVE_POLL_S
        while not self._stop.is_set():
            try:
                topic, payload, received = self._live_inbox.get(timeout=wait)
            except queue.Empty:
                pass
            else:
                taken = time.monotonic()
                fresh = self.live_peek.peek(
                    payload, topics.source_of(topic), self._may_drive
                )
                if fresh is not None and self._lay_fresh(fresh):
                    self._fresh_cars[car_of_source(fresh.source)] = (
                        fresh.session_time,
                        received,
                        taken,
                        time.monotonic(),
                    )
            now = time.monotonic()
            cars = self._live_cars()
            due: set[str] = set()
            wait = LIVE_POLL_S
            for car in self.ingestor.publisher.dirty() | set(self._fresh_cars):
                live = cars.get(car)
                if live is None:
                    continue
                if _newest_time(live) > self._shown.get(car, _NEVER):
                    next_at = self._last_frame.get(car, 0.0) + interval / 2
                elif live.news_key() != self._news.get(car):  # news, no newer frame
                    next_at = self._last_live.get(car, 0.0) + interval
                else:  # ingest caught up with a frame already shown: nothing new
                    continue
                if now >= next_at:
                    due.add(car)
                else:
                    wait = min(wait, next_at - now)
            if now - heartbeat >= 1.0:
                due |= set(cars)
                heartbeat = now
            if due:
                self._publish_live(due, cars, now)

    def _publish_live(
        self, due: set[str], cars: dict[str, LiveCar], now: float
    ) -> None:
        """Publish the ``due`` cars' states; stamp the fresh frames among them."""
        for car in due:
            live = cars.get(car)
            if live is not None:
                newest = _newest_time(live)
                if newest > self._shown.get(car, _NEVER):
                    self._last_frame[car] = now
                self._shown[car] = newest
                self._news[car] = live.news_key()
            self._last_live[car] = now
        published_at = time.time()
        for car in due:
            live = cars.get(car)
            if live is not None:
                self._publish_field(live, now, published_at)
        states = self.ingestor.publisher.states(
            due, cars, published_at, with_others=False
        )
        for state in states:
            self.connection.publish(
                topics.live_state(state.car), state.model_dump_json()
            )
            self.live_published += 1
            stamps = self._fresh_cars.pop(state.car, None)
            if stamps is not None:
                self.live_timings.add(
                    LiveStamp(state.car, *stamps, published=time.monotonic())
                )
        for car in due:
            self._fresh_cars.pop(car, None)

    def _publish_field(self, live: LiveCar, now: float, published_at: float) -> None:
        """The car's others (``LiveField``) when they changed, or every few seconds.

        At most every ``FIELD_MIN_S`` for one session: a newer field waits for the
        car's next state after that (every second at least). The repeat puts them
        back on the broker after a restart of it (retained messages may not survive
        one) while the field itself stands still.
        """
        sent = self._field_sent.get(live.car)
        if sent is not None and sent[0] == live.session_key:
            age = now - sent[2]
            if age < FIELD_MIN_S or (sent[1] is live.others and age < FIELD_REPEAT_S):
                return
        self.connection.publish(
            topics.live_field(live.car), live.field(published_at).model_dump_json()
        )
        self._field_sent[live.car] = (live.session_key, live.others, now)

    def _live_cars(self) -> dict[str, LiveCar]:
        """Each car's live figures, read while ingest may add a session (no lock)."""
        for _ in range(10):
            try:
                return self.ingestor.live
            except RuntimeError:  # a session was added while reading
                continue
        with self._lock:
            return self.ingestor.live

    def _may_drive(self, source: str) -> bool:
        """Whether ``source``'s values may show: it drives its car, or none is known."""
        live = self._live_cars().get(car_of_source(source))
        return live is None or not live.source or live.source == source

    def _lay_fresh(self, fresh: Fresh) -> bool:
        """Lay ``fresh`` over its car if it is the driving PC's and newer; True if so."""
        car = car_of_source(fresh.source)
        live = self._live_cars().get(car)
        if live is None or live.session_key != fresh.session_key:
            return False  # a session ingest has not opened yet
        if live.source != fresh.source:
            return False  # a PC standing by (or ingest has not elected it yet)
        newest = max(
            live.values.get("SessionTime", _NEVER),
            live.fresh.get("SessionTime", _NEVER),
        )
        if fresh.session_time <= newest:
            return False
        live.fresh = fresh.values
        return True

    # ---- the live-path trace (PITBOX_LIVE_TRACE) ----------------------------------------
    def _probe(self) -> None:
        """Sleep 2 ms over and over; note each wake-up later than 3 ms (CPU or GIL).

        Every wake-up's lateness, in 1 ms bins, goes to ``_probe_bins`` too.
        """
        while not self._stop.is_set():
            asked = time.monotonic()
            time.sleep(_PROBE_SLEEP_S)
            late = time.monotonic() - asked - _PROBE_SLEEP_S
            self._probe_bins[min(int(late * 1000), 1000)] += 1
            if late > _PROBE_LATE_S:
                self._probe_late.append((asked, late))

    def _write_trace(self, path: str) -> None:
        """Every live stamp, the probe's late wake-ups and the threads' native ids."""
        trace = {
            "pid": os.getpid(),
            "threads": self._native_ids,
            "columns": list(LiveStamp.__slots__),
            "stamps": [s.as_row() for s in self.live_timings.all or []],
            "probe_late": self._probe_late,
            "probe_late_ms_bins": self._probe_bins,
        }
        try:
            with open(path, "w", encoding="utf-8") as out:
                json.dump(trace, out)
        except OSError:
            logger.exception("could not write the live trace to %s", path)

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


_NEVER = float("-inf")


def _newest_time(live: LiveCar) -> float:
    """The SessionTime of the car's newest frame, from ingest or the live thread."""
    return max(
        live.values.get("SessionTime", _NEVER), live.fresh.get("SessionTime", _NEVER)
    )


def _short(exc: BaseException | None) -> str:
    """The database's own message for a storage error (no SQL, no parameters)."""
    if exc is None:
        return "unknown"
    return str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]


def _stack_of(thread: threading.Thread) -> str:
    frame = sys._current_frames().get(thread.ident or -1)
    return "".join(traceback.format_stack(frame)) if frame is not None else "(gone)"
