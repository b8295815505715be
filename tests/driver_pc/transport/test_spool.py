"""The shim's disk spool keeps everything in order across restarts."""

from __future__ import annotations

from pathlib import Path

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
