"""The command book: commands sent to shims and what each shim answered."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from driver_pc.protocol.messages import CommandResult


@dataclass(frozen=True, slots=True)
class SentCommand:
    """A command sent to one shim and, once it answered, the answer."""

    command_id: str
    car: str
    source: str  # the shim it went to
    kind: str
    args: dict[str, Any]
    sent_at: float  # unix time
    result: CommandResult | None = None
    by: str | None = None  # who sent it (the dashboard's logged-in user)

    def status(self) -> dict[str, Any]:
        """As the API reports it: ``result`` is None while the shim has not answered."""
        return {
            "car": self.car,
            "source": self.source,
            "kind": self.kind,
            "args": self.args,
            "sent_at": self.sent_at,
            "by": self.by,
            "result": None
            if self.result is None
            else {"ok": self.result.ok, "detail": self.result.detail},
        }


class CommandBook:
    """Every command sent since the core started, by id."""

    def __init__(self) -> None:
        self._sent: dict[str, SentCommand] = {}

    def sent(self, command: SentCommand) -> None:
        """Record a command as sent (before the shim can answer it)."""
        self._sent[command.command_id] = command

    def answered(self, source: str, result: CommandResult) -> SentCommand:
        """Record the shim's answer; ValueError for a command this shim was not sent."""
        command = self._sent.get(result.command_id)
        if command is None or command.source != source:
            raise ValueError(f"result for unknown command {result.command_id!r}")
        command = replace(command, result=result)
        self._sent[command.command_id] = command
        return command

    def status(self, command_id: str) -> dict[str, Any] | None:
        """What became of a command: None if unknown (see ``SentCommand.status``)."""
        command = self._sent.get(command_id)
        return None if command is None else command.status()
