"""The adapter contract every sim source implements, and the registry that names them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from driver_pc.protocol.channels import ChannelSpec
from driver_pc.protocol.plugins import Registry

Frames = np.ndarray[Any, np.dtype[np.void]]


class AdapterUnavailableError(RuntimeError):
    """The adapter cannot run here (missing runtime, wrong OS, missing file)."""


class SimAdapter(ABC):
    """A source of telemetry ticks: packed record arrays of ``channels``, in time order."""

    name: ClassVar[str]
    #: What the adapter can be told (set by ``register_adapter``).
    options_model: ClassVar[type[AdapterOptions]]
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

    #: True for an adapter of a running sim: when ``ticks()`` ends (the sim went away
    #: or changed session) another session may follow; see ``wait_for_session``.
    follows_sim: ClassVar[bool] = False

    def wait_for_session(self, timeout: float) -> bool:
        """After ``ticks()`` ended: wait up to ``timeout`` s for the sim's next session.

        True when ``ticks()`` may be called again (with this session's channels,
        key and info); a recording or simulation that has ended returns False.
        """
        return False

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files and handles."""

    def camera_switch(self, car_number: str, group: int, camera: int) -> str:
        """Switch the sim's broadcast camera; returns a description of what was done."""
        raise AdapterUnavailableError(f"{self.name}: camera control is not supported")


class AdapterOptions(BaseModel):
    """What an adapter can be told: one described field per ``pitbox-shim`` flag.

    A field ``speed`` is the flag ``--speed`` (an alias names the flag instead:
    ``path`` as ``--file``); its default must be the adapter's own (a test holds it).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class NoOptions(AdapterOptions):
    """An adapter that takes no options."""


#: Every adapter by name; the modules of ``driver_pc.adapters`` register themselves.
ADAPTERS: Registry[type[SimAdapter]] = Registry("adapter", package="driver_pc.adapters")

_A = TypeVar("_A", bound=type[SimAdapter])


def register_adapter(
    name: str, options: type[AdapterOptions] = NoOptions
) -> Callable[[_A], _A]:
    """Class decorator: make an adapter available as ``name``, taking ``options``."""

    def wrap(cls: _A) -> _A:
        cls.name = name
        cls.options_model = options
        ADAPTERS.add(name, cls)
        return cls

    return wrap


def create_adapter(name: str, **options: Any) -> SimAdapter:
    """Build the adapter registered as ``name``; ``options`` must fit its options model.

    Raises ValueError for an unknown name or bad options (pydantic's ValidationError),
    AdapterUnavailableError when it cannot run here.
    """
    cls = ADAPTERS.lookup(name)
    checked = cls.options_model.model_validate(options)
    try:
        return cls(**checked.model_dump())
    except ModuleNotFoundError as exc:
        raise AdapterUnavailableError(
            f"{name}: needs {exc.name}, which is not installed here"
        ) from None


def adapter_names() -> list[str]:
    """The registered adapters' names, sorted."""
    return sorted(ADAPTERS)
