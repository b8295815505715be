"""Reading the dead letters (messages the core kept aside) for the API and ``pitbox deadletters``.

Only the core's writer writes them (``SessionWriter.add_dead_letter``); these reads go
through any engine, normally a read-only one.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from pitbox_appliance.storage.models import DeadLetter


@dataclass(frozen=True, slots=True)
class DeadLetterInfo:
    """What a list shows of a dead letter (not its payload)."""

    id: int
    received_at: float
    topic: str
    source: str | None
    seq: int | None
    kind: str
    reason: str
    attempts: int
    last_attempt_at: float
    size: int


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A dead letter in full: why it failed, where, and the message as received."""

    info: DeadLetterInfo
    detail: str
    traceback: str
    payload: bytes


def list_dead_letters(engine: Engine, limit: int = 10_000) -> list[DeadLetterInfo]:
    """The dead letters, newest first (at most ``limit``)."""
    with Session(engine) as db:
        rows = db.execute(
            select(
                DeadLetter.id,
                DeadLetter.received_at,
                DeadLetter.topic,
                DeadLetter.source,
                DeadLetter.seq,
                DeadLetter.kind,
                DeadLetter.reason,
                DeadLetter.attempts,
                DeadLetter.last_attempt_at,
                func.length(DeadLetter.payload),
            )
            .order_by(DeadLetter.id.desc())
            .limit(limit)
        ).all()
    return [DeadLetterInfo(*row) for row in rows]


def get_dead_letter(engine: Engine, letter_id: int) -> DeadLetterRecord | None:
    """One dead letter in full; None when there is no such id."""
    with Session(engine) as db:
        row = db.get(DeadLetter, letter_id)
        if row is None:
            return None
        return DeadLetterRecord(
            DeadLetterInfo(
                row.id,
                row.received_at,
                row.topic,
                row.source,
                row.seq,
                row.kind,
                row.reason,
                row.attempts,
                row.last_attempt_at,
                len(row.payload),
            ),
            row.detail,
            row.traceback,
            row.payload,
        )
