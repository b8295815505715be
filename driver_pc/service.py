"""The shim process's main object: adapter → pipeline → codec → spool → broker, plus commands."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from driver_pc.adapters.base import AdapterUnavailableError, SimAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol import topics
from driver_pc.protocol.codec import Codec, DecodeError
from driver_pc.protocol.messages import (
    Ack,
    Command,
    CommandResult,
    DriverChange,
    Message,
    ShimState,
    ShimStatus,
    TelemetryBatch,
)
from driver_pc.protocol.mqtt import BrokerAddress, MqttConnection
from driver_pc.shim_status import ShimReport, write_status
from driver_pc.transport.sender import AckMode, SpoolSender
from driver_pc.transport.spool import Spool
from driver_pc.video import SessionClock

logger = logging.getLogger(__name__)

# How long a finished stream waits for the core to acknowledge its spool.
DRAIN_AT_END_S = 90.0
STATUS_EVERY_S = 2.0
MESSAGE_FILE = "pitbox-message.txt"
MAX_MESSAGE_CHARS = 200


@dataclass(frozen=True, slots=True)
class ShimConfig:
    """Everything the shim needs to run (from the command line and environment)."""

    source: str
    broker: BrokerAddress
    team_key: bytes
    spool_path: str
    window: int = 64
    #: The pit wall's latest message as text for an overlay or OBS text source;
    #: None: ``pitbox-message.txt`` beside the spool file.
    message_file: str | None = None
    #: Whose acknowledgement empties the spool: the core's end-to-end Ack (AUTO
    #: once the appliance has ever sent one), or the broker's PUBACK (docs/decisions.md).
    ack_mode: AckMode = AckMode.AUTO
    #: Messages without the core's Ack after this long are sent again (doubling).
    ack_timeout_s: float = 5.0
    #: Where the status is written for people and service managers
    #: (``driver_pc/shim_status.py``); None: not written.
    status_file: str | None = None

    @property
    def message_path(self) -> Path:
        if self.message_file:
            return Path(self.message_file)
        return Path(self.spool_path).resolve().parent / MESSAGE_FILE


class ShimService:
    """Streams one adapter to the appliance and answers the pit wall's commands."""

    def __init__(self, config: ShimConfig, adapter: SimAdapter) -> None:
        topics.shim_data(config.source)  # validates the source id early
        self.config = config
        self.adapter = adapter
        self.codec = Codec(config.team_key)
        self.spool = Spool(config.spool_path)
        # The sender re-sends from the spool after a reconnect, in order; paho's own
        # re-send would put newer messages ahead of ones the broker lost.
        self.connection = MqttConnection(
            f"shim-{config.source}",
            config.broker,
            max_inflight=config.window,
            resend_on_reconnect=False,
        )
        self.sender = SpoolSender(
            self.spool,
            self.connection,
            window=config.window,
            ack_mode=config.ack_mode,
            ack_timeout_s=config.ack_timeout_s,
        )
        self.pipeline = ShimPipeline(adapter)
        self._earlier_ticks = 0  # ticks of the sim's sessions before this one
        self.messages_shown: list[str] = []
        self._data_topic = topics.shim_data(config.source)
        self._lock = threading.Lock()
        self._last_status = 0.0
        self.final_spool_depth: int | None = None
        self._last_command_seq = -1
        self.camera: tuple[str, int, int] | None = None
        # Session time now, for placing video segments (driver_pc/video.py).
        self.session_clock = SessionClock()
        # Told of each driver announcement sent (driver_pc/registration.py); must
        # return at once: it is called on the 60 Hz path.
        self.on_driver_change: Callable[[DriverChange], None] | None = None

    def run(self, stop: threading.Event) -> None:
        """Stream until the adapter ends or ``stop`` is set, then drain what is spooled."""
        self.connection.subscribe(
            topics.shim_commands(self.config.source).name, 1, self._on_command
        )
        self.connection.subscribe(
            topics.shim_ack(self.config.source).name, 1, self._on_ack
        )
        self.connection.start()
        self.sender.start()
        try:
            while True:
                for message in self.pipeline.messages():
                    self._send(message)
                    if stop.is_set():
                        break
                if stop.is_set() or not self._next_session(stop):
                    break
            self._status(ShimState.STOPPED, force=True)
            # Wait for the core to confirm what is still spooled: after core restarts
            # its acks come on the resend back-off (up to 60 s), so give it that long.
            deadline = time.monotonic() + DRAIN_AT_END_S
            while (
                not self.sender.drained()
                and time.monotonic() < deadline
                and not stop.is_set()
            ):
                time.sleep(0.05)
        finally:
            self.final_spool_depth = self.spool.depth()
            self.sender.stop()
            self.connection.stop()
            self.adapter.close()
            self.spool.close()

    def _next_session(self, stop: threading.Event) -> bool:
        """After a live adapter's session ended: wait for the sim's next one.

        The sim went away (reported as waiting for it every few seconds) or changed
        session; True once a new pipeline streams the next session (its channel
        dictionary, session info and driver are sent first).
        """
        if not self.adapter.follows_sim:
            return False
        ready = self.adapter.wait_for_session(0.0)
        while not ready and not stop.is_set():
            self._status(ShimState.WAITING_FOR_SIM, force=True)
            ready = self.adapter.wait_for_session(STATUS_EVERY_S)
        if not ready:
            return False
        old = self.pipeline
        self._earlier_ticks += old.stats.ticks
        self.pipeline = ShimPipeline(
            self.adapter,
            batch_ticks=old.batch_ticks,
            reannounce_batches=old.reannounce_batches,
        )
        return True

    def _send(self, message: Message) -> None:
        if isinstance(message, TelemetryBatch) and len(message.frames):
            names = message.frames.dtype.names or ()
            if "SessionTime" in names:
                self.session_clock.note(float(message.frames["SessionTime"][-1]))
        with self._lock:
            seq = self.spool.next_seq()
            payload = self.codec.encode(self.config.source, seq, message)
            self.spool.append(self._data_topic.name, payload, seq)
        self.sender.notify()
        if isinstance(message, DriverChange) and self.on_driver_change is not None:
            self.on_driver_change(message)
        self._status(ShimState.STREAMING)

    def _status(self, state: ShimState, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_status < STATUS_EVERY_S:
            return
        self._last_status = now
        status = ShimStatus(
            state,
            self.adapter.name,
            self._earlier_ticks + self.pipeline.stats.ticks,
            self.spool.depth(),
            self.adapter.session_key,
        )
        with self._lock:
            seq = self.spool.next_seq()
            self.spool.append(
                self._data_topic.name,
                self.codec.encode(self.config.source, seq, status),
                seq,
            )
        self.sender.notify()
        if self.config.status_file is not None:
            self._write_status_file(status)

    def _write_status_file(self, status: ShimStatus) -> None:
        report = ShimReport(
            source=self.config.source,
            state=status.state.value,
            adapter=status.adapter,
            session_key=status.session_key or "",
            ticks=status.ticks,
            spool_depth=status.spool_depth,
            appliance_connected=self.connection.connected.is_set(),
            last_ack_at=self.sender.last_ack_at,
        )
        try:
            write_status(Path(str(self.config.status_file)), report)
        except OSError as exc:  # a full or read-only disk must not stop streaming
            logger.warning("status file not written: %s", exc)

    def _on_ack(self, _topic: str, payload: bytes, _mid: int) -> None:
        """The core's end-to-end Ack: what it has stored may leave the spool."""
        try:
            envelope = self.codec.decode(payload)
        except DecodeError as exc:
            logger.warning("acknowledgement rejected: %s", exc)
            return
        ack = envelope.message
        if not isinstance(ack, Ack) or ack.source != self.config.source:
            # Sealed with our key, so from the appliance, but not an Ack of ours.
            logger.warning(
                "ignored a %s on the acknowledgement topic", envelope.kind.name
            )
            return
        self.sender.acknowledged(ack.up_to_seq)

    def _on_command(self, _topic: str, payload: bytes, _mid: int) -> None:
        try:
            envelope = self.codec.decode(payload)
        except DecodeError as exc:
            logger.warning("command rejected: %s", exc)
            return
        command = envelope.message
        if not isinstance(command, Command):
            return
        if envelope.seq <= self._last_command_seq:
            logger.warning("replayed command %s ignored", command.command_id)
            return
        self._last_command_seq = envelope.seq
        result = self._execute(command)
        with self._lock:
            seq = self.spool.next_seq()
            self.spool.append(
                self._data_topic.name,
                self.codec.encode(self.config.source, seq, result),
                seq,
            )
        self.sender.notify()

    def show_message(self, text: str) -> str:
        """Show a pit-wall message: a console line and the latest-message file.

        The file holds one line, ``HH:MM:SS  text``, replaced atomically, so an overlay
        or an OBS text source reading it never sees half a message. Returns what
        was done (the command's result detail).
        """
        text = " ".join(text.split())  # one line: no newlines or control spacing
        self.messages_shown.append(text)
        stamp = time.strftime("%H:%M:%S")
        logger.warning("PIT WALL: %s", text)
        sys.stdout.write(f"\n*** PIT WALL {stamp}: {text} ***\n")
        sys.stdout.flush()
        path = self.config.message_path
        try:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(f"{stamp}  {text}\n", encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            logger.warning("message file %s not written: %s", path, exc)
            return f"shown on the console; {path} not written: {exc.strerror}"
        return f"shown (console and {path.name})"

    def _execute(self, command: Command) -> CommandResult:
        try:
            if command.kind == "camera":
                detail = self.adapter.camera_switch(
                    str(command.args.get("car", "")),
                    int(command.args.get("group", 1)),
                    int(command.args.get("camera", 0)),
                )
                return CommandResult(command.command_id, True, detail)
            if command.kind == "message":
                text = str(command.args.get("text", ""))[:MAX_MESSAGE_CHARS]
                return CommandResult(command.command_id, True, self.show_message(text))
        except (AdapterUnavailableError, ValueError, TypeError) as exc:
            return CommandResult(command.command_id, False, str(exc))
        return CommandResult(
            command.command_id, False, f"unknown command {json.dumps(command.kind)}"
        )
