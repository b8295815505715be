"""The plugin registry: discovery of a package's modules, optional runtimes, scoped tests."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from driver_pc.protocol.plugins import Registry


@pytest.fixture
def plugin_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A package ``pbx_plugins`` with a registry module and three plugin files."""
    package = tmp_path / "pbx_plugins"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "registry.py").write_text(
        "from driver_pc.protocol.plugins import Registry\n"
        "THINGS = Registry('thing', package='pbx_plugins', skip=('registry',))\n"
    )
    (package / "alpha.py").write_text(
        "from pbx_plugins.registry import THINGS\nTHINGS.add('alpha', 1)\n"
    )
    (package / "beta.py").write_text(
        "import not_installed_runtime_xyz\n"
        "from pbx_plugins.registry import THINGS\nTHINGS.add('beta', 2)\n"
    )
    (package / "_private.py").write_text("raise RuntimeError('never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "pbx_plugins"
    for name in [m for m in sys.modules if m.split(".")[0] == "pbx_plugins"]:
        del sys.modules[name]


def test_a_new_module_is_found_and_a_missing_runtime_only_switches_it_off(
    plugin_package: str, caplog: pytest.LogCaptureFixture
) -> None:
    from pbx_plugins.registry import THINGS

    with caplog.at_level(logging.WARNING):
        assert dict(THINGS) == {"alpha": 1}
    assert THINGS.disabled == {"pbx_plugins.beta": "needs not_installed_runtime_xyz"}
    assert "pbx_plugins.beta is off" in caplog.text
    with pytest.raises(
        ValueError, match=r"unknown thing 'beta'.*pbx_plugins.beta is off"
    ):
        THINGS.lookup("beta")


def test_a_missing_module_of_our_own_is_a_bug(plugin_package: str) -> None:
    from pbx_plugins.registry import THINGS

    Path(sys.modules["pbx_plugins"].__path__[0], "gamma.py").write_text(
        "import pbx_plugins.nowhere\n"
    )
    with pytest.raises(ModuleNotFoundError):
        THINGS.discover()


def test_names_are_taken_once_and_scoped_registrations_are_undone() -> None:
    things: Registry[int] = Registry("thing")
    things.add("a", 1)
    with pytest.raises(ValueError, match="thing 'a' is registered twice"):
        things.add("a", 2)
    with things.scoped():
        things.add("b", 2)
        assert list(things) == ["a", "b"]
    assert list(things) == ["a"]
