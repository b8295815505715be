"""Shim pipeline: adapter ticks → channel dictionary, session info, driver changes, 100 ms batches."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from driver_pc.adapters.base import Frames, SimAdapter
from driver_pc.protocol.messages import (
    ChannelDictionary,
    DriverChange,
    Message,
    SessionInfo,
    TelemetryBatch,
)
from driver_pc.protocol.session_info import (
    SessionInfoError,
    current_driver,
    parse_session_info,
)

logger = logging.getLogger(__name__)


@dataclass
class PipelineStats:
    """What the pipeline has done, and how long its per-tick work took."""

    ticks: int = 0
    batches: int = 0
    driver_changes: int = 0
    tick_work_s: list[float] = field(default_factory=list)


class ShimPipeline:
    """Turns one adapter's output into wire messages, in the order they must be sent."""

    def __init__(
        self,
        adapter: SimAdapter,
        batch_ticks: int = 3,
        measure: bool = False,
        reannounce_batches: int = 600,
    ) -> None:
        self.adapter = adapter
        self.batch_ticks = batch_ticks
        self.stats = PipelineStats()
        self._measure = measure
        self._info_update = -1
        self._driver: tuple[int, str] | None = None
        self.reannounce_batches = reannounce_batches
        self._next_announce = 0

    def messages(self) -> Iterator[Message]:
        adapter = self.adapter
        dictionary = ChannelDictionary(
            adapter.session_key, adapter.tick_rate, adapter.channels
        )
        yield dictionary
        dtype = dictionary.dtype
        buf = np.empty(self.batch_ticks, dtype=dtype)
        n = 0
        bt = self.batch_ticks
        for rows in adapter.ticks():
            started = time.perf_counter() if self._measure else 0.0
            if self.stats.batches >= self._next_announce:
                # Re-announce what an appliance that (re)started mid-session needs:
                # the channels, the session info and who is driving.
                self._next_announce = self.stats.batches + self.reannounce_batches
                if self.stats.batches:
                    yield dictionary
                    self._info_update = -1
                    self._driver = None
            yield from self._session_updates(rows)
            out: list[Message] = []
            i = 0
            while i < len(rows):
                if n == 0 and len(rows) - i >= bt:
                    out.append(self._batch(dictionary, rows[i : i + bt].copy()))
                    i += bt
                    continue
                take = min(bt - n, len(rows) - i)
                buf[n : n + take] = rows[i : i + take]
                n += take
                i += take
                if n == bt:
                    out.append(self._batch(dictionary, buf.copy()))
                    n = 0
            self.stats.ticks += len(rows)
            if self._measure:
                self.stats.tick_work_s.append(
                    (time.perf_counter() - started) / len(rows)
                )
            yield from out
        if n:
            yield self._batch(dictionary, buf[:n].copy())

    def _batch(self, dictionary: ChannelDictionary, frames: Frames) -> TelemetryBatch:
        self.stats.batches += 1
        return TelemetryBatch(
            dictionary.session_key, dictionary.dict_id, dictionary.channels, frames
        )

    def _session_updates(self, rows: Frames) -> Iterator[Message]:
        update = self.adapter.session_info_update
        if update == self._info_update:
            return
        self._info_update = update
        text = self.adapter.session_info_text()
        key = self.adapter.session_key
        yield SessionInfo(key, update, text)
        try:
            driver = current_driver(parse_session_info(text))
        except SessionInfoError as exc:
            logger.warning("session info unreadable: %s", exc)
            return
        if driver is None:
            return
        ident = (driver.user_id, driver.user_name)
        if ident != self._driver:
            self._driver = ident
            self.stats.driver_changes += 1
            t = (
                float(rows["SessionTime"][0])
                if "SessionTime" in (rows.dtype.names or ())
                else 0.0
            )
            yield DriverChange(
                key,
                t,
                driver.car_idx,
                driver.user_id,
                driver.user_name,
                driver.team_name,
                driver.car_number,
            )
