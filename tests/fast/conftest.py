"""The fast tier: the worker's logic against an in-memory api, no database, no cluster.

Nothing here asks for the cluster fixtures of ``tests/conftest.py``, so none starts."""

from __future__ import annotations

import pytest
from fake_api import FakeApi


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()
