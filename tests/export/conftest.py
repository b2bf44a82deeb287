from __future__ import annotations

from pathlib import Path

import pytest

from tests.export.exports import ArtifactExport, Exported
from tests.preparations import Preparations


@pytest.fixture(scope="session")
def exported(preparations: Preparations) -> dict[str, Path]:
    """One fresh ``focal export`` of every artifact for the whole session, by file name."""
    return preparations.take("exported", ArtifactExport).finish().artifacts()


@pytest.fixture(scope="session")
def exported_with_options(preparations: Preparations) -> Exported:
    """``focal export`` with every option that changes a graph (``exports.OPTIONS``)."""
    return preparations.take("exported_with_options", ArtifactExport).finish()
