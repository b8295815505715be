"""Bad messages arriving through the real broker are rejected, counted, and never stored."""

from __future__ import annotations

import os
import time

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol import topics
from driver_pc.protocol.codec import Codec
from driver_pc.protocol.messages import TelemetryBatch
from driver_pc.protocol.mqtt import BrokerAddress, MqttConnection
from pitbox_appliance.storage.database import make_engine
from pitbox_appliance.storage.models import TelemetryChunk
from tests.conftest import RunningAppliance, wait_for


def chunk_count(db_url: str) -> int:
    engine = make_engine(db_url, readonly=True)
    with Session(engine) as db:
        count = db.scalar(select(func.count()).select_from(TelemetryChunk)) or 0
    engine.dispose()
    return int(count)


def test_bad_messages_rejected_counted_and_not_stored(
    appliance: RunningAppliance,
) -> None:
    broker = appliance.broker
    source = broker.driver_user
    codec = Codec(appliance.team_key)
    messages = list(
        ShimPipeline(RaceSimulatorAdapter(laps=1, speed=0, seed=4)).messages()
    )
    dictionary = messages[0]
    batch = next(m for m in messages if isinstance(m, TelemetryBatch))
    publisher = MqttConnection(
        "hostile",
        BrokerAddress(
            broker.host, broker.port, broker.driver_user, broker.driver_password
        ),
    )
    publisher.start()
    assert publisher.connected.wait(10)
    topic = topics.shim_data(source)
    try:
        good_dict = codec.encode(source, 10, dictionary)
        good_batch = codec.encode(source, 11, batch)
        tampered = bytearray(codec.encode(source, 12, batch))
        tampered[-3] ^= 0xFF
        hostile = [
            bytes(tampered),  # bad_auth
            good_batch[:40],  # truncated
            b"PBX" + os.urandom(3_000_000),  # oversized
            Codec(os.urandom(32)).encode(source, 13, batch),  # unknown key → bad_auth
            b"not a pitbox message at all",  # bad_magic
        ]
        for payload in hostile:
            publisher.publish(topic, payload)
        core = appliance.core
        assert wait_for(
            lambda: sum(core.ingestor.stats.rejected.values()) >= len(hostile), 15
        )
        assert chunk_count(appliance.db_url) == 0
        # A good message, then the same bytes replayed: stored once.
        publisher.publish(topic, good_dict)
        publisher.publish(topic, good_batch)
        publisher.publish(topic, good_batch)
        assert wait_for(lambda: core.ingestor.stats.duplicates >= 1, 15)
        assert wait_for(lambda: chunk_count(appliance.db_url) == 1, 15)
        time.sleep(0.3)
        assert chunk_count(appliance.db_url) == 1
        rejected = core.ingestor.stats.rejected
        assert rejected["bad_auth"] == 2
        assert rejected["truncated"] == 1
        assert rejected["bad_magic"] == 1
        assert rejected["oversized"] == 1
        assert core.health()["broker_connected"]
    finally:
        publisher.stop()
