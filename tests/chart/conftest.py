"""Fixtures of the chart tests: each scenario is rendered once per session."""

from __future__ import annotations

import pytest

from .rendering import SCENARIOS, Rendered, Scenario, render

_cache: dict[str, Rendered] = {}


@pytest.fixture(params=SCENARIOS, ids=[s.name for s in SCENARIOS])
def scenario(request: pytest.FixtureRequest) -> Scenario:
    chosen: Scenario = request.param
    return chosen


@pytest.fixture
def rendered(scenario: Scenario) -> Rendered:
    if scenario.name not in _cache:
        _cache[scenario.name] = render(scenario)
    return _cache[scenario.name]
