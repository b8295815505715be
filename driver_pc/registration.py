"""Registers this PC's driver with the appliance (``/api/v1/driver/register``) when it changes.

The shim learns its driver from the sim's session info (a ``DriverChange``). Each new
driver is posted once, off the 60 Hz path, on its own thread; a failed post is tried
again with a growing pause, and a newer driver replaces one not yet sent. The pit wall
then shows who sits at each PC, even a teammate who is not driving yet.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from driver_pc.appliance_api import ApiError, ApplianceApi
from driver_pc.protocol.messages import DriverChange

logger = logging.getLogger(__name__)

ROUTE = "/api/v1/driver/register"
MAX_PAUSE_S = 60.0
#: Registrations answered without a session (not opened yet) are sent again, this
#: many times at most (after 1, 2, 4, 8 and 16 s).
UNSESSIONED_TRIES = 5


@dataclass(frozen=True, slots=True)
class _Pending:
    change: DriverChange
    attempts: int = 0


class DriverRegistrar:
    """Posts each new driver of this PC to the appliance; never blocks the caller."""

    def __init__(self, api: ApplianceApi, sim: str, version: str | None = None) -> None:
        self.api = api
        self.sim = sim
        self.version = version
        self.registered: list[dict[str, object]] = []  # the appliance's answers
        self.posts = 0  # attempts, answered or not
        self._pending: _Pending | None = None
        self._last: tuple[int, str] | None = None
        self._wake = threading.Condition()

    def note(self, change: DriverChange) -> None:
        """A driver announcement went out; registers it if the driver is new."""
        who = (change.user_id, change.user_name)
        with self._wake:
            if who == self._last:
                return
            self._last = who
            self._pending = _Pending(change)
            self._wake.notify()

    def run(self, stop: threading.Event) -> None:
        """Post pending registrations until ``stop`` is set (its own thread)."""
        while not stop.is_set():
            with self._wake:
                self._wake.wait_for(
                    lambda: self._pending is not None or stop.is_set(), timeout=1.0
                )
                pending, self._pending = self._pending, None
            if pending is None:
                continue
            self.posts += 1
            try:
                answer = self.api.post_json(ROUTE, self._body(pending))
                self.registered.append(answer)
                logger.info(
                    "registered %s with the appliance", pending.change.user_name
                )
                if (
                    answer.get("session_id") is None
                    and pending.attempts < UNSESSIONED_TRIES
                ):
                    # The appliance has not opened the car's session yet (the PC
                    # registers as it starts streaming): again shortly, so the
                    # session records who sits at the PC.
                    if stop.wait(min(MAX_PAUSE_S, 1.0 * 2**pending.attempts)):
                        return
                    self._again(pending)
            except ApiError as exc:
                pause = min(MAX_PAUSE_S, 2.0 * 2**pending.attempts)
                logger.warning(
                    "could not register driver %s (%s); again in %.0f s",
                    pending.change.user_name,
                    exc,
                    pause,
                )
                if exc.status is not None and 400 <= exc.status < 500:
                    continue  # refused as invalid: sending it again will not help
                if stop.wait(pause):
                    return
                self._again(pending)

    def _again(self, pending: _Pending) -> None:
        """Post ``pending`` once more, unless a newer driver came meanwhile."""
        with self._wake:
            if self._pending is None:
                self._pending = _Pending(pending.change, pending.attempts + 1)

    def _body(self, pending: _Pending) -> dict[str, object]:
        change = pending.change
        body: dict[str, object] = {
            "source": self.api.source,
            "driver_name": change.user_name,
            "sim": self.sim,
            "user_id": change.user_id,
            "session_time": max(0.0, change.session_time),
        }
        if self.version:
            body["version"] = self.version
        return body
