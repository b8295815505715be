"""iRacing live adapter: reads the sim's shared memory through pyirsdk, paced by its data-valid event."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from driver_pc.adapters.base import (
    AdapterUnavailableError,
    Frames,
    SimAdapter,
    register_adapter,
)
from driver_pc.protocol.channels import ChannelKind, ChannelSpec, frame_dtype
from driver_pc.protocol.session_info import (
    current_driver,
    decode_session_bytes,
    parse_session_info,
    track_info,
)


@register_adapter("iracing")
class IRacingLiveAdapter(SimAdapter):
    r"""Live telemetry of the local iRacing sim (Windows only).

    Each tick waits on ``Local\\IRSDKDataValidEvent`` (pyirsdk's
    ``freeze_var_buffer_latest`` blocks on it for at most 32 ms) rather than sleeping,
    then copies the newest variable buffer as one record.
    """

    def __init__(self, wait_s: float = 0.0) -> None:
        if sys.platform != "win32":
            raise AdapterUnavailableError(
                "iracing: live telemetry needs Windows (iRacing's shared memory); "
                "use the 'ibt', 'dump' or 'simulator' adapter here"
            )
        import irsdk

        self._ir: Any = irsdk.IRSDK()
        if not self._ir.startup():
            raise AdapterUnavailableError("iracing: the sim is not running")
        header = self._ir._header
        self.tick_rate = header.tick_rate
        chans = [
            ChannelSpec(v.name, ChannelKind(v.type), v.count, v.unit, v.desc)
            for v in self._ir._var_headers
        ]
        self._channels: tuple[ChannelSpec, ...] = tuple(chans)
        self._view: np.dtype[np.void] = np.dtype(
            {
                "names": [c.name for c in chans],
                "formats": [frame_dtype([c])[c.name] for c in chans],
                "offsets": [v.offset for v in self._ir._var_headers],
                "itemsize": header.buf_len,
            }
        )
        self._packed: np.dtype[np.void] = frame_dtype(chans)
        self._last_tick: int = -1

    @property
    def channels(self) -> tuple[ChannelSpec, ...]:
        return self._channels

    @property
    def session_key(self) -> str:
        info = parse_session_info(self.session_info_text())
        sub = track_info(info)["subsession_id"]
        driver = current_driver(info)
        car = driver.car_number if driver else "0"
        return f"ir-{sub}-car{car}"

    @property
    def session_info_update(self) -> int:
        return int(self._ir._header.session_info_update)

    def session_info_text(self) -> str:
        header = self._ir._header
        raw = self._ir._shared_mem[
            header.session_info_offset : header.session_info_offset
            + header.session_info_len
        ]
        return decode_session_bytes(bytes(raw))

    def ticks(self) -> Iterator[Frames]:
        while self._ir.is_connected:
            self._ir.freeze_var_buffer_latest()  # waits on the data-valid event
            buf = self._ir._var_buffer_latest
            if buf.tick_count == self._last_tick:
                continue
            self._last_tick = buf.tick_count
            view = np.frombuffer(
                buf.get_memory(), dtype=self._view, count=1, offset=buf.buf_offset
            )
            row: Frames = np.empty(1, dtype=self._packed)
            for name in self._packed.names or ():
                row[name] = view[name]
            yield row

    def camera_switch(self, car_number: str, group: int, camera: int) -> str:
        self._ir.cam_switch_num(car_number, group, camera)
        return f"iRacing camera: car #{car_number}, group {group}, camera {camera}"

    def close(self) -> None:
        self._ir.unfreeze_var_buffer_latest()
        self._ir.shutdown()
