"""Shared test helpers: a settings factory over Invoke's real config system."""

from __future__ import annotations

import copy

import pytest
from invoke import MockContext

from flops_tasks.config import DEFAULTS
from flops_tasks.invoke_config import FlopsConfig


def _make_context(overrides: dict | None = None, **run: object) -> MockContext:
    """A MockContext whose config has the project defaults plus ``overrides`` under flops."""
    flops = copy.deepcopy(DEFAULTS)
    for section, values in (overrides or {}).items():
        mergeable = isinstance(flops.get(section), dict) and section != "inventory"
        if isinstance(values, dict) and mergeable:
            flops[section].update(values)
        else:
            flops[section] = values
    config = FlopsConfig(overrides={"flops": flops, "run": {"in_stream": False, **run}})
    return MockContext(config=config)


@pytest.fixture
def ctx_factory():
    """``ctx_factory(overrides, **run)``: a MockContext with the project defaults."""
    return _make_context
