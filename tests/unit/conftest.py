"""Unit tests never touch the user's state directory."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def own_state_dir(tmp_path_factory, monkeypatch):
    """``$XDG_STATE_HOME`` of this test's own: locks, staging, the dev-images record and
    crash files go there, never to ``~/.local/state/flops-tasks``."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
