"""Session fixtures; the helpers they share with tests live in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir for the session, so MNIST-1D is generated once."""
    return tmp_path_factory.mktemp("data")
