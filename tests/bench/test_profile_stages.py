"""The stage profile calls the service's own codec functions: keep it in step with them."""

from __future__ import annotations

import pytest

from bench.profile.stages import pipelines, time_stages
from focal_eval.service.core.scoring import Scorers
from focal_eval.service.core.settings import Settings


@pytest.fixture(scope="module")
def scorer():
    return Scorers.load(Settings.model_validate({"threads": 1})).multiclass


def test_every_stage_pipeline_runs_through(scorer):
    for route, (body, stages) in pipelines(scorer, n=32, c=4).items():
        times = time_stages(body, stages, repeats=1)
        assert list(times) == [name for name, _ in stages], route
        assert all(seconds >= 0 for seconds in times.values())
