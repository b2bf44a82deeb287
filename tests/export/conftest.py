from __future__ import annotations

from pathlib import Path

import pytest

from focal_eval.export import ArtifactReport, export_all


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ArtifactReport]:
    """One fresh export of every artifact for the whole session, by file name."""
    out: Path = tmp_path_factory.mktemp("artifacts")
    return {report.path.name: report for report in export_all(out)}
