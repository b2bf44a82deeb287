"""The fixtures whose work starts with the session (``tests/conftest.py``), and that work.

Each is a command that takes minutes and mostly one core or the disk: the Docker image, the
wheel installed in a fresh venv, and the exports the export tests read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar

import pytest

from tests.container.podman import ImageBuild
from tests.export.additions import AdditionExports
from tests.export.exports import OPTIONS, ArtifactExport
from tests.wheel import WheelInstall


class Preparation(Protocol):
    """Work started in the background; its fixture waits for it."""

    def stop(self) -> None:
        """End it if it still runs."""


P = TypeVar("P", bound=Preparation)
Start = Callable[[pytest.TempPathFactory, pytest.Config], Preparation]


def _warning_filters(config: pytest.Config) -> list[str]:
    """pytest's warning filters in the order it applies them (the last one wins)."""
    return [str(f) for f in config.getini("filterwarnings")] + (
        config.getoption("pythonwarnings") or []
    )


# fixture name -> how its work starts
PREPARED: Mapping[str, Start] = {
    "image": lambda tmp, config: ImageBuild(),
    "installed": lambda tmp, config: WheelInstall(tmp.mktemp("wheel")),
    "exported": lambda tmp, config: ArtifactExport(
        tmp.mktemp("artifacts"), warning_filters=_warning_filters(config)
    ),
    "exported_with_options": lambda tmp, config: ArtifactExport(
        tmp.mktemp("artifacts_with_options"), OPTIONS, _warning_filters(config)
    ),
    "addition_exports": lambda tmp, config: AdditionExports(tmp),
}


def needs(item: pytest.Item) -> list[str]:
    """The fixtures of :data:`PREPARED` that ``item`` asks for."""
    names = getattr(item, "fixturenames", ())
    return [name for name in PREPARED if name in names]


class Preparations:
    """What the session started, for the fixtures to take; started now what it did not."""

    def __init__(
        self, needed: set[str], tmp_path_factory: pytest.TempPathFactory, config: pytest.Config
    ) -> None:
        self._tmp_path_factory, self._config = tmp_path_factory, config
        self._started: dict[str, Preparation] = {}
        try:
            for name in sorted(needed):
                # one that cannot start is left to its fixture, which starts it again and says why
                with contextlib.suppress(Exception, pytest.skip.Exception, pytest.fail.Exception):
                    self._started[name] = PREPARED[name](tmp_path_factory, config)
        except BaseException:  # interrupted: nothing started is left running
            self.stop()
            raise

    def take(self, name: str, kind: type[P]) -> P:
        """Preparation ``name``: the one the session started, else one started now."""
        if name not in self._started:  # its failure to start is this test's
            self._started[name] = PREPARED[name](self._tmp_path_factory, self._config)
        preparation = self._started[name]
        assert isinstance(preparation, kind)
        return preparation

    def stop(self) -> None:
        """Stop each (a no-op for one that ended)."""
        for preparation in self._started.values():
            preparation.stop()
