"""Cloud sync against a real S3-compatible HTTP endpoint (moto in server mode, signatures checked).

moto keeps its state in memory: after the server is killed and started again the
bucket, the IAM user and any multipart upload are gone. The resume tests are therefore
two: resuming an interrupted multipart upload within one server life (the uploader is
the one that stops), and recovering after the endpoint itself was killed mid-multipart
and came back empty (the saved upload is gone, so it starts again and still completes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud_sync import command as sync_command
from cloud_sync.manifest import find_sets
from cloud_sync.outbox import OUTBOX_DB_NAME, EntryState, Outbox
from cloud_sync.s3 import MIB, S3Target
from cloud_sync.targets import FileTarget
from cloud_sync.uploader import Backoff, Uploader, _round_lock
from driver_pc.protocol.manifest import MANIFEST_NAME, FileEntry, Partition
from driver_pc.protocol.messages import ChannelDictionary
from pitbox_appliance.compaction import Manifest, compact_session
from pitbox_appliance.storage.models import ChannelSet, Lap
from tests.cloud_sync.conftest import FAST, REGION, MotoServer, free_port
from tests.conftest import import_into, readonly_engine
from tests.pitbox_appliance.compaction.test_compaction import (
    assert_telemetry_matches,
    stored_frames,
)

# ---- the S3-compatible endpoint ----------------------------------------------------


# ---- compacted data ----------------------------------------------------------------
@pytest.fixture(scope="module")
def sim_db(tmp_path_factory: pytest.TempPathFactory, sim_ibt: Path) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'sim.sqlite3'}"
    import_into(url, sim_ibt)
    return url


@pytest.fixture
def outbox_with_session(sim_db: str, tmp_path: Path) -> tuple[Path, Manifest]:
    """An outbox directory holding the simulated session, compacted."""
    outbox = tmp_path / "outbox"
    engine = readonly_engine(sim_db)
    manifest = compact_session(engine, 1, outbox)
    engine.dispose()
    return outbox, manifest


def big_set(outbox: Path, size: int, name: str = "big") -> tuple[str, bytes]:
    """A hand-made compacted set whose telemetry file is large enough for multipart."""
    rel = f"team=t/season=2026/track=x/session={name}"
    root = outbox / rel
    (root / "telemetry").mkdir(parents=True)
    data = np.random.default_rng(5).bytes(size)
    (root / "telemetry" / "telemetry.parquet").write_bytes(data)
    entry = FileEntry(
        "telemetry/telemetry.parquet",
        "telemetry",
        0,
        size,
        hashlib.sha256(data).hexdigest(),
    )
    manifest = Manifest(
        Partition("t", 2026, "x", name), (entry,), {}, {}, {}, "2026-01-01T00:00:00Z"
    ).to_json()
    (root / MANIFEST_NAME).write_text(json.dumps(manifest))
    return rel, data


def uploader(outbox: Path, target: Any, **kwargs: Any) -> Uploader:
    queue = Outbox(outbox / OUTBOX_DB_NAME)
    return Uploader(
        queue, outbox, target, backoff=kwargs.pop("backoff", FAST), **kwargs
    )


def download_all(client: Any, bucket: str, dest: Path) -> list[str]:
    keys = sorted(
        obj["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for obj in page.get("Contents", [])
    )
    for key in keys:
        path = dest / key
        path.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, key, str(path))
    return keys


# ---- tests -------------------------------------------------------------------------
def test_round_trip_through_s3_with_pyarrow_and_duckdb(
    moto: MotoServer,
    outbox_with_session: tuple[Path, Manifest],
    sim_db: str,
    tmp_path: Path,
) -> None:
    outbox, manifest = outbox_with_session
    bucket = moto.bucket("roundtrip")
    up = uploader(outbox, moto.target(bucket))
    report = up.run_once()
    assert report.ok, report.errors
    assert report.done == [manifest.path]
    assert report.uploaded == len(manifest.files) + 1
    [entry] = up.outbox.entries()
    assert entry.state is EntryState.DONE
    # Listed and verified on the endpoint: every file, under the prefix and partitions.
    keys = download_all(moto.client(), bucket, tmp_path / "down")
    expected = [f"pitbox/{manifest.path}/{f.path}" for f in manifest.files]
    assert keys == sorted([*expected, f"pitbox/{manifest.path}/{MANIFEST_NAME}"])
    head = moto.client().head_object(
        Bucket=bucket, Key=expected[0], ChecksumMode="ENABLED"
    )
    assert head["Metadata"]["sha256"] == manifest.files[0].sha256

    root = tmp_path / "down" / "pitbox"
    engine = readonly_engine(sim_db)
    with Session(engine) as db:
        laps = db.scalars(select(Lap).order_by(Lap.end_time)).all()
        definition = db.scalars(select(ChannelSet.definition)).one()
    frames = stored_frames(engine, 1)
    engine.dispose()
    channels = ChannelDictionary.from_json(dict(definition)).channels

    # pyarrow: the partitioned layout as a dataset; laps and telemetry as stored.
    lap_files = ds.dataset(
        [str(p) for p in root.glob("*/*/*/*/laps/*.parquet")],
        format="parquet",
        partitioning="hive",
        partition_base_dir=str(root),
    )
    laps_table = lap_files.to_table()
    assert laps_table.num_rows == len(laps)
    assert set(laps_table["session"].to_pylist()) == {manifest.partition.session}
    assert laps_table["lap_time"].to_pylist() == [lap.lap_time for lap in laps]
    telemetry = pq.read_table(next(root.glob("*/*/*/*/telemetry/telemetry.parquet")))
    assert_telemetry_matches(telemetry, frames, channels)

    # DuckDB: the same files through SQL, partitions as columns.
    con = duckdb.connect()
    glob = f"{root.as_posix()}/*/*/*/*"
    rows = con.execute(
        f"""SELECT team, season, track, session, count(*), min(lap_time)
            FROM read_parquet('{glob}/laps/*.parquet', hive_partitioning = true)
            GROUP BY ALL"""
    ).fetchall()
    timed = [lap.lap_time for lap in laps if lap.lap_time is not None]
    assert rows == [
        (
            "pitbox-racing",
            manifest.partition.season,
            "martinsville-speedway-simulated",
            manifest.partition.session,
            len(laps),
            min(timed),
        )
    ]
    db_times = con.execute(
        f"SELECT lap_time FROM read_parquet('{glob}/laps/*.parquet') ORDER BY end_time"
    ).fetchall()
    assert [t for (t,) in db_times] == [lap.lap_time for lap in laps]
    tele = con.execute(
        f"""SELECT Gear, SessionTick, OnPitRoad, CAST(Speed AS DOUBLE), typeof(Speed)
            FROM read_parquet('{glob}/telemetry/*.parquet')"""
    ).fetchnumpy()
    assert np.array_equal(tele["Gear"], frames["Gear"])  # integers bit-exact
    assert np.array_equal(tele["SessionTick"], frames["SessionTick"])
    assert np.array_equal(tele["OnPitRoad"], frames["OnPitRoad"] != 0)
    speed = tele["CAST(Speed AS DOUBLE)"]
    assert np.max(np.abs(speed - frames["Speed"])) <= 0.5e-3 + 1e-9  # quantum 1e-3
    assert set(tele["typeof(Speed)"]) == {"DECIMAL(18,3)"}


def test_retry_neither_duplicates_nor_overwrites(
    moto: MotoServer, outbox_with_session: tuple[Path, Manifest]
) -> None:
    outbox, manifest = outbox_with_session
    bucket = moto.bucket("no-dupes")
    client = moto.client()
    assert uploader(outbox, moto.target(bucket)).run_once().ok

    def listing() -> dict[str, tuple[str, Any]]:
        objects = client.list_objects_v2(Bucket=bucket)["Contents"]
        return {o["Key"]: (o["ETag"], o["LastModified"]) for o in objects}

    before = listing()
    time.sleep(1.1)  # LastModified has one-second resolution
    # Everything again (as after a lost acknowledgement): nothing is written twice.
    up = uploader(outbox, moto.target(bucket))
    assert up.outbox.requeue(up.target.url, EntryState.DONE) == 1
    again = up.run_once(ignore_wait=True)
    assert again.ok
    assert again.uploaded == 0
    assert again.already_there == len(before)
    assert listing() == before
    # An object with the same key but other content is never overwritten.
    rel, _data = big_set(outbox, 1000, name="squatted")
    squatter = f"pitbox/{rel}/{MANIFEST_NAME}"
    client.put_object(Bucket=bucket, Key=squatter, Body=b"someone else's manifest")
    report = up.run_once()
    assert report.failed == [rel]
    assert "not overwritten" in report.errors[rel]
    body = client.get_object(Bucket=bucket, Key=squatter)["Body"].read()
    assert body == b"someone else's manifest"
    states = {e.path: e.state for e in up.outbox.entries()}
    assert states == {manifest.path: EntryState.DONE, rel: EntryState.FAILED}


def test_wrong_secret_key_is_refused(
    moto: MotoServer,
    outbox_with_session: tuple[Path, Manifest],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outbox, manifest = outbox_with_session
    bucket = moto.bucket("refused")
    bad = moto.target(bucket, secret_access_key="not-the-secret-key")
    up = uploader(outbox, bad)
    report = up.run_once()
    assert report.failed == [manifest.path]
    assert "SignatureDoesNotMatch" in report.errors[manifest.path]
    assert moto.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    [entry] = up.outbox.entries()
    assert entry.state is EntryState.FAILED
    up.outbox.close()
    # `pitbox sync --retry` with the right key (from the PITBOX_* environment).
    monkeypatch.setenv("PITBOX_S3_ACCESS_KEY_ID", moto.access_key)
    monkeypatch.setenv("PITBOX_S3_SECRET_ACCESS_KEY", moto.secret_key)
    monkeypatch.setenv("PITBOX_S3_REGION", REGION)
    target = f"s3://{bucket}/pitbox"
    assert (
        sync(outbox, "--target", target, "--endpoint-url", moto.url) == 1
    )  # failed stays
    assert sync(outbox, "--target", target, "--endpoint-url", moto.url, "--retry") == 0
    keys = moto.client().list_objects_v2(Bucket=bucket)["KeyCount"]
    assert keys == len(manifest.files) + 1


def test_multipart_resumes_from_the_parts_already_uploaded(
    moto: MotoServer, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    size = 3 * 5 * MIB + 123_456  # four 5 MiB parts, the last one short
    rel, data = big_set(outbox, size)
    bucket = moto.bucket("resume")
    sent: list[int] = []

    class Stopped(Exception):
        """The uploader process dies."""

    def die_after_two(_key: str, number: int) -> None:
        sent.append(number)
        if number == 2:
            raise Stopped

    options = {"multipart_threshold": 5 * MIB, "part_size": 5 * MIB}
    first = uploader(outbox, moto.target(bucket, on_part=die_after_two, **options))
    with pytest.raises(Stopped):
        first.run_once()
    first.outbox.close()
    key = f"pitbox/{rel}/telemetry/telemetry.parquet"
    [upload] = moto.client().list_multipart_uploads(Bucket=bucket)["Uploads"]
    parts = moto.client().list_parts(
        Bucket=bucket, Key=key, UploadId=upload["UploadId"]
    )
    assert [p["PartNumber"] for p in parts["Parts"]] == [1, 2]

    sent.clear()
    second = uploader(
        outbox, moto.target(bucket, on_part=lambda _k, n: sent.append(n), **options)
    )
    report = second.run_once()
    assert report.ok, report.errors
    assert sent == [3, 4]  # parts 1 and 2 were not sent again
    stored = moto.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    assert stored == data
    head = moto.client().head_object(Bucket=bucket, Key=key)
    assert head["ETag"].endswith('-4"')
    assert moto.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_endpoint_killed_mid_multipart_then_restarted(
    own_moto: MotoServer, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    rel, data = big_set(outbox, 2 * 5 * MIB + 1000)
    bucket = own_moto.bucket("killed")
    delays: list[float] = []
    options = {"multipart_threshold": 5 * MIB, "part_size": 5 * MIB}

    def kill_after_first(_key: str, number: int) -> None:
        if number == 1:
            own_moto.kill()

    started = time.time()  # a frozen clock: "not due yet" must not depend on load
    up = uploader(
        outbox,
        own_moto.target(bucket, on_part=kill_after_first, **options),
        sleep=delays.append,
        clock=lambda: started,
    )
    report = up.run_once()
    assert report.pending == [rel]
    assert report.done == []
    assert delays == [0.01, 0.02]  # exponential backoff, then left for a later round
    [entry] = up.outbox.entries()
    assert entry.state is EntryState.PENDING
    assert entry.next_attempt_at > started
    assert up.outbox.multipart(entry.id, f"pitbox/{rel}/telemetry/telemetry.parquet")
    # Not due yet: a round now does nothing.
    assert up.run_once().done == []
    up.outbox.close()

    # The endpoint comes back on the same address, empty (moto keeps state in memory):
    # new credentials and bucket; the saved multipart upload no longer exists.
    own_moto.start()
    own_moto.bucket("killed")
    sent: list[int] = []
    after = uploader(
        outbox, own_moto.target(bucket, on_part=lambda _k, n: sent.append(n), **options)
    )
    report = after.run_once(ignore_wait=True)
    assert report.done == [rel], report.errors
    assert sent == [1, 2, 3]
    key = f"pitbox/{rel}/telemetry/telemetry.parquet"
    assert own_moto.client().get_object(Bucket=bucket, Key=key)["Body"].read() == data


def test_backoff_while_the_endpoint_is_unreachable(
    outbox_with_session: tuple[Path, Manifest],
) -> None:
    outbox, manifest = outbox_with_session
    delays: list[float] = []
    target = S3Target(
        "nowhere",
        endpoint_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        access_key_id="x",
        secret_access_key="y",
        connect_timeout=0.5,
    )
    up = uploader(
        outbox,
        target,
        backoff=Backoff(base=0.5, factor=2.0, cap=60.0, jitter=0.0, attempts=5),
        sleep=delays.append,
    )
    report = up.run_once()
    assert report.pending == [manifest.path]
    assert delays == [0.5, 1.0, 2.0, 4.0]
    assert "Could not connect" in report.errors[manifest.path]
    [entry] = up.outbox.entries()
    assert entry.attempts == 1
    assert entry.state is EntryState.PENDING


def test_file_target_round_trip_and_create_only(
    outbox_with_session: tuple[Path, Manifest], sim_db: str, tmp_path: Path
) -> None:
    outbox, manifest = outbox_with_session
    backup = tmp_path / "backup"
    backup.mkdir()
    assert sync(outbox, "--target", backup.as_uri()) == 0
    target = FileTarget(backup)
    expected = sorted(f"{manifest.path}/{f.path}" for f in [*manifest.files])
    assert target.list_keys() == sorted([*expected, f"{manifest.path}/{MANIFEST_NAME}"])
    con = duckdb.connect()
    count, sessions = con.execute(
        f"""SELECT count(*), count(DISTINCT session) FROM read_parquet(
            '{backup.as_posix()}/*/*/*/*/laps/*.parquet', hive_partitioning = true)"""
    ).fetchone() or (0, 0)
    engine = readonly_engine(sim_db)
    with Session(engine) as db:
        assert count == len(db.scalars(select(Lap)).all())
    engine.dispose()
    assert sessions == 1
    # --force checks again; a file with other content at the same path is left alone.
    laps_file = backup / manifest.path / "laps" / "laps.parquet"
    laps_file.write_bytes(b"tampered")
    assert sync(outbox, "--target", backup.as_uri(), "--force") == 1
    assert laps_file.read_bytes() == b"tampered"
    with Outbox(outbox / OUTBOX_DB_NAME) as queue:
        [entry] = queue.entries()
    assert entry.state is EntryState.FAILED
    assert "not overwritten" in (entry.last_error or "")
    # A missing target directory (an unmounted drive) is waited for, not created.
    unmounted = (tmp_path / "unmounted").as_uri()
    assert sync(outbox, "--target", unmounted, "--attempts", "1") == 1
    assert not (tmp_path / "unmounted").exists()


def test_status_and_arguments(
    outbox_with_session: tuple[Path, Manifest],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outbox, manifest = outbox_with_session
    assert find_sets(outbox) == [manifest.path]
    assert sync(outbox, "--status") == 0
    assert "outbox queue is empty" in capsys.readouterr().out
    backup = tmp_path / "b"
    backup.mkdir()
    queue_db = f"sqlite:///{tmp_path / 'queue.sqlite3'}"
    assert sync(outbox, "--target", backup.as_uri(), "--db", queue_db) == 0
    capsys.readouterr()
    assert sync(outbox, "--status", "--json", "--db", queue_db) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["state"] == "done"
    assert row["session"] == manifest.path
    assert row["target"] == f"file://{backup}"
    # One round at a time per outbox: a second uploader meanwhile does nothing.
    queue = Outbox(tmp_path / "queue.sqlite3")
    busy = Uploader(queue, outbox, FileTarget(backup))
    with _round_lock(queue.path.with_suffix(".lock")) as taken:
        assert taken
        assert busy.run_once().busy
        assert sync(outbox, "--target", backup.as_uri(), "--db", queue_db) == 1
    assert busy.run_once().ok
    queue.close()
    assert sync(outbox) == 2  # no target
    assert sync(outbox, "--target", "ftp://host/x") == 2
    assert sync(outbox, "--target", backup.as_uri(), "--db", "postgresql://x/y") == 2


def sync(outbox: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    sync_command.add_command(parser.add_subparsers())
    args = parser.parse_args(["sync", "--outbox", str(outbox), *argv])
    return int(args.handler(args))


def test_run_forever_uploads_until_stopped(
    outbox_with_session: tuple[Path, Manifest], tmp_path: Path
) -> None:
    outbox, manifest = outbox_with_session
    backup = tmp_path / "forever"
    backup.mkdir()
    queue = Outbox(tmp_path / "q.sqlite3")
    up = Uploader(queue, outbox, FileTarget(backup), backoff=FAST)
    stop = threading.Event()
    worker = threading.Thread(target=up.run_forever, args=(stop, 0.05))
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while (backup / manifest.path / MANIFEST_NAME).exists() is False:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        stop.set()
        worker.join(timeout=5)
    assert not worker.is_alive()
    assert [e.state for e in queue.entries()] == [EntryState.DONE]
    queue.close()
