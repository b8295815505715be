"""The shim's disk spool keeps everything in order across restarts."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from driver_pc.protocol.codec import Codec
from driver_pc.protocol.messages import ShimState, ShimStatus
from driver_pc.transport.spool import Spool


def test_spool_survives_restart_in_order(tmp_path: Path) -> None:
    path = tmp_path / "s.spool"
    spool = Spool(path)
    seqs = []
    for i in range(5):
        seq = spool.next_seq()
        seqs.append(seq)
        spool.append("t", f"m{i}".encode(), seq)
    first = spool.pending(0, 2)
    spool.delete([first[0][0]])
    spool.close()
    reopened = Spool(path)
    rows = reopened.pending(0, 100)
    assert [r[2] for r in rows] == [b"m1", b"m2", b"m3", b"m4"]
    assert reopened.next_seq() > max(seqs)
    reopened.close()


def test_ids_never_reused_after_draining(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.spool")
    spool.append("t", b"a", spool.next_seq())
    (row,) = spool.pending(0, 10)
    spool.delete([row[0]])
    spool.append("t", b"b", spool.next_seq())
    # A sender that remembers the last id it sent must still see the new row.
    assert [r[2] for r in spool.pending(row[0], 10)] == [b"b"]
    spool.close()


def test_the_cores_ack_deletes_everything_up_to_its_number(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.spool")
    seqs = []
    for i in range(5):
        seqs.append(spool.next_seq())
        spool.append("t", f"m{i}".encode(), seqs[-1])
    assert spool.delete_up_to(seqs[2]) == 3
    assert [e.payload for e in spool.pending(0, 10)] == [b"m3", b"m4"]
    assert spool.delete_up_to(seqs[1]) == 0  # an older ack: nothing left to delete
    spool.close()


def test_it_remembers_that_the_core_acknowledges(tmp_path: Path) -> None:
    path = tmp_path / "s.spool"
    spool = Spool(path)
    assert not spool.core_acks_seen
    spool.note_core_acks()
    spool.close()
    assert Spool(path).core_acks_seen


def test_an_older_shims_spool_is_keyed_by_sequence_number(tmp_path: Path) -> None:
    """A spool written before end-to-end acks (rows keyed by an id) keeps its rows."""
    path = tmp_path / "old.spool"
    codec = Codec(os.urandom(32))
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " topic TEXT NOT NULL, payload BLOB NOT NULL)"
        )
        old.execute("CREATE TABLE meta (k TEXT PRIMARY KEY, v INTEGER)")
        for seq in (7001, 7002, 7003):
            status = ShimStatus(ShimState.STREAMING, "simulator", seq, 0)
            old.execute(
                "INSERT INTO outbox (topic, payload) VALUES (?, ?)",
                ("t", codec.encode("car1-pc1", seq, status)),
            )
        old.execute("INSERT INTO meta (k, v) VALUES ('seq', 7003)")
    spool = Spool(path)
    entries = spool.pending(0, 10)
    assert [e.seq for e in entries] == [7001, 7002, 7003]
    assert [codec.open(e.payload)[1] for e in entries] == [7001, 7002, 7003]
    assert spool.next_seq() == 7004
    spool.delete_up_to(7002)
    assert [e.seq for e in spool.pending(0, 10)] == [7003]
    spool.close()
