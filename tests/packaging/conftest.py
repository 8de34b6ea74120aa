"""Session fixtures for the packaging tests: the binaries (see packaging_helpers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging_helpers import kubectl_binary, promtool_binary, sync


@pytest.fixture(scope="session")
def helm() -> Path:
    return sync.helm_binary()


@pytest.fixture(scope="session")
def kubectl() -> Path:
    return kubectl_binary()


@pytest.fixture(scope="session")
def promtool() -> Path:
    return promtool_binary()
