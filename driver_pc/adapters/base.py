"""The adapter contract every sim source implements, and the registry that names them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import numpy as np

from driver_pc.protocol.channels import ChannelSpec

Frames = np.ndarray[Any, np.dtype[np.void]]


class AdapterUnavailableError(RuntimeError):
    """The adapter cannot run here (missing runtime, wrong OS, missing file)."""


class SimAdapter(ABC):
    """A source of telemetry ticks: packed record arrays of ``channels``, in time order."""

    name: ClassVar[str]
    tick_rate: int = 60

    @property
    @abstractmethod
    def channels(self) -> tuple[ChannelSpec, ...]:
        """The channels each tick carries; fixed for one session."""

    @property
    @abstractmethod
    def session_key(self) -> str:
        """Stable identifier of the current sim session (same for every PC of a car)."""

    @abstractmethod
    def ticks(self) -> Iterator[Frames]:
        """Record arrays of one or more consecutive ticks until the session ends."""

    @property
    @abstractmethod
    def session_info_update(self) -> int:
        """Counter that changes whenever the session info changes (cheap to read)."""

    @abstractmethod
    def session_info_text(self) -> str:
        """The current session-info YAML text."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files and handles."""

    def camera_switch(self, car_number: str, group: int, camera: int) -> str:
        """Switch the sim's broadcast camera; returns a description of what was done."""
        raise AdapterUnavailableError(f"{self.name}: camera control is not supported")


_REGISTRY: dict[str, Callable[..., SimAdapter]] = {}


def register_adapter(name: str) -> Callable[[type[SimAdapter]], type[SimAdapter]]:
    """Class decorator: make an adapter available under ``name``."""

    def wrap(cls: type[SimAdapter]) -> type[SimAdapter]:
        if name in _REGISTRY:
            raise ValueError(f"adapter {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def create_adapter(name: str, **options: Any) -> SimAdapter:
    """Build the adapter registered as ``name`` with its options."""
    _load_builtin()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown adapter {name!r}; known: {sorted(_REGISTRY)}"
        ) from None
    return factory(**options)


def adapter_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    # Importing registers them; kept here so base.py has no upstream imports.
    from driver_pc.adapters import iracing_live, iracing_replay, simulator  # noqa: F401
