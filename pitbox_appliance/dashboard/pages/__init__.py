"""Dashboard pages: each module lays out one page, binds it to the LiveState, and declares it.

A page module decorates its ``create(ctx)`` with :func:`page` (path, icon, label,
place in the navigation rail, its CSS, the least role that may open it); the dashboard's
routes and navigation are built from :data:`PAGES`, which finds every module of this
package by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from driver_pc.protocol.plugins import Registry
from pitbox_appliance.security.users import Role

if TYPE_CHECKING:
    from pitbox_appliance.dashboard.context import PageContext

PageCreate = Callable[["PageContext"], None]
_F = TypeVar("_F", bound=PageCreate)


@dataclass(frozen=True, slots=True)
class PageSpec:
    """One page: its URL path, its entry in the navigation rail, how to build it."""

    path: str
    icon: str  # a Material icon name
    label: str
    order: int  # place in the navigation rail, smallest first
    create: PageCreate
    css: str = ""  # the page's own styles, added once per tab
    #: The least role that may open the page (hidden from the others and refused).
    role: Role = Role.VIEWER


#: Every page by path; the modules of this package register themselves.
PAGES: Registry[PageSpec] = Registry("page", package=__name__)


def page(
    path: str,
    *,
    icon: str,
    label: str,
    order: int,
    css: str = "",
    role: Role = Role.VIEWER,
) -> Callable[[_F], _F]:
    """Decorate a page module's ``create(ctx)``: the page at ``path``."""

    def wrap(create: _F) -> _F:
        PAGES.add(path, PageSpec(path, icon, label, order, create, css, role))
        return create

    return wrap


def pages() -> tuple[PageSpec, ...]:
    """Every page in navigation order."""
    return tuple(sorted(PAGES.values(), key=lambda p: (p.order, p.path)))
