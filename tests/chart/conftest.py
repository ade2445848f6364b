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


_WITH_CHATSERVICE = [s for s in SCENARIOS if s.creates_chatservice()]


@pytest.fixture(params=_WITH_CHATSERVICE, ids=[s.name for s in _WITH_CHATSERVICE])
def rendered_with_chatservice(request: pytest.FixtureRequest) -> Rendered:
    """The renders that hold a ChatService (the others have nothing for the operator)."""
    scenario: Scenario = request.param
    if scenario.name not in _cache:
        _cache[scenario.name] = render(scenario)
    return _cache[scenario.name]
